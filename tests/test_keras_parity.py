"""Keras weight conversion (aesthetics_jax.convert.keras) and numerical parity with Keras.

The converter tests need no Keras. The parity tests (marked slow) build
`keras.applications.MobileNet` / `MobileNetV2` with random weights (and randomised BatchNorm
statistics) under KERAS_BACKEND=jax, load them into the Flax backbones by layer name, and compare
pooled features on raw pixels (Keras gets `preprocess_input(x)`, ours normalises itself), in
inference and in training mode (batch statistics and the moving-average update). They are skipped
when keras is not installed (`pip install keras==3.15.1`).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from aesthetics_jax import models
from aesthetics_jax.convert import keras as keras_convert

os.environ.setdefault("KERAS_BACKEND", "jax")  # also set in conftest; Keras must never pick TF


def _key(seed=0):
    return jax.random.key(seed, impl="rbg")


def _fake_keras_weights(shapes, rs):
    """Keras-layout weights {layer: [...]} for a Flax backbone's abstract variables."""
    params, stats = shapes["params"], shapes["batch_stats"]
    named = {}
    for layer, p in params.items():
        if layer in stats:  # BatchNorm: gamma, beta, moving_mean, moving_variance
            c = p["scale"].shape
            named[layer] = [rs.uniform(0.5, 1.5, c), rs.normal(size=c), rs.normal(size=c), rs.uniform(0.5, 1.5, c)]
        else:
            kh, kw, cin, cout = p["kernel"].shape
            shape = (kh, kw, cout, 1) if cin == 1 and cout > 1 else (kh, kw, cin, cout)  # DepthwiseConv2D layout
            named[layer] = [rs.normal(size=shape).astype(np.float32)]
    return named


@pytest.fixture(scope="module")
def tiny_v2():
    backbone = models.create_backbone("mobilenet_v2", width=0.35, num_blocks=3)
    shapes = jax.eval_shape(backbone.init, _key(0), jnp.zeros((1, 32, 32, 3)))
    return backbone, shapes, _fake_keras_weights(shapes, np.random.RandomState(0))


def test_converter_places_weights_by_name(tiny_v2):
    _, shapes, named = tiny_v2
    params, stats = keras_convert.keras_layers_to_params(named, shapes["params"], shapes["batch_stats"], prefix="")
    dw = named["block_1_depthwise"][0]  # Keras [3, 3, C, 1]
    np.testing.assert_array_equal(params["block_1_depthwise"]["kernel"], dw.reshape(3, 3, 1, -1))
    np.testing.assert_array_equal(params["block_1_expand"]["kernel"], named["block_1_expand"][0])
    gamma, beta, mean, var = named["bn_Conv1"]
    np.testing.assert_array_equal(params["bn_Conv1"]["scale"], gamma.astype(np.float32))
    np.testing.assert_array_equal(params["bn_Conv1"]["bias"], beta.astype(np.float32))
    np.testing.assert_array_equal(stats["bn_Conv1"]["mean"], mean.astype(np.float32))
    np.testing.assert_array_equal(stats["bn_Conv1"]["var"], var.astype(np.float32))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves((params, stats)))
    assert jax.tree.structure(params) == jax.tree.structure(shapes["params"])


def test_converter_is_strict(tiny_v2):
    _, shapes, named = tiny_v2
    load = lambda named, **kw: keras_convert.keras_layers_to_params(  # noqa: E731
        named, shapes["params"], shapes["batch_stats"], prefix="", **kw)
    with pytest.raises(ValueError, match="no Keras layer 'Conv_1'"):
        load({k: v for k, v in named.items() if k != "Conv_1"})
    with pytest.raises(ValueError, match=r"left unused: \['predictions'\]"):
        load({**named, "predictions": [np.zeros((1280, 1000)), np.zeros(1000)]})
    load({**named, "predictions": [np.zeros((1280, 1000)), np.zeros(1000)]}, skip=["predictions"])
    with pytest.raises(ValueError, match="does not fit Keras layer 'bn_Conv1' with 2 weights"):
        load({**named, "bn_Conv1": named["bn_Conv1"][:2]})
    with pytest.raises(ValueError, match="does not fit Flax shape"):
        load({**named, "Conv1": [np.zeros((3, 3, 3, 17))]})


