"""Aesthetics-XAI on EVA: configs/xai_eva.py (two stages, full and patches), freezing, the patches evaluator.

One tiny EVA fixture in the public format (16 photos of 90-120 px, by-image split 8 / 4 / 4) is
trained through `train_and_evaluate` four times (full stage 1 -> stage 2, patches stage 1 ->
stage 2; a tiny InceptionV3 of 2 mixed blocks at 75 px, 3 steps each); the evaluator's aggregation
and bootstrap are checked against direct numpy / scipy computations.
"""

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats
from flax import traverse_util

from aesthetics_jax import evaluate
from aesthetics_jax.data import datasets, pipeline
from aesthetics_jax.data.builders import eva
from aesthetics_jax.evaluate import patches as patches_eval
from aesthetics_jax.models import inception
from aesthetics_jax.train import checkpointing, optimizer, steps, trainer
from configs import xai_eva
from test_patches import write_photo_eva

NAMES = list(xai_eva.SCORE_NAMES)
HEADS = {"scores": {"type": "scores", "names": NAMES}}


def _params(workdir) -> dict:
    return traverse_util.flatten_dict(checkpointing.restore_params(os.path.join(workdir, "checkpoints"))["params"])


def _changed(before: dict, after: dict) -> set[str]:
    assert before.keys() == after.keys()
    return {"/".join(k) for k in before if not np.array_equal(np.asarray(before[k]), np.asarray(after[k]))}


def _trainable(config) -> set[str]:
    model = trainer._create_model(config)  # pylint: disable=protected-access
    size = config.data.image_size
    params = jax.eval_shape(lambda: model.init({"params": jax.random.key(0), "dropout": jax.random.key(0)},
                                               jnp.zeros((1, size, size, 3), jnp.uint8), train=False))["params"]
    return set(optimizer.param_paths(params)) - set(optimizer.frozen_paths(params, config.schedule))


def _ids(path, column="id") -> list[int]:
    with open(path, newline="") as f:
        return sorted(int(r[column]) for r in csv.DictReader(f))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("eva"))
    write_photo_eva(root, num_images=16, sizes=((90, 120), (120, 90), (100, 100)))
    base = tmp_path_factory.mktemp("runs")
    data_dir = str(base / "tfds")

    def config(variant, init_from="", **evals_test):
        c = xai_eva.get_config(variant)
        c.data.manual_dir, c.data.data_dir = root, data_dir
        c.data.val_fraction, c.data.test_fraction = 0.25, 0.25
        c.async_checkpointing = False
        c.init_from.workdir = init_from
        for key, value in evals_test.items():
            c.evals.test[key] = value
        return c

    out = {"root": root, "data_dir": data_dir, "config": config}
    for name, variant, init, extra in (("W1", "full,stage1,smoke", "", {}), ("W2", "full,stage2,smoke", "W1", {}),
                                       ("P1", "patches,stage1,smoke", "", {}),
                                       ("P2", "patches,stage2,smoke", "W1", None)):
        if extra is None:  # P2: from P1, compared with the full-image model of W2
            init, extra = "P1", {"full_from": out["W2"]}
        workdir = str(base / name)
        out[f"{name}_results"] = trainer.train_and_evaluate(config(variant, out.get(init, ""), **extra), workdir)
        out[name] = workdir
    return out


# -- configs -------------------------------------------------------------------------------------


