"""`aesthetics-jax analyze modalities`: statistics against scipy/numpy, bootstrap against an independent
resampling loop and evaluate.patches.paired_bootstrap, the report's verdicts, and the CLI end to end on
AVA / EVA / AADB fixture builds (categories read from the real build records)."""

import collections
import json
import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from aesthetics_jax import cli
from aesthetics_jax import metrics as M
from aesthetics_jax.analysis import commands, groups as groups_lib, modalities as mod, report
from aesthetics_jax.data import pipeline
from aesthetics_jax.evaluate import aesthetic, patches

from ava_fixture import CHALLENGES, TAGS, write_ava_fixture
from test_aadb_builder import write_aadb_fixture
from test_eva_builder import write_eva_fixture

N_GROUP = 120
SEED = 3


def _distribution(mean: np.ndarray, rng) -> np.ndarray:
    """10-bin score distributions (a discretised normal around `mean`), normalised."""
    bins = np.arange(1, 11)
    p = np.exp(-0.5 * ((bins[None, :] - mean[:, None]) / rng.uniform(1.0, 2.0, (len(mean), 1))) ** 2)
    return p / p.sum(axis=1, keepdims=True)


def _write_run(workdir, ids, pred, *, true=None, distribution=None, config=None, prefix="test"):
    """A run's predictions CSV as the aesthetic evaluator writes it (emd head), + config.json."""
    targets = {"distribution": distribution} if distribution is not None else {"mean_score": true}
    aesthetic.run(predictions={"emd.mean": np.asarray(pred)}, targets=targets, ids=np.asarray(ids),
                  outdir=os.path.join(workdir, "eval"), prefix=prefix, heads={"emd": {"type": "emd"}}, plots=False)
    if config is not None:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            json.dump(config, f)
    return os.fspath(workdir)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Three modalities with known structure: A tracks the truth in g1 and is noise in g2, B the reverse,
    rgb is equally good everywhere. Each run's rows are in a different order."""
    rng = np.random.default_rng(0)
    n = 2 * N_GROUP
    ids = 100000 + 7 * np.arange(n)
    dist = _distribution(rng.uniform(3.5, 7.0, n), rng)
    true = dist @ np.arange(1, 11)
    in_g1 = np.arange(n) < N_GROUP
    noise = lambda s: s * rng.normal(size=n)  # noqa: E731
    preds = {"rgb": true + noise(0.6),
             "A": np.where(in_g1, true + noise(0.1), 5.0 + noise(0.8)),
             "B": np.where(in_g1, 5.0 + noise(0.8), true + noise(0.1))}
    paths = {}
    for name, pred in preds.items():
        order = rng.permutation(n)
        paths[name] = _write_run(tmp_path_factory.mktemp(f"run_{name}"), ids[order], pred[order],
                                 distribution=dist[order])
    groups = {int(i): ["g1"] if g else ["g2"] for i, g in zip(ids, in_g1)}
    return dict(ids=ids, true=true, preds=preds, paths=paths, groups=groups, in_g1=in_g1)


@pytest.fixture(scope="module")
def analysed(synthetic):
    return mod.analyze(synthetic["paths"], synthetic["groups"], num_bootstrap=300, seed=SEED, by="toy")


def _lstsq_r2(y, *xs):
    x = np.column_stack([np.ones_like(y), *xs])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    res = y - x @ coef
    return 1.0 - res @ res / np.sum((y - y.mean()) ** 2)


