"""MSI-Net: Flax model, weight import from the three released formats, map producer.

The reference is TensorFlow: `convert.msinet.tf_reference_graph` builds the published graph
(alexanderkroner/saliency `model.py`, TF1 ops, random weights) once per session; from it the test
writes the formats users hold -- a `tf.compat.v1.train.Saver` checkpoint written after Adam was
built (slots included, as the released `.ckpt`), the frozen GraphDef `.pb` (freeze + TransformGraph's
Identity removal; also a variant whose `/read` identities were folded into constants), and a TF2
SavedModel whose weights are constants of its function library (the HF-hub export) -- converts each
with `convert.msinet.convert`, and compares the Flax outputs to the TF graph's.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import shutil
import sys

import jax
import numpy as np
import pytest
from flax import traverse_util

from aesthetics_jax.convert import msinet as convert_msinet
from aesthetics_jax.models import msinet

PARITY = 1e-4
FORMATS = ("tf-checkpoint", "frozen-graphdef", "frozen-graphdef-read", "saved-model")
MEASURED: dict[str, float] = {}  # max abs error per case, printed at the end of the module (-s)


@pytest.fixture(scope="module")
def tf():
    tf = pytest.importorskip("tensorflow")
    return tf


@pytest.fixture(scope="module")
def reference(tf):
    """The TF graph, its session, its weights (flat) and its frozen GraphDef."""
    graph, session = convert_msinet.tf_reference_graph(seed=0)
    weights = convert_msinet.tf_graph_weights(graph, session)
    frozen = tf.compat.v1.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), ["output"])
    yield {"graph": graph, "session": session, "weights": weights, "frozen": frozen}
    session.close()
    print("\nMSI-Net parity (max abs error vs TF):", json.dumps({k: float(f"{v:.2e}") for k, v in MEASURED.items()}))


def _run_tf(reference, images):
    return reference["session"].run("output:0", {"input:0": np.asarray(images, np.float32)})


def _without_identities(graph_def):
    """TransformGraph's `remove_nodes(op=Identity)`: consumers read the Identity's input directly."""
    source = {n.name: n.input[0] for n in graph_def.node if n.op == "Identity"}
    out = type(graph_def)()
    out.versions.CopyFrom(graph_def.versions)
    for node in graph_def.node:
        if node.op == "Identity":
            continue
        new = out.node.add()
        new.CopyFrom(node)
        del new.input[:]
        for name in node.input:
            prefix = "^" if name.startswith("^") else ""
            base = name.lstrip("^")
            while base in source:
                base = source[base]
            new.input.append(prefix + base)
    return out


def _read_folded(graph_def):
    """`fold_constants` without Identity removal: weight `X` survives as a Const named `X/read`."""
    out = copy.deepcopy(graph_def)
    weights = {n.name for n in out.node if n.op == "Const" and n.name + "/read" in {m.name for m in out.node}}
    keep = [n for n in out.node if not (n.op == "Identity" and n.name[: -len("/read")] in weights)]
    for node in keep:
        if node.name in weights:
            node.name += "/read"
    del out.node[:]
    out.node.extend(keep)
    return out


@pytest.fixture(scope="module")
def sources(tf, reference, tmp_path_factory):
    """{format: path} of the reference weights in every released format."""
    v1 = tf.compat.v1
    root = tmp_path_factory.mktemp("msinet_sources")
    frozen = _without_identities(reference["frozen"])
    paths = {"frozen-graphdef": str(root / "model_salicon_cpu.pb"),
             "frozen-graphdef-read": str(root / "model_salicon_cpu_read.pb")}
    with open(paths["frozen-graphdef"], "wb") as f:
        f.write(frozen.SerializeToString())
    with open(paths["frozen-graphdef-read"], "wb") as f:
        f.write(_read_folded(reference["frozen"]).SerializeToString())

    def import_frozen():
        v1.import_graph_def(frozen, name="")

    wrapped = v1.wrap_function(import_frozen, [])
    pruned = wrapped.prune(feeds=wrapped.graph.get_tensor_by_name("input:0"),
                           fetches=wrapped.graph.get_tensor_by_name("output:0"))
    module = tf.Module()
    module.serve = tf.function(lambda x: {"output": pruned(x)},
                               input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    paths["saved-model"] = str(root / "MSI-Net")
    tf.saved_model.save(module, paths["saved-model"], signatures=module.serve.get_concrete_function())

    graph, session = reference["graph"], reference["session"]
    with graph.as_default():
        before = set(v1.global_variables())
        loss = tf.reduce_mean(graph.get_tensor_by_name("output:0"))
        v1.train.AdamOptimizer(1e-5).minimize(loss)
        session.run(v1.variables_initializer([v for v in v1.global_variables() if v not in before]))
        paths["tf-checkpoint"] = str(root / "ckpt" / "model_salicon_cpu.ckpt")
        v1.train.Saver().save(session, paths["tf-checkpoint"], write_meta_graph=False, write_state=False)
    return paths


@pytest.fixture(scope="module")
def converted(sources, tmp_path_factory):
    """{format: (out_dir, meta)} after `convert.msinet.convert`."""
    root = tmp_path_factory.mktemp("msinet_converted")
    out = {}
    for fmt, path in sources.items():
        src = path + ".index" if fmt == "tf-checkpoint" else path  # users pass the .index file too
        out[fmt] = (str(root / fmt), convert_msinet.convert(src, str(root / fmt)))
    return out


@pytest.fixture(scope="module")
def forward():
    return msinet.make_forward(per_image=True)


# ----------------------------------------------------------------------------- resize kernels


@pytest.mark.parametrize("half_pixel_centers", [False, True])
def test_resize_bilinear_matches_tf(tf, half_pixel_centers):
    rng = np.random.default_rng(0)
    cases = [((8, 12), (16, 24)), ((5, 7), (13, 4)), ((16, 24), (7, 11)), ((1, 1), (3, 5)), ((30, 40), (61, 79)),
             ((300, 451), (213, 320)), ((6, 9), (6, 9))]
    for (h, w), size in cases:
        x = rng.standard_normal((2, h, w, 3)).astype(np.float32) * 50
        if half_pixel_centers:
            want = tf.image.resize(x, size, method="bilinear", antialias=False).numpy()
        else:
            want = tf.compat.v1.image.resize_bilinear(x, size).numpy()
        # numpy evaluates TF's float32 formula in TF's order: bit-identical
        np.testing.assert_array_equal(msinet.resize_bilinear(x, size, half_pixel_centers=half_pixel_centers), want)
        # XLA may contract a + (b - a) * t into an FMA: rounding-level differences only (a wrong
        # sampling coordinate would differ by the size of the values)
        got = np.asarray(jax.jit(lambda a: msinet.resize_bilinear(a, size, half_pixel_centers=half_pixel_centers))(x))
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(x).max(), err_msg=f"{(h, w)} -> {size}")


def test_preprocessing_geometry_matches_tf(tf):
    from aesthetics_jax.modalities import msinet as producer

    assert producer.target_size(300, 451) == (240, 320)
    assert producer.target_size(451, 300) == (320, 240)
    assert producer.target_size(500, 500) == (320, 320)
    assert producer.target_size(350, 400) == (320, 320)  # aspect 0.875: a tie, the first (square) wins
    for h, w in [(300, 451), (451, 300), (37, 53), (500, 500), (1000, 1333), (241, 321), (17, 1000), (333, 250)]:
        target = producer.target_size(h, w)
        (nh, nw), (top, bottom), (left, right) = producer.fit_geometry(h, w, target)
        resized = tf.image.resize(np.zeros((1, h, w, 1), np.float32), target, preserve_aspect_ratio=True)
        assert (nh, nw) == tuple(resized.shape[1:3]), (h, w)
        assert (top + nh + bottom, left + nw + right) == target
        assert top <= bottom <= top + 1 and left <= right <= left + 1


# ----------------------------------------------------------------------------- conversion + parity


def test_model_param_shapes():
    shapes = jax.eval_shape(msinet.MSINet().init, jax.random.key(0), jax.ShapeDtypeStruct((1, 64, 64, 3), np.float32))
    flat = {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(shapes["params"], sep="/").items()}
    assert flat == msinet.PARAM_SHAPES
    assert msinet.NUM_PARAMS == 24_934_209


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_convert_reads_every_format_exactly(fmt, reference, sources, converted):
    out_dir, meta = converted[fmt]
    params, loaded_meta = convert_msinet.load_converted(out_dir)
    assert loaded_meta == meta
    assert meta["format"] == fmt.replace("-read", "") and meta["tensor_count"] == 46
    assert meta["parameter_count"] == msinet.NUM_PARAMS
    with open(os.path.join(out_dir, "convert.json")) as f:
        assert json.load(f)["weights"]["sha256"] == meta["weights"]["sha256"]
    for name, value in reference["weights"].items():  # the TF session's variables, bit for bit
        np.testing.assert_array_equal(convert_msinet.params_leaf(params, name), value, err_msg=name)
    rules = {rule for _, rule in meta["conversion"]["ignored"]}
    if fmt == "tf-checkpoint":
        assert "optimiser slot of a model variable" in rules and "Adam's beta power accumulator" in rules
        assert len(meta["source"]["files"]) == 2
    else:
        assert meta["conversion"]["mean_constant"] is True
        assert meta["conversion"]["data_format"] == ["NHWC"]


@pytest.mark.slow
def test_parity_with_tf_per_format(reference, converted, forward):
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (2, 64, 96, 3)).astype(np.float32)
    want = _run_tf(reference, images)
    assert want.shape == (2, 64, 96, 1) and want.std() > 0.05  # a non-degenerate map: the bound means something
    for fmt in FORMATS:  # images one by one in one program (make_forward's CPU form)
        params, _ = convert_msinet.load_converted(converted[fmt][0])
        got = np.asarray(forward(params, images))
        MEASURED[f"{fmt} 2x64x96"] = err = float(np.abs(got - want).max())
        assert err <= PARITY, fmt
    # one batched program with XLA's own dilated convolutions (the accelerator form)
    got = np.asarray(msinet.make_forward(per_image=False, conv_impl="conv")(params, images))
    MEASURED["saved-model 2x64x96 batched, XLA dilated conv"] = err = float(np.abs(got - want).max())
    assert err <= PARITY
    # portrait: the split of dilated convolutions runs along the width
    images = rng.uniform(0, 255, (1, 96, 64, 3)).astype(np.float32)
    want = _run_tf(reference, images)
    got = np.asarray(forward(params, images))
    MEASURED["saved-model 1x96x64"] = err = float(np.abs(got - want).max())
    assert err <= PARITY
    # sides not multiples of 8 behave as the TF graph (VALID pooling floors): 60x84 -> 56x80
    images = rng.uniform(0, 255, (1, 60, 84, 3)).astype(np.float32)
    want = _run_tf(reference, images)
    got = np.asarray(forward(params, images))
    assert got.shape == want.shape == (1, 56, 80, 1)
    MEASURED["saved-model 1x60x84"] = err = float(np.abs(got - want).max())
    assert err <= PARITY


@pytest.mark.slow
def test_producer_full_size_matches_tf_pipeline(tf, reference, converted):
    """The released usage end to end at 240x320 on a real photo (300x451): TF's resize with
    preserve_aspect_ratio, zero padding, the TF graph, crop, TF resize back."""
    from skimage import data

    from aesthetics_jax.modalities.msinet import MSINetSaliency

    image = data.chelsea()
    producer = MSINetSaliency(converted["saved-model"][0])
    got = producer(image[None])
    x = tf.image.resize(image[None], (240, 320), preserve_aspect_ratio=True)
    pad_h, pad_w = 240 - x.shape[1], 320 - x.shape[2]
    top, left = pad_h // 2, pad_w // 2
    x = tf.pad(x, [[0, 0], [top, pad_h - top], [left, pad_w - left], [0, 0]])
    out = _run_tf(reference, x.numpy())
    out = out[:, top:240 - (pad_h - top), left:320 - (pad_w - left)]
    want = tf.image.resize(out, image.shape[:2]).numpy()[..., 0]
    assert got.shape == want.shape == (1, 300, 451) and got.dtype == np.float32
    MEASURED["producer 300x451 (model 240x320)"] = err = float(np.abs(got - want).max())
    assert err <= PARITY


@pytest.mark.slow
def test_producer_needs_no_tensorflow(converted, tensorflow_imports):
    names = ("aesthetics_jax.modalities.msinet", "aesthetics_jax.models.msinet")
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    try:
        producer_module = importlib.import_module("aesthetics_jax.modalities.msinet")
        out_dir = converted["frozen-graphdef"][0]
        producer = producer_module.MSINetSaliency(out_dir, batch_size=4)
        images = np.random.default_rng(2).integers(0, 256, (3, 37, 53, 3), dtype=np.uint8)
        maps = producer(images)
        assert maps.shape == (3, 37, 53) and maps.dtype == np.float32
        assert maps.min() >= 0.0 and maps.max() <= 1.0 and maps.std() > 0
        meta = producer.metadata()
        assert meta["name"] == producer.name == "msinet"
        assert meta["weights_sha256"] == converted["frozen-graphdef"][1]["weights"]["sha256"]
        assert meta["source"]["format"] == "frozen-graphdef"
        json.dumps(meta)
        rebuilt = importlib.import_module("aesthetics_jax.modalities").create("msinet", **meta["params"])
        assert rebuilt.metadata() == meta
        flat = np.full((3, 30, 40, 3), 128.0, np.float32)
        flat[0, 0, 0] = np.nan  # hostile floats: finite maps all the same
        maps = rebuilt(flat)
        assert maps.shape == (3, 30, 40) and np.isfinite(maps).all() and 0 <= maps.min() <= maps.max() <= 1
    finally:
        sys.modules.update(saved)
    assert tensorflow_imports == []


# ----------------------------------------------------------------------------- strictness


@pytest.mark.slow
def test_strict_errors_name_the_tensors(tf, reference, tmp_path):
    graph = _without_identities(reference["frozen"])
    nodes = {n.name: n for n in graph.node}
    graph.node.remove(nodes["decoder/conv4/bias"])
    bias = nodes["aspp/conv2/bias"].attr["value"].tensor
    bias.CopyFrom(tf.make_tensor_proto(np.zeros(255, np.float32)))
    mean = nodes["Const"].attr["value"].tensor
    mean.CopyFrom(tf.make_tensor_proto(np.array([123.68, 116.779, 103.939], np.float32)))  # BGR order
    for name, value in (("extra/conv/kernel", np.ones((3, 3, 8, 8), np.float32)),
                        ("decoder/conv1/kernel/read", np.ones((3, 3, 256, 128), np.float32))):
        node = graph.node.add(name=name, op="Const")
        node.attr["dtype"].type = tf.float32.as_datatype_enum
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    path = str(tmp_path / "broken.pb")
    with open(path, "wb") as f:
        f.write(graph.SerializeToString())
    with pytest.raises(ValueError) as info:
        convert_msinet.load_msinet(path)
    message = str(info.value)
    assert "missing tensor 'decoder/conv4/bias'" in message
    assert "'aspp/conv2/bias' has shape (255,)" in message
    assert "'extra/conv/kernel' (3, 3, 8, 8)" in message
    assert "'decoder/conv1/kernel' found 2 times" in message
    assert "holds [123.68" in message  # a mean in another channel order is not silently accepted
    # an explicit ignore drops the extra tensor (the other errors stay)
    with pytest.raises(ValueError) as info:
        convert_msinet.load_msinet(path, ignore=[r"^extra/"])
    assert "extra/conv/kernel" not in str(info.value) and "decoder/conv4/bias" in str(info.value)


@pytest.mark.slow
def test_checkpoint_extra_variable_is_an_error(tf, reference, tmp_path):
    prefix = str(tmp_path / "extra.ckpt")
    with tf.compat.v1.Graph().as_default() as graph:
        variables = [tf.compat.v1.get_variable(name, initializer=value, use_resource=False)
                     for name, value in list(reference["weights"].items())[:4]]
        variables.append(tf.compat.v1.get_variable("vgg_16/fc6/weights", initializer=np.zeros((7, 7, 3, 2), np.float32),
                                                   use_resource=False))
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver(variables).save(session, prefix, write_meta_graph=False, write_state=False)
    with pytest.raises(ValueError) as info:
        convert_msinet.load_msinet(prefix)
    assert "'vgg_16/fc6/weights' (7, 7, 3, 2)" in str(info.value)
    assert "missing tensor 'aspp/conv2/kernel'" in str(info.value)


@pytest.mark.slow
def test_converted_weights_are_verified(converted, tmp_path):
    out_dir = str(tmp_path / "copy")
    shutil.copytree(converted["frozen-graphdef"][0], out_dir)
    with open(os.path.join(out_dir, msinet.WEIGHTS_FILE), "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\x00\x00\x80\x7f")  # one weight becomes inf
    with pytest.raises(ValueError, match="sha256"):
        convert_msinet.load_converted(out_dir)
    with pytest.raises(ValueError, match="not empty"):
        convert_msinet.convert("unused.pb", out_dir)


def test_sources_need_tensorflow_and_exist(tmp_path, tensorflow_imports):
    path = tmp_path / "model_salicon_cpu.pb"
    path.write_bytes(b"")
    with pytest.raises(ImportError, match=r"\[tf\]"):
        convert_msinet.load_msinet(str(path))
    with pytest.raises(FileNotFoundError, match="no such file"):
        convert_msinet.load_msinet(str(tmp_path / "nothing.ckpt"))
    with pytest.raises(ValueError, match="neither a SavedModel"):
        convert_msinet.load_msinet(str(tmp_path))


def test_convert_cli(sources, tmp_path, capsys):
    """`aesthetics-jax convert --from msi-net SRC --out DIR` (no --arch) writes the same weights."""
    from aesthetics_jax.cli import main
    from safetensors.numpy import load_file

    out = tmp_path / "msinet_cli"
    assert main(["convert", "--from", "msi-net", sources["frozen-graphdef"], "--out", str(out)]) == 0
    assert "--producer msinet --param weights=" in capsys.readouterr().out
    params, meta = convert_msinet.load_converted(str(out))
    assert meta["format"] and len(load_file(str(out / "msinet.safetensors"))) == 46
    assert main(["convert", "--from", "msi-net", sources["frozen-graphdef"], "--out", str(out)]) == 2  # not empty
    assert main(["convert", "--from", "keras", sources["frozen-graphdef"], "--out", str(tmp_path / "x")]) == 2  # --arch
