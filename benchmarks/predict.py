r"""CPU prediction speed of NIMA-MobileNet (alpha 1, 224 px, batch 32) and cold start.

    .venv/bin/python benchmarks/predict.py [--iters 5] [--skip-cold] [--skip-keras] [--keras-onednn]
    .venv/bin/python benchmarks/predict.py --files [--num-files 256] [--rounds 3] [--keras-onednn] [--onnx-spinning]

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

`--files`: end to end on image FILES (decode and transform included), all in one run:
  * photos: `--num-files` JPEGs (quality 90) cut from the real photographs shipped with
    scikit-image / scikit-learn / matplotlib (the demo dataset's base photos), random crops
    resized to a mix of sizes around 500x375 (long side 400-640, mostly 4:3), in a temp dir;
  * Keras on TensorFlow (child process, KERAS_BACKEND=tensorflow) running idealo's NIMA exactly
    as idealo's predict prepares images: `keras.utils.load_img(path, target_size=(224, 224))`
    (Pillow NEAREST squash), `img_to_array`, `keras.applications.mobilenet.preprocess_input`,
    `model.predict_on_batch` per batch of 32, one image after the other; random non-trivial
    weights, written to a legacy Keras .h5 (`model.save`) that the child loads back;
  * ours: `aesthetics-jax convert --from keras FILE --arch nima_mobilenet --out DIR` of that very
    file, then `iter_predict(paths, Predictor(bundle, backend=...))` for the jax and onnx backends
    (the bundle's recorded transform, decoding in predict's threads).
  `--rounds` passes over all files, each round one pass per runner in turn (Keras, [Keras with
  oneDNN], jax, onnx); rates are medians over rounds, ratios are the medians of the per-round
  ratios. The predictions of every runner are compared with Keras' (same weights, same files).
`--keras-onednn` adds a Keras-TF anchor with TF_ENABLE_ONEDNN_OPTS=1: TensorFlow turns its oneDNN
kernels on by default only on some x86 CPUs (not on an AMD EPYC without AVX-512, where the
default Keras-TF is 1.5-1.9x slower), so both anchors are worth reporting. `--onnx-spinning` adds
the onnx backend with onnxruntime's default spinning intra-op threads (export/onnx_runtime.py turns
spinning off).
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


def have_keras_tf() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("keras") is not None


def keras_env(onednn: bool = False) -> dict:
    """The Keras-TF child's environment: TensorFlow's defaults, or oneDNN kernels forced on."""
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("XLA_FLAGS", None)
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    if onednn:
        env["TF_ENABLE_ONEDNN_OPTS"] = "1"
    return env


def keras_tf_throughput(iters: int, batch_size: int = 32, onednn: bool = False):
    """(img/s, versions) of the Keras-on-TF anchor in a child process, or None without TF/Keras."""
    import json

    if not have_keras_tf():
        return None
    env = keras_env(onednn)
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


# ----------------------------------------------------------------------------- --files: end to end

KERAS_FILES_CHILD = r"""
import json, os, sys, time
import numpy as np
import keras
assert keras.backend.backend() == "tensorflow", keras.backend.backend()
weights, list_file, preds_file, batch_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(list_file) as f:
    paths = f.read().splitlines()
# idealo's NIMA: MobileNet alpha 1 without top, average pooling, Dropout 0.75, Dense(10, softmax).
base = keras.applications.MobileNet(input_shape=(224, 224, 3), alpha=1.0, include_top=False, pooling="avg",
                                    weights=None)
x = keras.layers.Dropout(0.75)(base.output)
x = keras.layers.Dense(10, activation="softmax")(x)
model = keras.Model(base.input, x)
if not os.path.exists(weights):  # random, non-trivial weights (BN statistics too), as a legacy .h5
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.weights[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c), rng.normal(0, 0.1, c),
                               rng.uniform(0.5, 1.5, c)])
        elif isinstance(layer, keras.layers.Dense):
            kernel, bias = layer.weights
            layer.set_weights([rng.normal(0, 3 / np.sqrt(kernel.shape[0]), kernel.shape), rng.normal(0, 0.1, bias.shape)])
    model.save(weights)
model.load_weights(weights)  # as idealo's predict does
model.predict_on_batch(np.zeros((batch_size, 224, 224, 3), np.float32))
model.predict_on_batch(np.zeros((batch_size, 224, 224, 3), np.float32))
import tensorflow as tf
print("READY " + json.dumps({"keras": keras.__version__, "tf": tf.__version__}), flush=True)
for command in sys.stdin:
    if command.strip() != "run":
        break
    start = time.perf_counter()
    outputs = []
    for i in range(0, len(paths), batch_size):
        batch = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(224, 224)))
                          for p in paths[i : i + batch_size]])
        batch = keras.applications.mobilenet.preprocess_input(batch)
        outputs.append(np.asarray(model.predict_on_batch(batch)))
    elapsed = time.perf_counter() - start
    np.save(preds_file, np.concatenate(outputs))
    print("RESULT " + json.dumps({"rate": len(paths) / elapsed}), flush=True)
