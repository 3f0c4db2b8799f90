"""aesthetics_jax.metrics against scipy.stats / sklearn.metrics and hand-computed values."""

import warnings

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics

from aesthetics_jax import metrics as M

TOL = 1e-6


def _tied_pairs(n, seed):
    """Correlated samples rounded to few distinct values, so both have many ties."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(5.0, 1.0, n))
    y = np.round(x + rng.normal(0.0, 1.2, n), 0)
    return x, y


@pytest.mark.parametrize("n", [2, 3, 5, 17, 64, 257, 3000])
@pytest.mark.parametrize("seed", [0, 1])
def test_correlations_match_scipy_with_ties(n, seed):
    x, y = _tied_pairs(n, seed)
    x[0] = x.min() - 1.0  # never constant, even for n = 2
    y[-1] = y.max() + 1.0
    assert M.srcc(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=TOL)
    assert M.plcc(x, y) == pytest.approx(scipy.stats.pearsonr(x, y).statistic, abs=TOL)
    assert M.krcc(x, y) == pytest.approx(scipy.stats.kendalltau(x, y).statistic, abs=TOL)


def test_correlations_continuous_and_anticorrelated():
    rng = np.random.default_rng(3)
    x = rng.normal(size=500)
    y = -x + 0.3 * rng.normal(size=500)
    assert M.srcc(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=TOL)
    assert M.plcc(x, y) == pytest.approx(scipy.stats.pearsonr(x, y).statistic, abs=TOL)
    assert M.krcc(x, y) == pytest.approx(scipy.stats.kendalltau(x, y).statistic, abs=TOL)
    assert M.krcc(x, x) == pytest.approx(1.0)
    assert M.krcc(x, -x) == pytest.approx(-1.0)


def test_correlations_columnwise():
    rng = np.random.default_rng(4)
    a = np.round(rng.normal(size=(200, 3)) * 2)
    b = np.round(a + rng.normal(size=(200, 3)) * 2)
    for fn, ref in [(M.srcc, scipy.stats.spearmanr), (M.plcc, scipy.stats.pearsonr), (M.krcc, scipy.stats.kendalltau)]:
        got = fn(a, b)
        assert isinstance(got, np.ndarray) and got.shape == (3,)
        want = [ref(a[:, k], b[:, k]).statistic for k in range(3)]
        np.testing.assert_allclose(got, want, atol=TOL)


def test_rankdata_matches_scipy():
    x, _ = _tied_pairs(101, 5)
    np.testing.assert_allclose(M.rankdata(x), scipy.stats.rankdata(x, method="average"))


def test_degenerate_inputs_give_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fn in (M.srcc, M.plcc, M.krcc):
            assert np.isnan(fn(np.ones(10), np.arange(10.0)))
            assert np.isnan(fn(np.arange(10.0), np.full(10, 3.0)))
            assert np.isnan(fn([1.0], [2.0]))
            assert np.isnan(fn([], []))
            assert np.isnan(fn([1.0, np.nan, 3.0], [1.0, 2.0, 3.0]))
        assert np.isnan(M.r2(np.ones(5), np.arange(5.0)))
        assert np.isnan(M.mae([], []))
        assert np.isnan(M.binary_accuracy([], []))
        col = M.srcc(np.c_[np.ones(6), np.arange(6.0)], np.c_[np.arange(6.0), np.arange(6.0)])
        assert np.isnan(col[0]) and col[1] == pytest.approx(1.0)


@pytest.mark.parametrize("fn", [M.srcc, M.plcc, M.krcc, M.mae, M.rmse, M.r2])
def test_shape_mismatch_raises(fn):
    with pytest.raises(ValueError, match="same shape"):
        fn(np.zeros(5), np.zeros(6))
    with pytest.raises(ValueError, match="shape"):
        fn(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)))


def test_regression_metrics_match_sklearn():
    rng = np.random.default_rng(6)
    y = np.round(rng.normal(size=(300, 4)) * 3)
    p = y + rng.normal(size=(300, 4))
    np.testing.assert_allclose(M.mae(y, p), sklearn.metrics.mean_absolute_error(y, p, multioutput="raw_values"), atol=TOL)
    np.testing.assert_allclose(
        M.rmse(y, p), np.sqrt(sklearn.metrics.mean_squared_error(y, p, multioutput="raw_values")), atol=TOL
    )
    np.testing.assert_allclose(M.r2(y, p), sklearn.metrics.r2_score(y, p, multioutput="raw_values"), atol=TOL)
    assert M.r2(y[:, 0], p[:, 0]) == pytest.approx(sklearn.metrics.r2_score(y[:, 0], p[:, 0]), abs=TOL)
    assert isinstance(M.mae(y[:, 1], p[:, 1]), float)


def test_per_output_names():
    y = np.arange(12.0).reshape(4, 3)
    out = M.per_output(M.mae, y, y + [0.0, 1.0, 2.0], names=["a", "b", "c"])
    assert out == {"a": 0.0, "b": 1.0, "c": 2.0}
    assert list(M.per_output(M.rmse, y, y)) == ["output_0", "output_1", "output_2"]
    with pytest.raises(ValueError, match="names"):
        M.per_output(M.mae, y, y, names=["a"])


def test_binary_accuracy_hand_count():
    true = np.array([4.0, 5.0, 6.0, 5.0, 7.2, 3.1])
    pred = np.array([5.0, 4.9, 6.5, 5.0, 4.0, 3.0])
    # inclusive (>= 5): true high = F T T T T F ; pred high = T F T T F F -> agree at 2, 3, 5
    assert M.binary_accuracy(true, pred) == pytest.approx(3 / 6)
    # strict (> 5): true high = F F T F T F ; pred high = F F T F F F -> agree at 0,1,2,3,5
    assert M.binary_accuracy(true, pred, inclusive=False) == pytest.approx(5 / 6)
    assert M.binary_accuracy(true, pred, threshold=3.05) == pytest.approx(5 / 6)
    with pytest.raises(ValueError):
        M.binary_accuracy(true, pred[:3])


def test_distribution_mean_sd():
    p = np.array([[0.0, 0.5, 0.5, 0.0], [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_allclose(M.distribution_mean(p), [2.5, 2.5])
    np.testing.assert_allclose(M.distribution_sd(p), [0.5, np.sqrt(1.25)])
    rng = np.random.default_rng(7)
    q = rng.dirichlet(np.ones(10))
    d = scipy.stats.rv_discrete(values=(np.arange(1, 11), q))
    assert M.distribution_mean(q) == pytest.approx(d.mean(), abs=TOL)
    assert M.distribution_sd(q) == pytest.approx(d.std(), abs=TOL)


def test_emd_hand_computed():
    p = np.array([0.5, 0.5, 0.0, 0.0])
    q = np.array([0.0, 0.5, 0.5, 0.0])
    # CDFs: p = .5 1 1 1, q = 0 .5 1 1 -> |diff| = .5 .5 0 0
    assert M.emd(p, q, r=1) == pytest.approx((0.5 + 0.5) / 4)
    assert M.emd(p, q, r=2) == pytest.approx(np.sqrt((0.25 + 0.25) / 4))
    batch_t = np.stack([p, p])
    batch_p = np.stack([q, p])
    np.testing.assert_allclose(M.emd(batch_t, batch_p, r=2, reduce=False), [np.sqrt(0.125), 0.0])
    assert M.emd(batch_t, batch_p, r=2) == pytest.approx(np.sqrt(0.125) / 2)
    with pytest.raises(ValueError):
        M.emd(p, q[:3])


def test_emd_relation_to_scipy_distances():
    rng = np.random.default_rng(8)
    n_bins = 10
    bins = np.arange(1, n_bins + 1)
    pt = rng.dirichlet(np.ones(n_bins), size=20)
    pp = rng.dirichlet(np.ones(n_bins), size=20)
    per1 = M.emd(pt, pp, r=1, reduce=False)
    per2 = M.emd(pt, pp, r=2, reduce=False)
    for i in range(20):
        w1 = scipy.stats.wasserstein_distance(bins, bins, pt[i], pp[i])
        e = scipy.stats.energy_distance(bins, bins, pt[i], pp[i])
        # Unit spacing, CDFs equal at the last bin: sum_k |dCDF| = W1, sum_k dCDF^2 = energy^2 / 2.
        assert per1[i] == pytest.approx(w1 / n_bins, abs=TOL)
        assert per2[i] == pytest.approx(e / np.sqrt(2 * n_bins), abs=TOL)
    assert M.emd(pt, pp, r=1) == pytest.approx(per1.mean())


def test_krcc_large_split_is_fast():
    import time

    x, y = _tied_pairs(20000, 9)
    start = time.perf_counter()
    got = M.krcc(x, y)
    assert time.perf_counter() - start < 2.0
    assert got == pytest.approx(scipy.stats.kendalltau(x, y).statistic, abs=TOL)


# ----------------------------------------------------------------------------------------------
# Distribution-aware metrics: Jensen-Shannon divergence, histogram intersection, mode accuracy

from scipy.spatial.distance import jensenshannon  # noqa: E402


def _sparse_dists(n, bins=10, seed=0):
    """Random normalised distributions, a third of their bins exactly zero (as with few votes)."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(bins), size=n)
    p[rng.random((n, bins)) < 0.33] = 0.0
    p[:, 0] += (p.sum(1) == 0)  # never an all-zero row
    return p / p.sum(1, keepdims=True)


