"""``aesthetics-jax analyze``: analyses across trained models' predictions.

    aesthetics-jax analyze modalities --run rgb=workdirs/rgb --run depth=workdirs/depth \\
        --run saliency=workdirs/saliency --by tags --out analysis/tags
        [--eval test] [--output auto|HEAD:NAME|NAME] [--intersect]
        [--build DIR] [--split SPLIT] [--factor-threshold 0.5] [--attr-threshold 0]
        [--min-count 10] [--bootstrap 1000] [--seed 0] [--confidence 0.95] [--base rgb|none]
        [--no-plots] [--quiet]

``modalities``: what each modality model explains, per dataset category (statistics, CIs and
choices: ``aesthetics_jax.analysis.modalities``; groupings: ``aesthetics_jax.analysis.groups``;
files: ``aesthetics_jax.analysis.report``).

    --run NAME=PATH    one per modality model (at least one; a name given twice is an error). PATH:
                       a training workdir (``PATH/eval/<eval>_predictions.csv``), an ``aesthetics-jax
                       evaluate --out`` directory (``PATH/<eval>_predictions.csv``) or a predictions CSV.
    --by               tags | challenge (AVA builds), category | factors (EVA), attributes (AADB).
    --build DIR        the prepared TFDS build the runs were evaluated on (the directory holding
                       dataset_info.json, or a folder with exactly one such directory below it).
                       Default: the build named by the first workdir run's ``config.json`` (its
                       ``data`` section, through ``datasets.prepare``: an existing build is reused;
                       a ``data.modality`` map input is ignored -- modality builds keep their
                       parent's ids, labels and splits, so the parent build is read).
    --split            the build's split the predictions are of. Default: the first workdir run's
                       ``evals.<eval>.split`` from its config.json, else the eval name itself
                       (``evaluate --out`` names its files by split).

Prints a short table (SRCC per group and modality, which explains most) and the report's path.
Exit status 0; 1 with a message naming the file, run or field at fault; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

__all__ = ["main", "modalities"]


def _progress(quiet: bool):
    if quiet:
        return None

    def say(text: str) -> None:
        print(f"analyze: {text}", file=sys.stderr, flush=True)

    return say


def _workdir_of(path: str) -> str | None:
    """The training workdir behind a run path (the directory, or the CSV's ``<workdir>/eval/``)."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(path):
        return path if os.path.isfile(os.path.join(path, "config.json")) else None
    parent = os.path.dirname(path)
    if os.path.basename(parent) == "eval" and os.path.isfile(os.path.join(os.path.dirname(parent), "config.json")):
        return os.path.dirname(parent)
    return None


def _read_config(workdir: str) -> dict:
    path = os.path.join(workdir, "config.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None


def _default_split(runs: list[tuple[str, str]], eval_name: str) -> tuple[str, str]:
    """(split, where it came from)."""
    for name, path in runs:
        workdir = _workdir_of(path)
        if workdir is None:
            continue
        evals = _read_config(workdir).get("evals") or {}
        if eval_name not in evals:
            raise ValueError(f"run {name!r}: eval {eval_name!r} is not in {workdir}/config.json (evals: "
                             f"{', '.join(evals) or 'none'}); pass --eval or --split")
        split = evals[eval_name].get("split")
        if not split:
            raise ValueError(f"run {name!r}: evals.{eval_name} in {workdir}/config.json has no split; pass --split")
        return str(split), f"evals.{eval_name}.split of {workdir}/config.json"
    return eval_name, "the eval name (no workdir run)"


def _open_source(runs: list[tuple[str, str]], build: str | None, split: str, say):
    """(random-access records of ``split``, description)."""
    from aesthetics_jax.data import pipeline  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.analysis import groups as groups_lib  # pylint: disable=g-import-not-at-top

    if build:
        directory = groups_lib.find_build(build)
        import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

        builder = tfds.builder_from_directory(directory)
        where = directory
    else:
        workdir = next((w for w in (_workdir_of(p) for _, p in runs) if w is not None), None)
        if workdir is None:
            raise ValueError("no run is a training workdir with a config.json to find the dataset from: pass "
                             "--build DIR (the prepared TFDS build the predictions were made on)")
        data = _read_config(workdir).get("data")
        if not data:
            raise ValueError(f"{workdir}/config.json has no data section: pass --build DIR")
        # A map input (data.modality) reads a modality build: same ids, labels and splits as its
        # parent, whose build is opened instead (it is there, and a modality build may not be yet).
        data = {k: v for k, v in data.items() if k != "modality"}
        import ml_collections  # pylint: disable=g-import-not-at-top

        from aesthetics_jax.data import datasets  # pylint: disable=g-import-not-at-top

        if say:
            say(f"opening the {data.get('name')} build of {workdir}/config.json (data_dir {data.get('data_dir')})")
        try:
            builder = datasets.prepare(ml_collections.ConfigDict(data))
        except (ValueError, FileNotFoundError, OSError) as e:
            raise ValueError(f"cannot open the dataset named by {workdir}/config.json ({e}); pass --build DIR") from None
        where = os.fspath(builder.data_dir)
    available = list(builder.info.splits.keys())
    if split not in available:
        raise ValueError(f"split {split!r} is not in the build {where} (splits: {', '.join(available)}); pass --split")
    return pipeline.make_source(builder, split), where


def modalities(args) -> int:
    from aesthetics_jax.analysis import groups as groups_lib  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.analysis import modalities as mod  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.analysis import report  # pylint: disable=g-import-not-at-top

    say = _progress(args.quiet)
    runs: list[tuple[str, str]] = []
    try:
        for text in args.run:
            name, path = mod.parse_run(text)
            previous = [p for n, p in runs if n == name]
            if previous:
                raise ValueError(f"run name {name!r} given twice (--run {name}={previous[0]} and --run {name}={path})")
            runs.append((name, path))
    except ValueError as e:
        print(f"aesthetics-jax analyze: {e}", file=sys.stderr)
        return 2
    base = None if args.base.lower() == "none" else args.base
    start = time.time()
    try:
        for name, path in runs:  # fail on a missing file before reading the build
            try:
                mod.resolve_predictions_path(path, args.eval)
            except FileNotFoundError as e:
                raise FileNotFoundError(f"run {name!r}: {e}") from None
        split, split_from = (args.split, "--split") if args.split else _default_split(runs, args.eval)
        source, where = _open_source(runs, args.build, split, say)
        if say:
            say(f"reading the {args.by} of {len(source)} records of split {split!r} ({split_from}) from {where}")
        every = max(1, len(source) // 10)

        def reading(done: int, total: int) -> None:
            if say and (done == total or done % every < 256):
                say(f"  {done}/{total} records")

        table = groups_lib.read_groups(source, args.by, factor_threshold=args.factor_threshold,
                                       attr_threshold=args.attr_threshold, progress=reading)
        result = mod.analyze(dict(runs), table.groups, output=args.output, eval_name=args.eval,
                             intersect=args.intersect, group_order=table.order, known_groups=table.known,
                             min_count=args.min_count, num_bootstrap=args.bootstrap, seed=args.seed,
                             confidence=args.confidence, base=base, by=args.by, progress=say)
        thresholds = {"factors": f", factor threshold {args.factor_threshold:g}",
                      "attributes": f", attribute threshold ±{args.attr_threshold:g}"}.get(args.by, "")
        result.settings.update(categories=f"{args.by} of {table.description} ({table.num_records} records{thresholds})",
                               build=where, split=split, split_from=split_from,
                               factor_threshold=args.factor_threshold, attr_threshold=args.attr_threshold)
        paths = report.write_all(result, args.out, plots=not args.no_plots)
    except (ValueError, FileNotFoundError, KeyError, TypeError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"aesthetics-jax analyze: {message}", file=sys.stderr)
        return 1
    print(report.format_table(result))
    print(f"report: {os.path.abspath(paths['report.md'])}   ({len(paths)} files in {os.path.abspath(args.out)}, "
          f"{time.time() - start:.1f} s)")
    return 0


def main(argv: list[str]) -> int:
    from aesthetics_jax.analysis.groups import BY, grouping_help  # pylint: disable=g-import-not-at-top

    parser = argparse.ArgumentParser(prog="aesthetics-jax analyze", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS")
    p = sub.add_parser("modalities", help="what each modality model explains, per dataset category",
                       description="Per category x modality SRCC / PLCC / MAE with bootstrap CIs, covariance "
                                   "analyses, R² gains over a base run; CSVs, PNGs, report.md, summary.json.")
    p.add_argument("--run", action="append", required=True, metavar="NAME=PATH",
                   help="a modality model: training workdir, evaluate --out directory or predictions CSV (repeat)")
    p.add_argument("--by", required=True, choices=BY, help=f"grouping: {grouping_help()}")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--eval", default="test", help="the eval whose predictions to read (default: test)")
    p.add_argument("--output", default="auto",
                   help="score analysed: auto (the emd head's mean / attributes head's overall), HEAD:NAME "
                        "(e.g. scores:score, emd:sd) or NAME")
    p.add_argument("--intersect", action="store_true", help="analyse the ids common to all runs instead of failing")
    p.add_argument("--build", default=None, help="prepared TFDS build directory with the categories")
    p.add_argument("--split", default=None, help="split of the build (default: from the workdir config)")
    p.add_argument("--factor-threshold", type=float, default=0.5,
                   help="EVA factors: in factor f when factor_rates[f] >= this (default 0.5)")
    p.add_argument("--attr-threshold", type=float, default=0.0,
                   help="AADB attributes: '<attr> high' when > t, '<attr> low' when < -t (default 0)")
    p.add_argument("--min-count", type=int, default=10, help="smallest group that is ranked (default 10)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (0 = no intervals)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--base", default="auto",
                   help="run the R² gains are measured over (default: 'rgb' if given; 'none' = no gains)")
    p.add_argument("--no-plots", action="store_true", help="no PNG figures")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    return modalities(args)
