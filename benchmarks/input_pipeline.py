"""Input-pipeline throughput: the project's Grain pipeline vs tf.data (AUTOTUNE) on the same JPEGs.

    .venv/bin/python benchmarks/input_pipeline.py [--num_images 2000] [--batch_size 64] [--workdir DIR]

Generates `num_images` JPEGs of AVA size (500x375 or 375x500, quality 90, photo-like content:
smooth shapes + texture + noise, ~60-90 KB each) once into `workdir`, holds their bytes in memory
(as the array_record source does), and measures images/s of the training transform
(decode -> square resize 256 (bilinear: a <= 2x shrink) -> random crop 224 -> random flip -> batch,
uint8) for:

    grain_tN          aesthetics_jax.data.pipeline.make_dataset(train=True, num_threads=N)
    grain_s256_tN     the same over records stored at shorter side 256 (image_io resize_shorter,
                      what `aesthetics-jax data build ... --resize_shorter 256` stores)
    grain[_s256]_wN   the same with N worker processes (make_dataset(num_workers=N), 2 threads each)
    tfdata[_s256]     tf.data: from_tensor_slices(bytes).map(decode_jpeg + resize + crop + flip,
                      AUTOTUNE).batch().prefetch(AUTOTUNE) — only if tensorflow is importable

Each run discards the first 2 batches (thread start-up), then times the next ones up to
`num_images` images. tf.data runs last (importing TensorFlow starts its thread pools).
Prints a table and the machine's core count; `--json PATH` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aesthetics_jax.data import image_io, pipeline  # noqa: E402

RESIZE, CROP = 256, 224


def _photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Photo-like BGR content: a smooth gradient, blurred blobs, fine texture and sensor noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([x / width * 180 + 40, y / height * 160 + 50, (x + y) / (width + height) * 120 + 60], -1)
    for _ in range(12):
        cy, cx, r = rng.integers(0, height), rng.integers(0, width), rng.integers(15, 90)
        color = rng.integers(0, 256, 3).astype(np.float32)
        mask = ((y - cy) ** 2 + (x - cx) ** 2 < r * r)[..., None]
        image = np.where(mask, 0.3 * image + 0.7 * color, image)
    image = cv2.GaussianBlur(image, (0, 0), 2.0)
    texture = cv2.resize(rng.normal(0, 18, (height // 4, width // 4, 3)).astype(np.float32), (width, height))
    image = image + texture + rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_jpegs(workdir: str, num_images: int) -> list[bytes]:
    folder = os.path.join(workdir, f"jpegs_{num_images}")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(num_images):
        path = os.path.join(folder, f"{i}.jpg")
        if not os.path.exists(path):
            h, w = (375, 500) if i % 4 else (500, 375)
            ok, data = cv2.imencode(".jpg", _photo(rng, h, w), [cv2.IMWRITE_JPEG_QUALITY, 90])
            with open(path + ".tmp", "wb") as f:
                f.write(data.tobytes())
            os.replace(path + ".tmp", path)
        with open(path, "rb") as f:
            out.append(f.read())
    return out


def resized_copies(jpegs: list[bytes], shorter: int) -> list[bytes]:
    out = []
    for data in jpegs:
        inspection = image_io.inspect_bytes(data, resize_shorter=shorter)
        rgb = image_io.load_rgb(data)
        target = (shorter, round(rgb.shape[0] * shorter / rgb.shape[1])) if rgb.shape[1] <= rgb.shape[0] else \
            (round(rgb.shape[1] * shorter / rgb.shape[0]), shorter)
        assert inspection.action == "reencode:resize"
        out.append(image_io.encode_jpeg(cv2.resize(rgb, target, interpolation=cv2.INTER_AREA)))
    return out


def _records(jpegs):
    dist = np.full(10, 0.1, np.float32)
    return [{"image": d, "distribution": dist, "mean_score": 5.5, "votes": 100, "id": i} for i, d in enumerate(jpegs)]


def _time_batches(iterator, batch_size: int, num_images: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        next(iterator)
    n, start = 0, time.perf_counter()
    while n < num_images:
        batch = next(iterator)
        n += len(batch["image"]) if isinstance(batch, dict) else len(batch[0])
    return n / (time.perf_counter() - start)


def bench_grain(jpegs, batch_size, num_images, threads, workers=0) -> float:
    ds = pipeline.make_dataset(_records(jpegs), train=True, batch_size=batch_size, image_size=CROP,
                               resize_size=RESIZE, seed=0, shard_index=0, shard_count=1, num_threads=threads,
                               prefetch_buffer_size=max(2 * batch_size, 128), num_workers=workers)
    it = iter(ds)
    first = next(it)
    assert first["image"].shape == (batch_size, CROP, CROP, 3) and first["image"].dtype == np.uint8
    return _time_batches(it, batch_size, num_images)


def bench_tfdata(jpegs, batch_size, num_images) -> float:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    def load(data):
        image = tf.io.decode_jpeg(data, channels=3)
        # The project's interpolation for a <= 2x shrink (preprocessing.resize): bilinear.
        image = tf.image.resize(image, (RESIZE, RESIZE), method="bilinear")
        image = tf.image.random_crop(image, (CROP, CROP, 3))
        image = tf.image.random_flip_left_right(image)
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)

    ds = (tf.data.Dataset.from_tensor_slices(tf.constant(jpegs)).repeat().shuffle(1024, seed=0)
          .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
          .batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
    it = iter(ds.as_numpy_iterator())
    return _time_batches(map(lambda b: [b], it), batch_size, num_images)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_images", type=int, default=2000)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--threads", default="0,2,4,8", help="grain read threads to try")
    parser.add_argument("--workers", default="2", help="grain worker processes to try (with 2 threads each)")
    parser.add_argument("--workdir", default=os.path.join("/tmp", "aesthetics_jax_bench"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    jpegs = make_jpegs(args.workdir, args.num_images)
    small = resized_copies(jpegs, RESIZE)
    print(f"{len(jpegs)} JPEGs, mean {np.mean([len(d) for d in jpegs]) / 1024:.0f} KiB (500x375, q90); "
          f"s256 copies mean {np.mean([len(d) for d in small]) / 1024:.0f} KiB; {os.cpu_count()} cores", flush=True)
    results = {}
    for threads in (int(t) for t in args.threads.split(",")):
        results[f"grain_t{threads}"] = bench_grain(jpegs, args.batch_size, args.num_images, threads)
        print(f"grain_t{threads:<10d} {results[f'grain_t{threads}']:8.0f} img/s", flush=True)
        results[f"grain_s256_t{threads}"] = bench_grain(small, args.batch_size, args.num_images, threads)
        print(f"grain_s256_t{threads:<5d} {results[f'grain_s256_t{threads}']:8.0f} img/s", flush=True)
    for workers in (int(w) for w in args.workers.split(",") if w):
        for name, data in ((f"grain_w{workers}", jpegs), (f"grain_s256_w{workers}", small)):
            results[name] = bench_grain(data, args.batch_size, args.num_images, 2, workers)
            print(f"{name:<16} {results[name]:8.0f} img/s", flush=True)
    try:
        import tensorflow as tf  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
        print("tf.data: skipped (tensorflow not importable)", flush=True)
    else:
        results["tfdata"] = bench_tfdata(jpegs, args.batch_size, args.num_images)
        print(f"tfdata           {results['tfdata']:8.0f} img/s", flush=True)
        results["tfdata_s256"] = bench_tfdata(small, args.batch_size, args.num_images)
        print(f"tfdata_s256      {results['tfdata_s256']:8.0f} img/s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(results, num_images=len(jpegs), batch_size=args.batch_size, cores=os.cpu_count()), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
