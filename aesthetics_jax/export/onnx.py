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
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp

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
    onnxruntime). Likewise 1x1 convolutions stay ``Conv`` (``pointwise_impl='conv'``)."""
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
    fuse_relu6(proto.graph)
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
        extra_metadata={"bundle_model_config": json.dumps(bundle.model_config, default=list)},
        **kwargs,
    )
