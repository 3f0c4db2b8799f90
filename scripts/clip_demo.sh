#!/usr/bin/env bash
# CG-IAA at demo scale (configs/clip_demo.py): critiques written from what the demo renderer did to
# each photo -> a tiny CLIP trained from scratch with InfoNCE (VLAP) -> four attribute experts
# (colour & light, composition, depth & focus, general) -> the fusion model on the votes (with
# --ablation also the fusion-off arm and each expert dropped). The report: zero-shot attribute
# classification / caption retrieval of held-out photos against chance, and held-out SRCC per arm.
# Re-run after an interruption: finished runs are re-evaluated only, an interrupted one resumes.
# Output: ./clip_demo_output (or $1).  Usage: bash scripts/clip_demo.sh [OUT] [--ablation]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ablation=0
args=()
for a in "$@"; do
  if [[ "$a" == "--ablation" ]]; then ablation=1; else args+=("$a"); fi
done
target="${args[0]:-$root/clip_demo_output}"
out="$(mkdir -p "$target" && cd "$target" && pwd)"
py="$(bash "$root/scripts/setup_env.sh")"
cd "$root"
start=$(date +%s)
train() {  # name, config argument
  local name="$1" arg="$2"
  local t0=$(date +%s)
  echo "[clip demo] $name ($arg)"
  "$py" launch.py --config "configs/clip_demo.py:$arg" --workdir "$out/$name" \
    --config.data.data_dir "$out/data" --alsologtostderr=false > "$out/$name.log" 2>&1 \
    || { tail -20 "$out/$name.log"; exit 1; }
  echo "    done in $(( $(date +%s) - t0 ))s"
}
train vlap vlap
for g in color composition dof general; do
  train "expert_$g" "expert=$g,runs=$out"
done
train fusion "cgiaa,runs=$out"
if (( ablation )); then
  train fusion_off "cgiaa,runs=$out,fusion=none"
  for g in color composition dof general; do
    train "drop_$g" "cgiaa,runs=$out,drop=$g"
  done
fi
"$py" - "$out" <<'EOF'
import json, os, sys

out = sys.argv[1]
metrics = lambda run: json.load(open(os.path.join(out, run, "eval", "final_metrics.json")))  # noqa: E731
v = metrics("vlap")
print("\nVLAP (tiny CLIP from scratch), held-out photos:")
print("  caption retrieval     R@1 / R@5 / R@10        chance")
for d in ("i2t", "t2i"):
    print(f"    {d}                 {v[f'test/{d}/r1']:.3f} / {v[f'test/{d}/r5']:.3f} / {v[f'test/{d}/r10']:.3f}"
          f"   {v[f'test/{d}/chance_r1']:.3f} / {v[f'test/{d}/chance_r5']:.3f} / {v[f'test/{d}/chance_r10']:.3f}")
print("  zero-shot attribute classification (one prompt per class); chance: balanced accuracy = uniform")
print("    group          accuracy   balanced accuracy   majority class   uniform")
for g in ("color", "composition", "dof", "general"):
    print(f"    {g:<13}  {v[f'test/{g}/zeroshot_acc']:.3f}      {v[f'test/{g}/zeroshot_balanced_acc']:.3f}"
          f"               {v[f'test/{g}/majority_acc']:.3f}            {v[f'test/{g}/uniform_acc']:.3f}")
print("\nFusion (NIMA EMD head), held-out SRCC / PLCC:")
for run in ["fusion", "fusion_off"] + [f"drop_{g}" for g in ("color", "composition", "dof", "general")]:
    if os.path.isfile(os.path.join(out, run, "eval", "final_metrics.json")):
        m = metrics(run)
        print(f"    {run:<18} {m['test/emd/srcc']:.3f} / {m['test/emd/plcc']:.3f}")
EOF
echo "[clip demo] finished in $(( $(date +%s) - start ))s (set-up excluded); runs in $out"
