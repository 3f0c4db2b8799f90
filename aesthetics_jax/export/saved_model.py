"""TF SavedModel export through jax2tf (for TF Serving). Needs the ``[tf]`` extra.

    export_saved_model(model, variables, "nima_savedmodel", image_size=224, resize_size=256)

The SavedModel's ``serving_default`` signature takes ``images``: float32 ``[B, image_size,
image_size, 3]`` raw RGB pixels in [0, 255] (NHWC, dynamic ``B``; normalisation is inside) and
returns the outputs named as in ONNX (``bundle.output_spec``: ``distribution``, ``mean``, ``sd``,
``scores``, ``attributes``, ``overall``). Parameters are ``tf.Variable``s (restorable, not
constants). jax2tf uses native serialisation (``XlaCallModule``), which TF Serving runs; that is
also why ONNX goes through jax2onnx instead of tf2onnx. The preprocessing contract is written to
``assets.extra/aesthetics_jax.json`` next to the model.

TensorFlow is imported only inside these functions: training, evaluation and predict never do.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp

from aesthetics_jax.export import bundle as bundle_lib
from aesthetics_jax.export import onnx as onnx_export


def export_saved_model(model, variables, path, *, image_size: int, resize_size: int | None = None,
                       extra_metadata: dict | None = None) -> str:
    """Writes a SavedModel of ``model.apply(variables, images)`` to ``path``; returns ``path``."""
    import tensorflow as tf
    from jax.experimental import jax2tf

    spec = bundle_lib.output_spec(onnx_export.model_heads(model))
    names = [name for name, _, _ in spec]
    model = onnx_export.export_model(model)  # float32, grouped-conv depthwise (TF's fast kernel)

    def fn(params, images):
        outputs = model.apply(params, images, train=False)
        return {name: outputs[head][key].astype(jnp.float32) for name, head, key in spec}

    converted = jax2tf.convert(fn, polymorphic_shapes=[None, f"(b, {image_size}, {image_size}, 3)"], with_gradient=False)
    module = tf.Module()
    module.params = tf.nest.map_structure(lambda x: tf.Variable(x, trainable=False), jax.device_get(variables))

    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="images")])
    def serve(images):
        return converted(module.params, images)

    module.serve = serve
    path = os.fspath(path)
    tf.saved_model.save(module, path, signatures={"serving_default": serve})
    meta = onnx_export.metadata(model, image_size=image_size, resize_size=resize_size, input_dtype="float32",
                                layout="NHWC", spec=spec, extra=extra_metadata)
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    with open(os.path.join(path, "assets.extra", "aesthetics_jax.json"), "w") as f:
        json.dump({**meta, "outputs": names}, f, indent=2)
    return path


def export_bundle(bundle, path) -> str:
    return export_saved_model(bundle.create_model(), bundle.variables, path, image_size=bundle.image_size,
                              resize_size=bundle.resize_size,
                              extra_metadata=onnx_export.transform_metadata(bundle.transform))
