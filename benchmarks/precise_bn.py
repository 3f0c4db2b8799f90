"""Precise batch norm on a finished run's checkpoints: metrics and prediction spread for several N.

    .venv/bin/python benchmarks/precise_bn.py --workdir W --steps 1000,2000 --num_batches 0,10,50,200 \
        [--config configs/nima_demo.py] [--data_dir D]

For each saved checkpoint step of ``W`` (a run of ``--config``; keep them with
``--config.keep_ckpts``) and each N, recomputes the BN statistics over N training batches exactly
as the trainer does with ``config.precise_bn = N`` (N = 0: the stored moving averages), evaluates
every ``config.evals`` entry and prints one JSON line: val / test SRCC, test MAE, the sd of the
predicted mean score on the test split and the recomputation's wall time (iterator start-up and
compilation included). Precise BN does not change training, so a run without the option gives
the parameters of a run with it: one run's checkpoints answer "what would N have given". Numbers:
BENCHMARKS.md, "Precise batch norm (issue 15)".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="a training workdir with checkpoints")
    parser.add_argument("--steps", required=True, help="comma-separated checkpoint steps")
    parser.add_argument("--num_batches", default="0,10,50,200", help="comma-separated N (0 = moving averages)")
    parser.add_argument("--config", default="configs/nima_demo.py", help="the run's config file")
    parser.add_argument("--data_dir", default=None, help="config.data.data_dir of the run")
    args = parser.parse_args()

    import importlib.util

    from aesthetics_jax.data import datasets
    from aesthetics_jax.train import checkpointing, precise_bn, sharding, steps, trainer

    spec = importlib.util.spec_from_file_location("run_config", args.config)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    if args.data_dir:
        config.data.data_dir = args.data_dir
    prepared = datasets.prepare(config.data)
    sources = {s: datasets.source(prepared, s, config.data) for s in datasets.splits(prepared)}
    model = trainer._create_model(config)  # pylint: disable=protected-access
    mesh = sharding.make_mesh(config.get("fsdp", 1))
    predictor = trainer._Predictor(model, mesh, config)  # pylint: disable=protected-access
    outdir = tempfile.mkdtemp(prefix="precise_bn_eval_")
    for step in [int(s) for s in args.steps.split(",")]:
        variables, _ = checkpointing.restore_variables(os.path.join(args.workdir, "checkpoints"), step)
        state = steps.EvalState(params=variables["params"], batch_stats=variables["batch_stats"])
        for n in [int(x) for x in args.num_batches.split(",")]:
            config.precise_bn = n
            start = time.time()
            helper = precise_bn.PreciseBN.for_trainer(config, model, mesh, sources[config.data.train_split])
            evaluated = helper.for_evaluation(state)
            seconds = time.time() - start
            results = trainer.evaluate(evaluated, predictor, sources, config, outdir, final=False)
            preds, _ = predictor(evaluated, sources[config.evals.test.split])
            mean = next(v for k, v in preds.items() if k.endswith(".mean"))
            print(json.dumps({
                "step": step, "N": n, "recompute_s": round(seconds, 1),
                **{k: round(float(v), 4) for k, v in results.items() if k.endswith(("/srcc", "test/emd/mae"))},
                "test_pred_mean_sd": round(float(np.std(mean)), 4),
            }), flush=True)


if __name__ == "__main__":
    main()