def test_point_statistics_match_scipy_and_numpy(synthetic, analysed):
    true, preds = synthetic["true"], synthetic["preds"]
    assert analysed.modalities == ["rgb", "A", "B"]
    np.testing.assert_array_equal(analysed.ids.astype(int), synthetic["ids"])  # sorted numerically, joined on id
    assert [g.name for g in analysed.groups] == ["all", "g1", "g2"]
    members = {"all": np.ones(len(true), bool), "g1": synthetic["in_g1"], "g2": ~synthetic["in_g1"]}
    for g in analysed.groups:
        rows = members[g.name]
        assert g.n == rows.sum()
        t = true[rows]
        for j, name in enumerate(analysed.modalities):
            p = preds[name][rows]
            assert g.point["srcc"][j] == pytest.approx(stats.spearmanr(t, p)[0], abs=1e-12)
            assert g.point["plcc"][j] == pytest.approx(stats.pearsonr(t, p)[0], abs=1e-12)
            assert g.point["mae"][j] == pytest.approx(np.mean(np.abs(p - t)), abs=1e-12)
            assert g.truth_cov[j] == pytest.approx(np.cov(p, t)[0, 1], rel=1e-10)
            assert g.pred_var[j] == pytest.approx(np.var(p, ddof=1), rel=1e-10)
            assert g.point["ols_r2"][j] == pytest.approx(_lstsq_r2(t, p), abs=1e-10)
            gain = _lstsq_r2(t, preds["rgb"][rows], p) - _lstsq_r2(t, preds["rgb"][rows])
            assert g.point["ols_r2_gain"][j] == pytest.approx(gain, abs=1e-10)
        assert g.truth_var == pytest.approx(np.var(t, ddof=1), rel=1e-10)

    stacked = np.column_stack([preds[m] for m in analysed.modalities])
    residuals = stacked - true[:, None]
    np.testing.assert_allclose(analysed.matrices["prediction_cov"], np.cov(stacked.T), rtol=1e-10)
    np.testing.assert_allclose(analysed.matrices["prediction_corr"], np.corrcoef(stacked.T), rtol=1e-10)
    np.testing.assert_allclose(analysed.matrices["residual_cov"], np.cov(residuals.T), rtol=1e-10)
    np.testing.assert_allclose(analysed.matrices["residual_corr"], np.corrcoef(residuals.T), rtol=1e-10)
    assert analysed.base == "rgb"
    assert analysed.runs[0]["pred_column"] == "emd_pred_mean" and analysed.runs[0]["true_column"] == "true_mean"


def test_bootstrap_matches_an_independent_resampling_loop(synthetic, analysed):
    """Same seed convention as evaluate.patches.paired_bootstrap; intervals recomputed with scipy."""
    g1 = analysed.group("g1")
    rows = synthetic["in_g1"]
    t = synthetic["true"][rows]
    p = np.column_stack([synthetic["preds"][m][rows] for m in analysed.modalities])
    num = 300
    idx = np.random.default_rng(SEED).integers(0, len(t), size=(num, len(t)))
    boot = np.array([[stats.spearmanr(t[r], p[r, j])[0] for j in range(3)] for r in idx])
    mae = np.array([np.mean(np.abs(p[r] - t[r, None]), axis=0) for r in idx])
    np.testing.assert_allclose(g1.low["srcc"], np.percentile(boot, 2.5, axis=0), atol=1e-12)
    np.testing.assert_allclose(g1.high["srcc"], np.percentile(boot, 97.5, axis=0), atol=1e-12)
    np.testing.assert_allclose(g1.low["mae"], np.percentile(mae, 2.5, axis=0), atol=1e-12)
    np.testing.assert_allclose(g1.high["mae"], np.percentile(mae, 97.5, axis=0), atol=1e-12)
    assert (g1.num_valid["srcc"] == num).all()
    # Paired differences to the best modality: the same numbers as the patches evaluator's helper.
    best = g1.best
    assert analysed.modalities[best] == "A"
    for j in range(3):
        ref = patches.paired_bootstrap(t[:, None], p[:, [best]], p[:, [j]], M.srcc, num=num, seed=SEED)
        assert g1.minus_best_low[j] == pytest.approx(ref["low"][0], abs=1e-12)
        assert g1.minus_best_high[j] == pytest.approx(ref["high"][0], abs=1e-12)
    # Every interval brackets its point estimate.
    for g in analysed.groups:
        for s in ("srcc", "plcc", "mae", "ols_r2"):
            assert (g.low[s] <= g.point[s] + 1e-12).all() and (g.point[s] <= g.high[s] + 1e-12).all(), (g.name, s)


def test_intervals_narrow_with_more_images():
    rng = np.random.default_rng(1)
    t = rng.normal(size=1600)
    p = np.column_stack([t + rng.normal(size=1600), t + 2 * rng.normal(size=1600)])
    widths = []
    for n in (100, 400, 1600):
        g = mod.group_stats("g", t[:n], p[:n], num_bootstrap=400, seed=0)
        widths.append(g.high["srcc"] - g.low["srcc"])
        # The normal-theory width of a correlation's CI, 2 * 1.96 * (1 - r^2) / sqrt(n), as an order of magnitude.
        r = g.point["plcc"]
        np.testing.assert_allclose(widths[-1], 2 * 1.96 * (1 - r**2) / np.sqrt(n), rtol=0.5)
    assert (widths[0] > widths[1]).all() and (widths[1] > widths[2]).all()
    # Bootstrap draws in row chunks are the numbers of one big draw.
    chunks = np.concatenate(list(mod.bootstrap_indices(37, 50, seed=5, chunk_elements=37 * 7)))
    np.testing.assert_array_equal(chunks, np.random.default_rng(5).integers(0, 37, size=(50, 37)))


