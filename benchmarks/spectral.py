"""Spectral-residual saliency throughput: the JAX producer vs OpenCV-contrib, same photos, same run.

    python3 -m venv /tmp/ocv && /tmp/ocv/bin/pip install opencv-contrib-python-headless numpy
    .venv/bin/python benchmarks/spectral.py [--batch 8 32 128] [--rounds 3] [--repeats 5] \\
        [--variant opencv hou2007] [--opencv-python /tmp/ocv/bin/python]

Photos: 500x375 (W x H) uint8 RGB crops of scikit-image's bundled photographs (each resized with
INTER_AREA to cover 500x375, then centre-cropped), cycled to fill a batch.

JAX: `SpectralSaliency(variant)` called on the whole batch, already stacked into one 64-byte
aligned array (as `modalities.compute_maps` builds batches), timed to numpy maps in hand
(`np.asarray` of the result); one untimed warm-up call compiles. A second row times
`compute_maps` on the list of photos (stacking included; it calls the producer on at most 24 MB of
maps at a time, i.e. 32 photos of 500x375, see `modalities.MAX_BATCH_BYTES`).

OpenCV-contrib: `StaticSaliencySpectralResidual.computeSaliency` on each photo (given as
contiguous BGR, prepared before timing) in a child process of the venv that holds opencv-contrib
(it cannot share a venv with opencv-python-headless), with its default threads.

Every timed pass ends with the whole batch's maps in hand (OpenCV's collected in a list), as a
pipeline that stores them would; they are dropped between passes. JAX and OpenCV are timed in
each of `rounds` alternating rounds (the machine may be shared: the load average is printed with
the results); a round reports the median of `repeats` passes over the batch. Prints a markdown
table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "immunohistochemistry", "hubble_deep_field",
           "retina", "camera", "coins")
WIDTH, HEIGHT = 500, 375


def photos() -> list[np.ndarray]:
    import cv2
    import skimage.data

    out = []
    for name in SOURCES:
        image = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        image = image[..., :3]
        scale = max(WIDTH / image.shape[1], HEIGHT / image.shape[0])
        size = (max(WIDTH, round(image.shape[1] * scale)), max(HEIGHT, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        top, left = (image.shape[0] - HEIGHT) // 2, (image.shape[1] - WIDTH) // 2
        out.append(np.ascontiguousarray(image[top:top + HEIGHT, left:left + WIDTH]))
    return out


def child(path: str, repeats: int) -> int:
    """Runs in the opencv-contrib venv: times computeSaliency over the batch, prints JSON."""
    import cv2

    images = [np.ascontiguousarray(image[..., ::-1]) for image in np.load(path)]
    producer = cv2.saliency.StaticSaliencySpectralResidual_create()
    for image in images[:4]:
        producer.computeSaliency(image)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        maps = [producer.computeSaliency(image)[1] for image in images]   # a batch's maps, all held
        times.append(time.perf_counter() - start)
        assert len(maps) == len(images)
        del maps
    print(json.dumps({"times": times, "version": cv2.__version__, "threads": cv2.getNumThreads()}))
    return 0


def _median(values):
    return float(np.median(values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variant", nargs="+", default=["opencv", "hou2007"])
    parser.add_argument("--opencv-python", default="/tmp/ocv/bin/python")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.repeats)

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import jax

    from aesthetics_jax import modalities

    pool = photos()
    load_before = os.getloadavg()
    results: dict[tuple, list[float]] = {}
    info = {}
    with tempfile.TemporaryDirectory() as tmp:
        for batch in args.batch:
            images = [pool[i % len(pool)] for i in range(batch)]
            stacked = modalities.aligned_empty((batch, HEIGHT, WIDTH, 3), np.uint8)
            np.stack(images, out=stacked)
            path = os.path.join(tmp, f"batch{batch}.npy")
            np.save(path, stacked)
            producers = {variant: modalities.create("spectral", variant=variant) for variant in args.variant}
            for producer in producers.values():
                np.asarray(producer(stacked))
                modalities.compute_maps(producer, images[:batch], batch_size=batch)
            for _ in range(args.rounds):
                for variant, producer in producers.items():
                    times = []
                    for _ in range(args.repeats):
                        start = time.perf_counter()
                        maps = np.asarray(producer(stacked))
                        times.append(time.perf_counter() - start)
                        del maps
                    results.setdefault((f"JAX spectral ({variant})", batch), []).append(batch / _median(times))
                    if variant == "opencv":
                        times = []
                        for _ in range(args.repeats):
                            start = time.perf_counter()
                            maps = modalities.compute_maps(producer, images, batch_size=batch)
                            times.append(time.perf_counter() - start)
                            del maps
                        results.setdefault(("JAX spectral (opencv), compute_maps(list)", batch), []).append(
                            batch / _median(times))
                run = subprocess.run([args.opencv_python, os.path.abspath(__file__), "--child", path,
                                      "--repeats", str(args.repeats)], capture_output=True, text=True, check=True)
                report = json.loads(run.stdout.strip().splitlines()[-1])
                info = report
                results.setdefault(("OpenCV-contrib StaticSaliencySpectralResidual", batch), []).append(
                    batch / _median(report["times"]))
    load_after = os.getloadavg()

    command = " ".join([".venv/bin/python", "benchmarks/spectral.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"`{command}`\n")
    print(f"{os.cpu_count()} CPUs, jax {jax.__version__} on {jax.devices()[0].platform}, opencv-contrib "
          f"{info.get('version')} ({info.get('threads')} threads); load average before "
          f"{', '.join(f'{x:.2f}' for x in load_before)}, after {', '.join(f'{x:.2f}' for x in load_after)}\n")
    print(f"| implementation | batch | images/s (median of {args.rounds} rounds) | rounds | vs OpenCV |")
    print("|---|---|---|---|---|")
    for (name, batch), values in results.items():
        reference = _median(results[("OpenCV-contrib StaticSaliencySpectralResidual", batch)])
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {name} | {batch} | {_median(values):.0f} | {rounds} | {_median(values) / reference:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