def test_stage2_unfreezes_exactly_the_top_inception_blocks():
    top = {f"backbone/conv2d_{i}/kernel" for i in range(76, 94)} | {
        f"backbone/batch_normalization_{i}/bias" for i in range(76, 94)}
    head = {"scores/dense/kernel", "scores/dense/bias"}
    assert inception.block_conv_indices("Mixed_7b") == list(range(76, 85))
    assert inception.block_conv_indices("mixed10") == list(range(85, 94))
    assert _trainable(xai_eva.get_config("full,stage2")) == top | head
    assert _trainable(xai_eva.get_config("patches,stage1")) == head
    assert _trainable(xai_eva.get_config("full,stage2,smoke")) == {
        f"backbone/{m}_{i}/{p}" for i in range(12, 19) for m, p in (("conv2d", "kernel"),
                                                                     ("batch_normalization", "bias"))} | head
    mobilenet = _trainable(xai_eva.get_config("full,stage2,mobilenet,smoke"))
    assert {p.split("/")[1] for p in mobilenet} == {"conv_dw_12", "conv_dw_12_bn", "conv_pw_12", "conv_pw_12_bn",
                                                    "conv_dw_13", "conv_dw_13_bn", "conv_pw_13", "conv_pw_13_bn",
                                                    "dense"}
    clip = _trainable(xai_eva.get_config("patches,stage2,clip"))
    assert {p.split("/")[1] for p in clip} == {"resblocks_10", "resblocks_11", "ln_post", "proj", "dense"}
    c = xai_eva.get_config("patches,stage2,clip")
    assert (c.model.name, c.data.image_size, c.data.name, c.evals.test.type) == ("clip", 224, "eva_patches", "patches")
    assert xai_eva.get_config("raw").data.unit is False and xai_eva.get_config("").data.unit is True
    with pytest.raises(ValueError, match="pick one"):
        xai_eva.get_config("full,patches")


# -- training: two stages, full and patches --------------------------------------------------------


def test_two_stage_training_freezes_what_it_should(runs):
    config1 = runs["config"]("full,stage1,smoke")
    model = trainer._create_model(config1)  # pylint: disable=protected-access
    size = config1.data.image_size
    # The initial params: the trainer initialises from split(key(seed))[0], deterministically.
    init = jax.jit(lambda rng: steps.create_state(model, optax.identity(), rng, (size, size, 3)).params)(
        jax.random.split(jax.random.key(config1.seed))[0])
    init = traverse_util.flatten_dict(jax.device_get(init))
    params = {name: _params(runs[name]) for name in ("W1", "W2", "P1", "P2")}
    head = {"scores/dense/kernel", "scores/dense/bias"}
    stage2 = _trainable(runs["config"]("full,stage2,smoke"))
    assert stage2 - head and all(p.startswith("backbone/") for p in stage2 - head)
    for one, two in (("W1", "W2"), ("P1", "P2")):
        assert _changed(init, params[one]) == head  # stage 1: the head only
        # stage 2 (initialised from stage 1): exactly the top block (Mixed_5c of the tiny model) + the head.
        assert _changed(params[one], params[two]) == stage2


def test_full_and_patch_protocols_use_identical_parent_ids(runs):
    splits = eva.split_ids(datasets.prepare(runs["config"]("full,smoke").data))
    test_ids = sorted(i for i, s in splits.items() if s == "test")
    assert len(test_ids) == 4
    patch_build = datasets.prepare(runs["config"]("patches,smoke").data)
    source = datasets.source(patch_build, "test")
    parents = sorted({int(source[i]["parent_id"]) for i in range(len(source))})
    assert parents == test_ids and len(source) == 3 * len(test_ids)
    assert _ids(os.path.join(runs["W2"], "eval", "test_predictions.csv")) == test_ids
    for run in ("P1", "P2"):  # P1: this model on the full images; P2: W2's full-image predictions
        evaldir = os.path.join(runs[run], "eval")
        assert _ids(os.path.join(evaldir, "test_predictions.csv")) == test_ids
        assert _ids(os.path.join(evaldir, "test_patch_predictions.csv"), "parent_id") == sorted(3 * test_ids)
        table = json.load(open(os.path.join(evaldir, "test_table.json")))
        assert table["settings"]["num_images"] == 4 and table["settings"]["num_patches"] == 12
        assert len(table["rows"]) == 7 * 5 and table["settings"]["units"] == "raw"
        assert os.path.getsize(os.path.join(evaldir, "test_scatter.png")) > 0
        assert "| total | MAE |" in open(os.path.join(evaldir, "test_table.md")).read()
        assert runs[f"{run}_results"]["test/num_images"] == 4
    # P2's full side is W2's test predictions (unit scale), mapped to raw units.
    w2 = {int(r["id"]): r for r in csv.DictReader(open(os.path.join(runs["W2"], "eval", "test_predictions.csv")))}
    for r in csv.DictReader(open(os.path.join(runs["P2"], "eval", "test_predictions.csv"))):
        assert float(r["full_total"]) == pytest.approx(10 * float(w2[int(r["id"])]["scores_pred_total"]), abs=1e-9)
        assert float(r["full_quality"]) == pytest.approx(1 + 3 * float(w2[int(r["id"])]["scores_pred_quality"]),
                                                         abs=1e-9)


