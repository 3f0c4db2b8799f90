"""aesthetics_jax.losses: formulas, gradients, masking and the config-weighted total."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

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


@pytest.mark.parametrize("name", ["emd", "mse", "mae", "huber"])
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
    ],
)
def test_total_loss_errors(spec, error, match):
    outputs, batch = _model_outputs()
    with pytest.raises(error, match=match):
        L.total_loss(outputs, batch, {"term": spec})
