"""PointwiseConv equals flax's 1x1 nn.Conv (same params, values and gradients) for every impl."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aesthetics_jax.models.pointwise import PointwiseConv


@pytest.mark.parametrize("impl", ["dot", "conv", "auto"])
def test_matches_nn_conv(impl):
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


def test_bfloat16_and_bad_impl():
    x = jnp.ones((1, 2, 2, 3))
    variables = PointwiseConv(5, dtype=jnp.bfloat16).init(jax.random.key(0), x)
    assert variables["params"]["kernel"].dtype == jnp.float32
    assert PointwiseConv(5, dtype=jnp.bfloat16).apply(variables, x).dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="impl must be one of"):
        PointwiseConv(5, impl="gemm").init(jax.random.key(0), x)
