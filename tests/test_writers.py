"""Metric writers produce files that TensorBoard's own reader and json parse back."""

import json
import os

from aesthetics_jax.train import writers


def test_tensorboard_and_jsonl(tmp_path, tensorflow_imports):
    w = writers.create_default_writer(str(tmp_path))
    w.write_scalars(1, {"loss": 0.5, "img_per_sec": 10.0})
    w.write_scalars(2, {"loss": 0.25, "nan_metric": float("nan")})
    w.close()
    assert tensorflow_imports == []  # even when TF is installed (the [tf] extra)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(os.path.join(tmp_path, "tensorboard"))
    acc.Reload()
    loss = [(e.step, e.value) for e in acc.Scalars("loss")]
    assert loss == [(1, 0.5), (2, 0.25)]

    rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["img_per_sec"] == 10.0 and rows[1]["nan_metric"] is None


def test_inactive_writer_writes_nothing(tmp_path):
    w = writers.create_default_writer(str(tmp_path), active=False)
    w.write_scalars(1, {"loss": 1.0})
    w.close()
    assert not (tmp_path / "metrics.jsonl").exists()
