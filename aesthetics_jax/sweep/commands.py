"""``aesthetics-jax sweep run|report``: run a config's sweep, tabulate its results.

  aesthetics-jax sweep run configs/nima_demo.py:steps=1200 --root sweeps/nima --seeds 0,1,2
  aesthetics-jax sweep run configs/nima_ava.py --root R --seeds 0,1,2 --set data.manual_dir=/data/AVA --emit slurm
  aesthetics-jax sweep report sweeps/nima [--metric test/emd/srcc ...] [--group-by losses.emd.r]
"""

from __future__ import annotations

import argparse
import ast
import sys

from aesthetics_jax.sweep import report as report_lib
from aesthetics_jax.sweep import runner


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--set {pair!r}: expected FIELD=VALUE")
        out[key.strip()] = _value(value)
    return out


def _ints(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aesthetics-jax sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run (or emit job scripts for) every member of a config's get_sweep")
    r.add_argument("spec", help="config file and argument, e.g. configs/nima_demo.py:steps=1200")
    r.add_argument("--root", required=True, help="directory of the member workdirs")
    r.add_argument("--seeds", help="comma-separated seeds: each member once per seed (config.seed)")
    r.add_argument("--only", help="comma-separated member indices to run (see --dry-run)")
    r.add_argument("--parallel", type=int, default=1, help="members run at once as local processes")
    r.add_argument("--dry-run", action="store_true", help="print the members' commands and states only")
    r.add_argument("--emit", choices=("sh", "slurm"), help="write one job script per member instead of running")
    r.add_argument("--slurm_option", action="append", default=[],
                   help="an #SBATCH line for --emit slurm, e.g. '--gres=gpu:1' (repeatable)")
    r.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override for every member (also accepted as --config.FIELD=VALUE)")
    r.add_argument("--launcher", help="launch.py to run (default: the checkout's)")
    r.add_argument("--no_compilation_cache", action="store_true",
                   help="do not share a JAX persistent compilation cache (ROOT/.jax_cache) across members")
    s = sub.add_parser("report", help="table of a sweep's final metrics: mean ± sd and bootstrap CI over seeds")
    s.add_argument("root", help="the sweep's --root")
    s.add_argument("--metric", action="append", help="metric key of final_metrics.json (repeatable; "
                   "default: every */srcc and */plcc)")
    s.add_argument("--group-by", "--group_by", dest="group_by", help="group by this config field instead of variant")
    s.add_argument("--select", help="metric that picks the best group (default: the config's best_metric)")
    s.add_argument("--select_mode", choices=("max", "min"), help="default: the config's best_mode")
    s.add_argument("--allow_mixed_data", action="store_true",
                   help="pool members whose data fingerprints differ (provenance.json)")
    s.add_argument("--out", help="where report.{md,csv,tex,png} go (default: ROOT)")
    return p


def main(argv: list[str]) -> int:
    argv = list(argv)
    passthrough = [a[len("--config."):] for a in argv if a.startswith("--config.")]
    argv = [a for a in argv if not a.startswith("--config.")]
    args = parser().parse_args(argv)
    try:
        if args.command == "run":
            common = _overrides(args.set + passthrough)
            plan = runner.plan(args.spec, args.root, seeds=_ints(args.seeds), only=_ints(args.only), common=common)
            print(f"sweep {args.spec}: {len(plan.members)} member(s) in {plan.root}", flush=True)
            if args.emit:
                paths = runner.emit(plan, args.emit, launcher=args.launcher, slurm_options=args.slurm_option,
                                    compilation_cache=not args.no_compilation_cache)
                print(f"wrote {len(paths)} {args.emit} job script(s) and submit_all.sh in {paths[0].rsplit('/', 1)[0]}")
                return 0
            outcomes = runner.run(plan, launcher=args.launcher, parallel=args.parallel,
                                  compilation_cache=not args.no_compilation_cache, dry_run=args.dry_run,
                                  log=lambda line: print(line, flush=True))
            failed = [n for n, o in outcomes.items() if o.startswith("failed")]
            if not args.dry_run:
                print(f"{len(outcomes) - len(failed)} of {len(outcomes)} member(s) finished"
                      + (f"; failed: {', '.join(failed)}" if failed else "")
                      + f"\nreport: aesthetics-jax sweep report {plan.root}", flush=True)
            return 1 if failed else 0
        if passthrough:
            raise ValueError("--config.* overrides apply to `sweep run`")
        members, missing = report_lib.collect(args.root)
        table = report_lib.summarize(members, metrics=args.metric, group_by=args.group_by, select=args.select,
                                     select_mode=args.select_mode, allow_mixed_data=args.allow_mixed_data,
                                     missing=missing)
        paths = report_lib.write(table, args.out or args.root)
        print(report_lib.markdown(table))
        print("wrote " + ", ".join(paths.values()))
        return 0
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"aesthetics-jax sweep: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
