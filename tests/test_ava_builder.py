"""AVA TFDS builder on a tiny fixture in the public format, with bad records of every kind."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from aesthetics_jax.data import pipeline
from aesthetics_jax.data.builders import ava, base
from ava_fixture import CHALLENGES, TAGS, write_ava_fixture


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("ava_raw")
    expected = write_ava_fixture(root)
    data_dir = tmp_path_factory.mktemp("ava_tfds")
    builder = ava.build_ava(root, data_dir)
    return dict(root=root, data_dir=data_dir, builder=builder, **expected)


def _read_split(builder, split):
    source = pipeline.make_source(builder, split)
    return {int(ex["id"]): ex for ex in (source[i] for i in range(len(source)))}


def test_split_sizes(built):
    good = built["good"]
    splits = built["builder"].info.splits
    assert set(splits.keys()) == {"train", "test"}
    assert splits["test"].num_examples == sum(row["test"] for row in good.values()) == 3
    assert splits["train"].num_examples == sum(not row["test"] for row in good.values()) == 9
    assert built["builder"].data_dir == os.path.join(built["data_dir"], "ava", "default", "1.0.0")


def test_features_equal_hand_computed_values(built):
    for split, in_test in (("train", False), ("test", True)):
        examples = _read_split(built["builder"], split)
        assert set(examples) == {i for i, row in built["good"].items() if row["test"] == in_test}
        for image_id, ex in examples.items():
            row = built["good"][image_id]
            votes = np.repeat(np.arange(1, 11), row["histogram"])  # one entry per individual vote
            assert ex["image"] == row["jpeg"]  # raw JPEG bytes, untouched
            np.testing.assert_array_equal(ex["histogram"], row["histogram"])
            assert ex["histogram"].dtype == np.int32 and ex["distribution"].dtype == np.float32
            assert ex["votes"] == len(votes)
            np.testing.assert_allclose(ex["distribution"], row["histogram"] / len(votes), rtol=1e-6)
            np.testing.assert_allclose(ex["distribution"].sum(), 1.0, rtol=1e-6)
            assert ex["mean_score"] == pytest.approx(votes.mean(), rel=1e-6)
            np.testing.assert_array_equal(ex["tags"], row["tags"])
            assert [n.decode() for n in ex["tag_names"]] == [TAGS.get(t, "") if t else "" for t in row["tags"]]
            assert ex["challenge"] == row["challenge"]
            assert ex["challenge_name"].decode() == CHALLENGES[row["challenge"]]


def test_skipped_report_lists_every_bad_record(built):
    report = base.skipped_report(built["builder"])
    got = {(r["id"], r["file"]): r["reason"] for r in report}
    assert got == built["bad"]
    assert len(report) == len(built["bad"])  # each bad record once
    lines = open(os.path.join(built["root"], "AVA.txt")).read().splitlines()
    test_list = open(os.path.join(built["root"], "aesthetics_image_lists", "generic_test.jpgl")).read().splitlines()
    for r in report:  # `line` points at the record: its AVA.txt row, or its test-list line
        if r["reason"] == "bad_test_list_entry":
            assert test_list[r["line"] - 1] == r["id"]
        else:
            assert lines[r["line"] - 1].split()[1] == r["id"]
    duplicate = next(r for r in report if r["reason"] == "duplicate_id")
    assert f"first on line {built['good'][1001]['line']}" in duplicate["detail"]
    assert os.path.isfile(os.path.join(built["builder"].data_dir, base.SKIPPED_REPORT))

    meta = built["builder"].info.metadata
    reasons = {}
    for reason in built["bad"].values():
        reasons[reason] = reasons.get(reason, 0) + 1
    assert meta["skipped"] == reasons and meta["num_skipped"] == len(built["bad"])
    assert meta["test_list_ids"] == 4 and meta["test_list_ids_not_in_ava_txt"] == 0
    assert meta["num_rows"] == len(open(os.path.join(built["root"], "AVA.txt")).read().splitlines())


def test_rebuild_is_reused(built):
    info = os.path.join(built["builder"].data_dir, "dataset_info.json")
    mtime = os.path.getmtime(info)
    again = ava.build_ava(built["root"], built["data_dir"])
    assert os.path.getmtime(info) == mtime
    assert again.info.metadata["num_skipped"] == len(built["bad"])  # metadata restored from disk
    assert base.skipped_report(again) == base.skipped_report(built["builder"])


def test_validation_carve_out_is_seeded_and_disjoint(built, tmp_path):
    b1 = ava.build_ava(built["root"], tmp_path / "a", val_fraction=0.34, seed=3)
    b2 = ava.build_ava(built["root"], tmp_path / "b", val_fraction=0.34, seed=3)
    assert b1.builder_config.name == "val0p34_seed3"
    train, val = set(_read_split(b1, "train")), set(_read_split(b1, "validation"))
    assert len(val) == round(0.34 * 9) == 3 and not train & val
    assert train | val == set(_read_split(built["builder"], "train"))
    assert set(_read_split(b2, "validation")) == val
    assert set(_read_split(b1, "test")) == set(_read_split(built["builder"], "test"))


def test_builds_and_reads_without_tensorflow(built, tmp_path):
    """In a fresh interpreter (no module imported by other tests): build, read, decode; TF never loads."""
    script = textwrap.dedent(f"""
        import sys
        from aesthetics_jax.data.builders import ava
        from aesthetics_jax.data import pipeline, preprocessing
        builder = ava.build_ava({str(built['root'])!r}, {str(tmp_path)!r})
        example = pipeline.make_source(builder, "train")[0]
        image = preprocessing.decode_jpeg(example["image"])
        assert image.ndim == 3 and image.shape[2] == 3, image.shape
        assert not [m for m in sys.modules if m.split(".")[0] == "tensorflow"]
        print("OK", builder.info.splits["train"].num_examples)
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK 9" in result.stdout
    assert "tensorflow" not in sys.modules  # nor in this process, after building and reading above