def test_report_names_the_modality_that_explains_most(analysed, tmp_path):
    statements = analysed.statements()
    assert "most explained by A" in statements["g1"] and "runner-up rgb" in statements["g1"]
    assert "most explained by B" in statements["g2"]
    assert "(significant" in statements["g1"] and "(significant" in statements["g2"]
    paths = report.write_all(analysed, str(tmp_path))
    text = open(paths["report.md"]).read()
    assert "- " + statements["g1"] in text and "- " + statements["g2"] in text
    for name in ("metrics.csv", "prediction_cov.csv", "prediction_corr.csv", "residual_cov.csv", "residual_corr.csv",
                 "group_truth_cov.csv", "srcc_heatmap.png", "prediction_corr.png", "residual_corr.png",
                 "srcc_bars.png", "summary.json"):
        assert os.path.getsize(paths[name]) > 0, name
    for name in ("srcc_heatmap.png", "srcc_bars.png"):
        assert open(paths[name], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    metrics = pd.read_csv(paths["metrics.csv"])
    assert list(metrics.columns[:5]) == ["group", "modality", "n", "ranked", "best"]
    row = metrics[(metrics.group == "g2") & (metrics.modality == "B")].iloc[0]
    g2 = analysed.group("g2")
    assert row.srcc == g2.point["srcc"][2] and row.srcc_lo == g2.low["srcc"][2] and bool(row.best)
    cov = pd.read_csv(paths["prediction_cov.csv"], index_col="modality")
    np.testing.assert_array_equal(cov.to_numpy(), analysed.matrices["prediction_cov"])
    summary = json.load(open(paths["summary.json"]))
    by_name = {g["name"]: g for g in summary["groups"]}
    assert by_name["g1"]["best"] == "A" and by_name["g2"]["best"] == "B"
    assert by_name["g1"]["lead"]["significant"] is True
    assert summary["settings"]["base"] == "rgb"


def test_small_groups_are_reported_not_ranked(synthetic):
    groups = dict(synthetic["groups"])
    few = list(groups)[:4]
    for i in few:
        groups[i] = groups[i] + ["rare"]
    result = mod.analyze(synthetic["paths"], groups, num_bootstrap=50, min_count=10, group_order=["g2", "g1"],
                         known_groups=["g1", "g2", "rare", "never"])
    assert [g.name for g in result.groups] == ["all", "g2", "g1", "rare"]
    rare = result.group("rare")
    assert rare.n == 4 and not rare.ranked and rare.best is None
    assert "too few images to rank (n = 4 < 10)" in result.statements()["rare"]
    assert result.settings["empty_groups"] == ["never"]
    assert "rare †" in report.markdown(result)


def test_inputs_joining_and_output_choice(synthetic, tmp_path):
    paths = synthetic["paths"]
    ids, true = synthetic["ids"], synthetic["true"]
    # A run with fewer images: an error naming the ids, or the common ids with --intersect.
    short = _write_run(tmp_path / "short", ids[5:], synthetic["preds"]["B"][5:], true=true[5:])
    with pytest.raises(ValueError, match=r"run 'C' .* lacks 5 ids \(100000, 100007, 100014, 100021, 100028\)"):
        mod.analyze({"A": paths["A"], "C": short}, num_bootstrap=0)
    result = mod.analyze({"A": paths["A"], "C": short}, intersect=True, num_bootstrap=0)
    assert result.settings["num_images"] == len(ids) - 5
    assert [r["dropped"] for r in result.runs] == [5, 0]
    # Different truth: refused.
    other = _write_run(tmp_path / "other", ids, synthetic["preds"]["B"], true=true + 0.01)
    with pytest.raises(ValueError, match="disagree on the truth"):
        mod.analyze({"A": paths["A"], "X": other}, num_bootstrap=0)
    # A repeated id.
    frame = pd.read_csv(mod.resolve_predictions_path(paths["A"]))
    with pytest.raises(ValueError, match=f"1 repeated id\\(s\\): {frame.id.iloc[0]}"):
        mod.read_predictions("dup", pd.concat([frame, frame.iloc[:1]]))
    # Missing predictions file names the path.
    with pytest.raises(FileNotFoundError, match=os.path.join(str(tmp_path), "eval", "test_predictions.csv")):
        mod.resolve_predictions_path(str(tmp_path))
    # Score heads: HEAD:NAME or NAME; auto refuses to guess.
    scores = np.random.default_rng(0).random((len(ids), 2))
    aesthetic.run(predictions={"sc.scores": scores + 0.1}, targets={"scores": scores}, ids=ids,
                  outdir=str(tmp_path / "scores"), prefix="test", heads={"sc": {"type": "scores",
                                                                               "names": ["score", "semantic"]}},
                  plots=False)
    csv_path = str(tmp_path / "scores" / "test_predictions.csv")
    with pytest.raises(ValueError, match=r"choices: sc:score, sc:semantic"):
        mod.read_predictions("s", csv_path)
    run = mod.read_predictions("s", csv_path, output="sc:semantic")
    assert (run.pred_column, run.true_column) == ("sc_pred_semantic", "true_scores_semantic")
    np.testing.assert_allclose(run.pred, scores[:, 1] + 0.1)
    assert mod.read_predictions("s", csv_path, output="score").pred_column == "sc_pred_score"
    with pytest.raises(ValueError, match="no output 'total'"):
        mod.read_predictions("s", csv_path, output="total")
    with pytest.raises(ValueError, match=r"no output 'emd:sd' \(choices: emd:mean\)"):
        mod.select_output(frame.columns, "emd:sd")
    with pytest.raises(ValueError, match="run name 'a b'"):
        mod.analyze({"a b": paths["A"]})


# ----------------------------------------------------------------------------------------------
# CLI end to end on fixture builds


def _run_cli(argv):
    return commands.main(argv)


@pytest.fixture(scope="module")
def ava_build(tmp_path_factory):
    from aesthetics_jax.data.builders import ava

    root = tmp_path_factory.mktemp("ava_raw")
    expected = write_ava_fixture(root)
    data_dir = tmp_path_factory.mktemp("ava_tfds")
    builder = ava.build_ava(root, data_dir)
    return dict(root=str(root), data_dir=str(data_dir), builder=builder, good=expected["good"])


def _ava_runs(ava_build, tmp_path, split_ids):
    rng = np.random.default_rng(4)
    true = rng.uniform(3, 8, len(split_ids))
    config = {"data": {"name": "ava", "manual_dir": ava_build["root"], "data_dir": ava_build["data_dir"],
                       "val_fraction": 0.0, "split_seed": 0},
              "evals": {"val": {"type": "aesthetic", "split": "train"}}}
    preds = {"rgb": true + rng.normal(0, 0.5, len(true)), "depth": true + rng.normal(0, 1.5, len(true)),
             "saliency": rng.normal(5, 1, len(true))}
    # The modality runs read map builds of the same AVA build (data.modality); their parent is read.
    modality = {"input": "map", "producer": "blur"}
    paths = {name: _write_run(tmp_path / name, split_ids, p, true=true, prefix="val",
                              config=config if name == "rgb" else {**config, "data": {**config["data"],
                                                                                      "modality": modality}})
             for name, p in preds.items()}
    return true, preds, paths


def test_cli_ava_tags_and_challenges_from_the_build(ava_build, tmp_path, capsys):
    train = sorted(i for i, row in ava_build["good"].items() if not row["test"])
    true, preds, paths = _ava_runs(ava_build, tmp_path, train)
    out = tmp_path / "tags"
    # The build and its split come from the first run's config.json (evals.val.split = train): a
    # modality run's, so the parent AVA build (no map build exists) must be what is opened.
    runs = [f"--run={n}={paths[n]}" for n in ("depth", "saliency", "rgb")]
    rc = cli.main(["analyze", "modalities", *runs, "--eval", "val",
                   "--by", "tags", "--out", str(out), "--min-count", "3", "--bootstrap", "100", "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert f"report: {out / 'report.md'}" in printed
    assert not os.path.exists(os.path.join(ava_build["data_dir"], "modality"))  # no map build made
    metrics = pd.read_csv(out / "metrics.csv")
    expected = {}
    for i in train:
        for tag in dict.fromkeys(ava_build["good"][i]["tags"]):
            if tag:
                expected.setdefault(TAGS[tag], []).append(train.index(i))
    assert set(metrics.group) == {"all", *expected}
    for name, rows in expected.items():
        rows = np.array(rows)
        for m, p in preds.items():
            row = metrics[(metrics.group == name) & (metrics.modality == m)].iloc[0]
            assert row.n == len(rows)
            assert row.mae == pytest.approx(np.mean(np.abs(p[rows] - true[rows])), abs=1e-12)
            if len(rows) >= 3:
                assert row.srcc == pytest.approx(stats.spearmanr(true[rows], p[rows])[0], abs=1e-12)
    summary = json.load(open(out / "summary.json"))
    assert summary["settings"]["split"] == "train" and summary["settings"]["split_from"].startswith("evals.val.split")

    # Challenges, with the build given explicitly (a data_dir above the build directory is found).
    out2 = tmp_path / "challenge"
    rc = _run_cli(["modalities", *[f"--run={n}={p}" for n, p in paths.items()], "--eval", "val", "--by", "challenge",
                   "--build", ava_build["data_dir"], "--split", "train", "--out", str(out2), "--bootstrap", "50",
                   "--no-plots", "--quiet", "--min-count", "2"])
    assert rc == 0
    metrics = pd.read_csv(out2 / "metrics.csv")
    counts = metrics[metrics.modality == "rgb"].set_index("group").n.to_dict()
    want = collections.Counter(CHALLENGES[ava_build["good"][i]["challenge"]] for i in train)
    assert counts == {"all": len(train), **want}
    assert not (out2 / "srcc_heatmap.png").exists()


def test_cli_errors_are_clear(ava_build, tmp_path, capsys):
    train = sorted(i for i, row in ava_build["good"].items() if not row["test"])
    _, _, paths = _ava_runs(ava_build, tmp_path, train)
    runs = [f"--run={n}={p}" for n, p in paths.items()]
    # A grouping of another dataset.
    rc = _run_cli(["modalities", *runs, "--eval", "val", "--by", "category", "--out", str(tmp_path / "x"), "--quiet"])
    assert rc == 1
    assert "AVA builds have tags/challenge; category is EVA's" in capsys.readouterr().err
    # A missing predictions file: its path is named.
    rc = _run_cli(["modalities", *runs, f"--run=blur={tmp_path / 'nowhere.csv'}", "--eval", "val", "--by", "tags",
                   "--out", str(tmp_path / "x"), "--quiet"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "run 'blur'" in err and str(tmp_path / "nowhere.csv") in err
    # A workdir without the eval's predictions.
    rc = _run_cli(["modalities", *runs, "--eval", "test", "--by", "tags", "--out", str(tmp_path / "x"), "--quiet"])
    assert rc == 1
    assert os.path.join(paths["rgb"], "eval", "test_predictions.csv") in capsys.readouterr().err
    # A run name given twice.
    rc = _run_cli(["modalities", runs[0], f"--run=rgb={paths['depth']}", "--by", "tags", "--out", str(tmp_path / "x")])
    assert rc == 2
    assert "run name 'rgb' given twice" in capsys.readouterr().err
    # Predictions of another split than the one the categories are read from.
    rc = _run_cli(["modalities", *runs, "--eval", "val", "--split", "test", "--by", "tags", "--out",
                   str(tmp_path / "x"), "--quiet"])
    assert rc == 1
    assert "no entry in the groups mapping" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run_cli(["modalities", *runs, "--by", "colour", "--out", str(tmp_path / "x")])


def test_cli_eva_categories_and_factors(tmp_path_factory, tmp_path, tensorflow_imports):
    from aesthetics_jax.data.builders import eva

    root = tmp_path_factory.mktemp("eva_raw")
    write_eva_fixture(str(root), num_images=30)
    builder = eva.build_eva(root, tmp_path_factory.mktemp("eva_tfds"), val_fraction=0.1, test_fraction=0.1, seed=0)
    source = pipeline.make_source(builder, "train")
    records = [source[i] for i in range(len(source))]
    ids = [int(r["id"]) for r in records]
    rng = np.random.default_rng(5)
    true = np.array([float(r["scores_raw"][0]) for r in records])
    preds = {"rgb": true + rng.normal(0, 0.5, len(ids)), "blur": true + rng.normal(0, 2.0, len(ids))}
    paths = {n: _write_run(tmp_path / n, ids, p, true=true) for n, p in preds.items()}
    build_dir = os.fspath(builder.data_dir)
    for by, threshold in (("category", []), ("factors", ["--factor-threshold", "0.4"])):
        out = tmp_path / by
        rc = _run_cli(["modalities", *[f"--run={n}={p}" for n, p in paths.items()], "--by", by, "--build", build_dir,
                       "--split", "train", "--out", str(out), "--bootstrap", "50", "--min-count", "2", "--quiet",
                       "--no-plots", *threshold])
        assert rc == 0
        metrics = pd.read_csv(out / "metrics.csv", keep_default_na=False)
        want = {}
        for k, r in enumerate(records):
            if by == "category":
                names = [r["category_name"].decode() or "uncategorised"]
            else:
                names = [f.replace("_", " ") for f, rate in zip(eva.FACTOR_NAMES, r["factor_rates"]) if rate >= 0.4]
            for name in names:
                want.setdefault(name, []).append(k)
        counts = metrics[metrics.modality == "rgb"].set_index("group").n.to_dict()
        assert counts == {"all": len(ids), **{k: len(v) for k, v in want.items()}}
        name, rows = max(want.items(), key=lambda kv: len(kv[1]))
        row = metrics[(metrics.group == name) & (metrics.modality == "blur")].iloc[0]
        assert float(row.plcc) == pytest.approx(stats.pearsonr(true[rows], preds["blur"][rows])[0], abs=1e-12)
        # Fixed display order: EVA's category order / the factor order.
        order = [g for g in pd.unique(metrics.group) if g != "all"]
        fixed = ([eva.CATEGORY_NAMES[c] for c in sorted(eva.CATEGORY_NAMES)] + ["uncategorised"] if by == "category"
                 else [f.replace("_", " ") for f in eva.FACTOR_NAMES])
        assert order == [g for g in fixed if g in want]
    assert tensorflow_imports == []  # reading builds and analysing needs no TensorFlow


def test_cli_aadb_attributes(tmp_path_factory, tmp_path):
    from aesthetics_jax.data.builders import aadb

    root = tmp_path_factory.mktemp("aadb_raw")
    write_aadb_fixture(str(root))
    builder = aadb.build_aadb(root, tmp_path_factory.mktemp("aadb_tfds"))
    source = pipeline.make_source(builder, "train")
    records = [source[i] for i in range(len(source))]
    names = [r["name"].decode() for r in records]  # AADB identifies images by name: the CSVs' ids are names
    rng = np.random.default_rng(6)
    true = np.array([float(r["score"]) for r in records])
    preds = {"rgb": true + rng.normal(0, 0.1, len(names)), "depth": rng.random(len(names))}
    paths = {n: _write_run(tmp_path / n, names, p, true=true) for n, p in preds.items()}
    out = tmp_path / "attributes"
    rc = _run_cli(["modalities", *[f"--run={n}={p}" for n, p in paths.items()], "--by", "attributes", "--build",
                   os.fspath(builder.data_dir), "--split", "train", "--attr-threshold", "0.2", "--out", str(out),
                   "--bootstrap", "50", "--quiet", "--no-plots"])
    assert rc == 0
    metrics = pd.read_csv(out / "metrics.csv")
    want = {}
    for k, r in enumerate(records):
        for a, v in zip(aadb.ATTRIBUTE_NAMES, r["attributes"]):
            if v > 0.2:
                want.setdefault(f"{a} high", []).append(k)
            elif v < -0.2:
                want.setdefault(f"{a} low", []).append(k)
    counts = metrics[metrics.modality == "depth"].set_index("group").n.to_dict()
    assert counts == {"all": len(names), **{k: len(v) for k, v in want.items()}}
    assert not metrics.ranked.any()  # fewer than 10 images everywhere
    name, rows = max(want.items(), key=lambda kv: len(kv[1]))
    row = metrics[(metrics.group == name) & (metrics.modality == "rgb")].iloc[0]
    assert row.mae == pytest.approx(np.mean(np.abs(preds["rgb"][rows] - true[rows])), abs=1e-12)
    text = open(out / "report.md").read()
    assert "too few images to rank" in text and "attributes of aadb" in text


def test_read_groups_refuses_another_datasets_grouping():
    records = [{"id": np.int64(1), "tags": np.array([1, 0]), "tag_names": np.array([b"Abstract", b""]),
                "challenge": np.int32(3), "challenge_name": b""}]
    table = groups_lib.read_groups(records, "challenge")
    assert table.groups == {"1": ["challenge 3"]}
    assert groups_lib.read_groups(records, "tags").groups == {"1": ["Abstract"]}
    with pytest.raises(ValueError, match="AVA builds have tags/challenge; factors is EVA's"):
        groups_lib.read_groups(records, "factors")
    with pytest.raises(ValueError, match="AVA builds have tags/challenge; attributes is AADB's"):
        groups_lib.read_groups(records, "attributes")
