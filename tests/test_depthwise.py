"""DepthwiseConv equals flax's grouped nn.Conv (same params) for every impl, padding and stride."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aesthetics_jax.models.depthwise import DepthwiseConv


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
