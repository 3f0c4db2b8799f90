"""EVA TFDS builder on a fixture in the public format (`=` votes CSV, quoted category CSV), with bad rows."""

import collections
import os
import statistics

import cv2
import numpy as np
import pytest

from aesthetics_jax.data import pipeline
from aesthetics_jax.data.builders import base, eva

HEADER = "image_id=user_id=score=difficulty=visual=composition=quality=semantic=vote_time=1=2=3=4"
NAMES = ("score", "difficulty", "visual", "composition", "quality", "semantic")


def write_eva_fixture(root, num_images=20, seed=0):
    """Writes data/votes_filtered.csv, data/image_content_category.csv, images/EVA_together/<id>.jpg.

    Returns {'votes': {id: [6 ints + 4 flags per kept vote]}, 'category': {id: c}, 'bad': {(id, line): reason}}.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "data"))
    os.makedirs(os.path.join(root, "images", "EVA_together"))
    lines, kept, bad = [HEADER], collections.defaultdict(list), {}

    def add(text, image_id=None, reason=None, values=None):
        lines.append(text)
        if reason:
            bad[(str(image_id), len(lines))] = reason  # 1-based line number of this row
        elif values is not None:
            kept[image_id].append(values)

    ids = [770000 + 13 * k for k in range(num_images)]
    for image_id in ids:
        pixels = cv2.GaussianBlur(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), (5, 5), 0)
        cv2.imwrite(os.path.join(root, "images", "EVA_together", f"{image_id}.jpg"), pixels)
        for user in range(int(rng.integers(3, 7))):
            v = [int(rng.integers(0, 11))] + [int(x) for x in rng.integers(1, 5, 5)] + [int(x) for x in rng.integers(0, 2, 4)]
            add(f"{image_id}=E{user}={'='.join(map(str, v[:6]))}={rng.random() * 20:.2f}={'='.join(map(str, v[6:]))}",
                image_id, values=v)
    a, b = ids[0], ids[1]
    add(f"{a}=E0=5=2=3=3=2=4=1.0=1=0=0=1", a, "duplicate_vote")  # E0 voted on `a` above already
    add(f"{a}=X1=5=2=3=3=2=4=1.0=1=0", a, "wrong_column_count")
    add(f"{a}=X2=five=2=3=3=2=4=1.0=1=0=0=1", a, "non_numeric_score")
    add(f"{a}=X3=11=2=3=3=2=4=1.0=1=0=0=1", a, "out_of_range_score")
    add(f"{b}=X4=5=0=3=3=2=4=1.0=1=0=0=1", b, "out_of_range_score")  # difficulty 0
    add(f"{b}=X5=7.5=2=3=3=2=4=1.0=1=0=0=1", b, "out_of_range_score")  # not an integer
    add(f"{b}=X6=5=2=3=3=2=4=1.0=1=2=0=1", b, "bad_factor_flag")
    add(f"{b}==5=2=3=3=2=4=1.0=1=0=0=1", b, "bad_user")
    add("abc=X7=5=2=3=3=2=4=1.0=1=0=0=1", "abc", "bad_id")
    add(f"{b}=X8=7=3=4=4=3=2=0.5=0=1=1=0", b, values=[7, 3, 4, 4, 3, 2, 0, 1, 1, 0])  # a valid late vote
    with open(os.path.join(root, "data", "votes_filtered.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")

    category = {i: int(rng.integers(1, 7)) for i in ids[:-1]}  # the last image has no category
    with open(os.path.join(root, "data", "image_content_category.csv"), "w", encoding="utf-8-sig") as f:
        f.write('"image_id","sort"\n')
        f.writelines(f'"{i}","{c}"\n' for i, c in category.items())
        f.write('"999","9"\n')  # category out of 1..6: reported
    return dict(ids=ids, votes=dict(kept), category=category, bad=bad)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("eva_raw")
    expected = write_eva_fixture(str(root))
    data_dir = tmp_path_factory.mktemp("eva_tfds")
    builder = eva.build_eva(root, data_dir, val_fraction=0.2, test_fraction=0.25, seed=7)
    return dict(root=root, data_dir=data_dir, builder=builder, **expected)


def _read(builder, split):
    source = pipeline.make_source(builder, split)
    return {int(ex["id"]): ex for ex in (source[i] for i in range(len(source)))}


def _all(builder):
    return {split: _read(builder, split) for split in builder.info.splits}


def test_features_equal_hand_computed_values(built):
    examples = {}
    for split_examples in _all(built["builder"]).values():
        examples.update(split_examples)
    assert set(examples) == set(built["ids"])
    for image_id, ex in examples.items():
        votes = built["votes"][image_id]
        columns = list(zip(*votes))
        assert ex["num_raters"] == len(votes)
        for j, name in enumerate(NAMES):
            assert ex["scores_raw"][j] == pytest.approx(statistics.fmean(columns[j]), rel=1e-6), name
            assert ex["scores"][j] == ex["scores_raw"][j]  # raw scales in this config
            assert ex["score_sds"][j] == pytest.approx(statistics.pstdev(columns[j]), rel=1e-5, abs=1e-6), name
        counts = collections.Counter(columns[0])
        np.testing.assert_array_equal(ex["score_histogram"], [counts.get(s, 0) for s in range(11)])
        np.testing.assert_allclose(ex["score_distribution"], ex["score_histogram"] / len(votes), rtol=1e-6)
        for row, j in enumerate(range(1, 6)):
            counts = collections.Counter(columns[j])
            np.testing.assert_array_equal(ex["attribute_histograms"][row], [counts.get(v, 0) for v in (1, 2, 3, 4)])
        np.testing.assert_allclose(ex["factor_rates"], [sum(c) / len(votes) for c in columns[6:10]], rtol=1e-6)
        assert ex["category"] == built["category"].get(image_id, 0)
        assert ex["category_name"].decode() == eva.CATEGORY_NAMES.get(built["category"].get(image_id), "")
        assert ex["mean_score"] == pytest.approx(statistics.fmean(columns[0]), rel=1e-6)


def test_bad_rows_reported_with_file_line_reason(built):
    report = base.skipped_report(built["builder"])
    votes = [r for r in report if r["file"] == "data/votes_filtered.csv"]
    assert {(r["id"], r["line"]): r["reason"] for r in votes} == built["bad"]
    text = open(os.path.join(built["root"], "data", "votes_filtered.csv")).read().splitlines()
    for r in votes:
        assert text[r["line"] - 1].startswith(r["id"])
    duplicate = next(r for r in votes if r["reason"] == "duplicate_vote")
    assert "E0" in duplicate["detail"] and "first vote kept" in duplicate["detail"]
    categories = [r for r in report if r["file"] == "data/image_content_category.csv"]
    assert [(r["id"], r["reason"]) for r in categories] == [("999", "bad_category_row")]
    meta = built["builder"].info.metadata
    assert meta["num_skipped"] == len(report) == len(built["bad"]) + 1
    assert meta["skipped"]["out_of_range_score"] == 3
    assert meta["num_without_category"] == 1
    assert meta["num_votes_kept"] == sum(len(v) for v in built["votes"].values())


def test_splits_are_by_image_seeded_and_leak_free(built, tmp_path):
    builder = built["builder"]
    splits = {name: set(examples) for name, examples in _all(builder).items()}
    assert set(splits) == {"train", "validation", "test"}
    names = list(splits)
    for i, a in enumerate(names):  # no image id in two splits
        for b in names[i + 1 :]:
            assert not splits[a] & splits[b], (a, b)
    n = len(built["ids"])
    assert len(splits["test"]) == round(0.25 * n) and len(splits["validation"]) == round(0.2 * n)
    assert set().union(*splits.values()) == set(built["ids"])
    # The split is stored with the dataset (splits.csv) and matches the TFDS splits.
    stored = eva.split_ids(builder)
    assert {i: s for s, ids in splits.items() for i in ids} == stored
    # Same seed -> same split (a rescaled config of the same seed shares it); other seed -> different.
    again = eva.build_eva(built["root"], tmp_path / "a", val_fraction=0.2, test_fraction=0.25, seed=7, unit=True)
    assert eva.split_ids(again) == stored
    other = eva.build_eva(built["root"], tmp_path / "b", val_fraction=0.2, test_fraction=0.25, seed=8)
    assert eva.split_ids(other) != stored


def test_unit_config_rescales_to_unit_interval(built, tmp_path):
    unit = eva.build_eva(built["root"], tmp_path, val_fraction=0.2, test_fraction=0.25, seed=7, unit=True)
    assert unit.builder_config.name == "val0p2_test0p25_seed7_unit"
    raw = {i: ex for examples in _all(built["builder"]).values() for i, ex in examples.items()}
    lo = np.array([0, 1, 1, 1, 1, 1.0])
    hi = np.array([10, 4, 4, 4, 4, 4.0])
    for examples in _all(unit).values():
        for image_id, ex in examples.items():
            np.testing.assert_allclose(ex["scores"], (raw[image_id]["scores_raw"] - lo) / (hi - lo), rtol=1e-6)
            np.testing.assert_allclose(ex["score_sds"], raw[image_id]["score_sds"] / (hi - lo), rtol=1e-5, atol=1e-7)
            np.testing.assert_array_equal(ex["scores_raw"], raw[image_id]["scores_raw"])
            assert np.all((ex["scores"] >= 0) & (ex["scores"] <= 1))


def test_rebuild_reused_and_bad_header_is_a_clear_error(built, tmp_path):
    info = os.path.join(built["builder"].data_dir, "dataset_info.json")
    mtime = os.path.getmtime(info)
    again = eva.build_eva(built["root"], built["data_dir"], val_fraction=0.2, test_fraction=0.25, seed=7)
    assert os.path.getmtime(info) == mtime and again.info.metadata["num_skipped"] == built["builder"].info.metadata["num_skipped"]
    os.makedirs(tmp_path / "raw" / "data")
    (tmp_path / "raw" / "data" / "votes_filtered.csv").write_text("image_id=user_id=score\n1=u=5\n")
    with pytest.raises(ValueError, match=r"votes_filtered.csv line 1: header .* lacks column"):
        eva.build_eva(tmp_path / "raw", tmp_path / "tfds")
