"""ONNX export (jax2onnx) parity: onnxruntime outputs equal JAX's to <= 1e-4 (float32).

Every tested backbone x head type, at batch 1 and 7 through one exported graph (dynamic batch),
with random (non-trivial) weights and batch statistics and random [0, 255] images. Also checks
the graph contract: opset, input name/layout/dtype, named outputs, metadata props, a full
`onnx.checker` pass, and the uint8 / NCHW input variants.

Every backbone of the registry (tiny variants) carries all three head types in one exported graph.
"""

import json
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from aesthetics_jax import models
from aesthetics_jax.export import bundle as bundle_lib
from aesthetics_jax.export import onnx as onnx_export

IMAGE_SIZE = 32  # the contract tests below
# backbone -> (tiny kwargs for models.create, input size); InceptionV3's minimum input is 75 px.
TINY = {
    "mobilenet": (dict(width=0.25, num_blocks=4), 32),
    "mobilenet_v2": (dict(width=0.35, num_blocks=5), 32),
    "inception": (dict(num_mixed=1), 75),
    "clip": (dict(variant="tiny"), 32),
    "cgiaa": (dict(variant="tiny", experts=("color",), fusion_dim=16, fusion_heads=2), 32),
}
HEADS = {
    "emd": {"emd": {"type": "emd", "num_bins": 10}},
    "scores": {"scores": {"type": "scores", "names": ["aesthetic", "quality", "light"]}},
    "attributes": {"attributes": {"type": "attributes", "names": ["Light", "Color", "Composition"], "hidden": 8}},
}
ALL_HEADS = {name: config for heads in HEADS.values() for name, config in heads.items()}


def randomize(variables, seed):
    """Random weights that make every output non-trivial (not a near-uniform softmax)."""
    rng = np.random.default_rng(seed)
    flat = {}
    for path, value in bundle_lib._flatten(jax.device_get(variables)).items():
        shape = value.shape
        if path.endswith("/var"):
            new = rng.uniform(0.5, 1.5, shape)
        elif path.endswith("/mean") or path.endswith("/bias"):
            new = rng.normal(0, 0.1, shape)
        elif path.endswith("/scale"):
            new = rng.uniform(0.5, 1.5, shape)
        else:  # kernels: glorot-like, head kernels larger so the softmax is far from uniform
            fan_in = int(np.prod(shape[:-1]))
            new = rng.normal(0, (3.0 if path.startswith("params/") and "backbone" not in path else 1.0) / np.sqrt(fan_in), shape)
        flat[path] = new.astype(np.float32)
    return bundle_lib._unflatten(flat)


def _build(backbone, heads, seed=0):
    kwargs, size = TINY[backbone]
    model = models.create(backbone, heads=heads, **kwargs)
    variables = model.init(jax.random.key(0), jnp.zeros((1, size, size, 3), jnp.uint8))
    return model, randomize(variables, seed=zlib.crc32(f"{backbone}{seed}".encode())), size


def _session(proto):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _images(n, seed, dtype=np.float32, size=IMAGE_SIZE):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(dtype)


# jax2onnx takes ~20-40 s per InceptionV3 / CLIP graph on 2 cores: in the slow group (CI runs it).
SLOW_EXPORTS = ("clip", "inception")


@pytest.mark.parametrize(
    "backbone", [pytest.param(b, marks=pytest.mark.slow) if b in SLOW_EXPORTS else b for b in sorted(TINY)]
)
def test_onnxruntime_matches_jax(backbone):
    """One graph per backbone carrying all three head types: every backbone x head at batch 1 and 7."""
    model, variables, size = _build(backbone, ALL_HEADS)
    proto = onnx_export.export_onnx(model, variables, image_size=size, resize_size=size + 4)
    session = _session(proto)
    spec = bundle_lib.output_spec(ALL_HEADS)
    names = [o.name for o in session.get_outputs()]
    assert names == ["distribution", "mean", "sd", "scores", "attributes", "overall"] == [n for n, _, _ in spec]
    for batch in (1, 7):
        images = _images(batch, seed=batch, size=size)
        got = dict(zip(names, session.run(names, {"images": images})))
        ref = model.apply(variables, images)
        for name, h, key in spec:
            want = np.asarray(ref[h][key])
            assert got[name].shape == want.shape, (name, batch)
            np.testing.assert_allclose(got[name], want, rtol=0, atol=1e-4, err_msg=f"{backbone}/{h}/{name} batch {batch}")
        # The weights make the comparison meaningful: far from a uniform softmax, sizeable outputs
        # that differ between images.
        assert np.ptp(got["distribution"], axis=-1).min() > 0.02
        for name in ("scores", "attributes", "overall"):
            assert np.abs(got[name]).max() > 0.1, name
        if batch > 1:
            assert np.ptp(got["mean"]) > 1e-3


