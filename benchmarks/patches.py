"""Patch build throughput: `eva_patches` over an EVA-format fixture, map computation included.

    .venv/bin/python benchmarks/patches.py [--num_images 2000] [--batch_size 32] [--num_threads 2] \\
        [--workdir DIR] [--stages 200]

Fixture: an EVA directory in the public format (`=` votes CSV with 3 raters per image, quoted
category CSV, images/EVA_together/<id>.jpg) of `num_images` 500x375 (W x H) JPEGs (quality 90):
seeded random crops (60-90 % of each side, half of them mirrored) of scikit-image's photographs,
resized with INTER_AREA. `eva.build_eva` prepares it (80 / 10 / 10 by image; timed, reported
apart), then `eva_patches.build_eva_patches` with the defaults (spectral saliency computed in
process, 5 patches of 299 x 299 per image, JPEG quality 95) -- the number this script is for:
parents per second, wall clock of the whole build (reading the parent records, decoding, maps,
sampling, cropping, JPEG encoding, TFDS serialisation and array_record writing; the producer's
first-call compilation included). `--stages N` also times the stages alone on the first N
parents (rounded down to whole batches; single thread, warm): JPEG decode, spectral maps
(batches of `batch_size`), patch extraction, patch JPEG encoding. The machine may be shared:
the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
           "camera", "coins", "cat")
WIDTH, HEIGHT = 500, 375
HEADER = "image_id=user_id=score=difficulty=visual=composition=quality=semantic=vote_time=1=2=3=4"


def write_fixture(root: str, num_images: int) -> None:
    import cv2
    import skimage.data

    photos = []
    for name in SOURCES:
        image = getattr(skimage.data, name)()
        photos.append(np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3])
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, "data"))
    os.makedirs(os.path.join(root, "images", "EVA_together"))
    votes, categories = [HEADER], ['"image_id","sort"']
    for k in range(num_images):
        image_id = 100000 + k
        source = photos[k % len(photos)]
        h, w = source.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 0.9)), int(w * rng.uniform(0.6, 0.9))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = source[top:top + ch, left:left + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        pixels = cv2.resize(np.ascontiguousarray(crop), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
        cv2.imwrite(os.path.join(root, "images", "EVA_together", f"{image_id}.jpg"), pixels[..., ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        for user in range(3):
            v = [int(rng.integers(0, 11))] + [int(x) for x in rng.integers(1, 5, 5)] + [int(x) for x in rng.integers(0, 2, 4)]
            votes.append(f"{image_id}=U{user}={'='.join(map(str, v[:6]))}=2.0={'='.join(map(str, v[6:]))}")
        categories.append(f'"{image_id}","{1 + k % 6}"')
    with open(os.path.join(root, "data", "votes_filtered.csv"), "w") as f:
        f.write("\n".join(votes) + "\n")
    with open(os.path.join(root, "data", "image_content_category.csv"), "w") as f:
        f.write("\n".join(categories) + "\n")


def stages(parent, num: int, batch_size: int) -> dict:
    from aesthetics_jax import modalities
    from aesthetics_jax.data import image_io, patches, pipeline, preprocessing
    from aesthetics_jax.modalities import files

    source = pipeline.make_source(parent, "train")
    num = max(batch_size, min(num, len(source)) // batch_size * batch_size)  # whole batches: no extra compile
    jpegs = [source[k]["image"] for k in range(min(num, len(source)))]
    ids = [int(source[k]["id"]) for k in range(len(jpegs))]
    out = {}
    start = time.perf_counter()
    pixels = [preprocessing.decode_jpeg(j) for j in jpegs]
    out["decode parent JPEG"] = len(jpegs) / (time.perf_counter() - start)
    producer = modalities.create("spectral")
    modalities.compute_maps(producer, pixels[:batch_size], batch_size=batch_size)  # compile
    start = time.perf_counter()
    maps = [files.quantize_map(m) for m in modalities.compute_maps(producer, pixels, batch_size=batch_size)]
    out["spectral map (+16-bit quantisation)"] = len(jpegs) / (time.perf_counter() - start)
    start = time.perf_counter()
    results = [patches.extract_patches(p, m, rng=patches.patch_rng(0, i)) for p, m, i in zip(pixels, maps, ids)]
    out["extract 5 patches"] = len(jpegs) / (time.perf_counter() - start)
    start = time.perf_counter()
    for result in results:
        for patch in result.patches:
            image_io.encode_jpeg(patch.pixels, 95)
    out["encode 5 patch JPEGs (q95)"] = len(jpegs) / (time.perf_counter() - start)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_images", type=int, default=2000)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--num_threads", type=int, default=2)
    parser.add_argument("--workdir", default=None, help="kept when given; a temporary folder otherwise")
    parser.add_argument("--stages", type=int, default=200, help="time each stage on this many parents (0: skip)")
    args = parser.parse_args()

    from aesthetics_jax.data.builders import eva, eva_patches

    workdir = args.workdir or tempfile.mkdtemp(prefix="patches_bench_")
    try:
        raw, data_dir = os.path.join(workdir, "raw"), os.path.join(workdir, "tfds")
        if not os.path.isdir(raw):
            start = time.perf_counter()
            write_fixture(raw, args.num_images)
            print(f"fixture: {args.num_images} JPEGs in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        shutil.rmtree(data_dir, ignore_errors=True)
        start = time.perf_counter()
        parent = eva.build_eva(raw, data_dir)
        eva_seconds = time.perf_counter() - start
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        builder = eva_patches.build_eva_patches(data_dir, batch_size=args.batch_size, num_threads=args.num_threads)
        seconds = time.perf_counter() - start
        load_after = os.getloadavg()[0]
        parents = sum(v["parents"] for v in builder.info.metadata["splits"].values())
        num_patches = sum(v["patches"] for v in builder.info.metadata["splits"].values())
        print(f"| what | result |\n|---|---|")
        print(f"| EVA build ({args.num_images} images, 500x375) | {eva_seconds:.1f} s, "
              f"{args.num_images / eva_seconds:.0f} img/s |")
        print(f"| **eva_patches build** ({parents} parents -> {num_patches} patches; batch {args.batch_size}, "
              f"{args.num_threads} threads) | **{parents / seconds:.1f} img/s** ({seconds:.1f} s, "
              f"{num_patches / seconds:.0f} patches/s) |")
        if args.stages:
            for name, rate in stages(parent, args.stages, args.batch_size).items():
                print(f"| stage alone, 1 thread: {name} | {rate:.0f} img/s |")
        print(f"| load average (1 min) before / after the patch build | {load_before:.2f} / {load_after:.2f} "
              f"on {os.cpu_count()} cores |")
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
