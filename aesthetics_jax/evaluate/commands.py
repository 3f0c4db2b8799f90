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
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

__all__ = ["main", "evaluate_model"]


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


def main(argv: list[str]) -> int:
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
