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
