"""InceptionV3 backbone (aesthetics_jax.models.inception): structure, names, layouts, tiny variant.

Numerical parity with Keras lives in test_convert_keras.py (and with torchvision in
test_convert_torchvision.py), which load reference weights through the converters; here the
checks need no reference framework: parameter counts against Keras' published summary of
`InceptionV3(include_top=False)` (21,768,352 trainable + 34,432 non-trainable), the Keras layer
ordering, pooling and input-transform semantics against hand values.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from aesthetics_jax import models
from aesthetics_jax.models import inception, preprocessing


def _shapes(size=75, **kw):
    backbone = models.create_backbone("inception", **kw)
    return jax.eval_shape(backbone.init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)))


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_full_model_matches_keras_parameter_counts_and_names():
    shapes = _shapes()
    params, stats = shapes["params"], shapes["batch_stats"]
    assert _count(params) == 21_768_352 and _count(stats) == 34_432  # Keras model.summary()
    assert sorted(params) == sorted([inception.keras_conv_name(i) for i in range(94)]
                                    + [inception.keras_bn_name(i) for i in range(94)])
    assert params["conv2d"]["kernel"].shape == (3, 3, 3, 32)
    assert params["conv2d_93"]["kernel"].shape == (1, 1, 2048, 192)  # mixed10 pool branch
    assert set(params["batch_normalization"]) == {"bias"}  # Keras: center only, no gamma
    assert "bias" not in params["conv2d"]  # convs have no bias


def test_torchvision_layout_has_gamma():
    shapes = _shapes(layout="torchvision")
    assert set(shapes["params"]["batch_normalization_7"]) == {"scale", "bias"}
    assert _count(shapes["params"]) == 21_768_352 + 17_216  # + one gamma per BN channel


def test_feature_map_shapes():
    backbone = models.create_backbone("inception")
    out = jax.eval_shape(lambda x: backbone.init_with_output(jax.random.PRNGKey(0), x)[0], jnp.zeros((2, 299, 299, 3)))
    assert out["feature_map"].shape == (2, 8, 8, 2048) and out["pooled"].shape == (2, 2048)
    assert out["pooled"].dtype == jnp.float32
    tiny = models.create_backbone("inception", num_mixed=3)
    out = jax.eval_shape(lambda x: tiny.init_with_output(jax.random.PRNGKey(0), x)[0], jnp.zeros((1, 299, 299, 3)))
    assert out["feature_map"].shape == (1, 35, 35, 288)  # mixed2
    stem = models.create_backbone("inception", num_mixed=0)
    out = jax.eval_shape(lambda x: stem.init_with_output(jax.random.PRNGKey(0), x)[0], jnp.zeros((1, 299, 299, 3)))
    assert out["feature_map"].shape == (1, 35, 35, 192)


def test_keras_layer_order_and_torchvision_names():
    conv, bn = inception.keras_layer_order()
    assert conv == bn and sorted(conv) == list(range(94))
    # Keras lists mixed0's branches by depth: 5x5 and 3x3dbl first convs before the 1x1 branch.
    assert conv[:10] == [0, 1, 2, 3, 4, 8, 6, 9, 5, 7]
    names = inception.torchvision_conv_names()
    assert len(names) == 94 and names[:3] == ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"]
    assert names[5:12] == ["Mixed_5b.branch1x1", "Mixed_5b.branch5x5_1", "Mixed_5b.branch5x5_2", "Mixed_5b.branch3x3dbl_1",
                           "Mixed_5b.branch3x3dbl_2", "Mixed_5b.branch3x3dbl_3", "Mixed_5b.branch_pool"]
    assert names[-1] == "Mixed_7c.branch_pool" and len(inception.torchvision_conv_names(1)) == 12
    assert inception.Inception(num_mixed=3).keras_module_order()[:6] == [
        "conv2d", "conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4", "conv2d_8"]


class _Pool(inception.Inception):
    def __call__(self, x):
        return inception._FlaxOps(self, False).avg_pool(x)


def test_average_pooling_semantics():
    x = jnp.ones((1, 4, 4, 1))
    keras_pool = np.asarray(_Pool(layout="keras").apply({}, x))[0, :, :, 0]
    np.testing.assert_allclose(keras_pool, np.ones((4, 4)), rtol=1e-6)  # padding excluded
    torch_pool = np.asarray(_Pool(layout="torchvision").apply({}, x))[0, :, :, 0]
    expected = np.array([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]]) / 9  # count_include_pad
    np.testing.assert_allclose(torch_pool, expected, rtol=1e-6)


def test_transform_input_maps_imagenet_normalisation_to_minus_one_one():
    raw = np.random.RandomState(0).uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    x = inception.transform_input(preprocessing.normalize(raw, "torch"))
    np.testing.assert_allclose(np.asarray(x), raw / 127.5 - 1.0, atol=2e-6)


@pytest.fixture(scope="module")
def tiny():
    """Stem + mixed0 (12 conv/BN pairs), initialised once for the tests below."""
    model = models.create("inception", heads={"emd": {"type": "emd"}}, num_mixed=1, dropout=0.5)
    images = jnp.asarray(np.random.RandomState(1).uniform(0, 255, (2, 75, 75, 3)), jnp.float32)
    rng = jax.random.key(0, impl="rbg")  # rbg: XLA compiles threefry initialisers far slower on CPU
    variables = jax.jit(lambda r, x: model.init({"params": r, "dropout": r}, x))(rng, images)
    eval_out = jax.jit(lambda v, x: model.apply(v, x, return_features=True))(variables, images)
    return model, variables, images, eval_out


def test_tiny_variant_trains_and_runs_bf16(tiny):
    model, variables, images, ref = tiny
    rng = jax.random.key(1, impl="rbg")

    @jax.jit
    def grad_step(params, batch_stats):
        def loss(params):
            out, state = model.apply({"params": params, "batch_stats": batch_stats}, images, train=True,
                                     rngs={"dropout": rng}, mutable=["batch_stats"])
            return jnp.mean(out["emd"]["mean"]), state

        return jax.value_and_grad(loss, has_aux=True)(params)

    (value, state), grads = grad_step(variables["params"], variables["batch_stats"])
    flat = traverse_util.flatten_dict(grads, sep="/")
    assert np.isfinite(float(value)) and all(np.isfinite(np.asarray(g)).all() for g in flat.values())
    assert float(jnp.abs(flat["backbone/conv2d/kernel"]).sum()) > 0
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), state["batch_stats"], variables["batch_stats"])
    assert max(jax.tree.leaves(moved)) > 0  # BN moving statistics updated in train mode
    bf16 = models.create("inception", heads={"emd": {"type": "emd"}}, num_mixed=1, dropout=0.5, dtype="bfloat16")
    out = jax.jit(lambda v, x: bf16.apply(v, x, return_features=True))(variables, images)
    assert out["features"]["feature_map"].shape == (2, 7, 7, 256) and out["emd"]["distribution"].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out["emd"]["distribution"]), np.asarray(ref["emd"]["distribution"]), atol=0.05)
    assert float(jnp.abs(out["features"]["feature_map"] - ref["features"]["feature_map"]).max()) > 0  # really bf16


def test_grad_cam_target_is_last_mixed_block(tiny):
    # heads_from_feature_map(feature_map) reproduces the forward pass: the last mixed block's output
    # is the differentiable input of the heads (what Grad-CAM needs), with a non-zero gradient.
    model, variables, images, ref = tiny

    @jax.jit
    def heads_and_grad(fmap):
        out = model.apply(variables, fmap, method=model.heads_from_feature_map)
        grad = jax.grad(lambda f: model.apply(variables, f, method=model.heads_from_feature_map)["emd"]["mean"].sum())(fmap)
        return out, grad

    fmap = ref["features"]["feature_map"]
    assert fmap.shape == (2, 7, 7, 256)  # mixed0 of a 75 px image
    out, grad = heads_and_grad(fmap)
    np.testing.assert_allclose(np.asarray(out["emd"]["mean"]), np.asarray(ref["emd"]["mean"]), rtol=1e-6)
    assert float(jnp.abs(grad).max()) > 0


def test_errors():
    with pytest.raises(ValueError, match="at least 75x75"):
        _shapes(size=64)
    with pytest.raises(ValueError, match="layout must be one of"):
        _shapes(layout="tf")
    with pytest.raises(ValueError, match="num_mixed must be in 0..11"):
        _shapes(num_mixed=12)
