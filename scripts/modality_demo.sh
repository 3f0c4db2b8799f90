#!/usr/bin/env bash
# Modality NIMA at demo scale (configs/modality_demo.py; Lisaius & Wehrwein): train NIMA on the demo
# photographs in RGB from scratch, build their saliency (spectral) and blur (Zhuo & Sim) modality
# versions, transfer the RGB model to each modality with variable layer freezing (blur with 0, 7 and
# all 14 MobileNet blocks frozen; saliency and RGB + blur fully fine-tuned), then compare what each
# model explains per AVA tag and challenge: `aesthetics-jax analyze modalities`. Re-run after an
# interruption: finished runs are re-evaluated only, an interrupted one resumes from its last
# checkpoint. Output: ./modality_demo_output (or $1); the report is <out>/analysis_tags/report.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mkdir -p "${1:-$root/modality_demo_output}" && cd "${1:-$root/modality_demo_output}" && pwd)"
py="$(bash "$root/scripts/setup_env.sh")"
cd "$root"
start=$(date +%s)
train() {  # name, config argument, extra flags
  local name="$1" arg="$2"; shift 2
  echo "[modality demo] $name ($arg)"
  "$py" launch.py --config "configs/modality_demo.py:$arg" --workdir "$out/$name" \
    --config.data.data_dir "$out/data" --alsologtostderr=false "$@" > "$out/$name.log" 2>&1 \
    || { tail -20 "$out/$name.log"; exit 1; }
  grep -E "^test/emd/(srcc|plcc) " "$out/$name.log" | tr -s ' ' | sed "s/^/    held-out /" || true
}
mkdir -p "$out"
train rgb rgb
for run in "saliency saliency,init=transfer" "blur blur,init=transfer" "blur_k7 blur,init=transfer,freeze=7" \
           "blur_head blur,init=transfer,freeze=14" "rgb_blur rgb+blur,init=transfer"; do
  set -- $run
  train "$1" "$2" --config.init_from.workdir "$out/rgb"
done
runs=()
for name in rgb saliency blur blur_k7 blur_head rgb_blur; do runs+=(--run "$name=$out/$name"); done
for by in tags challenge; do
  "$py" -m aesthetics_jax.cli analyze modalities "${runs[@]}" --by "$by" --out "$out/analysis_$by" \
    > "$out/analysis_$by.log" 2>&1 || { cat "$out/analysis_$by.log"; exit 1; }
done
echo
cat "$out/analysis_tags/report.md"
echo
echo "[modality demo] finished in $(( $(date +%s) - start ))s (set-up excluded); reports: $out/analysis_tags/report.md," \
  "$out/analysis_challenge/report.md"
