r"""Sweep overhead per member: process start to first training step, with and without a shared
JAX persistent compilation cache.

Runs ``configs/nima_demo.py``'s model (MobileNet α=0.25, 112 px, batch 16) as a sweep of
``--members`` seeds of a few steps, twice: each member compiling for itself
(``--no_compilation_cache``), then all sharing one fresh cache (``ROOT/.jax_cache``, what
``aesthetics-jax sweep run`` does by default). Each member's start-up is read from its
``provenance.json`` session: ``process_start_to_first_step_s`` (imports, data, model, state,
compilation, first step) and ``first_step_s`` (the same from the trainer's start).

  python benchmarks/sweep_overhead.py --members 3 --steps 10
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from aesthetics_jax import provenance  # noqa: E402
from aesthetics_jax.sweep import runner  # noqa: E402

SWEEP = '''import sys
sys.path.insert(0, {repo!r})
from configs import nima_demo
get_config = nima_demo.get_config
def get_sweep(arg):
    return [{{":name": "member", ":arg": arg}}]
'''


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--workdir", default=None, help="default: a temporary directory")
    args = parser.parse_args()
    base = args.workdir or tempfile.mkdtemp(prefix="sweep_overhead_")
    config = os.path.join(base, "configs", "overhead.py")
    os.makedirs(os.path.dirname(config), exist_ok=True)
    with open(config, "w") as f:
        f.write(SWEEP.format(repo=REPO))
    os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
    common = {"data.data_dir": os.path.join(base, "data"), "eval_every": 0}
    rows = {}
    for label, cache in (("no cache", False), ("shared cache", True)):
        root = os.path.join(base, label.replace(" ", "_"))
        plan = runner.plan(f"{config}:steps={args.steps}", root, seeds=list(range(args.members)), common=common)
        t0 = time.time()
        outcomes = runner.run(plan, launcher=os.path.join(REPO, "launch.py"), compilation_cache=cache,
                              log=lambda line: print(line, flush=True))
        if any(o.startswith("failed") for o in outcomes.values()):
            raise SystemExit(f"a member failed: {outcomes}")
        rows[label] = (time.time() - t0, [provenance.read(m.workdir)["sessions"][-1] for m in plan.members])
    print(f"\n{args.members} members x {args.steps} steps of configs/nima_demo.py (data built once beforehand)\n")
    print("| members share | member | process start → first step (s) | trainer start → first step (s) | member wall (s) |")
    print("|---|---:|---:|---:|---:|")
    for label, (_, sessions) in rows.items():
        for i, s in enumerate(sessions):
            print(f"| {label} | {i} | {s['process_start_to_first_step_s']:.1f} | {s['first_step_s']:.1f} | "
                  f"{s['wall_s']:.1f} |")
    for label, (wall, _) in rows.items():
        print(f"{label}: sweep wall {wall:.0f} s")


if __name__ == "__main__":
    main()
