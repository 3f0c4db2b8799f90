"""The EVA-format demo (demo_eva.py), the EVA builder's split_file, the reduced InceptionV3 and the
demo-scale Aesthetics-XAI pipeline (configs/xai_demo.py, smoke size)."""

import csv
import json
import os

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from aesthetics_jax.data import datasets, pipeline
from aesthetics_jax.data.builders import demo, demo_eva, eva
from aesthetics_jax.models import inception
from aesthetics_jax.train import trainer
from configs import xai_demo

SMALL = dict(seed=0, versions_per_photo=6, image_size=96)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_eva")
    summary = demo_eva.build_demo_eva(out, **SMALL)
    build = eva.build_eva(out, tmp_path_factory.mktemp("tfds"), split_file=demo_eva.SPLIT_FILE)
    return str(out), summary, build


def _manifest(root):
    return pd.read_csv(os.path.join(root, "demo_manifest.csv"))


def _votes(root):
    return pd.read_csv(os.path.join(root, "data", "votes_filtered.csv"), sep="=")


def test_files_in_eva_format(small):
    root, summary, _ = small
    votes = _votes(root)
    assert list(votes.columns) == ["image_id", "user_id", "score", "difficulty", "visual", "composition", "quality",
                                   "semantic", "vote_time", "1", "2", "3", "4"]
    assert votes["score"].between(0, 10).all()
    for name in ("difficulty", "visual", "composition", "quality", "semantic"):
        assert votes[name].between(1, 4).all()
    assert votes[["1", "2", "3", "4"]].isin([0, 1]).all().all()
    assert not votes.duplicated(["image_id", "user_id"]).any()
    per_image = votes.groupby("image_id").size()
    assert per_image.between(20, 40).all() and len(per_image) == summary["num_images"]
    categories = pd.read_csv(os.path.join(root, "data", "image_content_category.csv"))
    assert list(categories.columns) == ["image_id", "sort"] and set(categories["sort"]) <= set(range(1, 7))
    assert sorted(categories["image_id"]) == sorted(per_image.index)
    for image_id in per_image.index:
        image = cv2.imread(os.path.join(root, "images", "EVA_together", f"{image_id}.jpg"), cv2.IMREAD_UNCHANGED)
        assert image is not None and max(image.shape[:2]) <= SMALL["image_size"]


def test_split_holds_out_whole_photos(small):
    root, summary, build = small
    manifest = _manifest(root)
    groups = manifest.groupby("split")["base_group"].apply(set)
    assert groups["test"].isdisjoint(groups["train"] | groups["validation"])
    assert sorted(p.name for p in demo.available_base_photos() if p.group in groups["test"]) == sorted(
        summary["test_photos"])
    stored = eva.split_ids(build)
    assert stored == dict(zip(manifest["id"].tolist(), manifest["split"].tolist()))
    assert {k: v.num_examples for k, v in build.info.splits.items()} == manifest["split"].value_counts().to_dict()
    assert build.info.metadata["num_skipped"] == 0 and build.info.metadata["split_file"] == demo_eva.SPLIT_FILE


def test_build_means_equal_the_votes(small):
    root, _, build = small
    means = _votes(root).groupby("image_id")[list(eva.SCORE_NAMES)].mean()
    for split in build.info.splits:
        source = pipeline.make_source(build, split)
        for i in range(len(source)):
            record = source[i]
            np.testing.assert_allclose(record["scores_raw"], means.loc[int(record["id"])].to_numpy(), atol=1e-5)


def test_scores_follow_the_documented_attribute_model(small):
    root, _, _ = small
    manifest = _manifest(root)
    means = _votes(root).groupby("image_id")[list(eva.SCORE_NAMES)].mean().loc[manifest["id"]]
    # Each attribute tracks its latent; quality falls with the technical penalty, visual with the tone one.
    for name in eva.SCORE_NAMES:
        assert scipy.stats.spearmanr(means[name].to_numpy(), manifest[f"latent_{name}"]).statistic > 0.6, name
    assert scipy.stats.spearmanr(means["quality"].to_numpy(), manifest["penalty_technical"]).statistic < -0.5
    assert scipy.stats.spearmanr(means["visual"].to_numpy(), manifest["penalty_tone"]).statistic < -0.3


