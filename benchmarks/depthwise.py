"""Depthwise 3x3 convolution on the CPU: XLA's grouped conv vs the shifted-products form.

    .venv/bin/python benchmarks/depthwise.py [--batch 32] [--repeats 10]

`aesthetics_jax.models.conv.DepthwiseConv` picks the shifted form on the CPU backend
(`impl='auto'`). This script times forward and gradient (w.r.t. input and kernel) of both forms on
MobileNet-like shapes, median of `repeats` calls after one warm-up call, float32, and checks that
the two agree. Prints one row per shape.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aesthetics_jax.models.conv import DepthwiseConv  # noqa: E402

# (spatial size, channels, stride, padding) as in MobileNet v1 alpha=0.5 at 224 / 112 px.
SHAPES = ((112, 32, 1, "SAME"), (112, 64, 2, ((0, 1), (0, 1))), (56, 128, 1, "SAME"), (28, 256, 1, "SAME"),
          (14, 512, 1, "SAME"), (7, 512, 1, "SAME"))


def _median_ms(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"backend {jax.default_backend()}, {os.cpu_count()} cores, jax {jax.__version__}, batch {args.batch}")
    print(f"{'shape':>22} | {'conv fwd':>9} {'shifted fwd':>11} | {'conv grad':>9} {'shifted grad':>12} | max|diff|")
    for size, channels, stride, padding in SHAPES:
        x = jnp.asarray(np.random.default_rng(0).standard_normal((args.batch, size, size, channels)), jnp.float32)
        row, outputs = [], []
        for impl in ("conv", "shifted"):
            module = DepthwiseConv(channels, strides=(stride, stride), padding=padding, impl=impl)
            params = module.init(jax.random.key(0), x)
            forward = jax.jit(module.apply)
            grad = jax.jit(jax.grad(lambda p, x, m=module: jnp.sum(m.apply(p, x) ** 2), argnums=(0, 1)))
            outputs.append(forward(params, x))
            row.append((_median_ms(forward, params, x, repeats=args.repeats),
                        _median_ms(grad, params, x, repeats=args.repeats)))
        diff = float(jnp.max(jnp.abs(outputs[0] - outputs[1])))
        name = f"{size}x{size}x{channels} s{stride}"
        print(f"{name:>22} | {row[0][0]:7.1f}ms {row[1][0]:9.1f}ms | {row[0][1]:7.1f}ms {row[1][1]:10.1f}ms | {diff:.1e}")


if __name__ == "__main__":
    main()