def test_targets_unit_scaled_or_raw(runs):
    data = runs["config"]("patches,smoke").data
    build = datasets.prepare(data)
    records = pipeline.make_source(build, "train")  # the stored patch records
    unit = datasets.source(build, "train", data)
    data.unit = False
    raw = datasets.source(build, "train", data)
    assert unit.label_keys == ("scores", "id", "parent_id", "patch_index", "coverage")
    lo = np.array([eva.SCORE_RANGES[n][0] for n in eva.SCORE_NAMES])
    hi = np.array([eva.SCORE_RANGES[n][1] for n in eva.SCORE_NAMES])
    for i in range(len(unit)):
        record = records[i]
        np.testing.assert_allclose(raw[i]["scores"], record["scores_raw"])
        np.testing.assert_allclose(unit[i]["scores"], (record["scores_raw"] - lo) / (hi - lo), rtol=1e-6)
        assert 0 <= unit[i]["scores"].min() and unit[i]["scores"].max() <= 1
        assert unit[i]["id"] == unit[i]["parent_id"] == record["parent_id"]
    batch = next(iter(pipeline.make_dataset(unit, train=False, batch_size=4, image_size=75, resize_size=75,
                                            shard_index=0, shard_count=1, keys=datasets.label_keys(unit))))
    assert batch["scores"].shape == (4, 6) and batch["scores"].dtype == np.float32
    assert batch["parent_id"].dtype == np.int64 and batch["coverage"].shape == (4,)


# -- the evaluator ---------------------------------------------------------------------------------


