"""Blur / sharpness map throughput: `modalities.blur.BlurMap` on CPU, images/s.

    .venv/bin/python benchmarks/blur.py [--batch 8 32] [--rounds 3] [--repeats 5] [--window 31]

Photos: 500x375 (W x H) uint8 RGB crops of scikit-image's bundled photographs, made exactly as
benchmarks/spectral.py makes them (each resized with INTER_AREA to cover 500x375, then
centre-cropped), cycled to fill a batch.

Timed: `BlurMap(window=...)` called on the whole batch, already stacked into one 64-byte aligned
array (as `modalities.compute_maps` builds batches), to numpy maps in hand (`np.asarray` of the
result); one untimed warm-up call per batch size compiles. A second row times `compute_maps` on
the list of photos (stacking included). Each of `rounds` rounds reports the median of `repeats`
passes; the table gives the best round (the machine may be shared: the load average before and
after is printed) and every round.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--window", type=int, default=31)
    args = parser.parse_args(argv)

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, root)
    sys.path.insert(0, os.path.join(root, "benchmarks"))
    import jax
    from spectral import HEIGHT, WIDTH, photos   # benchmarks/spectral.py: the same photos

    from aesthetics_jax import modalities

    pool = photos()
    producer = modalities.create("blur", window=args.window)
    load_before = os.getloadavg()
    results: dict[tuple, list[float]] = {}
    for batch in args.batch:
        images = [pool[i % len(pool)] for i in range(batch)]
        stacked = modalities.aligned_empty((batch, HEIGHT, WIDTH, 3), np.uint8)
        np.stack(images, out=stacked)
        np.asarray(producer(stacked))                                   # warm-up: compiles
        modalities.compute_maps(producer, images, batch_size=batch)
        for _ in range(args.rounds):
            for label, call in (("BlurMap, stacked batch", lambda: np.asarray(producer(stacked))),
                                ("BlurMap, compute_maps(list)",
                                 lambda: modalities.compute_maps(producer, images, batch_size=batch))):
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    maps = call()
                    times.append(time.perf_counter() - start)
                    del maps
                results.setdefault((label, batch), []).append(batch / float(np.median(times)))
    load_after = os.getloadavg()

    command = " ".join([".venv/bin/python", "benchmarks/blur.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"`{command}`\n")
    print(f"{os.cpu_count()} CPUs, jax {jax.__version__} on {jax.devices()[0].platform}, "
          f"{WIDTH}x{HEIGHT} uint8 photos, {producer!r}; load average before "
          f"{', '.join(f'{x:.2f}' for x in load_before)}, after {', '.join(f'{x:.2f}' for x in load_after)}\n")
    print(f"| implementation | batch | images/s (best of {args.rounds} rounds) | rounds | ms/image |")
    print("|---|---|---|---|---|")
    for (name, batch), values in results.items():
        best = max(values)
        print(f"| {name} | {batch} | {best:.0f} | {', '.join(f'{v:.0f}' for v in values)} | {1000 / best:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