def test_js_divergence_matches_scipy_including_zero_bins():
    pt, pp = _sparse_dists(40, seed=10), _sparse_dists(40, seed=11)
    assert (pt == 0).any() and (pp == 0).any() and ((pt == 0) & (pp == 0)).any()
    per = M.js_divergence(pt, pp, reduce=False)
    assert per.shape == (40,)
    want = np.array([jensenshannon(pt[i], pp[i], base=2) ** 2 for i in range(40)])
    np.testing.assert_allclose(per, want, atol=1e-12)
    assert M.js_divergence(pt, pp) == pytest.approx(want.mean(), abs=1e-12)
    assert np.all((per >= 0) & (per <= 1))
    # Natural log: scipy's default base; the bits value times ln 2.
    nats = M.js_divergence(pt, pp, base=np.e, reduce=False)
    np.testing.assert_allclose(nats, [jensenshannon(pt[i], pp[i]) ** 2 for i in range(40)], atol=1e-12)
    np.testing.assert_allclose(nats, per * np.log(2), atol=1e-12)
    # Extra leading axes are image axes.
    np.testing.assert_allclose(M.js_divergence(pt.reshape(4, 10, 10), pp.reshape(4, 10, 10), reduce=False),
                               want.reshape(4, 10), atol=1e-12)


