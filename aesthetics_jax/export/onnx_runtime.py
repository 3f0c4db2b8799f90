"""onnxruntime sessions for exported models (imports onnxruntime only; no JAX, no jax2onnx).

    session = inference_session(model_bytes_or_path)

The one place where the serving-side onnxruntime options are chosen, so `predict`, the benchmarks
and the tests run exported graphs the same way.
"""

from __future__ import annotations


def inference_session(model, *, providers=("CPUExecutionProvider",)):
    """An ``onnxruntime.InferenceSession`` for ``model`` (serialized bytes or a path)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=list(providers))
