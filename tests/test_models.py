"""Tests for aesthetics_jax.models: registry, backbones, heads, composed model (no Keras needed)."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from aesthetics_jax import models
from aesthetics_jax.models import mobilenet_v2, preprocessing

HEADS = {
    "emd": {"type": "emd", "num_bins": 10},
    "scores": {"type": "scores", "names": ["aesthetic", "quality"]},
    "attributes": {"type": "attributes", "names": ["Light", "ColorHarmony", "RuleOfThirds"], "hidden": 8},
}
B, SIZE = 2, 32


def _key(seed=0):
    # rbg keys: XLA compiles threefry-based initialisers/dropout several times slower on CPU.
    return jax.random.key(seed, impl="rbg")


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _images(seed=0, batch=B, size=SIZE):
    return np.random.RandomState(seed).randint(0, 256, (batch, size, size, 3)).astype(np.uint8)


def _tiny_model(**kwargs):
    """Tiny MobileNet v1 (blocks 1-2, width 0.25: still has a stride-2 padded block), 3 heads."""
    return models.create("mobilenet", heads=HEADS, dropout=0.5, width=0.25, num_blocks=2, **kwargs)


@pytest.fixture(scope="module")
def tiny():
    model = _tiny_model()
    variables = jax.jit(lambda rng, x: model.init({"params": rng, "dropout": rng}, x))(_key(0), _images())
    return model, variables


@pytest.fixture(scope="module")
def tiny_eval(tiny):
    """Jitted eval forward pass, batch_stats mutable so tests can check they do not change."""
    model, _ = tiny
    return jax.jit(lambda v, x: model.apply(v, x, return_features=True, mutable=["batch_stats"]))


@pytest.fixture(scope="module")
def tiny_out(tiny, tiny_eval):
    out, _ = tiny_eval(tiny[1], _images())
    return out


@pytest.fixture(scope="module")
def tiny_train(tiny):
    """Jitted (loss, (outputs, new_state)), grads of a training forward pass."""
    model, _ = tiny

    def loss(params, batch_stats, x, rng):
        out, state = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                 rngs={"dropout": rng}, mutable=["batch_stats"])
        value = out["emd"]["mean"].sum() + out["scores"]["scores"].sum() + out["attributes"]["overall"].sum()
        return value, (out, state)

    return jax.jit(jax.value_and_grad(loss, has_aux=True))


# ----------------------------------------------------------------------------- registry / config


def test_unknown_model_lists_known_names():
    with pytest.raises(ValueError, match=r"Unknown model 'resnet'.*mobilenet, mobilenet_v2"):
        models.create("resnet", heads=HEADS)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(heads=HEADS, alpha=0.5), r"unknown backbone options \['alpha'\]"),
        (dict(heads={"x": {"type": "softmax"}}), r"unknown type 'softmax'"),
        (dict(heads={"x": {"type": "emd", "bins": 5}}), r"unknown options \['bins'\]"),
        (dict(heads={"backbone": {"type": "emd"}}), r"reserved"),
        (dict(heads={"a/b": {"type": "emd"}}), r"must match"),
        (dict(heads={}), r"at least one head"),
        (dict(heads=HEADS, preprocess="caffe"), r"Unknown preprocess preset 'caffe'"),
        (dict(heads=HEADS, dropout=1.0), r"dropout"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.create("mobilenet", **kwargs)


def test_defaults_and_hashable():
    model = models.create("mobilenet_v2", heads={"emd": {"type": "emd"}})
    assert model.preprocess == "keras_tf" and model.dropout == 0.0 and model.dtype == jnp.float32
    assert models.default_preprocess("mobilenet") == "keras_tf"
    assert isinstance(model, nn.Module)
    # Head configs are frozen to tuples: a ConfigDict/list config gives a hashable module.
    hash(models.create("mobilenet", heads={"s": {"type": "scores", "names": ["a", "b"]}}))


# ----------------------------------------------------------------------------- parameter counts / names


@pytest.mark.parametrize(
    "name, width, trainable, non_trainable",
    [
        # Keras 3.15 keras.applications.*(include_top=False, weights=None, input_shape=(224, 224, 3)):
        # trainable / non-trainable (moving mean & variance) weight counts.
        ("mobilenet", 1.0, 3_206_976, 21_888),  # total 3,228,864
        ("mobilenet", 0.25, 213_072, 5_472),  # total 218,544
        ("mobilenet_v2", 1.0, 2_223_872, 34_112),  # total 2,257,984
        ("mobilenet_v2", 0.35, 396_128, 14_080),  # total 410,208
        ("mobilenet_v2", 1.4, 4_315_776, 47_936),  # total 4,363,712
    ],
)
def test_parameter_counts_match_keras(name, width, trainable, non_trainable):
    backbone = models.create_backbone(name, width=width)
    shapes = jax.eval_shape(backbone.init, _key(0), jnp.zeros((1, 224, 224, 3)))
    assert _count(shapes["params"]) == trainable
    assert _count(shapes["batch_stats"]) == non_trainable
    out = jax.eval_shape(backbone.apply, shapes, jnp.zeros((1, 224, 224, 3)))
    assert out["feature_map"].shape[1:3] == (7, 7)


def test_mobilenet_layer_names():
    shapes = jax.eval_shape(models.create_backbone("mobilenet").init, _key(0), jnp.zeros((1, 64, 64, 3)))
    expected = {"conv1", "conv1_bn"}
    for i in range(1, 14):
        expected |= {f"conv_dw_{i}", f"conv_dw_{i}_bn", f"conv_pw_{i}", f"conv_pw_{i}_bn"}
    assert set(shapes["params"]) == expected
    assert set(shapes["batch_stats"]) == {n for n in expected if n.endswith("_bn")}
    assert set(shapes["params"]["conv1"]) == {"kernel"}  # no bias
    assert set(shapes["params"]["conv1_bn"]) == {"scale", "bias"}
    assert set(shapes["batch_stats"]["conv1_bn"]) == {"mean", "var"}
    assert shapes["params"]["conv_dw_2"]["kernel"].shape == (3, 3, 1, 64)  # depthwise: grouped conv
    assert shapes["params"]["conv_pw_13"]["kernel"].shape == (1, 1, 1024, 1024)


def test_mobilenet_v2_layer_names():
    shapes = jax.eval_shape(models.create_backbone("mobilenet_v2").init, _key(0), jnp.zeros((1, 64, 64, 3)))
    expected = {"Conv1", "bn_Conv1", "Conv_1", "Conv_1_bn"}
    expected |= {f"expanded_conv_{s}" for s in ("depthwise", "depthwise_BN", "project", "project_BN")}
    for i in range(1, 17):
        expected |= {f"block_{i}_{s}" for s in ("expand", "expand_BN", "depthwise", "depthwise_BN", "project", "project_BN")}
    assert set(shapes["params"]) == expected
    assert shapes["params"]["block_16_project"]["kernel"].shape == (1, 1, 960, 320)


def test_make_divisible_and_correct_pad():
    assert [mobilenet_v2._make_divisible(32 * a, 8) for a in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)] == [16, 16, 24, 32, 40, 48]
    assert mobilenet_v2._make_divisible(1280 * 1.4, 8) == 1792
    assert mobilenet_v2._correct_pad((8, 7)) == ((0, 1), (1, 1))


@pytest.mark.parametrize("name, size, expected", [("mobilenet", 33, 1), ("mobilenet_v2", 33, 2), ("mobilenet", 225, 7), ("mobilenet_v2", 225, 8)])
def test_odd_input_sizes(name, size, expected):
    # Keras pads stride-2 convs by ((0, 1), (0, 1)) (v1) or correct_pad (v2: ((1, 1), (1, 1)) when odd).
    backbone = models.create_backbone(name)
    shapes = jax.eval_shape(backbone.init, _key(0), jnp.zeros((1, size, size, 3)))
    out = jax.eval_shape(backbone.apply, shapes, jnp.zeros((1, size, size, 3)))
    assert out["feature_map"].shape[1:3] == (expected, expected)


def test_parameter_paths_for_freezing(tiny):
    _, variables = tiny
    assert set(variables) == {"params", "batch_stats"}
    assert set(variables["params"]) == {"backbone", "emd", "scores", "attributes"}
    assert set(variables["batch_stats"]) == {"backbone"}
    paths = set(traverse_util.flatten_dict(variables["params"], sep="/"))
    assert {"backbone/conv1/kernel", "backbone/conv_pw_2_bn/scale", "emd/dense/kernel", "emd/dense/bias",
            "scores/dense/kernel", "attributes/expert_Light/hidden/kernel", "attributes/expert_Light/out/bias",
            "attributes/fusion/kernel"} <= paths
    frozen = {p for p in paths if re.match(r"^backbone/conv_(dw|pw)_2", p)}
    assert frozen == {f"backbone/conv_{k}_2{bn}/{leaf}" for k in ("dw", "pw")
                      for bn, leafs in (("", ("kernel",)), ("_bn", ("scale", "bias"))) for leaf in leafs}
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))


# ----------------------------------------------------------------------------- outputs and heads


def test_output_structure_shapes_dtypes(tiny_out):
    out = tiny_out
    assert set(out) == {"emd", "scores", "attributes", "features"}
    assert set(out["emd"]) == {"logits", "distribution", "mean", "sd"}
    assert out["emd"]["distribution"].shape == (B, 10) and out["emd"]["mean"].shape == (B,)
    assert out["scores"]["scores"].shape == (B, 2)
    assert out["attributes"]["attributes"].shape == (B, 3) and out["attributes"]["overall"].shape == (B,)
    assert out["features"]["feature_map"].shape == (B, 8, 8, 32)  # 32 px / 4 after 2 blocks
    assert out["features"]["pooled"].shape == (B, 32)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(out))
    np.testing.assert_allclose(out["features"]["pooled"], out["features"]["feature_map"].mean((1, 2)), rtol=1e-5, atol=1e-6)


def test_emd_head_semantics(tiny_out):
    emd = jax.tree.map(np.asarray, tiny_out["emd"])
    p = emd["distribution"].astype(np.float64)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p, np.exp(emd["logits"]) / np.exp(emd["logits"]).sum(-1, keepdims=True), rtol=1e-5)
    bins = np.arange(1, 11)
    mean = (p * bins).sum(-1)
    np.testing.assert_allclose(emd["mean"], mean, rtol=1e-5)
    np.testing.assert_allclose(emd["sd"], np.sqrt((p * (bins - mean[:, None]) ** 2).sum(-1)), rtol=1e-5)


def test_heads_on_given_features():
    x = jax.random.normal(_key(1), (3, 5))
    emd = models.heads.EmdHead(num_bins=5)
    out = jax.jit(lambda x: emd.apply(emd.init(_key(0), x), x))(x)
    assert out["distribution"].shape == (3, 5) and bool(jnp.all((out["mean"] >= 1) & (out["mean"] <= 5)))
    att = models.heads.AttributesHead(names=("a", "b"), hidden=4)
    v, out = jax.jit(lambda x: (lambda v: (v, att.apply(v, x)))(att.init(_key(0), x)))(x)
    # overall = fusion(concat(attributes, features)): an explicit learned combination.
    k, b = v["params"]["fusion"]["kernel"], v["params"]["fusion"]["bias"]
    np.testing.assert_allclose(out["overall"], (jnp.concatenate([out["attributes"], x], -1) @ k + b)[:, 0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="num_outputs"):
        models.heads.ScoresHead().init(_key(0), x)
    with pytest.raises(ValueError, match="names for num_outputs"):
        models.heads.ScoresHead(num_outputs=3, names=("a",)).init(_key(0), x)


def test_grad_cam_path_matches_forward(tiny, tiny_out):
    model, variables = tiny
    fmap = tiny_out["features"]["feature_map"]
    heads = lambda f: model.apply(variables, f, method="heads_from_feature_map")["emd"]["mean"]  # noqa: E731
    mean, vjp = jax.jit(lambda f: jax.vjp(heads, f))(fmap)
    np.testing.assert_allclose(mean, tiny_out["emd"]["mean"], rtol=1e-5)
    (grad,) = vjp(jnp.ones_like(mean))
    assert grad.shape == fmap.shape and bool(jnp.any(grad != 0))


# ----------------------------------------------------------------------------- train / eval modes


def test_train_vs_eval(tiny, tiny_eval, tiny_out, tiny_train):
    """The contract: apply(train=True, rngs={'dropout'}, mutable=['batch_stats']) -> (outputs, state)."""
    model, variables = tiny
    x = _images()
    (_, (out1, state1)), grads = tiny_train(variables["params"], variables["batch_stats"], x, _key(1))
    (_, (out2, state2)), _ = tiny_train(variables["params"], variables["batch_stats"], x, _key(2))
    # Dropout is active in training: different rngs, different outputs; BatchNorm statistics move.
    assert not np.allclose(out1["emd"]["logits"], out2["emd"]["logits"])
    assert set(state1) == {"batch_stats"}
    old = traverse_util.flatten_dict(variables["batch_stats"])
    new = traverse_util.flatten_dict(state1["batch_stats"])
    assert all(not np.allclose(old[k], new[k]) for k in old)
    jax.tree.map(np.testing.assert_array_equal, state1, state2)  # stats do not depend on dropout
    # Eval: deterministic, no rng needed, and batch_stats never change.
    out, state = tiny_eval(variables, x)
    jax.tree.map(np.testing.assert_array_equal, tiny_out, out)
    jax.tree.map(np.testing.assert_array_equal, state["batch_stats"], variables["batch_stats"])
    with pytest.raises(Exception, match="dropout"):  # training with dropout needs the 'dropout' rng
        jax.eval_shape(lambda v: model.apply(v, x, train=True, mutable=["batch_stats"]), variables)
    # Gradients reach every parameter and are finite.
    flat = traverse_util.flatten_dict(grads, sep="/")
    assert set(flat) == set(traverse_util.flatten_dict(variables["params"], sep="/"))
    assert all(np.all(np.isfinite(g)) for g in flat.values())
    assert np.any(flat["backbone/conv1/kernel"] != 0) and np.any(flat["attributes/expert_Light/hidden/kernel"] != 0)


def test_bfloat16_compute_float32_params(tiny, tiny_out):
    model = _tiny_model(dtype=jnp.bfloat16)
    _, variables = tiny
    x = _images()
    assert jax.tree.map(lambda a: (a.shape, a.dtype), jax.eval_shape(model.init, _key(0), x)) == \
        jax.tree.map(lambda a: (a.shape, a.dtype), variables)  # params and stats float32
    out, state = jax.jit(lambda v, x: model.apply(v, x, train=True, rngs={"dropout": _key(0)},
                                                  mutable=["batch_stats"], return_features=True))(variables, x)
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves((out, state)))
    assert jax.eval_shape(lambda v, x: model.apply(v, x, method="features"), variables, x)["feature_map"].dtype == jnp.bfloat16
    out_bf16 = jax.jit(lambda v, x: model.apply(v, x, return_features=True))(variables, x)
    np.testing.assert_allclose(out_bf16["emd"]["mean"], tiny_out["emd"]["mean"], atol=0.05)
    diff = np.abs(out_bf16["features"]["pooled"] - tiny_out["features"]["pooled"]).max()
    assert 0 < diff < 0.1  # really computed in bf16, and close


def test_mobilenet_v2_residuals():
    # width 0.35, blocks 0..2: block_2 (8 -> 8 channels, stride 1) ends in a residual add. With
    # block_2_project_BN zeroed, block_2 is the identity, so Conv_1 sees block_1's output.
    backbone = models.create_backbone("mobilenet_v2", width=0.35, num_blocks=3)
    x = jnp.asarray(np.random.RandomState(0).normal(size=(1, 16, 16, 3)), jnp.float32)
    shapes = jax.eval_shape(backbone.init, _key(0), x)
    rs = np.random.RandomState(1)
    params = jax.tree.map(lambda s: jnp.asarray(rs.normal(0, 0.5, s.shape), jnp.float32), shapes["params"])
    params["block_2_project_BN"] = {"scale": jnp.zeros(8), "bias": jnp.zeros(8)}
    batch_stats = jax.tree.map(lambda s: jnp.ones(s.shape), shapes["batch_stats"])
    _, state = jax.jit(lambda v: backbone.apply(v, x, capture_intermediates=True, mutable=["intermediates"]))(
        {"params": params, "batch_stats": batch_stats})
    inter = state["intermediates"]
    block_1_out = inter["block_1_project_BN"]["__call__"][0]
    conv_1_out = inter["Conv_1"]["__call__"][0]
    assert np.abs(conv_1_out).max() > 0.1  # without the residual add it would be exactly 0
    np.testing.assert_allclose(conv_1_out, block_1_out @ params["Conv_1"]["kernel"][0, 0], rtol=1e-4, atol=1e-6)


def test_preprocessing_presets():
    x = _images()
    np.testing.assert_allclose(preprocessing.normalize(x, "keras_tf"), x / 127.5 - 1.0, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(preprocessing.normalize(x, "keras_tf"), preprocessing.normalize(x.astype(np.float32), "keras_tf"))
    mean, std = np.array(preprocessing.IMAGENET_MEAN), np.array(preprocessing.IMAGENET_STD)
    np.testing.assert_allclose(preprocessing.normalize(x, "torch"), (x / 255 - mean) / std, rtol=1e-5, atol=1e-5)
    mean, std = np.array(preprocessing.CLIP_MEAN), np.array(preprocessing.CLIP_STD)
    np.testing.assert_allclose(preprocessing.normalize(x, "clip"), (x / 255 - mean) / std, rtol=1e-5, atol=1e-5)
    assert preprocessing.normalize(x, "none").dtype == jnp.float32
    with pytest.raises(ValueError, match="Unknown preprocess"):
        preprocessing.normalize(x, "caffe")


def test_model_normalises_raw_pixels(tiny, tiny_out):
    """The model normalises raw pixels itself: preset 'none' on pre-normalised input agrees."""
    model, variables = tiny
    raw = model.clone(preprocess="none")
    out_none = jax.jit(lambda v, x: raw.apply(v, x, return_features=True))(variables, _images() / 127.5 - 1.0)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), tiny_out, out_none)


def test_mobilenet_v2_torchvision_layout():
    # Same modules and shapes as the Keras layout (one converter target); torch pads stride-2 convs
    # (1, 1) on both sides where Keras pads (0, 1) at even sizes: hand values on the stem below.
    keras_v2 = models.create_backbone("mobilenet_v2", width=0.35)
    torch_v2 = models.create_backbone("mobilenet_v2", width=0.35, layout="torchvision")
    x = jnp.ones((1, 8, 8, 3))
    k_shapes, t_shapes = (jax.eval_shape(b.init, _key(0), x) for b in (keras_v2, torch_v2))
    assert jax.tree.map(lambda s: s.shape, k_shapes) == jax.tree.map(lambda s: s.shape, t_shapes)
    assert jax.eval_shape(torch_v2.apply, t_shapes, jnp.zeros((1, 97, 97, 3)))["feature_map"].shape == (1, 4, 4, 1280)
    with pytest.raises(ValueError, match="layout must be one of"):
        jax.eval_shape(models.create_backbone("mobilenet_v2", layout="tf").init, _key(0), x)
    stems = {}
    for name, backbone, shapes in (("keras", keras_v2, k_shapes), ("torchvision", torch_v2, t_shapes)):
        variables = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), shapes)
        _, state = jax.jit(lambda v: backbone.apply(v, x, capture_intermediates=True, mutable=["intermediates"]))(variables)
        stems[name] = np.asarray(state["intermediates"]["Conv1"]["__call__"][0])[0, :, :, 0]
    assert stems["keras"][0, 0] == 27 and stems["keras"][3, 3] == 12  # 3x3x3 window; bottom/right pad
    assert stems["torchvision"][0, 0] == 12 and stems["torchvision"][3, 3] == 27  # top/left pad
    assert mobilenet_v2.BN_EPSILON == {"keras": 1e-3, "torchvision": 1e-5}
