#!/usr/bin/env bash
# Aesthetics-XAI at demo scale (configs/xai_demo.py): render the demo photographs in EVA's format,
# build them with the EVA builder, compute spectral saliency maps and saliency-guided patches,
# train the six-score reduced InceptionV3 on full images and on patches, and print the full vs
# patch-aggregated table on the held-out photos. Run it again after an interruption: finished
# runs are skipped, an interrupted one resumes from its last checkpoint. Output: ./xai_demo_output
# (or $1).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mkdir -p "${1:-$root/xai_demo_output}" && cd "${1:-$root/xai_demo_output}" && pwd)"
py="$(bash "$root/scripts/setup_env.sh")"
cd "$root"
start=$(date +%s)
"$py" launch.py --config configs/xai_demo.py:full --workdir "$out/full" \
  --config.data.data_dir "$out/data" --alsologtostderr=false
"$py" launch.py --config configs/xai_demo.py:patches --workdir "$out/patches" \
  --config.data.data_dir "$out/data" --config.evals.test.full_from="$out/full" --alsologtostderr=false
echo
cat "$out/patches/eval/test_table.md"
echo
echo "[xai demo] finished in $(( $(date +%s) - start ))s (set-up excluded); table: $out/patches/eval/test_table.md"
