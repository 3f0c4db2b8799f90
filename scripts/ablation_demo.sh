#!/usr/bin/env bash
# The NIMA ablation at demo scale: set up, build the demo dataset once, run configs/nima_demo.py's
# sweep (this recipe / idealo's two-stage schedule / EMD alone) over seeds 0, 1, 2 at reduced steps
# (`aesthetics-jax sweep run`), then print the table (`aesthetics-jax sweep report`: mean ± sd and a
# 95 % bootstrap CI over seeds; report.{md,csv,tex,png}). Run it again and finished members are
# skipped, an interrupted one resumes. Output: ./ablation_output (or $1). STEPS (default 1200) sets
# the members' steps.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mkdir -p "${1:-$root/ablation_output}" && cd "${1:-$root/ablation_output}" && pwd)"
py="$(bash "$root/scripts/setup_env.sh")"
cd "$root"
start=$(date +%s)
"$py" -m aesthetics_jax.cli sweep run "configs/nima_demo.py:steps=${STEPS:-1200}" --root "$out/sweep" --seeds 0,1,2 \
  --config.data.data_dir="$out/data"
"$py" -m aesthetics_jax.cli sweep report "$out/sweep" --metric test/emd/srcc --metric test/emd/plcc
echo "[ablation] finished in $(( $(date +%s) - start ))s (set-up excluded)"
