"""benchmarks/clip_vlap.py: the tiny CLIP end to end in one process (JAX and open_clip on the same
weights, embeddings checked, interleaved windows, table and ratio lines), and the JAX-only path
when open_clip is absent."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "clip_vlap.py"
HEADER = "| task | framework | batch | steps/s (median) | img/s (median) | img/s min | img/s max | compile / first s |"


def _run(args, tmp_path, extra_env=None):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **(extra_env or {}))
    env.pop("XLA_FLAGS", None)  # one CPU device, as a benchmark run would have
    out_json = tmp_path / "clip_vlap.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), *args, "--json", str(out_json)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines(), json.loads(out_json.read_text())


def _rows(lines):
    rows = [line for line in lines if re.match(r"^\| (train|zeroshot) \|", line)]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows]


def test_tiny_run_against_open_clip(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("open_clip")
    lines, data = _run(["--variant", "tiny", "--batch_size", "4", "--steps", "1", "--rounds", "2", "--warmup", "0",
                        "--threads", "1"],
                       tmp_path)
    assert lines[0] == ("# command: python benchmarks/clip_vlap.py --variant tiny --batch_size 4 --steps 1 --rounds 2 "
                        f"--warmup 0 --threads 1 --json {tmp_path / 'clip_vlap.json'}")
    assert any(line.startswith("# jax: platform=cpu") for line in lines)
    assert any(line.startswith("# torch: device=cpu") for line in lines)
    same = next(line for line in lines if line.startswith("# same weights:"))
    assert same.endswith("OK"), same
    assert HEADER in lines
    rows = _rows(lines)
    assert [(r[0], r[1]) for r in rows] == [("train", "jax"), ("train", "torch"), ("zeroshot", "jax"),
                                            ("zeroshot", "torch")], lines
    for cells in rows:
        assert len(cells) == 8 and cells[2] == "4"
        steps_s, img_s, lo, hi, first = (float(c) for c in cells[3:])
        assert steps_s > 0 and img_s == pytest.approx(4 * steps_s, rel=1e-2) and lo <= img_s <= hi and first >= 0
    ratio_lines = [line for line in lines if line.startswith("ratio ")]
    assert len(ratio_lines) == 2
    num = r"\d+\.\d{3}"
    assert all(re.fullmatch(rf"ratio (train|zeroshot) jax/torch = {num} \(median of 2 per-round ratios, range "
                            rf"{num}-{num}; ratio of medians {num}, of best windows {num}\)", r)
               for r in ratio_lines), ratio_lines

    meta = data["meta"]
    assert meta["jax_platform"] == "cpu" and meta["torch_device"] == "cpu" and meta["torch_skipped"] is None
    assert meta["embed_max_abs_diff"]["image"] <= 1e-4 and meta["embed_max_abs_diff"]["text"] <= 1e-4
    assert meta["zeroshot_score_max_abs_diff"] <= 1e-4
    # Same weights, same batch: the first InfoNCE loss agrees.
    assert meta["first_step_loss"]["jax"] == pytest.approx(meta["first_step_loss"]["torch"], abs=1e-4)
    records = {(r["task"], r["framework"]): r for r in data["results"]}
    for r in data["ratios"]:
        j, t = records[(r["task"], "jax")], records[(r["task"], "torch")]
        assert len(j["windows"]) == len(t["windows"]) == 2
        per_round = [a / b for a, b in zip(j["windows"], t["windows"])]
        assert r["ratio"] == pytest.approx(sum(per_round) / 2, rel=1e-3)  # the median of two
        assert r["ratio_of_medians"] == pytest.approx(j["steps_s"] / t["steps_s"], rel=1e-6)
        assert r["per_round_min"] <= r["ratio"] <= r["per_round_max"]


def test_jax_only_without_open_clip(tmp_path):
    """With open_clip unimportable the torch side is skipped, named, and JAX is still timed."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "open_clip.py").write_text("raise ImportError('open_clip blocked for this test')\n")
    path = os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])
    lines, data = _run(["--variant", "tiny", "--batch_size", "2", "--steps", "1", "--rounds", "1", "--warmup", "0",
                        "--tasks", "zeroshot"], tmp_path, {"PYTHONPATH": path})
    assert any(line.startswith("# SKIP torch side: open_clip is not installed") for line in lines), lines
    assert [(r[0], r[1]) for r in _rows(lines)] == [("zeroshot", "jax")]
    assert not [line for line in lines if line.startswith("ratio ")]
    assert data["meta"]["torch_device"] is None and "open_clip" in data["meta"]["torch_skipped"]
