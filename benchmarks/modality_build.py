"""Modality build throughput: maps of every image of a build, then the records, on 500x375 photos.

    .venv/bin/python benchmarks/modality_build.py [--num_images 1000] [--producers blur,spectral] \\
        [--batch_size 8] [--workdir DIR]

Fixture: the EVA-format photographs of benchmarks/patches.py (`write_fixture`: seeded crops of
scikit-image's photos, 500x375 JPEG q90), built by `eva.build_eva` (timed apart). For each producer,
`modality.build_modality` from scratch, timed in its two steps: (1) the maps (`compute_map_files`
over the build: record read, JPEG decode, the producer in batches of `batch_size`, 8-bit PNG
encode and write, 2 threads; first-call compilation included) and (2) the records (PNG bytes and
labels into array_record). Images per second of each step and of the whole build. The machine may
be shared: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import patches as patch_bench  # noqa: E402  (benchmarks/patches.py: the same photo fixture)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_images", type=int, default=1000)
    parser.add_argument("--producers", default="blur,spectral")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--workdir", default=None, help="kept when given; a temporary folder otherwise")
    args = parser.parse_args()

    from aesthetics_jax.data.builders import eva, modality

    workdir = args.workdir or tempfile.mkdtemp(prefix="modality_bench_")
    try:
        raw, data_dir = os.path.join(workdir, "raw"), os.path.join(workdir, "tfds")
        if not os.path.isdir(raw):
            patch_bench.write_fixture(raw, args.num_images)
        shutil.rmtree(data_dir, ignore_errors=True)
        start = time.perf_counter()
        parent = eva.build_eva(raw, data_dir)
        print(f"| what | result |\n|---|---|")
        print(f"| EVA build ({args.num_images} images, 500x375) | {time.perf_counter() - start:.1f} s |")
        for name in args.producers.split(","):
            load_before = os.getloadavg()[0]
            config = modality.config_for(parent.data_dir, name)
            start = time.perf_counter()
            summary = modality.compute_maps(data_dir, config, batch_size=args.batch_size, progress=None)
            maps_seconds = time.perf_counter() - start
            start = time.perf_counter()
            builder = modality.build_modality(data_dir, parent_dir=parent.data_dir, producer=name)
            records_seconds = time.perf_counter() - start
            n = sum(int(s.num_examples) for s in builder.info.splits.values())
            assert summary["computed"] == n == args.num_images, (summary, n)
            total = maps_seconds + records_seconds
            print(f"| **{name} modality build** ({n} images, batch {args.batch_size}) | **{n / total:.0f} img/s** "
                  f"({total:.1f} s): maps {n / maps_seconds:.0f} img/s, records {n / records_seconds:.0f} img/s; "
                  f"load {load_before:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores |")
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
