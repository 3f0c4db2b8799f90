"""``aesthetics-jax evaluate MODEL``: score a dataset split with a bundle or a training workdir.

    aesthetics-jax evaluate nima_demo.bundle.tar.gz --out eval_demo            # the bundle's own data config
    aesthetics-jax evaluate workdirs/nima2 --step best --split test --out eval_ava \\
        --data_dir /data/tfds --manual_dir /data/AVA

MODEL is a bundle (directory or .tar.gz, verified against its manifest; a converted model's
bundle included) or a training workdir (`config.json` + `checkpoints/`; `--step latest|best|N`).
The dataset is the one the model's training config names (`config.data`; AVA for converted
weights), prepared exactly as training prepared it (an existing build is reused, images checked
by the builders' `image_io` path, skipped files reported); `--data_dir` / `--manual_dir` point it
at another machine's copy. Images are fed through the bundle's recorded input transform (for a
converted idealo model: Keras `load_img`), the same as `predict`. Every
evaluator type of the model's config (`config.evals`, by default the aesthetic metric suite) runs
once on `--split` with the options of its first eval config, writing `<out>/<split>_metrics.json`,
`<out>/<split>_predictions.csv` and plots (other types than `aesthetic`: `<out>/<split>_<type>_*`,
e.g. the `patches` evaluator's full-vs-patches table); the metrics table is printed. Exit status 0,
or 1 with a message naming what failed.

Zero-shot CLIP-IQA (`evaluate/clip_iqa.py`, `zeroshot/clip_iqa.py`) over any dataset split::

    aesthetics-jax evaluate clip-iqa --clip clip_b16 --manual_dir /data/AVA --split test --out eval_clipiqa \
        [--prompts default|ava_attributes|pyiqa|FILE] [--pos-embed none|interpolate] [--image-size N]
    aesthetics-jax evaluate clip-iqa --clip clip_b16 --dataset eva --manual_dir /data/eva-dataset --out OUT
    aesthetics-jax evaluate clip-iqa --clip clip_b16 --data-from nima.bundle --out OUT   # that model's data

`--clip DIR` is a whole-CLIP conversion (`aesthetics-jax convert --from openai-clip|open-clip|hf-clip
FILE --arch clip --out DIR`). The dataset: `--dataset ava` (default; the official split, no
validation carve-out, as converted bundles), `demo` (configs/nima_demo.py's), `eva` (10 % / 10 %
by-image split, seed 0, unit targets) or `demo_eva`; or `--data-from MODEL`: the `config.data` of a
bundle / training workdir, to score exactly the split that model was evaluated on. `--data_dir`,
`--manual_dir` and `--data KEY=VALUE` (JSON values, e.g. `--data val_fraction=0.05` to reuse a
training build) adjust it. Every image of `--split` is scored and the aesthetic metric suite
compares the score with the split's mean score (EVA: the total score); files as for a bundle
(`<out>/<split>_metrics.json`, `_predictions.csv`, plots, `_summary.json`) plus
`<out>/<split>_clip_iqa.json` (options, prompt pairs, score scale). A bundle whose path is
literally `clip-iqa` is named `./clip-iqa`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

__all__ = ["main", "evaluate_model", "evaluate_clip_iqa", "clip_iqa_data_config", "DATASETS"]

#: `evaluate clip-iqa --dataset NAME` -> its `config.data` (before --data_dir / --manual_dir / --data).
DATASETS = {
    "ava": dict(name="ava", manual_dir="", val_fraction=0.0, split_seed=0),
    "demo": dict(name="demo", val_fraction=0.1, split_seed=0, demo=dict(seed=0, versions_per_photo=120)),
    "eva": dict(name="eva", manual_dir="", val_fraction=0.1, test_fraction=0.1, split_seed=0, unit=True,
                resize_shorter=0),
    "demo_eva": dict(name="eva", manual_dir="", unit=True, demo=dict(seed=0)),
}


def evaluate_model(model: str, *, split: str = "test", out: str, step: str = "latest", data_dir: str | None = None,
                   manual_dir: str | None = None, batch_size: int | None = None) -> dict[str, float]:
    """Evaluates MODEL on `split`; returns ``{"<split>/<metric>": value}`` and writes files to `out`."""
    import jax
    import ml_collections
    import numpy as np

    from aesthetics_jax.data import datasets
    from aesthetics_jax.evaluate import get_evaluator
    from aesthetics_jax.train import sharding, steps, trainer

    from aesthetics_jax.export import bundle as bundle_lib

    loaded = bundle_lib.load_model(model, step)
    variables = loaded.variables
    config = ml_collections.ConfigDict(loaded.config)
    config.data.eval_transform = loaded.transform  # the bundle's recorded input transform
    if data_dir:
        config.data.data_dir = data_dir
    if manual_dir:
        config.data.manual_dir = manual_dir
    if batch_size:
        config.eval_batch_size = batch_size
    prepared = datasets.prepare(config.data)
    available = datasets.splits(prepared)
    if split not in available:
        raise ValueError(f"split {split!r} not in {prepared.info.full_name} (splits: {', '.join(available)})")
    source = datasets.source(prepared, split, config.data)

    mesh = sharding.make_mesh(1)
    model_def = trainer._create_model(config)  # pylint: disable=protected-access
    state = steps.EvalState(params=variables["params"], batch_stats=variables.get("batch_stats") or {})
    predictor = trainer._Predictor(model_def, mesh, config)  # pylint: disable=protected-access
    predictions, targets = predictor(state, source)
    heads = config.model.heads.to_dict()
    evals = config.get("evals") or {}
    by_type = {}  # one run per evaluator type, with the options of its first eval config
    for ev in evals.values():
        by_type.setdefault(ev.type, ev)
    by_type = by_type or {"aesthetic": ml_collections.ConfigDict(dict(type="aesthetic", split=split))}
    results = {}
    os.makedirs(out, exist_ok=True)
    for ev_type, ev in sorted(by_type.items()):
        evaluator = get_evaluator(ev_type)
        extra = {}
        if hasattr(evaluator, "inputs"):  # e.g. patches: full-image predictions of the same images
            extra = evaluator.inputs(ev, source=source, predict=functools.partial(predictor, state),
                                     data_config=config.data, heads=heads, final=True, model=model_def,
                                     variables={"params": state.params, "batch_stats": state.batch_stats})
        prefix = split if ev_type == "aesthetic" else f"{split}_{ev_type}"  # their files must not collide
        metrics = evaluator.run(
            predictions=predictions, targets=targets, ids=targets["id"], outdir=out, prefix=prefix, heads=heads,
            write_files=jax.process_index() == 0, plots=True, **extra)
        results.update({f"{split}/{k}": float(v) for k, v in metrics.items()})
    with open(os.path.join(out, f"{split}_summary.json"), "w") as f:
        json.dump({"model": os.path.abspath(model), "split": split, "num_examples": int(len(targets["id"])),
                   **{k: (v if np.isfinite(v) else None) for k, v in results.items()}}, f, indent=2)
    return results


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def clip_iqa_data_config(*, dataset: str = "ava", data_from: str | None = None, data_dir: str | None = None,
                         manual_dir: str | None = None, overrides: list[str] | tuple[str, ...] = ()):
    """The `config.data` (ConfigDict) `evaluate clip-iqa` reads (module docstring)."""
    import ml_collections

    if data_from:
        from aesthetics_jax.export import bundle as bundle_lib

        if bundle_lib.is_bundle(data_from):
            config = bundle_lib.load(data_from, load_variables=False).config or {}
        elif os.path.isfile(os.path.join(data_from, "config.json")):
            with open(os.path.join(data_from, "config.json")) as f:
                config = json.load(f)
        else:
            raise FileNotFoundError(f"--data-from {data_from}: neither a bundle nor a training workdir (config.json)")
        if not config.get("data"):
            raise ValueError(f"--data-from {data_from}: its config has no data section")
        data = dict(config["data"])
    else:
        if dataset not in DATASETS:
            raise ValueError(f"unknown --dataset {dataset!r}; known: {', '.join(DATASETS)}")
        data = json.loads(json.dumps(DATASETS[dataset]))
        data["data_dir"] = os.environ.get("AESTHETICS_JAX_DATA", "~/aesthetics_jax_data")  # as configs/common.py
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--data {item!r} is not KEY=VALUE")
        data[key] = _parse_value(value)
    if data_dir:
        data["data_dir"] = data_dir
    if manual_dir:
        data["manual_dir"] = manual_dir
    data.pop("eval_transform", None)  # a model's input transform: CLIP-IQA brings its own
    modality = dict(data.get("modality") or {})
    if modality.get("input", "rgb") != "rgb":
        raise ValueError(f"config.data.modality.input = {modality['input']!r}: CLIP-IQA scores photographs, not "
                         "modality maps (set --data modality=null to score the plain build)")
    return ml_collections.ConfigDict(data)


def evaluate_clip_iqa(clip_dir: str, *, split: str = "test", out: str, prompts: str = "default",
                      pos_embed: str = "none", image_size: int | None = None, kernel: str = "bicubic",
                      batch_size: int | None = None, num_threads: int = 4, dataset: str = "ava",
                      data_from: str | None = None, data_dir: str | None = None, manual_dir: str | None = None,
                      data_overrides: list[str] | tuple[str, ...] = (), progress: bool = False) -> dict[str, float]:
    """CLIP-IQA of every image of `split`; returns ``{"<split>/<metric>": value}`` and writes files to `out`."""
    import time

    import numpy as np

    from aesthetics_jax.data import datasets
    from aesthetics_jax.evaluate import clip_iqa as clip_iqa_eval

    ev = dict(clip=clip_dir, prompts=prompts, pos_embed=pos_embed, image_size=image_size, kernel=kernel,
              batch_size=batch_size or 32)
    scorer = clip_iqa_eval.make_scorer(ev)  # before the data: a bad --clip / --prompts fails at once
    data_config = clip_iqa_data_config(dataset=dataset, data_from=data_from, data_dir=data_dir,
                                       manual_dir=manual_dir, overrides=data_overrides)
    prepared = datasets.prepare(data_config)
    available = datasets.splits(prepared)
    if split not in available:
        raise ValueError(f"split {split!r} not in {prepared.info.full_name} (splits: {', '.join(available)})")
    source = datasets.source(prepared, split, data_config)

    start, last = time.time(), [0.0]

    def report(done, total):
        now = time.time()
        if progress and (now - last[0] > 10 or done == total):
            last[0] = now
            print(f"clip-iqa: {done}/{total} images, {done / max(now - start, 1e-9):.1f} img/s", file=sys.stderr)

    scored = clip_iqa_eval.score_source(scorer, source, num_threads=num_threads, progress=report)
    os.makedirs(out, exist_ok=True)
    metrics = clip_iqa_eval.evaluate_scores(scored, outdir=out, prefix=split, write_files=True, plots=True)
    results = {f"{split}/{k}": float(v) for k, v in metrics.items()}
    with open(os.path.join(out, f"{split}_summary.json"), "w") as f:
        json.dump({"model": f"clip-iqa:{os.path.abspath(clip_dir)}", "dataset": prepared.info.full_name,
                   "split": split, "num_examples": int(len(scored["ids"])), "clip_iqa": scored["options"],
                   **{k: (v if np.isfinite(v) else None) for k, v in results.items()}}, f, indent=2)
    return results


def _main_clip_iqa(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aesthetics-jax evaluate clip-iqa",
                                     description="Zero-shot CLIP-IQA over a dataset split, with the aesthetic "
                                                 "metric suite (SRCC/PLCC vs the mean score; EVA: the total score).")
    parser.add_argument("--clip", required=True, help="CLIP conversion directory (convert --arch clip --out DIR)")
    parser.add_argument("--prompts", default="default",
                        help="prompt set (default, ava_attributes, pyiqa) or a file of 'positive|negative' lines")
    parser.add_argument("--pos-embed", default="none", choices=("none", "interpolate"))
    parser.add_argument("--image-size", type=int, default=None,
                        help="interpolate: Resize + CenterCrop to N (default / 0: native size)")
    parser.add_argument("--kernel", default="bicubic", choices=("bicubic", "bilinear"))
    parser.add_argument("--dataset", default="ava", choices=tuple(DATASETS))
    parser.add_argument("--data-from", default=None, metavar="MODEL",
                        help="take config.data from this bundle / training workdir instead of --dataset")
    parser.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                        help="set a config.data field (JSON value), repeatable")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", required=True, help="directory for metrics JSON, predictions CSV and plots")
    parser.add_argument("--data_dir", default=None, help="override config.data.data_dir")
    parser.add_argument("--manual_dir", default=None, help="override config.data.manual_dir")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--num-threads", type=int, default=4, help="image decoding threads")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    try:
        results = evaluate_clip_iqa(args.clip, split=args.split, out=args.out, prompts=args.prompts,
                                    pos_embed=args.pos_embed, image_size=args.image_size, kernel=args.kernel,
                                    batch_size=args.batch_size, num_threads=args.num_threads, dataset=args.dataset,
                                    data_from=args.data_from, data_dir=args.data_dir, manual_dir=args.manual_dir,
                                    data_overrides=args.data, progress=not args.quiet)
    except (OSError, ValueError, KeyError) as e:
        print(f"aesthetics-jax evaluate clip-iqa: {e}", file=sys.stderr)
        return 1
    from aesthetics_jax.evaluate.aesthetic import format_table

    print(format_table(results))
    print(f"files: {os.path.abspath(args.out)}")
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "clip-iqa":
        return _main_clip_iqa(argv[1:])
    parser = argparse.ArgumentParser(prog="aesthetics-jax evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="bundle directory/.tar.gz or training workdir")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", required=True, help="directory for metrics JSON, predictions CSV and plots")
    parser.add_argument("--step", default="latest", help="workdir only: latest, best or a step number")
    parser.add_argument("--data_dir", default=None, help="override config.data.data_dir")
    parser.add_argument("--manual_dir", default=None, help="override config.data.manual_dir")
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        results = evaluate_model(args.model, split=args.split, out=args.out, step=args.step, data_dir=args.data_dir,
                                 manual_dir=args.manual_dir, batch_size=args.batch_size)
    except (OSError, ValueError, KeyError) as e:
        print(f"aesthetics-jax evaluate: {e}", file=sys.stderr)
        return 1
    from aesthetics_jax.evaluate.aesthetic import format_table

    print(format_table(results))
    print(f"files: {os.path.abspath(args.out)}")
    return 0