def _synthetic(n=30, per=4, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.arange(1000, 1000 + n, dtype=np.int64)
    true = rng.uniform(0, 1, (n, 6))
    full_pred = true + rng.normal(0, 0.15, (n, 6))
    parent = np.repeat(ids, per)
    patch_pred = np.repeat(true, per, axis=0) + rng.normal(0, 0.1, (n * per, 6))
    coverage = rng.uniform(0, 1, n * per)
    perm = rng.permutation(n * per)  # patch rows in any order
    targets = {"scores": np.repeat(true, per, axis=0)[perm], "parent_id": parent[perm], "coverage": coverage[perm],
               "patch_index": np.tile(np.arange(per), n)[perm], "id": parent[perm]}
    predictions = {"scores.scores": patch_pred[perm]}
    full = {"ids": ids[::-1].copy(), "true": true[::-1].copy(), "pred": full_pred[::-1].copy()}
    return predictions, targets, full


def test_registry_has_patches():
    assert evaluate.get_evaluator("patches") is patches_eval


def test_aggregation_against_numpy():
    parent = np.array([7, 3, 7, 3, 3, 9])
    values = np.array([[1.0, 10], [2, 20], [3, 30], [4, 40], [9, 90], [5, 50]])
    coverage = np.array([0.25, 0.5, 0.75, 0.0, 0.5, 0.0])
    ids, mean, counts = patches_eval.aggregate_per_parent(parent, values)
    assert ids.tolist() == [3, 7, 9] and counts.tolist() == [3, 2, 1]
    np.testing.assert_allclose(mean, [[5, 50], [2, 20], [5, 50]])
    median = patches_eval.aggregate_per_parent(parent, values, "median")[1]
    np.testing.assert_allclose(median, [[4, 40], [2, 20], [5, 50]])
    np.testing.assert_allclose(patches_eval.aggregate_per_parent(parent, values, "max")[1], [[9, 90], [3, 30], [5, 50]])
    weighted = patches_eval.aggregate_per_parent(parent, values, "saliency", coverage)[1]
    # 3: (0.5*2 + 0*4 + 0.5*9) / 1; 7: (0.25*1 + 0.75*3) / 1; 9: all-zero coverage -> plain mean.
    np.testing.assert_allclose(weighted, [[5.5, 55], [2.5, 25], [5, 50]])
    with pytest.raises(ValueError, match="coverage"):
        patches_eval.aggregate_per_parent(parent, values, "saliency")


def test_evaluator_table_with_known_values(tmp_path):
    # 4 images, 2 patches each; full = true + 0.5 everywhere; patch predictions true +- 0.25 (mean = true).
    true = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.3, 0.1, 0.5, 0.2, 0.7, 0.4],
                     [0.6, 0.4, 0.2, 0.8, 0.1, 0.3], [0.9, 0.7, 0.6, 0.5, 0.3, 0.2]])
    ids = np.array([11, 22, 33, 44])
    full = {"ids": ids, "true": true, "pred": true + 0.5}
    predictions = {"scores.scores": np.concatenate([true + 0.25, true - 0.25])}
    targets = {"scores": np.concatenate([true, true]), "parent_id": np.concatenate([ids, ids]),
               "patch_index": np.repeat([0, 1], 4), "coverage": np.full(8, 0.5)}
    out = patches_eval.run(predictions=predictions, targets=targets, ids=targets["parent_id"], outdir=str(tmp_path),
                           prefix="test", heads=HEADS, full=full, num_bootstrap=50, split="test")
    for name in NAMES + ["avg"]:
        assert out[f"full/{name}/mae"] == pytest.approx(0.5) and out[f"full/{name}/rmse"] == pytest.approx(0.5)
        assert out[f"patches/{name}/mae"] == pytest.approx(0) and out[f"patches/{name}/r2"] == pytest.approx(1)
        assert out[f"diff/{name}/mae"] == pytest.approx(-0.5)
        assert out[f"full/{name}/srcc"] == pytest.approx(1) and out[f"diff/{name}/plcc"] == pytest.approx(0)
        # every resample: patches MAE 0, full MAE 0.5 -> a degenerate interval at -0.5
        assert out[f"diff_ci_low/{name}/mae"] == pytest.approx(-0.5)
        assert out[f"diff_ci_high/{name}/mae"] == pytest.approx(-0.5)
    r2_full = 1 - 4 * 0.25 / np.sum((true - true.mean(0)) ** 2, axis=0)
    for j, name in enumerate(NAMES):
        assert out[f"full/{name}/r2"] == pytest.approx(r2_full[j])
    table = json.load(open(tmp_path / "test_table.json"))
    assert [(r["output"], r["metric"]) for r in table["rows"][:5]] == [("total", m) for m in patches_eval.METRICS]
    assert table["settings"]["num_images"] == 4 and table["settings"]["images_by_num_patches"] == {"2": 4}
    md = open(tmp_path / "test_table.md").read()
    assert "| total | MAE | 0.5000 | 0.0000 | -0.5000 | [-0.5000, -0.5000] |" in md
    rows = list(csv.DictReader(open(tmp_path / "test_predictions.csv")))
    assert [int(r["id"]) for r in rows] == [11, 22, 33, 44] and rows[1]["num_patches"] == "2"
    assert float(rows[1]["full_visual"]) == pytest.approx(1.0)
    assert float(rows[1]["patches_visual"]) == pytest.approx(0.5)
    assert (tmp_path / "test_scatter.png").read_bytes()[:4] == b"\x89PNG"
    assert json.load(open(tmp_path / "test_metrics.json"))["diff/avg/mae"] == pytest.approx(-0.5)
    # to_raw maps EVA's unit scale back: MAE of the total x 10, of the others x 3.
    raw = patches_eval.run(predictions=predictions, targets=targets, ids=None, outdir=str(tmp_path / "raw"),
                           prefix="test", heads=HEADS, full=full, num_bootstrap=0, to_raw=True, plots=False)
    assert raw["full/total/mae"] == pytest.approx(5.0) and raw["full/quality/mae"] == pytest.approx(1.5)
    assert raw["full/total/r2"] == pytest.approx(out["full/total/r2"]) and "diff_ci_low/total/mae" not in raw


