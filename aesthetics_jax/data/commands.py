"""``aesthetics-jax data build ava|eva|aadb|demo|demo_eva|eva_patches|modality|captions ...``: prepare a dataset.

    aesthetics-jax data build ava  --manual_dir /data/AVA  --data_dir /data/tfds [--val_fraction 0.05 --seed 0]
    aesthetics-jax data build eva  --manual_dir /data/eva-dataset --data_dir /data/tfds \\
                                   [--val_fraction 0.1 --test_fraction 0.1 --seed 0 --unit | --split_file F]
    aesthetics-jax data build aadb --manual_dir /data/AADB --data_dir /data/tfds
    aesthetics-jax data build demo --data_dir /data/tfds          (renders the demo photos first)
    aesthetics-jax data build demo_eva --data_dir /data/tfds      (the demo photos in EVA's format, built
                                   by the EVA builder into <data_dir>/demo_eva with whole photos held out)
    aesthetics-jax data build eva_patches --data_dir /data/tfds [--parent_config default] [--maps_dir M] \\
                                   [--patches_per_image 5 --top_focus 0.5 --sampling component_then_pixel \\
                                    --seed 0 --producer spectral --param k=v --shard I/N]

    aesthetics-jax data build modality --parent_dir <a prepared build> --data_dir /data/tfds \
                                   --producer blur|spectral|msinet|depth [--param k=v] [--shard I/N]

    aesthetics-jax data build captions --format cgiaa|dpc|ava_captions|ava_comments --captions PATH \
                                   --manual_dir /data/AVA --data_dir /data/tfds [--val_fraction F --seed S]

captions pairs the caption files at PATH (format and layout: aesthetics_jax.data.builders.captions)
with the AVA images of --manual_dir (an AVA root) into `<data_dir>/captions/<format>_<hash of PATH>...`;
test = AVA's official test list, --val_fraction carves a seeded validation split out of train.

modality writes the maps of every image of a prepared build (AVA, demo, EVA, AADB: the directory
holding dataset_info.json, or its config folder) as 8-bit PNGs with the parent's ids, labels and
splits (aesthetics_jax.data.builders.modality), into `<data_dir>/modality/<config>`; --data_dir
defaults to the parent's own TFDS data_dir (the build then sits beside its parent, where training
configs look for it). `--shard I/N` computes slice I of N of the maps and exits (resumable; run the
N slices in parallel, then once without --shard to write the records).

eva_patches reads the EVA build `<data_dir>/eva/<parent_config>` (build it first) and writes
saliency patches (aesthetics_jax.data.builders.eva_patches). With `--maps_dir M` the maps are read
from M (written by `aesthetics-jax maps compute <eva build> --out M`); `--shard I/N --maps_dir M`
computes slice I of N of those maps into M and exits (resumable; run the N slices in parallel,
then once without --shard to write the records).

Common options: `--resize_shorter N` stores every image with its shorter side shrunk to N (a
separate config, e.g. `default_s320`; default 0 = original size); `--quiet` hides the progress
lines of the image checks (TFDS prints its own progress bars while writing records).

Re-running is safe: a finished build of the same config is reused as is. An interrupted build
resumes its image checks from `<data_dir>/<name>/_inspect_cache/`; `--inspect_shard i/n` only
checks the i-th of n slices of the images (0-based) into that cache and exits, so n processes
can share the expensive part before one final run without the flag writes the records.
Prints one summary line per split and the path of the skipped-records report; exit status 0.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main", "build"]

DATASETS = ("ava", "eva", "aadb", "demo", "demo_eva", "eva_patches", "modality", "captions")
CAPTION_FORMATS = ("cgiaa", "dpc", "ava_captions", "ava_comments")  # = builders.captions.FORMATS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aesthetics-jax data", description="Dataset preparation.")
    sub = parser.add_subparsers(dest="action", required=True)
    build = sub.add_parser("build", help="build a TFDS dataset (array_record, JPEG bytes) from local files")
    build.add_argument("dataset", choices=DATASETS)
    build.add_argument("--manual_dir", help="the downloaded dataset (not needed for demo)")
    build.add_argument("--data_dir", default="", help="TFDS data directory to build into (required but for "
                       "modality, whose default is the parent's)")
    build.add_argument("--val_fraction", type=float, default=None,
                       help="ava: seeded validation carve-out of train (default 0); eva: by-image (default 0.1)")
    build.add_argument("--test_fraction", type=float, default=0.1, help="eva: by-image test fraction")
    build.add_argument("--seed", type=int, default=0,
                       help="split seed (ava validation, eva splits); eva_patches: patch sampling seed")
    build.add_argument("--unit", action="store_true", help="eva: scores rescaled to [0, 1]")
    build.add_argument("--split_file", default="",
                       help="eva: CSV id,split (in manual_dir or absolute) fixing the split instead of the draw")
    build.add_argument("--resize_shorter", type=int, default=0, help="store shorter side N (0 = original size)")
    build.add_argument("--inspect_shard", default=None, metavar="I/N",
                       help="only check slice I of N of the images into the cache, then exit")
    build.add_argument("--quiet", action="store_true", help="no progress lines")
    patches = build.add_argument_group("eva_patches")
    patches.add_argument("--parent_config", default="default", help="config of the EVA build to read")
    patches.add_argument("--parent_dir", default="",
                         help="eva_patches: or the prepared EVA directory itself; modality: the parent build")
    patches.add_argument("--maps_dir", default="", help="read maps from this folder of <id>.png maps")
    patches.add_argument("--patches_per_image", type=int, default=5)
    patches.add_argument("--patch_size", type=int, default=299)
    patches.add_argument("--top_focus", type=float, default=0.5, help="salient = map >= 1 - top_focus")
    patches.add_argument("--threshold", choices=("continuous", "seed"), default="continuous")
    patches.add_argument("--sampling", choices=("component_then_pixel", "uniform"), default="component_then_pixel")
    patches.add_argument("--fallback_top_k", type=int, default=1000)
    patches.add_argument("--producer", default="spectral",
                         help="map producer (eva_patches, modality; eva_patches ignores it with --maps_dir)")
    patches.add_argument("--param", action="append", default=[], metavar="K=V", help="producer parameter")
    patches.add_argument("--batch_size", type=int, default=8, help="modality: map computation batch")
    patches.add_argument("--jpeg_quality", type=int, default=95)
    patches.add_argument("--shard", default=None, metavar="I/N",
                         help="compute slice I of N of the maps into --maps_dir, then exit")
    caption = build.add_argument_group("captions")
    caption.add_argument("--format", choices=CAPTION_FORMATS, default=None, help="captions: the caption files' format")
    caption.add_argument("--captions", default="", metavar="PATH",
                         help="captions: the caption file, or the directory of per-attribute files (cgiaa, dpc)")
    return parser


def build(args: argparse.Namespace):
    """Builds (or reuses) the dataset the parsed arguments name; returns the TFDS builder."""
    progress = not args.quiet
    if args.dataset == "modality":
        from aesthetics_jax.data.builders import modality  # pylint: disable=g-import-not-at-top
        from aesthetics_jax.modalities import commands as map_commands  # pylint: disable=g-import-not-at-top

        return modality.build_modality(_modality_data_dir(args), parent_dir=args.parent_dir, producer=args.producer,
                                       producer_params=map_commands.parse_params(args.param),
                                       batch_size=args.batch_size, progress=progress)
    if not args.data_dir:
        raise SystemExit(f"aesthetics-jax data build {args.dataset}: --data_dir is required")
    data_dir = os.path.abspath(os.path.expanduser(args.data_dir))
    if args.dataset == "eva_patches":
        from aesthetics_jax.data.builders import eva_patches  # pylint: disable=g-import-not-at-top
        from aesthetics_jax.modalities import commands as map_commands  # pylint: disable=g-import-not-at-top

        return eva_patches.build_eva_patches(
            data_dir, parent_config=args.parent_config, parent_dir=args.parent_dir, maps_dir=args.maps_dir,
            patches_per_image=args.patches_per_image, patch_size=args.patch_size, top_focus=args.top_focus,
            threshold=args.threshold, sampling=args.sampling, fallback_top_k=args.fallback_top_k, seed=args.seed,
            producer=args.producer, producer_params=map_commands.parse_params(args.param),
            jpeg_quality=args.jpeg_quality, progress=progress)
    if args.dataset == "demo":
        from aesthetics_jax.data.builders import ava, demo  # pylint: disable=g-import-not-at-top

        manual_dir = os.path.join(data_dir, "demo", "raw")
        summary = demo.build_demo_ava(manual_dir)
        print(f"demo: {summary['num_images']} images rendered in {manual_dir}", flush=True)
        return ava.build_ava(manual_dir, os.path.join(data_dir, "demo"), val_fraction=args.val_fraction or 0.0,
                             seed=args.seed, resize_shorter=args.resize_shorter, progress=progress)
    if args.dataset == "demo_eva":
        from aesthetics_jax.data.builders import demo_eva, eva  # pylint: disable=g-import-not-at-top

        manual_dir = os.path.join(data_dir, "demo_eva", "raw")
        summary = demo_eva.build_demo_eva(manual_dir)
        print(f"demo_eva: {summary['num_images']} images rendered in {manual_dir}", flush=True)
        return eva.build_eva(manual_dir, os.path.join(data_dir, "demo_eva"), unit=args.unit,
                             resize_shorter=args.resize_shorter, split_file=demo_eva.SPLIT_FILE, progress=progress)
    if not args.manual_dir:
        raise SystemExit(f"aesthetics-jax data build {args.dataset}: --manual_dir is required")
    manual_dir = os.path.abspath(os.path.expanduser(args.manual_dir))
    if not os.path.isdir(manual_dir):
        raise SystemExit(f"aesthetics-jax data build {args.dataset}: manual_dir {manual_dir} is not a directory")
    if args.dataset == "captions":
        return _build_captions(args, manual_dir, data_dir, progress)
    if args.dataset == "ava":
        from aesthetics_jax.data.builders import ava  # pylint: disable=g-import-not-at-top

        return ava.build_ava(manual_dir, data_dir, val_fraction=args.val_fraction or 0.0, seed=args.seed,
                             resize_shorter=args.resize_shorter, progress=progress)
    if args.dataset == "eva":
        from aesthetics_jax.data.builders import eva  # pylint: disable=g-import-not-at-top

        return eva.build_eva(manual_dir, data_dir,
                             val_fraction=0.1 if args.val_fraction is None else args.val_fraction,
                             test_fraction=args.test_fraction, seed=args.seed, unit=args.unit,
                             resize_shorter=args.resize_shorter, split_file=args.split_file, progress=progress)
    from aesthetics_jax.data.builders import aadb  # pylint: disable=g-import-not-at-top

    return aadb.build_aadb(manual_dir, data_dir, resize_shorter=args.resize_shorter, progress=progress)


def _build_captions(args: argparse.Namespace, manual_dir: str, data_dir: str, progress: bool):
    from aesthetics_jax.data.builders import captions  # pylint: disable=g-import-not-at-top

    if not args.format or not args.captions:
        raise SystemExit("aesthetics-jax data build captions: --format and --captions are required")
    try:
        config = captions.config_for(args.format, args.captions, args.val_fraction or 0.0, args.seed,
                                     args.resize_shorter)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"aesthetics-jax data build captions: {e}") from None
    return captions.build_captions(manual_dir, data_dir, format=config.format, captions_path=config.captions_path,
                                   val_fraction=config.val_fraction, seed=config.seed,
                                   resize_shorter=config.resize_shorter, progress=progress)


def _modality_data_dir(args: argparse.Namespace) -> str:
    from aesthetics_jax.data.builders import modality  # pylint: disable=g-import-not-at-top

    if not args.parent_dir:
        raise SystemExit("aesthetics-jax data build modality: --parent_dir (a prepared build) is required")
    try:
        return (os.path.abspath(os.path.expanduser(args.data_dir)) if args.data_dir
                else modality.parent_tfds_root(args.parent_dir))
    except FileNotFoundError as e:
        raise SystemExit(f"aesthetics-jax data build modality: {e}") from None


def _modality_shard(args: argparse.Namespace) -> int:
    """modality --shard I/N: slice I of N of the parent build's maps (step 1 only)."""
    from aesthetics_jax.data.builders import modality  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.modalities import commands as map_commands  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.modalities import files  # pylint: disable=g-import-not-at-top

    try:
        shard = files.parse_shard(args.shard)
    except ValueError as e:
        raise SystemExit(f"aesthetics-jax data build modality: {e}") from None
    data_dir = _modality_data_dir(args)
    config = modality.config_for(args.parent_dir, args.producer, map_commands.parse_params(args.param))
    summary = modality.compute_maps(data_dir, config, shard=shard, batch_size=args.batch_size,
                                    progress=None if args.quiet else f"maps shard {shard[0]}/{shard[1]}")
    print(f"modality maps: {summary['computed']} computed, {summary['resumed']} resumed, {summary['skipped']} "
          f"skipped of {summary['total']} (shard {shard[0]}/{shard[1]}) into {summary['out_dir']}", flush=True)
    return 0