def test_rebuild_is_byte_identical(small, tmp_path):
    root, _, _ = small
    again = demo_eva.build_demo_eva(tmp_path / "again", **SMALL)
    assert again["num_votes"] == small[1]["num_votes"]
    for rel in ("data/votes_filtered.csv", "data/demo_split.csv", "data/image_content_category.csv",
                "demo_manifest.csv"):
        assert open(os.path.join(root, rel), "rb").read() == open(tmp_path / "again" / rel, "rb").read(), rel
    ids = sorted(os.listdir(os.path.join(root, "images", "EVA_together")))
    for name in ids[:: max(1, len(ids) // 10)]:
        assert (open(os.path.join(root, "images", "EVA_together", name), "rb").read()
                == open(tmp_path / "again" / "images" / "EVA_together" / name, "rb").read())
    with pytest.raises(FileExistsError, match="other|parameters"):
        demo_eva.build_demo_eva(tmp_path / "again", **dict(SMALL, seed=1))


def test_split_file_errors_and_unlisted_images(small, tmp_path):
    root, _, _ = small
    bad = tmp_path / "bad.csv"
    bad.write_text("id,split\n1,train\n2,holdout\n")
    with pytest.raises(ValueError, match=r"bad.csv line 3"):
        eva.read_split_file(str(bad))
    rows = open(os.path.join(root, demo_eva.SPLIT_FILE)).read().splitlines()
    partial = tmp_path / "partial.csv"
    partial.write_text("\n".join(rows[:-2]) + "\n")  # the last two images unlisted
    build = eva.build_eva(root, tmp_path / "tfds", split_file=str(partial))
    with open(os.path.join(build.data_dir, "skipped.csv"), newline="") as f:
        skipped = list(csv.DictReader(f))
    assert sorted(int(r["id"]) for r in skipped) == sorted(int(r.split(",")[0]) for r in rows[-2:])
    assert {r["reason"] for r in skipped} == {"not_in_split_file"}
    with pytest.raises(FileNotFoundError, match="split_file"):
        eva.build_eva(root, tmp_path / "tfds2", split_file="nope.csv")


def test_reduced_inception_width():
    assert [inception.scaled_filters(f, 1.0) for f in (32, 48, 64, 80, 96, 192, 320, 384, 448)] == [
        32, 48, 64, 80, 96, 192, 320, 384, 448]
    assert [inception.scaled_filters(f, 0.25) for f in (32, 48, 64, 80, 192, 2048)] == [8, 16, 16, 24, 48, 512]
    model = inception.Inception(num_mixed=4, width=0.25)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 128, 128, 3))))
    params = variables["params"]
    assert params["conv2d"]["kernel"].shape == (3, 3, 3, 8)
    assert params["conv2d_4"]["kernel"].shape == (3, 3, 24, 48)  # 80 -> 24, 192 -> 48
    out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 128, 128, 3))), variables)
    # mixed3 (grid reduction) concatenates 384 / 4 + 96 / 4 filters with the 288 / 4 + ... input channels:
    # InceptionA blocks output 64 + 64 + 96 + 64 at width 1 (= 288) -> 16 + 16 + 24 + 16 = 72 here.
    assert out["feature_map"].shape == (2, 6, 6, 96 + 24 + 72)


def test_xai_demo_pipeline_smoke(tmp_path):
    """Full run, then the patch run reading the full run's predictions: one table, identical test ids."""
    data_dir = str(tmp_path / "data")
    results = {}
    for variant, extra in (("full", {}), ("patches", {"full_from": str(tmp_path / "full")})):
        c = xai_demo.get_config(f"{variant},smoke")
        c.data.data_dir = data_dir
        c.async_checkpointing = False
        for key, value in extra.items():
            c.evals.test[key] = value
        results[variant] = trainer.train_and_evaluate(c, str(tmp_path / variant))
    raw = os.path.join(data_dir, "demo_eva", "raw")
    manifest = _manifest(raw)
    test_ids = sorted(manifest.loc[manifest["split"] == "test", "id"].tolist())
    assert test_ids and manifest.loc[manifest["split"] == "test", "base_group"].nunique() >= 2
    table = json.load(open(tmp_path / "patches" / "eval" / "test_table.json"))
    assert table["settings"]["num_images"] == len(test_ids) == results["patches"]["test/num_images"]
    assert table["settings"]["num_patches"] == 3 * len(test_ids)
    with open(tmp_path / "patches" / "eval" / "test_predictions.csv", newline="") as f:
        assert sorted(int(r["id"]) for r in csv.DictReader(f)) == test_ids
    with open(tmp_path / "full" / "eval" / "test_predictions.csv", newline="") as f:
        assert sorted(int(r["id"]) for r in csv.DictReader(f)) == test_ids
    patch_config = xai_demo.get_config("patches,smoke")
    patch_config.data.data_dir = data_dir
    source = datasets.source(datasets.prepare(patch_config.data), "test")
    assert sorted({int(source[i]["parent_id"]) for i in range(len(source))}) == test_ids


def test_cli_builds_demo_eva_like_the_config(tmp_path, capsys):
    """`data build demo_eva` renders with the same defaults xai_demo.py uses: one build serves both."""
    from aesthetics_jax import cli  # pylint: disable=g-import-not-at-top

    assert cli.main(["data", "build", "demo_eva", "--data_dir", str(tmp_path), "--quiet"]) == 0
    assert "demo_eva: 1700 images" in capsys.readouterr().out
    config = xai_demo.get_config("full")
    config.data.data_dir = str(tmp_path)
    build = datasets.prepare(config.data)  # reuses the CLI's build (a parameter mismatch would raise)
    assert build.builder_config.name == "split-demo_split"
    assert {k: v.num_examples for k, v in build.info.splits.items()} == {"train": 1080, "validation": 120,
                                                                        "test": 500}
