"""ONNX export through jax2onnx of a model's pure ``apply``.

    proto = export_onnx(model, variables, image_size=224, resize_size=256, path="nima.onnx")

The graph computes exactly ``model.apply(variables, images)`` (inference mode: BatchNorm running
statistics, no dropout), with the parameters baked in as initializers:

  input   ``images``: raw RGB pixels in [0, 255], NHWC ``[B, image_size, image_size, 3]``
          (``layout="NCHW"``: ``[B, 3, image_size, image_size]``), float32 (``input_dtype=
          "uint8"``: uint8); ``B`` is dynamic. Normalisation (the model's preset, e.g.
          ``x / 127.5 - 1``) is inside the graph: feed pixels, not normalised values.
  outputs one per head output, named by ``bundle.output_spec`` (``distribution``, ``mean``,
          ``sd`` of an emd head; ``scores``; ``attributes``, ``overall``; prefixed with the head
          name when two heads would give the same name).

``metadata_props`` document the contract for any runtime: ``input_layout``, ``input_dtype``,
``input_range``, ``image_size``, ``resize_size``, ``transform`` (how to get from a photo to the
input), ``preprocess`` / ``normalization`` (what the graph does to the pixels; ``mean`` / ``std``:
JSON lists, the same as ``(x - mean) / std`` on [0, 255] pixels), ``outputs`` (JSON:
ONNX name -> ``head/key``), ``heads`` (JSON head configs), ``label_semantics`` (JSON), ``model``,
``aesthetics_jax_version``.

jax2onnx facts (measured with jax2onnx 0.17.1): opset >= 18 is needed; the MobileNet v1/v2 ops
(grouped depthwise convolution, BatchNorm in inference mode, ReLU6 as clip) convert as written;
pooling must be called with ``window_shape=`` as a keyword and string padding (jax2onnx patches
``nn.max_pool`` / ``nn.avg_pool`` with keyword-only signatures, and mis-shapes explicit padding).
jax2onnx annotates intermediate ``value_info`` shapes that onnxruntime reports as conflicting
(NHWC vs NCHW around convolutions), so they are stripped: onnxruntime re-infers them and the full
``onnx.checker`` run passes.

Graph passes after jax2onnx (``optimize_graph``, exact up to float rounding): ReLU6 as ``Clip``;
jax2onnx's ``Transpose`` of every (HWIO) kernel folded into an OIHW initializer; inference
``BatchNormalization`` folded into the preceding ``Conv``'s weights and bias. NIMA-MobileNet then
is 27 ``Conv`` + 27 ``Clip`` with one ``Transpose`` at each end (NCHW inside).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import aesthetics_jax
from aesthetics_jax.export import bundle as bundle_lib
from aesthetics_jax.models import preprocessing

DEFAULT_OPSET = 21
MIN_OPSET = 18
_TWO_GB = 2**31 - 1

# The same normalisation as (x - mean) / std on [0, 255] pixels (metadata for other runtimes).
PIXEL_MEAN_STD = {
    "keras_tf": ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
    "torch": (tuple(255 * m for m in preprocessing.IMAGENET_MEAN), tuple(255 * s for s in preprocessing.IMAGENET_STD)),
    "clip": (tuple(255 * m for m in preprocessing.CLIP_MEAN), tuple(255 * s for s in preprocessing.CLIP_STD)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}

NORMALIZATION = {
    "keras_tf": "x / 127.5 - 1",
    "torch": f"(x / 255 - mean) / std, mean={preprocessing.IMAGENET_MEAN}, std={preprocessing.IMAGENET_STD}",
    "clip": f"(x / 255 - mean) / std, mean={preprocessing.CLIP_MEAN}, std={preprocessing.CLIP_STD}",
    "none": "x (no normalisation)",
}


def model_heads(model) -> dict[str, dict]:
    """``{head_name: {'type': ..., **kwargs}}`` of an ``AestheticsModel`` in head order."""
    items = model.heads.items() if hasattr(model.heads, "items") else model.heads
    return {name: dict(config) for name, config in items}


def export_model(model):
    """``model`` as exported: float32 compute whatever the training dtype (params are float32
    already), and depthwise convolutions as one grouped ``Conv`` (``depthwise_impl='conv'``, same
    parameters and outputs): onnxruntime and TF have fast depthwise kernels, while the CPU-JAX
    'shifted' form would export as dozens of Slice/Mul/Add nodes per layer (4x slower in
    onnxruntime). Likewise 1x1 convolutions stay ``Conv`` (``pointwise_impl='conv'``).

    The exported graph reads ``images`` only: a backbone that scores something else (``critique_text``
    scores generated critiques) is refused with a ValueError."""
    if not getattr(model.backbone, "reads_pixels", True):
        raise ValueError(f"{type(model.backbone).__name__} scores generated critiques, not pixels: the exported graph "
                         "reads images only (image -> critiques -> score needs the critique experts' decoding; "
                         "use `aesthetics-jax predict` with the bundle)")
    backbone = model.backbone.clone(dtype=jnp.float32)
    fields = getattr(type(backbone), "__dataclass_fields__", {})
    if "depthwise_impl" in fields:
        backbone = backbone.clone(depthwise_impl="conv")
    if "pointwise_impl" in fields:  # 1x1 convs stay Conv nodes, so onnxruntime fuses Conv + Clip
        backbone = backbone.clone(pointwise_impl="conv")
    return model.clone(dtype=jnp.float32, backbone=backbone)


def apply_fn(model, variables, spec):
    """``images -> tuple of outputs`` in ``spec`` order (inference mode, float32 outputs)."""

    def fn(images):
        outputs = model.apply(variables, images, train=False)
        return tuple(outputs[head][key].astype(jnp.float32) for _, head, key in spec)

    return fn


def transform_metadata(transform: dict) -> dict[str, str]:
    """``transform`` (the bundle's recorded input transform, a spec of
    ``data.preprocessing.TRANSFORMS``) in words and as JSON, for any runtime to reproduce."""
    from aesthetics_jax.data import preprocessing

    return {"transform": "decode to upright RGB; " + preprocessing.describe_transform(transform),
            "transform_spec": json.dumps(transform)}


def metadata(model, *, image_size: int, resize_size: int | None, input_dtype: str, layout: str,
             spec, extra: dict | None = None) -> dict[str, str]:
    heads = model_heads(model)
    backbone = type(model.backbone).__name__
    resize_size = resize_size or image_size
    props = {
        "model": backbone,
        "input_name": "images",
        "input_layout": layout,
        "input_dtype": input_dtype,
        "input_range": "[0, 255] raw RGB pixels (normalisation happens inside the graph)",
        "image_size": str(image_size),
        "resize_size": str(resize_size),
        "transform": (
            f"decode to RGB; resize to {resize_size}x{resize_size} ignoring aspect ratio (cv2 INTER_AREA when "
            f"shrinking both sides, else INTER_LINEAR); centre crop {image_size}x{image_size} at offset "
            f"({resize_size} - {image_size}) // 2"
        ),
        "preprocess": model.preprocess,
        "normalization": NORMALIZATION.get(model.preprocess, model.preprocess),
        "mean": json.dumps(list(PIXEL_MEAN_STD[model.preprocess][0])),
        "std": json.dumps(list(PIXEL_MEAN_STD[model.preprocess][1])),
        "outputs": json.dumps({name: f"{head}/{key}" for name, head, key in spec}),
        "heads": json.dumps(heads, default=list),
        "label_semantics": json.dumps(bundle_lib.label_semantics(heads)),
        "aesthetics_jax_version": aesthetics_jax.__version__,
    }
    props.update({k: str(v) for k, v in (extra or {}).items()})
    return props


def export_onnx(
    model,
    variables,
    *,
    image_size: int,
    resize_size: int | None = None,
    path: str | os.PathLike | None = None,
    input_dtype: str = "float32",
    layout: str = "NHWC",
    opset: int = DEFAULT_OPSET,
    extra_metadata: dict[str, Any] | None = None,
):
    """Exports ``model.apply(variables, images)``; returns the ``onnx.ModelProto`` (also saved to
    ``path`` if given). See the module docstring for the graph's contract."""
    import onnx
    from jax2onnx import to_onnx

    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET} for jax2onnx, got {opset}")
    if layout not in ("NHWC", "NCHW"):
        raise ValueError(f"layout must be 'NHWC' or 'NCHW', got {layout!r}")
    if input_dtype not in ("float32", "uint8"):
        raise ValueError(f"input_dtype must be 'float32' or 'uint8', got {input_dtype!r}")
    spec = bundle_lib.output_spec(model_heads(model))
    model = export_model(model)
    shape = ("B", 3, image_size, image_size) if layout == "NCHW" else ("B", image_size, image_size, 3)
    proto = to_onnx(
        apply_fn(model, variables, spec),
        [jax.ShapeDtypeStruct(("B", image_size, image_size, 3), jnp.dtype(input_dtype))],
        model_name=f"aesthetics_jax_{type(model.backbone).__name__}",
        opset=opset,
        inputs_as_nchw=[0] if layout == "NCHW" else None,
        input_names=["images"],
        output_names=[name for name, _, _ in spec],
    )
    del proto.graph.value_info[:]  # see the module docstring
    optimize_graph(proto.graph)
    onnx.helper.set_model_props(
        proto,
        metadata(model, image_size=image_size, resize_size=resize_size, input_dtype=input_dtype, layout=layout,
                 spec=spec, extra=extra_metadata),
    )
    got = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    if tuple(got) != shape:
        raise RuntimeError(f"jax2onnx produced input shape {got}, expected {shape}")
    if path is not None:
        save(proto, path)
    return proto


