"""DepthwiseConv / PointwiseConv equal flax's nn.Conv (same params, values, gradients) for every impl."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aesthetics_jax.models.conv import DepthwiseConv, PointwiseConv


@pytest.mark.parametrize("size,stride,padding,mult", [
    (9, 1, "SAME", 1), (10, 2, "SAME", 1), (11, 2, "SAME", 2), (10, 2, ((0, 1), (0, 1)), 1),
    (11, 2, ((1, 1), (1, 1)), 1), (8, 1, "VALID", 3), (7, 3, "SAME", 1)
])
def test_matches_grouped_nn_conv(size, stride, padding, mult):
    impl = "shifted"
    channels = 5
    x = jax.random.normal(jax.random.key(0), (2, size, size + 1, channels))
    ref = nn.Conv(channels * mult, (3, 3), strides=(stride, stride), padding=padding,
                  feature_group_count=channels, use_bias=False, kernel_init=nn.initializers.glorot_uniform())
    ours = DepthwiseConv(channels * mult, (3, 3), strides=(stride, stride), padding=padding, impl=impl)
    params = ref.init(jax.random.key(1), x)
    # Same parameter tree and the same initial values from the same key.
    mine = ours.init(jax.random.key(1), x)
    assert jax.tree.map(jnp.shape, mine) == jax.tree.map(jnp.shape, params)
    np.testing.assert_array_equal(mine["params"]["kernel"], params["params"]["kernel"])
    want = ref.apply(params, x)
    got = ours.apply(params, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    # Gradients w.r.t. input and kernel agree too (training uses the shifted form on CPU).
    loss = lambda m, p, x: jnp.sum(jnp.sin(m.apply(p, x)))
    g_ref = jax.grad(lambda p, x: loss(ref, p, x), argnums=(0, 1))(params, x)
    g_our = jax.grad(lambda p, x: loss(ours, p, x), argnums=(0, 1))(params, x)
    for a, b in zip(jax.tree.leaves(g_our), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("impl", ["conv", "auto"])
def test_other_impls_match(impl):
    x = jax.random.normal(jax.random.key(0), (2, 10, 10, 6))
    ref = nn.Conv(6, (3, 3), strides=(2, 2), padding=((0, 1), (0, 1)), feature_group_count=6, use_bias=False)
    params = ref.init(jax.random.key(1), x)
    got = DepthwiseConv(6, strides=(2, 2), padding=((0, 1), (0, 1)), impl=impl).apply(params, x)
    np.testing.assert_allclose(got, ref.apply(params, x), atol=1e-5, rtol=1e-5)


def test_bfloat16_compute_keeps_float32_params():
    x = jnp.ones((1, 6, 6, 4))
    module = DepthwiseConv(4, dtype=jnp.bfloat16, impl="shifted")
    variables = module.init(jax.random.key(0), x)
    assert variables["params"]["kernel"].dtype == jnp.float32
    assert module.apply(variables, x).dtype == jnp.bfloat16


def test_rejects_unknown_impl():
    with pytest.raises(ValueError, match="impl must be one of"):
        DepthwiseConv(4, impl="fast").init(jax.random.key(0), jnp.ones((1, 6, 6, 4)))


@pytest.mark.parametrize("impl", ["dot", "conv", "auto"])
def test_pointwise_matches_nn_conv(impl):
    x = jax.random.normal(jax.random.key(0), (3, 5, 7, 6))
    ref = nn.Conv(4, (1, 1), use_bias=False, kernel_init=nn.initializers.glorot_uniform())
    ours = PointwiseConv(4, impl=impl)
    params = ref.init(jax.random.key(1), x)
    mine = ours.init(jax.random.key(1), x)
    np.testing.assert_array_equal(mine["params"]["kernel"], params["params"]["kernel"])  # same init, same tree
    np.testing.assert_allclose(ours.apply(params, x), ref.apply(params, x), atol=1e-5, rtol=1e-5)
    loss = lambda m, p, x: jnp.sum(jnp.tanh(m.apply(p, x)))
    g_ref = jax.grad(lambda p, x: loss(ref, p, x), argnums=(0, 1))(params, x)
    g_our = jax.grad(lambda p, x: loss(ours, p, x), argnums=(0, 1))(params, x)
    for a, b in zip(jax.tree.leaves(g_our), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_pointwise_bfloat16_and_bad_impl():
    x = jnp.ones((1, 2, 2, 3))
    variables = PointwiseConv(5, dtype=jnp.bfloat16).init(jax.random.key(0), x)
    assert variables["params"]["kernel"].dtype == jnp.float32
    assert PointwiseConv(5, dtype=jnp.bfloat16).apply(variables, x).dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="impl must be one of"):
        PointwiseConv(5, impl="gemm").init(jax.random.key(0), x)


def test_auto_picks_the_cpu_forms_on_cpu():
    """On the CPU backend 'auto' traces to the shifted / GEMM forms, 'conv' to XLA's convolution."""
    assert jax.default_backend() == "cpu"
    x = jnp.ones((1, 6, 6, 4))
    for layer, cpu_primitive in ((DepthwiseConv(4, impl="auto"), "pad"), (PointwiseConv(3, impl="auto"), "dot_general")):
        variables = layer.init(jax.random.key(0), x)
        auto = str(jax.make_jaxpr(layer.apply)(variables, x))
        assert "conv_general_dilated" not in auto and cpu_primitive in auto
        forced = str(jax.make_jaxpr(layer.clone(impl="conv").apply)(variables, x))
        assert "conv_general_dilated" in forced