def test_js_divergence_hand_computed():
    # m = [.75, .25]: KL(p||m) = log2(4/3); KL(q||m) = .5 log2(2/3) + .5 log2(2).
    p, q = np.array([1.0, 0.0]), np.array([0.5, 0.5])
    want = 0.5 * (np.log2(4 / 3) + 0.5 * np.log2(2 / 3) + 0.5)
    assert M.js_divergence(p, q) == pytest.approx(want, abs=1e-15)
    assert M.js_divergence(q, p) == pytest.approx(want, abs=1e-15)  # symmetric
    # Disjoint supports -> 1 bit; identical -> exactly 0; zeros in both at the same bin are fine.
    assert M.js_divergence([0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]) == pytest.approx(1.0, abs=1e-15)
    assert M.js_divergence([0.2, 0.0, 0.8], [0.2, 0.0, 0.8]) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero / invalid-value warnings from 0 log 0
        assert M.js_divergence([[0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]]) == pytest.approx(1.0, abs=1e-15)
    assert np.isnan(M.js_divergence(np.zeros((0, 10)), np.zeros((0, 10))))


def test_js_divergence_unnormalised_used_as_given():
    # Generalised formula on the raw rows: m = [1, 1] -> 0.5 * (2 log2 2 + 2 log2 2) = 2.
    assert M.js_divergence([2.0, 0.0], [0.0, 2.0]) == pytest.approx(2.0, abs=1e-15)
    # scipy renormalises (-> 1 bit); we do not, and the generalised JS is 1-homogeneous.
    assert jensenshannon([2.0, 0.0], [0.0, 2.0], base=2) ** 2 == pytest.approx(1.0)
    pt, pp = _sparse_dists(5, seed=12), _sparse_dists(5, seed=13)
    np.testing.assert_allclose(M.js_divergence(3 * pt, 3 * pp, reduce=False),
                               3 * M.js_divergence(pt, pp, reduce=False), atol=1e-12)


def test_js_divergence_errors_and_nan():
    p = np.full((3, 4), 0.25)
    with pytest.raises(ValueError, match="same shape"):
        M.js_divergence(p, p[:, :3])
    with pytest.raises(ValueError, match="last axis"):
        M.js_divergence(0.5, 0.5)
    with pytest.raises(ValueError, match="at least one bin"):
        M.js_divergence(np.zeros((3, 0)), np.zeros((3, 0)))
    with pytest.raises(ValueError, match="non-negative"):
        M.js_divergence([[0.5, 0.5]], [[1.5, -0.5]])
    for base in (1, 0, -2, np.inf):
        with pytest.raises(ValueError, match="base"):
            M.js_divergence(p, p, base=base)
    q = p.copy()
    q[1, 2] = np.nan
    per = M.js_divergence(p, q, reduce=False)
    assert np.isnan(per[1]) and per[0] == 0.0 and np.isnan(M.js_divergence(p, q))