def test_bootstrap_matches_direct_numpy(tmp_path):
    predictions, targets, full = _synthetic()
    out = patches_eval.run(predictions=predictions, targets=targets, ids=None, outdir=str(tmp_path), prefix="t",
                           heads=HEADS, full=full, num_bootstrap=300, seed=5, confidence=0.9, plots=False,
                           aggregate="saliency")
    # Direct computation: images sorted by id; saliency-weighted patch mean; one index matrix.
    order = np.argsort(full["ids"])
    true, fpred = full["true"][order], full["pred"][order]
    ids = full["ids"][order]
    ppred = np.stack([np.average(predictions["scores.scores"][targets["parent_id"] == i], axis=0,
                                 weights=targets["coverage"][targets["parent_id"] == i]) for i in ids])
    idx = np.random.default_rng(5).integers(0, len(ids), size=(300, len(ids)))
    reference = {
        "mae": lambda t, p: np.mean(np.abs(t - p), axis=0),
        "rmse": lambda t, p: np.sqrt(np.mean((t - p) ** 2, axis=0)),
        "r2": lambda t, p: 1 - np.sum((t - p) ** 2, axis=0) / np.sum((t - t.mean(0)) ** 2, axis=0),
        "srcc": lambda t, p: np.array([scipy.stats.spearmanr(t[:, k], p[:, k])[0] for k in range(t.shape[1])]),
        "plcc": lambda t, p: np.array([scipy.stats.pearsonr(t[:, k], p[:, k])[0] for k in range(t.shape[1])]),
    }
    for metric, fn in reference.items():
        np.testing.assert_allclose([out[f"patches/{n}/{metric}"] for n in NAMES], fn(true, ppred), rtol=1e-10)
        diffs = np.stack([fn(true[r], ppred[r]) - fn(true[r], fpred[r]) for r in idx])
        diffs = np.concatenate([diffs, diffs.mean(axis=1, keepdims=True)], axis=1)
        low, high = np.percentile(diffs, [5, 95], axis=0)
        for j, name in enumerate(NAMES + ["avg"]):
            assert out[f"diff_ci_low/{name}/{metric}"] == pytest.approx(low[j], rel=1e-9, abs=1e-12), (metric, name)
            assert out[f"diff_ci_high/{name}/{metric}"] == pytest.approx(high[j], rel=1e-9, abs=1e-12), (metric, name)


def test_protocols_must_cover_the_same_images(tmp_path):
    predictions, targets, full = _synthetic(n=10, per=3)
    common = dict(predictions=predictions, targets=targets, ids=None, outdir=str(tmp_path), prefix="t", heads=HEADS,
                  num_bootstrap=0, plots=False)
    short = {k: v[1:] for k, v in full.items()}  # one image without a full-image prediction
    with pytest.raises(ValueError, match="not on the same images: 0 ids only in the full-image"):
        patches_eval.run(full=short, **common)
    out = patches_eval.run(full=short, on_mismatch="intersect", **common)
    assert out["num_images"] == 9 and out["num_patches"] == 27
    json_table = json.load(open(tmp_path / "t_table.json"))
    assert json_table["settings"]["left_out"] == {"only_full": 0, "only_patches": 1}
    shifted = dict(full, true=full["true"] + 0.1)  # other targets (e.g. raw vs unit) for the same ids
    with pytest.raises(ValueError, match="targets that differ"):
        patches_eval.run(full=shifted, **common)
    with pytest.raises(ValueError, match="repeated"):
        patches_eval.run(full={k: np.concatenate([v, v[:1]]) for k, v in full.items()}, **common)
    with pytest.raises(ValueError, match="needs the full-image predictions"):
        patches_eval.run(full=None, **common)
