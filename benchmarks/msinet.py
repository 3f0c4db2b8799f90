"""MSI-Net forward speed on the CPU: Flax (jit) vs the TF reference graph, in one run.

    .venv/bin/python benchmarks/msinet.py [--size 240x320] [--batches 1,8] [--repeats 5]

Both run the published architecture with the *same* random weights
(`convert.msinet.tf_reference_graph(seed=0)`: a TF1-style graph in a `tf.compat.v1.Session`, as
the released model runs; the Flax `models.msinet.MSINet` gets its variables) on the same random
[0, 255] inputs. JAX is `models.msinet.make_forward()` (what the map producer runs: on the CPU the
images of a batch go one by one through one compiled program); for batch > 1 the single batched
program (`per_image=False`) is timed too. Per batch size: one warm-up call each (JAX compiles
there; the compile time is printed), then `repeats` rounds that time TF and the JAX forms in turn,
so that load from other jobs on a shared machine hits all alike; the table gives images/s of the
best call (noise from other jobs only adds time), the ratio JAX / TF of the best calls and of the
medians, and the max |difference| of the JAX outputs from TF's. Prints the
command, the load average before and after, the core count and the versions with the table
(markdown, for BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aesthetics_jax.convert import msinet as convert_msinet  # noqa: E402
from aesthetics_jax.models import msinet  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="240x320", help="HxW (sides multiples of 8)")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    batches = [int(b) for b in args.batches.split(",")]
    load_before = os.getloadavg()

    import tensorflow as tf

    graph, session = convert_msinet.tf_reference_graph(seed=0)
    params = jax.device_put(convert_msinet.unflatten(convert_msinet.tf_graph_weights(graph, session)))
    forwards = {"jax": msinet.make_forward(), "jax_batched": msinet.make_forward(per_image=False)}
    rng = np.random.default_rng(0)
    rows = []
    for batch in batches:
        images = rng.uniform(0, 255, (batch, height, width, 3)).astype(np.float32)
        images_jax = jax.device_put(images)
        runs = {"tf": lambda: session.run("output:0", {"input:0": images})}
        for name, forward in forwards.items():
            if name == "jax" or batch > 1:  # at batch 1 both JAX forms are the same program
                runs[name] = lambda f=forward: jax.block_until_ready(f(params, images_jax))
        outputs, compile_s = {}, {}
        for name, fn in runs.items():
            start = time.perf_counter()
            outputs[name] = np.asarray(fn())
            compile_s[name] = time.perf_counter() - start
        times = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        best = {name: batch / min(t) for name, t in times.items()}
        median = {name: batch / statistics.median(t) for name, t in times.items()}
        diff = max(float(np.max(np.abs(outputs[n] - outputs["tf"]))) for n in runs if n != "tf")
        rows.append((batch, best, median, compile_s["jax"], diff))
    load_after = os.getloadavg()

    print(f"command: {' '.join([os.path.relpath(sys.executable), *sys.argv])}")
    print(f"machine: {os.cpu_count()} cores, load average before {load_before[0]:.2f} / after {load_after[0]:.2f} "
          f"(1 min); jax {jax.__version__} ({jax.default_backend()}), tensorflow {tf.__version__}")
    print(f"MSI-Net forward, {height}x{width}, float32, images/s of the best of {args.repeats} timed calls "
          "(interference from other jobs only adds time); the median ratio in the last column")
    print()
    print("| batch | TF reference | JAX `make_forward()` | JAX / TF | JAX one batched program | "
          "JAX first call incl. compile (s) | max abs diff | JAX / TF (medians) |")
    print("|---|---|---|---|---|---|---|---|")
    for batch, best, median, compile_s, diff in rows:
        batched = f"{best['jax_batched']:.2f}" if "jax_batched" in best else "(same program)"
        print(f"| {batch} | {best['tf']:.2f} | {best['jax']:.2f} | {best['jax'] / best['tf']:.2f}x | {batched} | "
              f"{compile_s:.1f} | {diff:.1e} | {median['jax'] / median['tf']:.2f}x |")


if __name__ == "__main__":
    main()