def _image_paths(args: argparse.Namespace) -> tuple[str, list[str]]:
    """(builder name, every image path the build would check), for --inspect_shard."""
    manual_dir = os.path.abspath(os.path.expanduser(args.manual_dir or ""))
    if args.dataset in ("ava", "demo"):
        if args.dataset == "demo":
            manual_dir = os.path.join(os.path.abspath(args.data_dir), "demo", "raw")
        names = os.listdir(os.path.join(manual_dir, "images"))
        return "ava", [os.path.join(manual_dir, "images", n) for n in sorted(names)]
    if args.dataset == "eva":
        folder = next((os.path.join(manual_dir, d) for d in ("images/EVA_together", "EVA_together")
                       if os.path.isdir(os.path.join(manual_dir, d))), None)
        if folder is None:
            raise SystemExit(f"no images/EVA_together or EVA_together folder in {manual_dir}")
        return "eva", [os.path.join(folder, n) for n in sorted(os.listdir(folder))]
    paths = []
    for folder in ("datasetImages_originalSize", "datasetImages_warp256", "AADB_newtest_originalSize", "AADB_newtest"):
        if os.path.isdir(os.path.join(manual_dir, folder)):
            paths += [os.path.join(manual_dir, folder, n) for n in sorted(os.listdir(os.path.join(manual_dir, folder)))]
    return "aadb", paths


