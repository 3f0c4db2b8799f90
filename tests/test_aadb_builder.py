"""AADB TFDS builder on a fixture in the release's format: imgListFiles_label/imgList<Split>Regression_<attr>.txt
(one `<name> <value>` per line), datasetImages_originalSize/, AADB_newtest_originalSize/ (+ a score-prefixed copy)."""

import os

import cv2
import numpy as np
import pytest

from aesthetics_jax.data import pipeline
from aesthetics_jax.data.builders import aadb, base

ATTRS = ("score", "BalacingElements", "ColorHarmony", "Content", "DoF", "Light", "MotionBlur", "Object",
         "Repetition", "RuleOfThirds", "Symmetry", "VividColor")
SPLITS = {"train": ("Train", 8), "validation": ("Validation", 3), "test": ("TestNew", 4)}


def write_aadb_fixture(root, seed=0):
    rng = np.random.default_rng(seed)
    lists = {split: {a: [] for a in ATTRS} for split in SPLITS}  # lines per file
    good = {}
    for split, (_, n) in SPLITS.items():
        for k in range(n):
            name = f"farm{k % 9 + 1}_{100 + k}_{19000000000 + 7 * k + len(split)}_{k:08x}_b.jpg"
            labels = {"score": round(float(rng.random()), 3)}
            labels.update({a: round(float(rng.uniform(-1, 1)), 3) for a in ATTRS[1:]})
            for a in ATTRS:
                lists[split][a].append(f"{name} {labels[a]}")
            folder = "datasetImages_originalSize" if split != "test" else "AADB_newtest_originalSize"
            file_name = name
            if split == "test" and k == 0:  # a mirror-style copy named `<score>_<name>`
                folder, file_name = "AADB_newtest", f"{labels['score']:.3f}_{name}"
            os.makedirs(os.path.join(root, folder), exist_ok=True)
            pixels = cv2.GaussianBlur(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), (5, 5), 0)
            cv2.imwrite(os.path.join(root, folder, file_name), pixels)
            good[name] = dict(split=split, score=labels["score"], attributes=[labels[a] for a in ATTRS[1:]])
    train_names = [line.split()[0] for line in lists["train"]["score"]]
    bad = {}
    # Bad cases, each with the file they must be reported against.
    victim = train_names[1]  # out-of-range Light value -> that row rejected, then the image lacks Light
    lists["train"]["Light"] = [f"{victim} 1.5" if line.startswith(victim) else line for line in lists["train"]["Light"]]
    bad[(victim, "imgListFiles_label/imgListTrainRegression_Light.txt")] = "out_of_range_label"
    bad[(victim, "imgListFiles_label/imgListTrainRegression_score.txt")] = "missing_attribute"
    del good[victim]
    lists["train"]["score"].append(f"{train_names[2]} 0.9")  # listed twice: first kept
    bad[(train_names[2], "imgListFiles_label/imgListTrainRegression_score.txt")] = "duplicate_id"
    lists["train"]["DoF"].append("broken_line.jpg abc")
    bad[("broken_line.jpg", "imgListFiles_label/imgListTrainRegression_DoF.txt")] = "bad_label_row"
    leak = train_names[3]  # also listed in validation: stays in train only
    for a in ATTRS:
        lists["validation"][a].append(f"{leak} 0.1")
    bad[(leak, "imgListFiles_label/imgListValidationRegression_score.txt")] = "in_two_splits"
    missing = "farm1_999_1_deadbeef_b.jpg"  # labelled, no image file
    for a in ATTRS:
        lists["test"][a].append(f"{missing} 0.5")
    bad[(missing, "AADB_newtest_originalSize/" + missing)] = "missing_image"

    os.makedirs(os.path.join(root, "imgListFiles_label"))
    for split, (tag, _) in SPLITS.items():
        for a in ATTRS:
            with open(os.path.join(root, "imgListFiles_label", f"imgList{tag}Regression_{a}.txt"), "w") as f:
                f.write("\n".join(lists[split][a]) + "\n")
    return dict(good=good, bad=bad)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("aadb_raw")
    expected = write_aadb_fixture(str(root))
    builder = aadb.build_aadb(root, tmp_path_factory.mktemp("aadb_tfds"))
    return dict(root=root, builder=builder, **expected)


def _read(builder, split):
    source = pipeline.make_source(builder, split)
    return {ex["name"].decode(): ex for ex in (source[i] for i in range(len(source)))}


def test_labels_and_standard_split(built):
    seen = {}
    for split in ("train", "validation", "test"):
        examples = _read(built["builder"], split)
        assert set(examples) == {n for n, g in built["good"].items() if g["split"] == split}
        for name, ex in examples.items():
            assert name not in seen, f"{name} in {seen.get(name)} and {split}"  # leak-free
            seen[name] = split
            g = built["good"][name]
            assert ex["score"] == pytest.approx(g["score"], abs=1e-6)
            np.testing.assert_allclose(ex["attributes"], g["attributes"], atol=1e-6)
            assert ex["image"].startswith(b"\xff\xd8")
    assert aadb.ATTRIBUTE_NAMES == ATTRS[1:]
    assert aadb.label_file("test", "score") == "imgListFiles_label/imgListTestNewRegression_score.txt"


def test_bad_rows_reported(built):
    report = base.skipped_report(built["builder"])
    assert {(r["id"], r["file"]): r["reason"] for r in report} == built["bad"]
    for r in report:
        if r["file"].startswith("imgListFiles_label/"):
            lines = open(os.path.join(built["root"], r["file"])).read().splitlines()
            assert lines[r["line"] - 1].split()[0] == r["id"]
    meta = built["builder"].info.metadata
    assert meta["num_skipped"] == len(built["bad"]) and meta["attribute_names"] == list(ATTRS[1:])


def test_missing_label_file_is_a_clear_error(tmp_path):
    os.makedirs(tmp_path / "raw" / "imgListFiles_label")
    with pytest.raises(FileNotFoundError, match="imgListTrainRegression_score.txt"):
        aadb.build_aadb(tmp_path / "raw", tmp_path / "tfds")
