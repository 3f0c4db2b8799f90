"""aesthetics_jax.evaluate: registry and the aesthetic evaluator on synthetic predictions."""

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics
from scipy.spatial.distance import jensenshannon

from aesthetics_jax import evaluate
from aesthetics_jax.evaluate import aesthetic

N = 60
SCORE_NAMES = ["score", "difficulty", "visual", "composition", "quality", "semantic"]
ATTR_NAMES = ["color_light", "composition", "depth_focus", "general"]
HEADS = {
    "emd": {"type": "emd"},
    "scores": {"type": "scores", "names": SCORE_NAMES},
    "attr": {"type": "attributes", "names": ATTR_NAMES, "hidden": 128},  # extra fields are ignored
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _synthetic(n=N, seed=0):
    rng = np.random.default_rng(seed)
    t_dist = rng.dirichlet(np.ones(10) * 2, size=n)
    p_dist = 0.7 * t_dist + 0.3 * rng.dirichlet(np.ones(10) * 2, size=n)
    bins = np.arange(1, 11)
    t_mean = t_dist @ bins
    t_scores = np.round(rng.normal(3, 1, size=(n, 6)), 1)  # rounded: plenty of ties
    t_attr = rng.uniform(-1, 1, size=(n, 4))
    predictions = {
        "emd.distribution": p_dist.astype(np.float32),
        "emd.mean": (p_dist @ bins).astype(np.float32),
        "emd.sd": np.sqrt(((bins - (p_dist @ bins)[:, None]) ** 2 * p_dist).sum(1)).astype(np.float32),
        "scores.scores": (t_scores + rng.normal(0, 0.5, size=(n, 6))).astype(np.float32),
        "attr.attributes": (t_attr + rng.normal(0, 0.3, size=(n, 4))).astype(np.float32),
        "attr.overall": (t_mean + rng.normal(0, 0.5, size=n)).astype(np.float32),
    }
    targets = {"distribution": t_dist, "mean_score": t_mean, "scores": t_scores, "attributes": t_attr}
    ids = np.array([f"img{i:04d}".encode() for i in range(n)])  # bytes, as TFDS yields them
    return predictions, targets, ids


def test_registry():
    assert evaluate.EVALUATORS == {"aesthetic": "aesthetics_jax.evaluate.aesthetic",
                                   "patches": "aesthetics_jax.evaluate.patches",
                                   "explain": "aesthetics_jax.evaluate.explain",
                                   "retrieval": "aesthetics_jax.evaluate.retrieval",
                                   "clip_iqa": "aesthetics_jax.evaluate.clip_iqa",
                                   "critique": "aesthetics_jax.evaluate.critique"}
    assert evaluate.get_evaluator("aesthetic") is aesthetic
    with pytest.raises(ValueError, match="unknown evaluator type"):
        evaluate.get_evaluator("nope")


def test_run_writes_files_and_scipy_metrics(tmp_path):
    predictions, targets, ids = _synthetic()
    outdir = str(tmp_path / "eval")
    metrics = aesthetic.run(
        predictions=predictions, targets=targets, ids=ids, outdir=outdir, prefix="test", heads=HEADS
    )

    # Expected values computed independently with scipy / sklearn.
    f64 = {k: np.asarray(v, np.float64) for k, v in predictions.items()}
    bins = np.arange(1, 11)
    t_mean, p_mean = targets["mean_score"], f64["emd.mean"]
    t_sd = np.sqrt(((bins - t_mean[:, None]) ** 2 * targets["distribution"]).sum(1))
    cdf = np.cumsum(targets["distribution"], 1) - np.cumsum(f64["emd.distribution"], 1)
    expected = {
        "emd/srcc": scipy.stats.spearmanr(t_mean, p_mean).statistic,
        "emd/plcc": scipy.stats.pearsonr(t_mean, p_mean).statistic,
        "emd/krcc": scipy.stats.kendalltau(t_mean, p_mean).statistic,
        "emd/accuracy": np.mean((t_mean >= 5) == (p_mean >= 5)),
        "emd/emd_r1": np.mean(np.mean(np.abs(cdf), 1)),
        "emd/emd_r2": np.mean(np.sqrt(np.mean(cdf**2, 1))),
        # Distribution-aware metrics, each from its definition (scipy's JS distance squared, in bits).
        "emd/js": np.mean([jensenshannon(t, p, base=2) ** 2
                           for t, p in zip(targets["distribution"], f64["emd.distribution"])]),
        "emd/hist_intersection": np.mean(np.minimum(targets["distribution"], f64["emd.distribution"]).sum(1)),
        "emd/mode_acc": np.mean(np.argmax(targets["distribution"], 1) == np.argmax(f64["emd.distribution"], 1)),
        "emd/mae": sklearn.metrics.mean_absolute_error(t_mean, p_mean),
        "emd/rmse": np.sqrt(sklearn.metrics.mean_squared_error(t_mean, p_mean)),
        "emd/sd_srcc": scipy.stats.spearmanr(t_sd, f64["emd.sd"]).statistic,
        "emd/sd_plcc": scipy.stats.pearsonr(t_sd, f64["emd.sd"]).statistic,
    }
    for head, key, names in [("scores", "scores", SCORE_NAMES), ("attr", "attributes", ATTR_NAMES)]:
        t, p = targets[key], f64[f"{head}.{key}"]
        per = {
            "srcc": [scipy.stats.spearmanr(t[:, i], p[:, i]).statistic for i in range(len(names))],
            "plcc": [scipy.stats.pearsonr(t[:, i], p[:, i]).statistic for i in range(len(names))],
            "mae": sklearn.metrics.mean_absolute_error(t, p, multioutput="raw_values"),
            "rmse": np.sqrt(sklearn.metrics.mean_squared_error(t, p, multioutput="raw_values")),
            "r2": sklearn.metrics.r2_score(t, p, multioutput="raw_values"),
        }
        for metric, values in per.items():
            for name, v in zip(names, values):
                expected[f"{head}/{name}/{metric}"] = v
            expected[f"{head}/avg/{metric}"] = np.mean(values)
    a_mean = f64["attr.overall"]
    expected.update(
        {
            "attr/overall/srcc": scipy.stats.spearmanr(t_mean, a_mean).statistic,
            "attr/overall/plcc": scipy.stats.pearsonr(t_mean, a_mean).statistic,
            "attr/overall/krcc": scipy.stats.kendalltau(t_mean, a_mean).statistic,
            "attr/overall/mae": sklearn.metrics.mean_absolute_error(t_mean, a_mean),
            "attr/overall/rmse": np.sqrt(sklearn.metrics.mean_squared_error(t_mean, a_mean)),
            "attr/overall/r2": sklearn.metrics.r2_score(t_mean, a_mean),
        }
    )
    assert set(metrics) == set(expected)
    assert 0 < metrics["emd/js"] < 1 and 0 < metrics["emd/hist_intersection"] < 1
    assert 0 < metrics["emd/mode_acc"] < 1  # the synthetic predictions get some modes right, not all
    for k, v in expected.items():
        assert metrics[k] == pytest.approx(float(v), abs=1e-6), k
        assert type(metrics[k]) is float

    # JSON equals the returned metrics.
    with open(os.path.join(outdir, "test_metrics.json")) as f:
        saved = json.load(f)
    assert list(saved) == list(metrics)
    for k, v in metrics.items():
        assert saved[k] == pytest.approx(v, abs=1e-12)

    # CSV: one row per image, input order, decoded ids, values round-trip.
    with open(os.path.join(outdir, "test_predictions.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == N
    assert [r["id"] for r in rows] == [f"img{i:04d}" for i in range(N)]
    header = list(rows[0])
    for col in ["true_mean", "true_sd", "true_p1", "true_p10", "emd_pred_mean", "emd_pred_sd", "emd_pred_p1",
                "emd_pred_p10", "true_scores_score", "scores_pred_semantic", "true_attributes_general", "attr_pred_general",
                "attr_pred_overall"]:
        assert col in header, col
    np.testing.assert_allclose([float(r["true_mean"]) for r in rows], t_mean, rtol=1e-12)
    np.testing.assert_allclose([float(r["emd_pred_p3"]) for r in rows], f64["emd.distribution"][:, 2], rtol=1e-12)
    np.testing.assert_allclose([float(r["scores_pred_visual"]) for r in rows], f64["scores.scores"][:, 2], rtol=1e-12)
    # "composition" is both a score and an attribute name: the targets stay apart.
    np.testing.assert_allclose([float(r["true_scores_composition"]) for r in rows], targets["scores"][:, 3])
    np.testing.assert_allclose([float(r["true_attributes_composition"]) for r in rows], targets["attributes"][:, 1])

    # Plots are real PNG files.
    for kind in ("scatter", "hist"):
        path = os.path.join(outdir, f"test_{kind}.png")
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC
        assert os.path.getsize(path) > 1000

    table = aesthetic.format_table(metrics)
    assert "emd/srcc" in table and f"{metrics['emd/srcc']:.4f}" in table
    assert len(table.splitlines()) == len(metrics) + 2


def test_derived_means_nan_as_null_and_no_plots(tmp_path):
    predictions, targets, ids = _synthetic(n=12, seed=1)
    # Distribution only: mean and sd derived; constant predicted means -> nan correlations.
    only_dist = {"emd.distribution": np.tile(predictions["emd.distribution"][:1], (12, 1))}
    targets = {"distribution": targets["distribution"]}  # mean_score derived from distribution
    metrics = aesthetic.run(
        predictions=only_dist, targets=targets, ids=np.arange(12), outdir=str(tmp_path), prefix="val",
        heads={"emd": {"type": "emd"}}, plots=False,
    )
    assert math.isnan(metrics["emd/srcc"]) and math.isnan(metrics["emd/sd_plcc"])
    assert metrics["emd/emd_r2"] > 0
    with open(tmp_path / "val_metrics.json") as f:
        text = f.read()
    assert "NaN" not in text
    assert json.loads(text)["emd/srcc"] is None
    assert not (tmp_path / "val_scatter.png").exists()
    with open(tmp_path / "val_predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [str(i) for i in range(12)]
    assert "nan" in aesthetic.format_table({"a": None, "b": float("nan"), "c": 0.5})


def test_distribution_metrics_need_both_distributions(tmp_path):
    predictions, targets, ids = _synthetic(n=20, seed=2)
    kw = dict(ids=ids, outdir=str(tmp_path), prefix="x", heads={"emd": {"type": "emd"}}, write_files=False)
    dist_names = {"emd/emd_r1", "emd/emd_r2", "emd/js", "emd/hist_intersection", "emd/mode_acc"}
    means_only = {k: predictions[k] for k in ("emd.mean", "emd.sd")}
    assert not dist_names & set(aesthetic.run(predictions=means_only, targets=targets, **kw))
    no_true_dist = {"mean_score": targets["mean_score"]}
    assert not dist_names & set(aesthetic.run(predictions=predictions, targets=no_true_dist, **kw))
    # A perfect distribution prediction: JS 0, intersection 1, every mode right.
    perfect = {"emd.distribution": targets["distribution"]}
    m = aesthetic.run(predictions=perfect, targets=targets, **kw)
    assert m["emd/js"] == 0.0 and m["emd/hist_intersection"] == pytest.approx(1.0) and m["emd/mode_acc"] == 1.0
    # Tied true modes (equal vote counts) count the prediction right at any of them.
    tied = np.tile([[1.0, 3.0, 3.0, 1.0, 0, 0, 0, 0, 0, 0]], (2, 1)) / 8.0
    pred = np.array([[0, 0.2, 0.8, 0, 0, 0, 0, 0, 0, 0], [0.5, 0.2, 0.3, 0, 0, 0, 0, 0, 0, 0]])
    m = aesthetic.run(predictions={"emd.distribution": pred}, targets={"distribution": tied},
                      ids=np.arange(2), outdir=str(tmp_path), prefix="t", heads={"emd": {"type": "emd"}},
                      write_files=False)
    assert m["emd/mode_acc"] == pytest.approx(0.5)


def test_run_validation(tmp_path):
    predictions, targets, ids = _synthetic(n=10)
    kw = dict(targets=targets, outdir=str(tmp_path), prefix="x", plots=False)
    with pytest.raises(ValueError, match="N = 9"):
        aesthetic.run(predictions=predictions, ids=ids[:9], heads={"emd": {"type": "emd"}}, **kw)
    with pytest.raises(ValueError, match="unknown head type"):
        aesthetic.run(predictions=predictions, ids=ids, heads={"emd": {"type": "gan"}}, **kw)
    with pytest.raises(KeyError, match="other.scores"):
        aesthetic.run(predictions=predictions, ids=ids, heads={"other": {"type": "scores"}}, **kw)
    with pytest.raises(ValueError, match="names"):
        aesthetic.run(predictions=predictions, ids=ids, heads={"scores": {"type": "scores", "names": ["a"]}}, **kw)
    with pytest.raises(ValueError, match="duplicate CSV column 'attr_pred_overall'"):
        heads = {"attr": {"type": "attributes", "names": ["a", "b", "overall", "d"]}}
        aesthetic.run(predictions=predictions, ids=ids, heads=heads, **kw)


def test_import_is_light():
    code = (
        "import sys, aesthetics_jax.evaluate, aesthetics_jax.evaluate.aesthetic;"
        "bad = [m for m in ('matplotlib', 'jax', 'tensorflow') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_one_output_scores_head_is_compared_with_the_mean_vote(tmp_path):
    """A LAION-style bundle (one `scores` output) evaluated on AVA: against `mean_score`."""
    from scipy import stats

    rng = np.random.default_rng(5)
    mean = rng.uniform(2, 8, 40)
    pred = mean + rng.normal(0, 1.0, 40)
    metrics = aesthetic.run(predictions={"laion.scores": pred[:, None]}, targets={"mean_score": mean},
                            ids=np.arange(40), outdir=str(tmp_path), prefix="t",
                            heads={"laion": {"type": "scores", "names": ["laion_aesthetic"]}}, plots=False)
    assert metrics["laion/laion_aesthetic/srcc"] == pytest.approx(stats.spearmanr(mean, pred)[0])
    assert metrics["laion/laion_aesthetic/plcc"] == pytest.approx(stats.pearsonr(mean, pred)[0])
