"""Metric writers: TensorBoard event files, a JSON-lines log and the console.

They follow clu's ``MetricWriter`` interface (``write_scalars(step, scalars)``, ``write_hparams``,
``flush``, ``close``). clu 0.0.12's own ``clu.metric_writers`` package imports TensorFlow when it is
imported (its ``SummaryWriter`` is TF-based), and training must not import TensorFlow, so the
TensorBoard writer here writes event files with tensorboard's pure-Python record framing.
TensorBoard reads them as usual: ``tensorboard --logdir WORKDIR``.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from typing import Any, Mapping

from absl import logging


def _to_float(value: Any) -> float:
    return float(value.item() if hasattr(value, "item") else value)


class TensorBoardWriter:
    """Scalars as TensorBoard ``simple_value`` summaries in ``logdir/events.out.tfevents.*``.

    Records are framed by tensorboard's ``RecordWriter`` into a plain local file. (tensorboard's
    ``EventFileWriter`` goes through ``tf.io.gfile`` and so imports TensorFlow whenever it is
    installed — e.g. next to the ``[tf]`` export extra.)
    """

    def __init__(self, logdir: str):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self._writer = RecordWriter(open(os.path.join(logdir, name), "wb"))
        self._writer.write(
            event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()
        )

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        values = [
            self._summary_pb2.Summary.Value(tag=k, simple_value=_to_float(v)) for k, v in scalars.items()
        ]
        event = self._event_pb2.Event(
            wall_time=time.time(), step=int(step), summary=self._summary_pb2.Summary(value=values)
        )
        self._writer.write(event.SerializeToString())
        self._writer.flush()

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        del hparams  # The full config is saved as config.json beside the logs.

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class JsonlWriter:
    """One JSON object per ``write_scalars`` call: ``{"step": s, "time": t, name: value, ...}``."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        row = {"step": int(step), "time": time.time()}
        for k, v in scalars.items():
            value = _to_float(v)
            row[k] = value if math.isfinite(value) else None
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()  # a killed run keeps every line it logged

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        self._file.write(json.dumps({"hparams": dict(hparams)}, default=str) + "\n")

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class LoggingWriter:
    """Scalars to absl logging (one line per call)."""

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        text = ", ".join(f"{k}={_to_float(v):.5g}" for k, v in sorted(scalars.items()))
        logging.info("[%d] %s", step, text)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        logging.info("hparams: %s", dict(hparams))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class MultiWriter:
    """Fans every call out to several writers."""

    def __init__(self, writers):
        self._writers = list(writers)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        for w in self._writers:
            w.write_scalars(step, scalars)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        for w in self._writers:
            w.write_hparams(hparams)

    def flush(self) -> None:
        for w in self._writers:
            w.flush()

    def close(self) -> None:
        for w in self._writers:
            w.close()


def create_default_writer(workdir: str, *, active: bool = True) -> MultiWriter:
    """TensorBoard events in ``workdir/tensorboard``, ``workdir/metrics.jsonl`` and the log.

    ``active=False`` (processes other than 0 in a multi-host run) gives a writer that drops
    everything and creates no files.
    """
    if not active:
        return MultiWriter([])
    return MultiWriter([
        TensorBoardWriter(os.path.join(workdir, "tensorboard")),
        JsonlWriter(os.path.join(workdir, "metrics.jsonl")),
        LoggingWriter(),
    ])