"""


def write_photos(directory: str, count: int, seed: int = 0) -> list[str]:
    """``count`` JPEGs (quality 90) cut from the real photographs the demo dataset uses: a random
    crop of a random base photo, resized (area) to a long side of 400-640 px, mostly 4:3 landscape
    (the shape of AVA-like photos, ~500x375); greyscale photos stay greyscale JPEGs."""
    import cv2
    from PIL import Image

    from aesthetics_jax.data.builders.demo import available_base_photos

    os.makedirs(directory, exist_ok=True)
    bases = []
    for photo in available_base_photos():
        with Image.open(photo.path()) as image:
            grey = image.mode in ("1", "L", "LA", "I", "I;16")
            bases.append(np.asarray(image.convert("L" if grey else "RGB")))
    rng = np.random.default_rng(seed)
    aspects, weights = (4 / 3, 3 / 4, 3 / 2, 2 / 3, 1.0), (0.5, 0.2, 0.15, 0.05, 0.1)  # width / height
    paths = []
    for i in range(count):
        pixels = bases[i % len(bases)]
        height, width = pixels.shape[:2]
        aspect = aspects[rng.choice(len(aspects), p=weights)]
        crop_h = min(height, width / aspect) * np.sqrt(rng.uniform(0.5, 1.0))
        crop_w = crop_h * aspect
        y = int(rng.integers(0, height - int(crop_h) + 1))
        x = int(rng.integers(0, width - int(crop_w) + 1))
        crop = pixels[y : y + int(crop_h), x : x + int(crop_w)]
        long_side = int(rng.integers(400, 641))
        scale = long_side / max(crop.shape[:2])
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        resized = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        path = os.path.join(directory, f"photo_{i:04d}.jpg")
        Image.fromarray(resized).save(path, quality=90)
        paths.append(path)
    return paths


class KerasFilesRunner:
    """The Keras-TF child of ``KERAS_FILES_CHILD``, kept alive between passes (started, it waits
    on stdin; ``run()`` times one pass over all files)."""

    def __init__(self, weights: str, paths: list[str], workdir: str, tag: str, onednn: bool = False):
        import json

        list_file = os.path.join(workdir, "files.txt")
        with open(list_file, "w") as f:
            f.write("\n".join(paths))
        self.preds_file = os.path.join(workdir, f"keras_preds_{tag}.npy")
        self.log = open(os.path.join(workdir, f"keras_{tag}.log"), "w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", KERAS_FILES_CHILD, weights, list_file, self.preds_file, "32"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=keras_env(onednn))
        self.versions = json.loads(self._read("READY "))

    def _read(self, prefix: str) -> str:
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return line[len(prefix):]
        self.log.seek(0)
        raise RuntimeError(f"Keras-TF child failed:\n{self.log.read()[-3000:]}")

    def run(self) -> tuple[float, np.ndarray]:
        import json

        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        rate = json.loads(self._read("RESULT "))["rate"]
        return rate, np.load(self.preds_file)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        self.log.close()


class OursFilesRunner:
    """``iter_predict(paths, Predictor(bundle, backend))``, the Predictor built (and warmed up on
    one batch) once."""

    def __init__(self, bundle: str, backend: str, paths: list[str], onnx_spinning: bool = False):
        from aesthetics_jax.predict import Predictor, iter_predict

        self.iter_predict, self.paths = iter_predict, paths
        self.predictor = Predictor(bundle, backend=backend, batch_size=32)
        if onnx_spinning:  # the lever of export/onnx_runtime.py, undone: onnxruntime's default
            from aesthetics_jax.export import onnx as onnx_export
            from aesthetics_jax.export.onnx_runtime import inference_session

            bundle = self.predictor.bundle
            data = bundle.onnx_bytes or onnx_export.export_bundle(bundle).SerializeToString()
            self.predictor.session = inference_session(data, spinning=True)
        list(iter_predict(paths[:32], self.predictor))

    def run(self) -> tuple[float, np.ndarray]:
        start = time.perf_counter()
        results = list(self.iter_predict(self.paths, self.predictor))
        rate = len(self.paths) / (time.perf_counter() - start)
        errors = [r for r in results if "error" in r]
        if errors:
            raise RuntimeError(f"predict failed on {len(errors)} files, e.g. {errors[0]}")
        return rate, np.array([r["predictions"] for r in results], np.float32)


def converted_bundle(weights: str, out: str) -> str:
    """The bundle that ``aesthetics-jax convert --from keras WEIGHTS --arch nima_mobilenet --out OUT``
    makes (convert writes a verified bundle for an arch with heads, with Keras' load_img transform)."""
    from aesthetics_jax.convert import commands

    if commands.main(["--from", "keras", weights, "--arch", "nima_mobilenet", "--out", out]) != 0:
        raise RuntimeError(f"aesthetics-jax convert failed on {weights}")
    return out


def files_main(args) -> None:
    if not have_keras_tf():
        raise SystemExit("--files needs tensorflow and keras (pip install -e '.[tf]')")
    print(f"load average before: {os.getloadavg()}, cpus: {os.cpu_count()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_photos(os.path.join(tmp, "photos"), args.num_files)
        sizes = [os.path.getsize(p) for p in paths]
        print(f"{len(paths)} JPEGs (q90, mean {np.mean(sizes) / 1024:.0f} KiB) in {tmp}/photos", flush=True)
        weights = os.path.join(tmp, "nima_idealo_random.h5")
        runners = {"Keras on TF": KerasFilesRunner(weights, paths, tmp, "default")}
        if args.keras_onednn:
            runners["Keras on TF, oneDNN on"] = KerasFilesRunner(weights, paths, tmp, "onednn", onednn=True)
        versions = runners["Keras on TF"].versions
        bundle = converted_bundle(weights, os.path.join(tmp, "nima_idealo.bundle"))
        for backend in ("jax", "onnx"):
            runners[f"ours, {backend} backend"] = OursFilesRunner(bundle, backend, paths)
        if args.onnx_spinning:
            runners["ours, onnx backend, spinning threads"] = OursFilesRunner(bundle, "onnx", paths, onnx_spinning=True)
        rates = {name: [] for name in runners}
        diffs = {name: 0.0 for name in runners}
        try:
            for round_ in range(args.rounds):
                reference = None
                for name, runner in runners.items():
                    rate, preds = runner.run()
                    rates[name].append(rate)
                    reference = preds if reference is None else reference
                    diffs[name] = max(diffs[name], float(np.abs(preds - reference).max()))
                print(f"round {round_ + 1}: " + ", ".join(f"{n} {r[-1]:.1f}" for n, r in rates.items())
                      + f" img/s; load average {os.getloadavg()}", flush=True)
        finally:
            for runner in runners.values():
                if isinstance(runner, KerasFilesRunner):
                    runner.close()
    anchor = rates["Keras on TF"]
    print(f"load average after: {os.getloadavg()}")
    print(f"\n{len(paths)} JPEG files, batch 32, {args.rounds} rounds; keras {versions['keras']}, "
          f"tensorflow {versions['tf']}")
    print("\n| runner (decode + transform + model) | img/s (median) | vs Keras-TF | "
          "max abs diff of the distributions vs Keras-TF |\n|---|---|---|---|")
    for name, values in rates.items():
        ratio = np.median([v / a for v, a in zip(values, anchor)])
        extra = ""
        if args.keras_onednn and name != "Keras on TF, oneDNN on" and name != "Keras on TF":
            onednn = rates["Keras on TF, oneDNN on"]
            extra = f" ({np.median([v / a for v, a in zip(values, onednn)]):.2f}x oneDNN)"
        print(f"| {name} | {np.median(values):.1f} | {ratio:.2f}x{extra} | {diffs[name]:.1e} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument("--skip-keras", action="store_true", help="use DESIGN.md's anchor figure instead")
    parser.add_argument("--keras-onednn", action="store_true",
                        help="also measure Keras-TF with TF_ENABLE_ONEDNN_OPTS=1")
    parser.add_argument("--files", action="store_true", help="end to end on JPEG files (see the docstring)")
    parser.add_argument("--num-files", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--onnx-spinning", action="store_true",
                        help="--files: also run the onnx backend with onnxruntime's spinning intra-op threads")
    args = parser.parse_args()
    if args.files:
        return files_main(args)

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
    onednn = keras_tf_throughput(args.iters, onednn=True) if args.keras_onednn and anchor is not None else None
    if onednn is not None:
        rows.append(("throughput, Keras on TF with TF_ENABLE_ONEDNN_OPTS=1, batch 32", f"{onednn[0]:.1f} img/s",
                     f"{onednn[0] / anchor_rate:.2f}x Keras-TF"))
        print(rows[-1], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = make_bundle(tmp)
        batch = np.random.default_rng(0).uniform(0, 255, (32, 224, 224, 3)).astype(np.float32)
        for backend in ("jax", "onnx"):
            rate = throughput(Predictor(bundle, backend=backend, batch_size=32), batch, args.iters)
            rows.append((f"throughput, {backend} backend, batch 32", f"{rate:.1f} img/s",
                         f"{rate / anchor_rate:.2f}x Keras-TF"
                         + (f", {rate / onednn[0]:.2f}x Keras-TF oneDNN" if onednn else "")))
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