def _inspect_shard(args: argparse.Namespace) -> int:
    from aesthetics_jax.data import image_io  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.data.builders import base  # pylint: disable=g-import-not-at-top

    try:
        index, count = (int(v) for v in args.inspect_shard.split("/"))
        if not 0 <= index < count:
            raise ValueError
    except ValueError:
        raise SystemExit(f"--inspect_shard wants I/N with 0 <= I < N, got {args.inspect_shard!r}") from None
    name, paths = _image_paths(args)
    data_dir = os.path.abspath(os.path.expanduser(args.data_dir))
    if args.dataset == "demo":
        data_dir = os.path.join(data_dir, "demo")
    shard = paths[index::count]
    results = image_io.inspect_files(shard, resize_shorter=args.resize_shorter or None,
                                     cache_dir=base.inspect_cache_dir(data_dir, name),
                                     cache_name=f"{image_io.CACHE_PREFIX}_{index}of{count}",
                                     progress=None if args.quiet else f"{name} shard {index}/{count}")
    bad = sum(not r.ok for r in results)
    print(f"{name}: checked {len(shard)} images (shard {index}/{count}), {bad} unusable", flush=True)
    return 0


def _maps_shard(args: argparse.Namespace) -> int:
    """eva_patches --shard I/N: slice I of N of the parent build's maps into --maps_dir."""
    from aesthetics_jax import modalities  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.data.builders import eva_patches  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.modalities import commands as map_commands  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.modalities import files  # pylint: disable=g-import-not-at-top

    if not args.maps_dir:
        raise SystemExit("aesthetics-jax data build eva_patches: --shard needs --maps_dir")
    try:
        shard = files.parse_shard(args.shard)
    except ValueError as e:
        raise SystemExit(f"aesthetics-jax data build eva_patches: {e}") from None
    data_dir = os.path.abspath(os.path.expanduser(args.data_dir))
    config = eva_patches.config_for(parent_config=args.parent_config, parent_dir=args.parent_dir)
    parent = eva_patches.parent_build_dir(data_dir, config)
    producer = modalities.create(args.producer, **map_commands.parse_params(args.param))
    summary = files.compute_map_files(producer, [parent], args.maps_dir, bits=16, shard=shard,
                                      progress=None if args.quiet else f"maps shard {shard[0]}/{shard[1]}")
    print(f"eva_patches maps: {summary['computed']} computed, {summary['resumed']} resumed, {summary['skipped']} "
          f"skipped of {summary['total']} (shard {shard[0]}/{shard[1]}) into {summary['out_dir']}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.dataset == "eva_patches" and args.shard:
        return _maps_shard(args)
    if args.dataset == "modality" and args.shard:
        return _modality_shard(args)
    if args.shard:
        raise SystemExit("--shard is for eva_patches and modality (images: --inspect_shard)")
    if args.inspect_shard and args.dataset == "modality":
        raise SystemExit("modality checks no image files: use --shard I/N to share its map work")
    if args.inspect_shard and args.dataset == "captions":
        raise SystemExit("captions: --inspect_shard is not supported (caption builds check only the captioned images)")
    if args.inspect_shard and args.dataset == "eva_patches":
        raise SystemExit("eva_patches checks no image files: use --shard I/N --maps_dir M to share its map work")
    if args.inspect_shard:
        return _inspect_shard(args)
    builder = build(args)
    for split, info in builder.info.splits.items():
        print(f"{builder.info.full_name} {split}: {info.num_examples} examples", flush=True)
    metadata = builder.info.metadata or {}
    print(f"skipped: {metadata.get('num_skipped', 0)} {dict(metadata.get('skipped', {}))}; report "
          f"{os.path.join(builder.data_dir, metadata.get('skipped_report', 'skipped.csv'))}", flush=True)
    print(f"data_dir: {builder.data_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