def test_graph_contract_and_metadata():
    heads = {**HEADS["emd"], **HEADS["attributes"], "aux": {"type": "emd", "num_bins": 5}}
    model, variables, _ = _build("mobilenet", heads, seed=1)
    proto = onnx_export.export_onnx(model, variables, image_size=IMAGE_SIZE, resize_size=36)
    onnx.checker.check_model(proto, full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    # ReLU6 rewritten as Clip (onnxruntime fuses Conv + Clip); depthwise convs are grouped Convs.
    assert ops.count("Clip") == 9 and "Max" not in ops and "Min" not in ops  # conv1 + 4 blocks x 2
    assert sum(1 for n in proto.graph.node if n.op_type == "Conv"
               and any(a.name == "group" and a.i > 1 for a in n.attribute)) == 4
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 18
    (inp,) = proto.graph.input
    assert inp.name == "images"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == [IMAGE_SIZE, IMAGE_SIZE, 3]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    # Two emd heads: names are prefixed; unique keys stay plain.
    assert [o.name for o in proto.graph.output] == [
        "emd_distribution", "emd_mean", "emd_sd", "attributes", "overall", "aux_distribution", "aux_mean", "aux_sd"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["input_layout"] == "NHWC" and meta["input_dtype"] == "float32"
    assert meta["image_size"] == str(IMAGE_SIZE) and meta["resize_size"] == "36"
    assert meta["preprocess"] == "keras_tf" and meta["normalization"] == "x / 127.5 - 1"
    assert "[0, 255]" in meta["input_range"]
    assert json.loads(meta["mean"]) == json.loads(meta["std"]) == [127.5] * 3  # x / 127.5 - 1
    assert json.loads(meta["outputs"])["aux_sd"] == "aux/sd"
    assert json.loads(meta["heads"])["attributes"]["names"] == ["Light", "Color", "Composition"]
    assert json.loads(meta["label_semantics"])["aux"]["scale"] == [1, 5]
    session = _session(proto)
    images = _images(3, 0)
    got = session.run(["aux_sd"], {"images": images})[0]
    np.testing.assert_allclose(got, np.asarray(model.apply(variables, images)["aux"]["sd"]), atol=1e-4)


def test_uint8_and_nchw_inputs():
    model, variables, _ = _build("mobilenet_v2", HEADS["emd"])
    images = _images(4, 3, np.uint8)
    want = np.asarray(model.apply(variables, images)["emd"]["distribution"])
    proto = onnx_export.export_onnx(model, variables, image_size=IMAGE_SIZE, input_dtype="uint8")
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    got = _session(proto).run(["distribution"], {"images": images})[0]
    np.testing.assert_allclose(got, want, atol=1e-4)
    proto = onnx_export.export_onnx(model, variables, image_size=IMAGE_SIZE, layout="NCHW")
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["input_layout"] == "NCHW"
    got = _session(proto).run(["distribution"], {"images": images.transpose(0, 3, 1, 2).astype(np.float32)})[0]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_rejects_low_opset_and_bad_options():
    model, variables, _ = _build("mobilenet", HEADS["emd"])
    with pytest.raises(ValueError, match="opset"):
        onnx_export.export_onnx(model, variables, image_size=IMAGE_SIZE, opset=17)
    with pytest.raises(ValueError, match="layout"):
        onnx_export.export_onnx(model, variables, image_size=IMAGE_SIZE, layout="HWC")


# backbones that do not score pixels: the exporters refuse them with a clear error
NOT_EXPORTABLE = {"critique_text": dict(variant="tiny", attributes=2,
                                        text=dict(vocab_size=64, context_length=8, width=16, layers=1, num_heads=2,
                                                  embed_dim=8, eot_token_id=63))}


def test_every_registered_backbone_is_covered():
    assert set(TINY) | set(NOT_EXPORTABLE) == set(models.BACKBONES)
    assert not set(TINY) & set(NOT_EXPORTABLE)


@pytest.mark.parametrize("backbone", sorted(NOT_EXPORTABLE))
def test_refuses_a_backbone_that_does_not_read_pixels(backbone):
    model = models.create(backbone, heads=HEADS["emd"], **NOT_EXPORTABLE[backbone])
    with pytest.raises(ValueError, match="not pixels"):
        onnx_export.export_onnx(model, {}, image_size=IMAGE_SIZE)


def test_export_cli_from_a_bundle(tmp_path):
    """`aesthetics-jax export BUNDLE --format onnx` writes a graph with the bundle's sizes and
    metadata that onnxruntime runs to the JAX outputs; a missing model is a clear error."""
    from aesthetics_jax.export import commands

    kwargs, size = TINY["mobilenet"]
    model, variables, _ = _build("mobilenet", HEADS["scores"], seed=2)
    bundle = str(tmp_path / "m.bundle")
    bundle_lib.write(bundle, model_config=dict(name="mobilenet", heads=HEADS["scores"], **kwargs),
                     variables=variables, image_size=size, resize_size=40)
    out = str(tmp_path / "m.onnx")
    assert commands.main([bundle, "--format", "onnx", "--out", out, "--layout", "NCHW"]) == 0
    proto = onnx.load(out)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert (meta["image_size"], meta["resize_size"], meta["input_layout"]) == (str(size), "40", "NCHW")
    assert json.loads(meta["bundle_model_config"])["name"] == "mobilenet"
    images = _images(2, 5, size=size)
    got = _session(proto).run(["scores"], {"images": images.transpose(0, 3, 1, 2)})[0]
    np.testing.assert_allclose(got, np.asarray(model.apply(variables, images)["scores"]["scores"]), atol=1e-4)
    assert commands.main([str(tmp_path / "nothing"), "--format", "onnx", "--out", out]) == 1


def _reference_session(proto):
    """onnxruntime with its own graph optimisations off: runs the graph as written."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def test_export_folds_batchnorm_and_kernel_transposes(monkeypatch):
    """The exported graph has no BatchNormalization and no Transpose of a constant (kernels), and
    the passes keep the outputs of the graph as jax2onnx wrote it (both run by onnxruntime with its
    own optimisations off) to 1e-5. MobileNetV2: BN without ReLU6 (linear bottlenecks), residual adds."""
    model, variables, size = _build("mobilenet_v2", HEADS["emd"], seed=3)
    monkeypatch.setattr(onnx_export, "optimize_graph", lambda graph: {})
    raw = onnx_export.export_onnx(model, variables, image_size=size)
    monkeypatch.undo()
    proto = onnx_export.export_onnx(model, variables, image_size=size)
    raw_ops, ops = [n.op_type for n in raw.graph.node], [n.op_type for n in proto.graph.node]
    assert raw_ops.count("BatchNormalization") > 10 and "BatchNormalization" not in ops
    assert ops.count("Conv") == raw_ops.count("Conv") and ops.count("Clip") == raw_ops.count("Max")
    inits = {i.name for i in proto.graph.initializer}
    assert not [n for n in proto.graph.node if n.op_type == "Transpose" and n.input[0] in inits]
    assert not [n for n in proto.graph.node if n.op_type in ("Mul", "Add") and n.input[0] in
                {o for c in proto.graph.node if c.op_type == "Conv" for o in c.output}
                and all(i in inits for i in n.input[1:])]  # no BN left as Mul/Add after a Conv
    onnx.checker.check_model(proto, full_check=True)
    images = _images(5, 11, size=size)
    want = _reference_session(raw).run(None, {"images": images})
    got = _reference_session(proto).run(None, {"images": images})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got[0], np.asarray(model.apply(variables, images)["emd"]["distribution"]), atol=1e-4)


def test_fold_batchnorm_only_where_exact():
    """A Conv with a bias folds; a Conv whose output also feeds another node keeps its BN; a kernel
    shared with another Conv stays as it was for that Conv."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    c = 4
    def init(name, value):
        return numpy_helper.from_array(np.asarray(value, np.float32), name)

    inits = [init("w", rng.normal(0, 0.5, (c, 3, 3, 3))), init("b", rng.normal(0, 0.5, c)),
             init("w2", rng.normal(0, 0.5, (c, c, 1, 1)))]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "w"], ["y_shared"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["y", "w2"], ["z"])]
    for k, (src, out) in enumerate([("y", "y_bn"), ("z", "z_bn"), ("y_shared", "s_bn")]):
        names = [f"g{k}", f"be{k}", f"m{k}", f"v{k}"]
        inits += [init(names[0], rng.uniform(0.5, 1.5, c)), init(names[1], rng.normal(0, 0.5, c)),
                  init(names[2], rng.normal(0, 0.5, c)), init(names[3], rng.uniform(0.5, 1.5, c))]
        nodes.append(helper.make_node("BatchNormalization", [src, *names], [out], epsilon=1e-3))
    # y feeds both its BN and the second Conv: that BN must stay.
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, c, 6, 6]) for n in ("y_bn", "z_bn", "s_bn")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 6, 6])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    assert onnx_export.fold_batchnorm(folded.graph) == 2
    ops = [n.op_type for n in folded.graph.node]
    assert ops.count("BatchNormalization") == 1 and ops.count("Conv") == 3
    assert "w" in {i.name for i in folded.graph.initializer}  # the first Conv still reads it
    onnx.checker.check_model(folded, full_check=True)
    x = rng.normal(0, 1, (2, 3, 6, 6)).astype(np.float32)
    for g, w in zip(_reference_session(folded).run(None, {"x": x}), _reference_session(model).run(None, {"x": x})):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-5)


def test_inference_session_options():
    """predict's onnxruntime sessions: full graph optimisation, intra-op threads that block instead
    of spinning (predict decodes in threads beside them); spinning stays available."""
    from aesthetics_jax.export import onnx_runtime

    options = onnx_runtime.session_options()
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert onnx_runtime.session_options(spinning=True).get_session_config_entry("session.intra_op.allow_spinning") == "1"
    model, variables, _ = _build("mobilenet", HEADS["emd"])
    proto = onnx_export.export_onnx(model, variables, image_size=IMAGE_SIZE)
    images = _images(2, 4)
    got = onnx_runtime.inference_session(proto.SerializeToString()).run(["mean"], {"images": images})[0]
    np.testing.assert_allclose(got, np.asarray(model.apply(variables, images)["emd"]["mean"]), atol=1e-4)