def test_converter_prefix_and_rename():
    """A Keras NIMA-style top: Flax `emd/dense` <- Keras layer 'dense_1' (rename); rest untouched."""
    model = models.create("mobilenet", heads={"emd": {"type": "emd"}}, width=0.25, num_blocks=1)
    shapes = jax.eval_shape(model.init, _key(0), jnp.zeros((1, 32, 32, 3)))
    kernel, bias = np.ones((16, 10), np.float32), np.arange(10, dtype=np.float32)
    params, stats = keras_convert.keras_layers_to_params(
        {"dense_1": [kernel, bias]}, shapes["params"], shapes["batch_stats"], prefix="emd", rename={"dense": "dense_1"})
    np.testing.assert_array_equal(params["emd"]["dense"]["bias"], bias)
    assert params["backbone"] is not None and isinstance(params["backbone"]["conv1"]["kernel"], jax.ShapeDtypeStruct)
    assert stats == traverse_util.unflatten_dict(traverse_util.flatten_dict(shapes["batch_stats"]))


# ----------------------------------------------------------------------------- Keras parity (slow)

CASES = [
    ("mobilenet", "MobileNet", 0.25, 128),
    ("mobilenet", "MobileNet", 0.25, 97),  # odd sizes: ZeroPadding2D ((0, 1), (0, 1)) drops a row
    ("mobilenet_v2", "MobileNetV2", 0.35, 128),
    ("mobilenet_v2", "MobileNetV2", 0.35, 97),  # odd sizes: correct_pad ((1, 1), (1, 1))
]


@pytest.mark.slow
@pytest.mark.parametrize("name, keras_name, width, size", CASES)
def test_keras_parity(name, keras_name, width, size):
    keras = pytest.importorskip("keras")
    assert keras.backend.backend() == "jax"
    rs = np.random.RandomState(size)
    keras_model = getattr(keras.applications, keras_name)(
        alpha=width, include_top=False, weights=None, pooling="avg", input_shape=(size, size, 3))
    for layer in keras_model.layers:  # non-trivial BatchNorm statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.get_weights()[0].shape
            layer.set_weights([rs.uniform(0.5, 1.5, c), rs.normal(0, 0.2, c), rs.normal(0, 0.2, c), rs.uniform(0.5, 1.5, c)])
    named = keras_convert.keras_model_weights(keras_model)

    # The full model (preprocess 'keras_tf', raw pixels in); its backbone weights come from Keras.
    model = models.create(name, heads={"emd": {"type": "emd"}}, width=width)
    shapes = jax.eval_shape(model.init, _key(0), jnp.zeros((1, size, size, 3)))
    params, stats = keras_convert.keras_layers_to_params(named, shapes["params"], shapes["batch_stats"])
    variables = {"params": {"backbone": params["backbone"]}, "batch_stats": stats}  # heads unused by `features`

    pixels = rs.randint(0, 256, (2, size, size, 3)).astype(np.float32)
    keras_input = keras.applications.imagenet_utils.preprocess_input(pixels.copy(), mode="tf")

    # Inference, and training mode (batch statistics, then the moving-average update with momentum
    # 0.99 / 0.999), each side in one jitted call (Keras' eager op-by-op calls are far slower). The
    # odd-size cases are about padding and check inference only, to keep the test time down.
    with_train = size % 2 == 0

    @jax.jit
    def ours(variables, x):
        features = lambda train: model.apply(variables, x, train=train, method="features", mutable=["batch_stats"])  # noqa: E731
        return features(False)[0]["pooled"], features(True) if with_train else None

    @jax.jit
    def theirs(trainable, non_trainable, x):
        call = lambda train: keras_model.stateless_call(trainable, non_trainable, x, training=train)  # noqa: E731
        return call(False)[0], call(True) if with_train else None

    pooled, train_out = ours(variables, pixels.astype(np.uint8))
    expected, expected_train = theirs([w.value for w in keras_model.trainable_variables],
                                      [w.value for w in keras_model.non_trainable_variables], keras_input)
    assert pooled.shape == expected.shape
    assert np.abs(expected).max() > 0.05
    np.testing.assert_allclose(pooled, expected, rtol=0, atol=1e-4)
    if not with_train:
        return
    (train_features, state), (expected_pooled, moving) = train_out, expected_train
    np.testing.assert_allclose(train_features["pooled"], expected_pooled, rtol=0, atol=1e-4)
    moving = {w.path: np.asarray(value) for w, value in zip(keras_model.non_trainable_variables, moving)}
    for layer, stat in state["batch_stats"]["backbone"].items():
        np.testing.assert_allclose(stat["mean"], moving[f"{layer}/moving_mean"], rtol=0, atol=1e-5, err_msg=layer)
        np.testing.assert_allclose(stat["var"], moving[f"{layer}/moving_variance"], rtol=1e-5, atol=1e-5, err_msg=layer)
