"""``aesthetics-jax maps ...``: compute a map producer's maps of folders or builds into PNG files.

    aesthetics-jax maps compute SOURCE [SOURCE ...] --out DIR [--producer spectral] [--param variant=hou2007]
                                [--bits 16|8] [--shard I/N] [--batch_size 16] [--split train]
                                [--data_dir /data/tfds] [--lenient] [--quiet]
    aesthetics-jax maps producers                      the registered producer names

A SOURCE is a folder of images or a prepared dataset (its directory, `<data_dir>/<name>/<config>`,
or a name such as `eva/default` with `--data_dir`). Output: `DIR/<id>.png` (16-bit by default),
`index.csv`, `skipped.csv`, `producer.json` -- see `aesthetics_jax.modalities.files`. Re-running
the same command resumes (existing maps are kept); `--shard I/N` does the I-th of N slices (0-based),
so N processes can share the work; the last one to finish merges the shard indexes into index.csv.
`--param k=v` values are read as JSON when they parse (numbers, true/false), else as strings.
Prints a summary line; exit status 0 (skipped images do not fail the run: see skipped.csv).
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main", "parse_params"]


def parse_params(pairs) -> dict:
    """['k=v', ...] -> {k: json value or string}."""
    params = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param wants key=value, got {pair!r}")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aesthetics-jax maps", description="Map files (saliency, ...) of images.")
    sub = parser.add_subparsers(dest="action", required=True)
    compute = sub.add_parser("compute", help="compute maps of folders / builds into PNGs with an index")
    compute.add_argument("sources", nargs="+", help="folders of images and/or prepared dataset directories")
    compute.add_argument("--out", required=True, help="output folder (<id>.png, index.csv, skipped.csv)")
    compute.add_argument("--producer", default="spectral", help="map producer name (default spectral)")
    compute.add_argument("--param", action="append", default=[], metavar="K=V", help="producer parameter")
    compute.add_argument("--bits", type=int, choices=(16, 8), default=16, help="PNG bit depth (default 16)")
    compute.add_argument("--shard", default="0/1", metavar="I/N", help="process slice I of N (0-based)")
    compute.add_argument("--batch_size", type=int, default=16, help="images per producer call")
    compute.add_argument("--split", default=None, help="builds: only this split (default all)")
    compute.add_argument("--data_dir", default=None, help="TFDS data dir for sources given by name")
    compute.add_argument("--lenient", action="store_true", help="accept JPEGs libjpeg only warns about")
    compute.add_argument("--quiet", action="store_true", help="no progress lines")
    sub.add_parser("producers", help="list the registered map producers")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from aesthetics_jax import modalities  # pylint: disable=g-import-not-at-top

    if args.action == "producers":
        for name, (module, factory) in sorted(modalities.PRODUCERS.items()):
            print(f"{name:<10} {module}.{factory}")
        return 0
    from aesthetics_jax.modalities import files  # pylint: disable=g-import-not-at-top

    try:
        shard = files.parse_shard(args.shard)
        params = parse_params(args.param)
    except ValueError as e:
        print(f"aesthetics-jax maps: {e}", file=sys.stderr)
        return 2
    producer = modalities.create(args.producer, **params)
    summary = files.compute_map_files(producer, args.sources, args.out, bits=args.bits, shard=shard,
                                      batch_size=args.batch_size, split=args.split, data_dir=args.data_dir,
                                      lenient=args.lenient, progress=None if args.quiet else "maps")
    print(f"maps: {summary['computed']} computed, {summary['resumed']} resumed, {summary['skipped']} skipped "
          f"{summary['skipped_by_reason']} of {summary['total']} images (shard {shard[0]}/{shard[1]}) in "
          f"{summary['seconds']:.1f} s; index {summary['index']}"
          + ("" if summary["merged"] else " (index.csv is written when every shard has finished)"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
