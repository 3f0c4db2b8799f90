"""aesthetics_jax.losses: formulas, gradients, masking and the config-weighted total."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats
from jax.test_util import check_grads

from aesthetics_jax import losses as L


def _emd_reference(p_true, p_pred, r):
    """Per-example NIMA EMD, straight from the formula with explicit loops."""
    out = []
    for pt, pp in zip(p_true, p_pred):
        n = len(pt)
        cdf_t = cdf_p = 0.0
        acc = 0.0
        for k in range(n):
            cdf_t += pt[k]
            cdf_p += pp[k]
            acc += abs(cdf_t - cdf_p) ** r
        out.append((acc / n) ** (1.0 / r))
    return np.array(out)


def _dists(batch, bins=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(bins), size=batch).astype(np.float32)


@pytest.mark.parametrize("r", [1, 2, 3])
def test_emd_loss_matches_reference(r):
    pt, pp = _dists(8, seed=1), _dists(8, seed=2)
    want = _emd_reference(pt.astype(np.float64), pp.astype(np.float64), r)
    per = L.emd_loss(pt, pp, r=r, reduce=False)
    assert per.shape == (8,)
    np.testing.assert_allclose(np.asarray(per), want, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(float(L.emd_loss(pt, pp, r=r)), want.mean(), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("r", [1, 2, 3])
def test_emd_loss_gradient_finite_at_equal_distributions(r):
    p = jnp.asarray(_dists(4, seed=3))
    grad = jax.jit(jax.grad(lambda q: L.emd_loss(p, q, r=r)))(p)
    assert np.all(np.isfinite(np.asarray(grad)))
    bias = 0.0 if r == 1 else 1e-12 ** (1.0 / r)  # documented eps bias: eps^(1/r)
    assert float(L.emd_loss(p, p, r=r)) <= 1.01 * bias + 1e-7
    # Also finite through a softmax head, where the prediction is exactly a valid distribution.
    logits = jnp.zeros((4, 10))
    g = jax.grad(lambda z: L.emd_loss(jax.nn.softmax(z), jax.nn.softmax(jnp.zeros((4, 10))), r=r))(logits)
    assert np.all(np.isfinite(np.asarray(g)))


def test_emd_loss_validation():
    p = _dists(2)
    with pytest.raises(ValueError, match="shapes differ"):
        L.emd_loss(p, p[:, :9])
    with pytest.raises(ValueError, match="r must be"):
        L.emd_loss(p, p, r=0.5)


def test_elementwise_losses():
    rng = np.random.default_rng(4)
    y = rng.normal(size=(6, 3)).astype(np.float32) * 3
    p = rng.normal(size=(6, 3)).astype(np.float32) * 3
    np.testing.assert_allclose(float(L.mse(y, p)), np.mean((p - y) ** 2), rtol=1e-6)
    np.testing.assert_allclose(float(L.mae(y, p)), np.mean(np.abs(p - y)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(L.mse(y, p, reduce=False)), np.mean((p - y) ** 2, axis=1), rtol=1e-6)
    for delta in (0.5, 1.0, 2.0):
        want = optax.losses.huber_loss(p, y, delta=delta)  # optax: (predictions, targets)
        np.testing.assert_allclose(np.asarray(L.huber(y, p, delta=delta, reduce=False)), np.mean(want, axis=1), rtol=1e-6)
        np.testing.assert_allclose(float(L.huber(y, p, delta=delta)), float(jnp.mean(want)), rtol=1e-6)


def test_bfloat16_inputs_are_upcast():
    y = jnp.ones((4,), jnp.bfloat16)
    p = jnp.full((4,), 1.5, jnp.bfloat16)
    out = L.mse(y, p)
    assert out.dtype == jnp.float32
    assert float(out) == pytest.approx(0.25)


def _moments_reference(p):
    """Mean and sd of score distributions over scores 1..N, via np.average (float64)."""
    bins = np.arange(1, p.shape[1] + 1)
    mu = np.array([np.average(bins, weights=row) for row in p])
    sd = np.sqrt([np.average((bins - m) ** 2, weights=row) for m, row in zip(mu, p)])
    return mu, sd


@pytest.mark.parametrize("r", [1, 2, 3])
@pytest.mark.parametrize("mean_weight, sd_weight", [(0.1, 0.1), (0.5, 2.0), (0.0, 1.0)])
def test_distribution_aware_matches_reference(r, mean_weight, sd_weight):
    pt, pp = _dists(16, seed=20), _dists(16, seed=21)
    t64, p64 = pt.astype(np.float64), pp.astype(np.float64)
    if r == 2:  # NIMA EMD r=2 from scipy: sum_k dCDF^2 = energy^2 / 2 on unit-spaced bins.
        bins = np.arange(1, 11)
        emd = np.array([scipy.stats.energy_distance(bins, bins, a, b) for a, b in zip(t64, p64)]) / np.sqrt(20)
    else:
        emd = _emd_reference(t64, p64, r)
    mu_t, sd_t = _moments_reference(t64)
    mu_p, sd_p = _moments_reference(p64)
    want = emd + mean_weight * (mu_p - mu_t) ** 2 + sd_weight * (sd_p - sd_t) ** 2
    per = L.distribution_aware(pt, pp, r=r, mean_weight=mean_weight, sd_weight=sd_weight, reduce=False)
    assert per.shape == (16,) and per.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(per), want, rtol=2e-5, atol=3e-6)
    got = L.distribution_aware(pt, pp, r=r, mean_weight=mean_weight, sd_weight=sd_weight)
    assert float(got) == pytest.approx(want.mean(), rel=2e-5, abs=3e-6)


def test_distribution_aware_defaults_and_zero_weights():
    pt, pp = _dists(8, seed=22), _dists(8, seed=23)
    mu_t, sd_t = _moments_reference(pt.astype(np.float64))
    mu_p, sd_p = _moments_reference(pp.astype(np.float64))
    emd2 = _emd_reference(pt.astype(np.float64), pp.astype(np.float64), 2)
    # Documented defaults: r = 2, mean_weight = sd_weight = 0.1.
    want = emd2 + 0.1 * (mu_p - mu_t) ** 2 + 0.1 * (sd_p - sd_t) ** 2
    np.testing.assert_allclose(np.asarray(L.distribution_aware(pt, pp, reduce=False)), want, rtol=2e-5, atol=3e-6)
    for r in (1, 2, 3):
        np.testing.assert_array_equal(
            np.asarray(L.distribution_aware(pt, pp, r=r, mean_weight=0.0, sd_weight=0.0, reduce=False)),
            np.asarray(L.emd_loss(pt, pp, r=r, reduce=False)),
        )
    # Identical distributions: only the documented eps bias of the EMD remains (the sd bias cancels).
    assert float(L.distribution_aware(pt, pt, mean_weight=1.0, sd_weight=1.0)) <= 1.01e-6


def test_distribution_aware_gradients_finite_for_one_hot_and_uniform():
    one_hot = jax.nn.one_hot(jnp.array([0, 4, 9, 6]), 10)
    loss = lambda z, t: L.distribution_aware(t, jax.nn.softmax(z), mean_weight=0.1, sd_weight=0.1)
    g = jax.jit(jax.grad(loss))(jnp.zeros((4, 10)), one_hot)  # one-hot targets, uniform predictions
    assert np.all(np.isfinite(np.asarray(g))) and np.any(np.asarray(g) != 0)
    # Zero-variance (one-hot) predictions, differentiated directly w.r.t. the distribution.
    for target in (one_hot, jnp.asarray(_dists(4, seed=24))):
        g = jax.grad(lambda q, t=target: L.distribution_aware(t, q, sd_weight=1.0))(one_hot)
        assert np.all(np.isfinite(np.asarray(g)))
    # Bias of the sd eps: one-hot sd is sqrt(eps) = 1e-6 instead of 0, same for target and prediction.
    uniform = jnp.full((1, 10), 0.1)
    sd_uniform = np.sqrt(np.average((np.arange(1, 11) - 5.5) ** 2))  # sqrt(8.25)
    got = float(L.distribution_aware(one_hot[:1], uniform, mean_weight=0.0, sd_weight=1.0))
    emd = float(L.emd_loss(one_hot[:1], uniform))
    assert got - emd == pytest.approx(sd_uniform**2, abs=2 * sd_uniform * 1e-6 + 1e-5)


def test_distribution_aware_gradient_matches_finite_differences():
    rng = np.random.default_rng(25)
    with jax.enable_x64(True):
        logits = jnp.asarray(rng.normal(size=(3, 10)), jnp.float64)
        target = jnp.asarray(rng.dirichlet(np.ones(10), size=3), jnp.float64)
        for r in (1, 2, 3):
            f = lambda z, r=r: L.distribution_aware(target, jax.nn.softmax(z), r=r, mean_weight=0.3, sd_weight=0.7)
            assert f(logits).dtype == jnp.float64
            check_grads(f, (logits,), order=2, modes=["rev"], eps=1e-4, atol=1e-6, rtol=1e-6)
        # Directly w.r.t. the distribution (mean and sd terms are smooth in p away from var = 0).
        p = jnp.asarray(rng.dirichlet(np.ones(10), size=3), jnp.float64)
        check_grads(lambda q: L.distribution_aware(target, q, sd_weight=0.5), (p,), order=1, modes=["rev"],
                    eps=1e-6, atol=1e-6, rtol=1e-6)


def test_distribution_aware_validation():
    p = _dists(2)
    with pytest.raises(ValueError, match="shapes differ"):
        L.distribution_aware(p, p[:, :9])
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        L.distribution_aware(p[0], p[0])
    with pytest.raises(ValueError, match="r must be"):
        L.distribution_aware(p, p, r=0.5)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="mean_weight"):
            L.distribution_aware(p, p, mean_weight=bad)
        with pytest.raises(ValueError, match="sd_weight"):
            L.distribution_aware(p, p, sd_weight=bad)


@pytest.mark.parametrize("name", ["emd", "distribution_aware", "mse", "mae", "huber"])
def test_masked_mean_ignores_masked_rows(name):
    fn = L.LOSSES[name]
    real_t, real_p = _dists(3, seed=5), _dists(3, seed=6)
    pad_t = np.full((2, 10), np.nan, np.float32)  # garbage in padded rows
    pad_p = np.full((2, 10), 1e30, np.float32)
    t = np.concatenate([real_t, pad_t])
    p = np.concatenate([real_p, pad_p])
    mask = np.array([1, 1, 1, 0, 0], np.float32)
    masked = float(fn(t, p, weights=mask))
    assert np.isfinite(masked)
    assert masked == pytest.approx(float(fn(real_t, real_p)), rel=1e-6)
    # Boolean masks and non-uniform weights.
    assert float(fn(t, p, weights=mask.astype(bool))) == pytest.approx(masked, rel=1e-6)
    w = np.array([1.0, 2.0, 3.0], np.float32)
    per = np.asarray(fn(real_t, real_p, reduce=False))
    assert float(fn(real_t, real_p, weights=w)) == pytest.approx(float(np.sum(w * per) / np.sum(w)), rel=1e-6)
    # A batch that is all padding contributes 0, not NaN.
    assert float(fn(t, p, weights=np.zeros(5, np.float32))) == 0.0


def test_weights_shape_checked():
    with pytest.raises(ValueError, match="weights"):
        L.mse(np.zeros(4), np.zeros(4), weights=np.ones(3))


def _model_outputs():
    rng = np.random.default_rng(7)
    return (
        {
            "emd": {"distribution": jnp.asarray(_dists(4, seed=8)), "mean": jnp.zeros(4)},
            "scores": {"scores": jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)},
        },
        {
            "distribution": jnp.asarray(_dists(4, seed=9)),
            "scores": jnp.asarray(rng.normal(size=(4, 6)), jnp.float32),
        },
    )


def test_total_loss_weighting():
    outputs, batch = _model_outputs()
    config = {
        "emd": {"type": "emd", "output": "emd.distribution", "target": "distribution", "weight": 1.0, "r": 2},
        "emd1": {"type": "emd", "output": "emd.distribution", "target": "distribution", "weight": 0.25, "r": 1},
        "scores": {"type": "huber", "output": "scores.scores", "target": "scores", "weight": 0.5, "delta": 0.7},
        "scores_mse": {"type": "mse", "output": "scores.scores", "target": "scores"},  # weight defaults to 1
    }
    total, terms = L.total_loss(outputs, batch, config)
    e2 = float(L.emd_loss(batch["distribution"], outputs["emd"]["distribution"], r=2))
    e1 = float(L.emd_loss(batch["distribution"], outputs["emd"]["distribution"], r=1))
    hub = float(L.huber(batch["scores"], outputs["scores"]["scores"], delta=0.7))
    sq = float(L.mse(batch["scores"], outputs["scores"]["scores"]))
    assert list(terms) == ["emd", "emd1", "scores", "scores_mse"]
    assert float(terms["emd"]) == pytest.approx(e2, rel=1e-6)
    assert float(terms["emd1"]) == pytest.approx(0.25 * e1, rel=1e-6)
    assert float(terms["scores"]) == pytest.approx(0.5 * hub, rel=1e-6)
    assert float(terms["scores_mse"]) == pytest.approx(sq, rel=1e-6)
    assert float(total) == pytest.approx(e2 + 0.25 * e1 + 0.5 * hub + sq, rel=1e-6)

    # Jittable with the config closed over, differentiable, and the mask reaches every term.
    mask = jnp.array([1.0, 1.0, 0.0, 0.0])
    step = jax.jit(lambda o, b, m: L.total_loss(o, b, config, mask=m))
    jt, jterms = step(outputs, batch, mask)
    half = {k: {kk: v[:2] for kk, v in d.items()} for k, d in outputs.items()}
    ht, _ = L.total_loss(half, {k: v[:2] for k, v in batch.items()}, config)
    assert float(jt) == pytest.approx(float(ht), rel=1e-5)
    grads = jax.grad(lambda o: L.total_loss(o, batch, config, mask=mask)[0])(outputs)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))


def test_total_loss_distribution_aware_term():
    outputs, batch = _model_outputs()
    config = {
        "dist": {"type": "distribution_aware", "output": "emd.distribution", "target": "distribution",
                 "weight": 2.0, "r": 2, "mean_weight": 0.3, "sd_weight": 0.2},
    }
    total, terms = L.total_loss(outputs, batch, config)
    t64 = np.asarray(batch["distribution"], np.float64)
    p64 = np.asarray(outputs["emd"]["distribution"], np.float64)
    mu_t, sd_t = _moments_reference(t64)
    mu_p, sd_p = _moments_reference(p64)
    want = _emd_reference(t64, p64, 2) + 0.3 * (mu_p - mu_t) ** 2 + 0.2 * (sd_p - sd_t) ** 2
    assert float(terms["dist"]) == pytest.approx(2.0 * want.mean(), rel=2e-5)
    assert float(total) == pytest.approx(float(terms["dist"]))
    mask = jnp.array([1.0, 0.0, 1.0, 0.0])
    masked, _ = jax.jit(lambda o, m: L.total_loss(o, batch, config, mask=m))(outputs, mask)
    assert float(masked) == pytest.approx(2.0 * want[[0, 2]].mean(), rel=2e-5)
    grads = jax.grad(lambda o: L.total_loss(o, batch, config, mask=mask)[0])(outputs)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))
    # Defaults apply when the config names only the required fields.
    minimal = {"dist": {"type": "distribution_aware", "output": "emd.distribution", "target": "distribution"}}
    want_default = _emd_reference(t64, p64, 2) + 0.1 * (mu_p - mu_t) ** 2 + 0.1 * (sd_p - sd_t) ** 2
    assert float(L.total_loss(outputs, batch, minimal)[0]) == pytest.approx(want_default.mean(), rel=2e-5)


def test_total_loss_accepts_config_dict():
    ml_collections = pytest.importorskip("ml_collections")
    outputs, batch = _model_outputs()
    cfg = ml_collections.ConfigDict({"emd": {"type": "emd", "output": "emd.distribution", "target": "distribution"}})
    total, terms = L.total_loss(outputs, batch, cfg)
    assert float(total) == pytest.approx(float(terms["emd"]))


@pytest.mark.parametrize(
    "spec, error, match",
    [
        ({"type": "focal", "output": "emd.distribution", "target": "distribution"}, ValueError, "unknown loss type"),
        ({"type": "emd", "output": "emd.distribution"}, ValueError, "target"),
        ({"type": "emd", "output": "nohead.distribution", "target": "distribution"}, KeyError, "no head"),
        ({"type": "emd", "output": "emd.logits", "target": "distribution"}, KeyError, "no output"),
        ({"type": "emd", "output": "emd", "target": "distribution"}, ValueError, "<head>.<key>"),
        ({"type": "emd", "output": "emd.distribution", "target": "nope"}, KeyError, "no target"),
        ({"type": "mse", "output": "emd.mean", "target": "scores", "delta": 1.0}, ValueError, "takes no option"),
        ({"type": "distribution_aware", "output": "emd.distribution", "target": "distribution", "mean_wt": 0.1},
         ValueError, "takes no option"),
        ({"type": "distribution_aware", "output": "emd.distribution", "target": "distribution", "weights": [1.0]},
         ValueError, "takes no option"),
        ({"type": "distribution_aware", "output": "emd.distribution", "target": "distribution", "sd_weight": -1.0},
         ValueError, "sd_weight"),
    ],
)
def test_total_loss_errors(spec, error, match):
    outputs, batch = _model_outputs()
    with pytest.raises(error, match=match):
        L.total_loss(outputs, batch, {"term": spec})
