#!/usr/bin/env bash
# Attribute critiques at demo scale (configs/clipcap_attr.py:demo; CG-IAA's ClipCap experts): the demo
# renderer's critiques of its photographs (data/builders/demo_captions.py) train a tiny Color & Light
# expert from scratch on the 2-core CPU -- a small CLIP image tower, the ClipCap mapper and a 2-layer
# GPT-2 over a byte-level BPE vocabulary learnt from the critiques -- then the run is packed into a
# critic bundle and `aesthetics-jax critique` writes critiques of held-out photographs (whole base
# photos never seen in training). The evaluator reads the class each critique names by its keyword
# (natural / haze / overexposed / underexposed / cast) against the renderer's label: accuracy next to
# the majority class and chance. Last, critique-based scoring (configs/critique_iaa.py, CG-IAA's text-only
# IAA): the expert's critiques of every photo go through a small CLIP text tower and NIMA's head,
# trained on the votes; held-out SRCC from the words alone. Re-run after an interruption: a finished run is re-evaluated only,
# an interrupted one resumes. Output: ./critique_demo_output (or $1).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mkdir -p "${1:-$root/critique_demo_output}" && cd "${1:-$root/critique_demo_output}" && pwd)"
py="$(bash "$root/scripts/setup_env.sh")"
cd "$root"
start=$(date +%s)
echo "[critique demo] training the colour expert (configs/clipcap_attr.py:demo,attribute=color)"
"$py" launch.py --config configs/clipcap_attr.py:demo,attribute=color --workdir "$out/expert_color" \
  --config.data.data_dir "$out/data" --alsologtostderr=false > "$out/expert_color.log" 2>&1 \
  || { tail -20 "$out/expert_color.log"; exit 1; }
grep -E "^test/" "$out/expert_color.log" | tr -s ' ' | sed "s/^/    held-out /"
rm -rf "$out/critic"
"$py" -m aesthetics_jax.cli bundle pack "$out/expert_color" --out "$out/critic" > "$out/pack.log" 2>&1 \
  || { cat "$out/pack.log"; exit 1; }
raw="$out/data/demo/raw"
ids=$(head -8 "$raw/aesthetics_image_lists/generic_test.jpgl")
echo
echo "[critique demo] aesthetics-jax critique on 8 held-out photos (label: what the renderer did to the colours)"
"$py" -m aesthetics_jax.cli critique $(for id in $ids; do echo "$raw/images/$id.jpg"; done) --model "$out/critic" \
  --quiet --no-cache > "$out/critiques.jsonl"
"$py" - "$out/critiques.jsonl" "$raw/critiques/labels.csv" <<'PY'
import csv, json, os, sys
labels = {r["id"]: r["color"] for r in csv.DictReader(open(sys.argv[2]))}
for line in open(sys.argv[1]):
    item = json.loads(line)
    image_id = os.path.splitext(os.path.basename(item["image"]))[0]
    print(f"  {image_id}  label {labels[image_id]:<13} critique: {item['critiques']['color']}")
PY
echo
echo "[critique demo] critique-based scoring: the expert's critiques of every demo photo -> CLIP text tower + NIMA head"
"$py" -m aesthetics_jax.cli critique "$raw/images" --model "$out/critic" --quiet --no-cache --batch-size 64 \
  > "$out/critiques_all.jsonl" || { echo "critique failed"; exit 1; }
"$py" launch.py --config "configs/critique_iaa.py:demo,attributes=color,critiques=$out/critiques_all.jsonl" \
  --workdir "$out/critique_iaa" --config.data.data_dir "$out/data" --alsologtostderr=false > "$out/critique_iaa.log" 2>&1 \
  || { tail -20 "$out/critique_iaa.log"; exit 1; }
grep -E "^(test|val)/emd/(srcc|plcc) " "$out/critique_iaa.log" | tr -s ' ' | sed "s/^/    held-out /"
echo
echo "[critique demo] finished in $(( $(date +%s) - start ))s (set-up excluded); expert run: $out/expert_color," \
  "critic bundle: $out/critic, all held-out critiques: $out/expert_color/eval/test_critiques.csv"
