"""onnxruntime sessions for exported models (imports onnxruntime only; no JAX, no jax2onnx).

    session = inference_session(model_bytes_or_path)

The one place where the serving-side onnxruntime options are chosen, so `predict`, the benchmarks
and the tests run exported graphs the same way:

  * graph optimisation ORT_ENABLE_ALL (onnxruntime's default): its NCHWc layout transformer runs
    every Conv (+ folded BatchNorm, + Clip) in blocked layout, 1.6x faster than ORT_ENABLE_EXTENDED
    for NIMA-MobileNet on the 2-core box;
  * intra-op threads: onnxruntime's default (one per physical core);
  * no spinning (``session.intra_op.allow_spinning = 0``): idle intra-op threads block instead of
    busy-waiting. `predict` decodes the next batch in threads while a batch runs, and a shared
    machine has other processes: a spinning thread takes their core. Measured on the 2-core box
    (NIMA-MobileNet, batch 32, interleaved runs): alone, the same speed (end to end on JPEG files
    114.0 vs 114.0 img/s; on arrays within the +-7% spread between identical sessions); with the
    cores contended, 1.03-1.10x on arrays and 1.07-1.2x end to end.
"""

from __future__ import annotations


def session_options(*, threads: int = 0, spinning: bool = False):
    """The ``onnxruntime.SessionOptions`` described above (``threads=0``: onnxruntime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = int(threads)
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


def inference_session(model, *, providers=("CPUExecutionProvider",), threads: int = 0, spinning: bool = False):
    """An ``onnxruntime.InferenceSession`` for ``model`` (serialized bytes or a path)."""
    import onnxruntime as ort

    return ort.InferenceSession(model, session_options(threads=threads, spinning=spinning), providers=list(providers))