def test_histogram_intersection():
    p = np.array([0.2, 0.3, 0.5, 0.0])
    q = np.array([0.4, 0.4, 0.0, 0.2])
    assert M.histogram_intersection(p, q) == pytest.approx(0.2 + 0.3 + 0.0 + 0.0)
    assert M.histogram_intersection(p, p) == pytest.approx(1.0)
    assert M.histogram_intersection([1.0, 0.0], [0.0, 1.0]) == 0.0
    pt, pp = _sparse_dists(30, seed=14), _sparse_dists(30, seed=15)
    per = M.histogram_intersection(pt, pp, reduce=False)
    np.testing.assert_allclose(per, np.minimum(pt, pp).sum(1), atol=1e-12)
    # For normalised inputs: 1 - total variation distance (an independent identity).
    np.testing.assert_allclose(per, 1.0 - 0.5 * np.abs(pt - pp).sum(1), atol=1e-12)
    assert np.all((per >= 0) & (per <= 1))
    assert M.histogram_intersection(pt, pp) == pytest.approx(per.mean(), abs=1e-12)
    # Unnormalised rows are used as given.
    assert M.histogram_intersection([2.0, 1.0], [1.0, 3.0]) == pytest.approx(2.0)
    assert np.isnan(M.histogram_intersection(np.zeros((0, 10)), np.zeros((0, 10))))
    with pytest.raises(ValueError, match="same shape"):
        M.histogram_intersection(pt, pp[:, :9])
    with pytest.raises(ValueError, match="last axis"):
        M.histogram_intersection(1.0, 1.0)


def test_mode_accuracy_hand_built_ties():
    true = np.array(
        [
            [3, 7, 7, 3],  # vote counts 3 7 7 3: bins 1 and 2 tie exactly after normalisation
            [3, 7, 7, 3],
            [3, 7, 7, 3],
            [7, 1, 1, 1],
            [5, 5, 5, 5],  # uniform: every bin is a true mode
            [0, 0, 9, 0],
            [1, 1, 8, 0],
        ],
        dtype=np.float64,
    )
    true /= true.sum(1, keepdims=True)
    pred = np.array(
        [
            [0.0, 0.6, 0.4, 0.0],  # argmax 1: one of the tied true modes -> correct
            [0.1, 0.3, 0.5, 0.1],  # argmax 2: the other tied true mode -> correct
            [0.5, 0.1, 0.1, 0.3],  # argmax 0 -> wrong
            [0.3, 0.3, 0.2, 0.2],  # predicted tie -> lowest bin 0 = true mode -> correct
            [0.1, 0.1, 0.1, 0.7],  # correct (uniform truth)
            [0.3, 0.3, 0.2, 0.2],  # argmax 0 -> wrong
            [0.4, 0.1, 0.4, 0.1],  # predicted tie 0/2 -> lowest bin 0 -> wrong (documented)
        ]
    )
    per = M.mode_accuracy(true, pred, reduce=False)
    np.testing.assert_array_equal(per, [1, 1, 0, 1, 1, 0, 0])
    assert M.mode_accuracy(true, pred) == pytest.approx(4 / 7)
    assert isinstance(M.mode_accuracy(true, pred), float)


def test_mode_accuracy_against_loop_on_count_histograms():
    rng = np.random.default_rng(16)
    counts = rng.integers(0, 4, size=(500, 10)).astype(np.float64)  # small counts: many tied maxima
    counts[:, 0] += counts.sum(1) == 0
    true = counts / counts.sum(1, keepdims=True)
    pred = rng.dirichlet(np.ones(10), size=500)
    hits, n_tied = [], 0
    for t, p in zip(true.tolist(), pred.tolist()):
        modes = {i for i, v in enumerate(t) if v == max(t)}
        n_tied += len(modes) > 1
        hits.append(p.index(max(p)) in modes)
    assert n_tied > 100
    assert M.mode_accuracy(true, pred) == pytest.approx(np.mean(hits), abs=1e-15)


def test_mode_accuracy_errors_and_nan():
    p = np.array([[0.1, 0.9], [0.6, 0.4]])
    q = np.array([[0.2, 0.8], [np.nan, 0.1]])
    per = M.mode_accuracy(p, q, reduce=False)
    assert per[0] == 1.0 and np.isnan(per[1]) and np.isnan(M.mode_accuracy(p, q))
    assert np.isnan(M.mode_accuracy(np.zeros((0, 10)), np.zeros((0, 10))))
    with pytest.raises(ValueError, match="same shape"):
        M.mode_accuracy(p, p[:, :1])
    with pytest.raises(ValueError, match="at least one bin"):
        M.mode_accuracy(np.zeros((2, 0)), np.zeros((2, 0)))
    with pytest.raises(ValueError, match="last axis"):
        M.mode_accuracy(1.0, 1.0)


def test_distribution_metrics_exported():
    for name in ("js_divergence", "histogram_intersection", "mode_accuracy"):
        assert name in M.__all__ and callable(getattr(M, name))