def _scalar(graph_inits: dict, name: str):
    from onnx import numpy_helper

    init = graph_inits.get(name)
    if init is None:
        return None
    value = numpy_helper.to_array(init)
    return float(value.ravel()[0]) if value.size == 1 else None


def fuse_relu6(graph) -> int:
    """Rewrites jax2onnx's ReLU6, ``Min(Max(x, 0), 6)`` with scalar constants, as one
    ``Clip(x, 0, 6)``; returns how many were rewritten. Same values; onnxruntime fuses
    Conv + Clip into one kernel and keeps its blocked (NCHWc) layout across the activation,
    where Max/Min force a layout reorder around every convolution (MobileNet: 2.5x faster)."""
    from onnx import helper

    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    replace, drop = {}, set()
    for node in graph.node:
        if node.op_type != "Max" or len(node.input) != 2 or _scalar(inits, node.input[1]) != 0.0:
            continue
        (mid,) = node.output
        users = consumers.get(mid, [])
        if mid in outputs or len(users) != 1:
            continue
        user = users[0]
        if user.op_type != "Min" or len(user.input) != 2 or list(user.input).count(mid) != 1:
            continue
        six = user.input[1] if user.input[0] == mid else user.input[0]
        if _scalar(inits, six) != 6.0 or inits[six].dims or inits[node.input[1]].dims:
            continue  # Clip's min/max must be 0-d tensors
        replace[id(node)] = helper.make_node("Clip", [node.input[0], node.input[1], six], list(user.output),
                                             name=f"{node.name or mid}_clip")
        drop.add(id(user))
    if replace:
        nodes = [replace.get(id(n), n) for n in graph.node if id(n) not in drop]
        del graph.node[:]
        graph.node.extend(nodes)
    return len(replace)


