#!/usr/bin/env bash
# The demo: set up, build the embedded demo dataset, train NIMA on it, evaluate on the held-out
# photos and print the metrics table and where every artefact went. Run it again after an
# interruption and it resumes from the last checkpoint. Output: ./demo_output (or $1).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mkdir -p "${1:-$root/demo_output}" && cd "${1:-$root/demo_output}" && pwd)"
py="$(bash "$root/scripts/setup_env.sh")"
cd "$root"
start=$(date +%s)
"$py" launch.py --config configs/nima_demo.py --workdir "$out/workdir" \
  --config.data.data_dir "$out/data" --alsologtostderr=false
echo "[demo] finished in $(( $(date +%s) - start ))s (set-up excluded)"
