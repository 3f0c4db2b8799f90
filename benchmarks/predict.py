r"""CPU prediction speed of NIMA-MobileNet (alpha 1, 224 px, batch 32) and cold start.

    .venv/bin/python benchmarks/predict.py [--iters 5] [--skip-cold] [--skip-keras]

Measures, on random weights (speed does not depend on them) and random [0, 255] images:
  * model throughput (img/s, images already decoded and cropped) through the JAX backend
    (jit-compiled apply) and through onnxruntime (the jax2onnx export), batch 32;
  * the anchor in the same run, when TensorFlow and Keras are importable: idealo's NIMA
    architecture (keras.applications.MobileNet alpha 1, include_top=False, average pooling,
    Dropout 0.75, Dense(10, softmax)) in Keras 3 on the TensorFlow backend, in a child process
    (KERAS_BACKEND=tensorflow), `predict_on_batch` on the same batch size, inputs scaled to
    [-1, 1] outside the timing as idealo does;
  * end-to-end `aesthetics-jax predict` cold start: wall time of a fresh process scoring one JPEG,
    for the JAX backend without the persistent compilation cache, with a cold cache (first run)
    and a warm one, and for the ONNX backend with `model.onnx` stored in the bundle (no JAX import).
Without TF/Keras the anchor is DESIGN.md's figure on the same 2-core box (Keras-TF 24 img/s).
Prints a markdown table; the numbers depend on the machine's load (`os.getloadavg()` printed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
KERAS_TF_ANCHOR = 24.0  # DESIGN.md, used only when TF/Keras cannot be imported
KERAS_CHILD = r"""
import json, os, sys, time
import numpy as np
import keras
assert keras.backend.backend() == "tensorflow", keras.backend.backend()
iters, batch_size = int(sys.argv[1]), int(sys.argv[2])
base = keras.applications.MobileNet(input_shape=(224, 224, 3), alpha=1.0, include_top=False, pooling="avg",
                                    weights=None)
x = keras.layers.Dropout(0.75)(base.output)
x = keras.layers.Dense(10, activation="softmax")(x)
model = keras.Model(base.input, x)
batch = np.random.default_rng(0).uniform(0, 255, (batch_size, 224, 224, 3)).astype(np.float32) / 127.5 - 1
model.predict_on_batch(batch)
model.predict_on_batch(batch)
start = time.perf_counter()
for _ in range(iters):
    model.predict_on_batch(batch)
rate = iters * batch_size / (time.perf_counter() - start)
import tensorflow as tf
print("KERAS " + json.dumps({"rate": rate, "keras": keras.__version__, "tf": tf.__version__}))
"""
MODEL_CONFIG = dict(name="mobilenet", width=1.0, dropout=0.75, dtype="float32",
                    heads={"emd": {"type": "emd", "num_bins": 10}})


def make_bundle(directory: str) -> str:
    import jax
    import jax.numpy as jnp

    from aesthetics_jax import models
    from aesthetics_jax.export import bundle as bundle_lib

    cfg = dict(MODEL_CONFIG)
    name = cfg.pop("name")
    cfg.pop("dtype")
    model = models.create(name, **cfg)
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 224, 224, 3), jnp.uint8))
    path = os.path.join(directory, "nima_mobilenet.bundle")
    bundle_lib.write(path, model_config=MODEL_CONFIG, variables=variables, image_size=224, resize_size=256, onnx=True)
    return path


def throughput(predictor, batch: np.ndarray, iters: int) -> float:
    predictor(batch)  # compile / warm up
    predictor(batch)
    start = time.perf_counter()
    for _ in range(iters):
        predictor(batch)
    return iters * len(batch) / (time.perf_counter() - start)


def keras_tf_throughput(iters: int, batch_size: int = 32):
    """(img/s, versions) of the Keras-on-TF anchor in a child process, or None without TF/Keras."""
    import importlib.util
    import json

    if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("keras") is None:
        return None
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-c", KERAS_CHILD, str(iters), str(batch_size)], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"Keras-TF anchor failed:\n{proc.stderr[-3000:]}")
    line = next(line for line in proc.stdout.splitlines() if line.startswith("KERAS "))
    result = json.loads(line[len("KERAS "):])
    return result["rate"], f"keras {result['keras']}, tensorflow {result['tf']}"


def cold_start(bundle: str, image: str, backend: str, env: dict, extra=()) -> float:
    cmd = [sys.executable, "-m", "aesthetics_jax.cli", "predict", image, "--model", bundle, "--backend", backend,
           "--quiet", *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument("--skip-keras", action="store_true", help="use DESIGN.md's anchor figure instead")
    args = parser.parse_args()

    from aesthetics_jax.predict import Predictor

    print(f"load average before: {os.getloadavg()}, cpus: {os.cpu_count()}", flush=True)
    rows = []
    anchor = None if args.skip_keras else keras_tf_throughput(args.iters)
    if anchor is None:
        anchor_rate, anchor_row = KERAS_TF_ANCHOR, ("Keras on TF (anchor, DESIGN.md figure)", f"{KERAS_TF_ANCHOR:.0f} img/s", "1.00x")
    else:
        anchor_rate = anchor[0]
        anchor_row = ("throughput, Keras on TF (anchor, this run), batch 32", f"{anchor_rate:.1f} img/s", f"1.00x; {anchor[1]}")
    print(anchor_row, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = make_bundle(tmp)
        batch = np.random.default_rng(0).uniform(0, 255, (32, 224, 224, 3)).astype(np.float32)
        for backend in ("jax", "onnx"):
            rate = throughput(Predictor(bundle, backend=backend, batch_size=32), batch, args.iters)
            rows.append((f"throughput, {backend} backend, batch 32", f"{rate:.1f} img/s",
                         f"{rate / anchor_rate:.2f}x Keras-TF"))
            print(rows[-1], flush=True)
        if not args.skip_cold:
            import cv2

            image = os.path.join(tmp, "photo.jpg")
            pixels = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
            cv2.imwrite(image, pixels)
            env = dict(os.environ, JAX_PLATFORMS="cpu", AESTHETICS_JAX_CACHE=os.path.join(tmp, "jax_cache"))
            env.pop("XLA_FLAGS", None)
            runs = [
                ("cold start, jax backend, no compilation cache", "jax", ["--no-cache"]),
                ("cold start, jax backend, empty compilation cache", "jax", []),
                ("cold start, jax backend, warm compilation cache", "jax", []),
                ("cold start, onnx backend, model.onnx in bundle", "onnx", []),
            ]
            for label, backend, extra in runs:
                seconds = cold_start(bundle, image, backend, env, extra)
                rows.append((label, f"{seconds:.1f} s", "1 image, fresh process"))
                print(rows[-1], flush=True)
    print(f"load average after: {os.getloadavg()}")
    print("\n| measurement | result | note |\n|---|---|---|")
    print("| " + " | ".join(anchor_row) + " |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