def optimize_graph(graph) -> dict[str, int]:
    """The export's graph passes, each exact up to float rounding; returns how many nodes each
    rewrote. ReLU6 as ``Clip``; constant weight layouts (jax2onnx's ``Transpose`` of every HWIO
    kernel) and inference BatchNorm folded into the ``Conv`` weights and bias. onnxruntime does the
    last two itself when it loads the graph (so they do not change its speed, only its session
    start: 58 -> 18 ms for NIMA-MobileNet), but every runtime gets the plain Conv + Clip graph."""
    return {
        "relu6_as_clip": fuse_relu6(graph),
        "constant_transposes": fold_constant_transposes(graph),
        "batchnorm_into_conv": fold_batchnorm(graph),
    }


def _attribute(node, name: str, default=None):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _rebuild(graph, nodes) -> None:
    """Replaces the graph's nodes by ``nodes`` and drops the initializers nothing uses any more."""
    del graph.node[:]
    graph.node.extend(nodes)
    used = _names_read(graph) | {o.name for o in graph.output} | {i.name for i in graph.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _names_read(graph) -> set:
    """Every name a node of ``graph`` or of its subgraphs (If / Loop bodies) reads."""
    names = set()
    for node in graph.node:
        names.update(node.input)
        for attribute in node.attribute:
            for sub in [attribute.g] * attribute.HasField("g") + list(attribute.graphs):
                names |= _names_read(sub)
    return names


def _fresh_name(base: str, taken: set) -> str:
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


def _all_names(graph) -> set:
    names = {i.name for i in graph.initializer} | {i.name for i in graph.input}
    return names | {name for node in graph.node for name in (*node.input, *node.output)}


def fold_constant_transposes(graph) -> int:
    """Replaces every ``Transpose`` of an initializer (jax2onnx keeps convolution kernels HWIO and
    transposes them to OIHW inside the graph) by the transposed initializer; returns how many."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    graph_outputs = {o.name for o in graph.output}
    taken = _all_names(graph)
    nodes, folded = [], 0
    for node in list(graph.node):
        if (node.op_type == "Transpose" and len(node.input) == 1 and node.input[0] in inits
                and node.output[0] not in graph_outputs):
            value = numpy_helper.to_array(inits[node.input[0]])
            perm = _attribute(node, "perm") or list(reversed(range(value.ndim)))
            (out,) = node.output
            taken.add(out)
            init = numpy_helper.from_array(np.ascontiguousarray(value.transpose(perm)), out)
            graph.initializer.append(init)
            inits[out] = init
            folded += 1
        else:
            nodes.append(node)
    if folded:
        _rebuild(graph, nodes)
    return folded


def fold_batchnorm(graph) -> int:
    """Folds every inference ``BatchNormalization`` that is the only consumer of a ``Conv`` with
    constant weights (and bias) into that Conv: ``W' = W * s`` per output channel, ``b' = (b -
    mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``, computed in float64; returns how many."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    graph_outputs = {o.name for o in graph.output}
    taken = _all_names(graph)
    all_nodes = list(graph.node)
    producer = {out: k for k, node in enumerate(all_nodes) for out in node.output}
    replace: dict[int, Any] = {}
    drop: set[int] = set()
    for index, bn in enumerate(all_nodes):
        if (bn.op_type != "BatchNormalization" or len(bn.input) != 5 or len(bn.output) != 1
                or _attribute(bn, "training_mode", 0) or not all(n in inits for n in bn.input[1:])):
            continue
        k = producer.get(bn.input[0])
        conv = all_nodes[k] if k is not None else None
        if conv is None or conv.op_type != "Conv" or k in replace or len(conv.input) < 2 or conv.input[1] not in inits:
            continue
        has_bias = len(conv.input) > 2 and conv.input[2] != ""
        if (has_bias and conv.input[2] not in inits) or consumers[bn.input[0]] != 1 or bn.input[0] in graph_outputs:
            continue
        weight = numpy_helper.to_array(inits[conv.input[1]])
        if weight.dtype != np.float32:
            continue
        gamma, beta, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64) for n in bn.input[1:])
        scale = gamma / np.sqrt(var + _attribute(bn, "epsilon", 1e-5))
        bias = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if has_bias else 0.0
        new_weight = weight.astype(np.float64) * scale.reshape(-1, *[1] * (weight.ndim - 1))
        new_bias = (bias - mean) * scale + beta
        w_name = _fresh_name(f"{conv.input[1]}_bn_folded", taken)
        b_name = _fresh_name(f"{bn.output[0]}_bias", taken)
        graph.initializer.extend([numpy_helper.from_array(new_weight.astype(np.float32), w_name),
                                  numpy_helper.from_array(new_bias.astype(np.float32), b_name)])
        fused = helper.make_node("Conv", [conv.input[0], w_name, b_name], list(bn.output), name=conv.name)
        fused.attribute.extend(conv.attribute)
        replace[k] = fused
        drop.add(index)
    if drop:
        _rebuild(graph, [replace.get(k, node) for k, node in enumerate(all_nodes) if k not in drop])
    return len(drop)


def save(proto, path) -> str:
    """Writes ``proto`` to ``path`` (weights in a ``.data`` sidecar only past protobuf's 2 GB)."""
    import onnx

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    large = proto.ByteSize() > _TWO_GB
    onnx.save_model(proto, path, save_as_external_data=large,
                    location=os.path.basename(path) + ".data" if large else None)
    return path


def export_bundle(bundle, path=None, **kwargs):
    """Exports a loaded ``bundle.Bundle`` with its own image/resize size and metadata."""
    return export_onnx(
        bundle.create_model(),
        bundle.variables,
        image_size=bundle.image_size,
        resize_size=bundle.resize_size,
        path=path,
        extra_metadata={"bundle_model_config": json.dumps(bundle.model_config, default=list),
                        **transform_metadata(bundle.transform)},
        **kwargs,
    )
