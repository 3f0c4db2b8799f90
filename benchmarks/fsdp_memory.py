"""FSDP memory: train-state bytes per device (params + optimiser state) for CLIP image towers.

    .venv/bin/python benchmarks/fsdp_memory.py [--variants vit_b16 vit_l14] [--fsdp 1 2 4 8]
        [--min-size 1024] [--measure tiny vit_b16] [--measure-max-gib 4]

The state is the trainer's: `steps.create_state` of `models.create('clip', variant=V,
heads={'emd': {'type': 'emd', 'num_bins': 10}})` at the variant's image size, with the optimiser
of `train.optimizer.make_optimizer` (AdamW, one schedule group, gradient clipping: Adam's mu and
nu mirror the params; the step counts are scalars). Shapes come from `jax.eval_shape` (nothing is
allocated for the plan) and the plan from `train.sharding.state_shardings` on an abstract
`(data=1, fsdp=k)` mesh, which needs no devices: bytes per device = the replicated arrays whole +
each sharded array's shard (`NamedSharding.shard_shape`).

`--measure` also allocates the state (zeros, placed by a jit with the plan's out_shardings) on a
real mesh of 8 simulated CPU devices for the listed variants and reports the bytes one device
holds (sum over the arrays of `addressable_shards[0].data.nbytes`), which must equal the plan.
A case is skipped when the whole allocation (bytes per device x 8) would exceed
`--measure-max-gib` (ViT-B/16 with fsdp=1 is ~8 GiB over 8 simulated devices).

The script sets `XLA_FLAGS=--xla_force_host_platform_device_count=8` and `JAX_PLATFORMS=cpu`
unless they are already set. Output: the command, then one Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys

MIB = 2**20


def _setup_devices():
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_force_host_platform_device_count=8").strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def abstract_state(variant: str):
    """(abstract TrainState, image size) of a CLIP `variant` tower + EMD head under AdamW."""
    import functools

    import jax
    import jax.numpy as jnp
    import ml_collections

    from aesthetics_jax import models
    from aesthetics_jax.models import clip
    from aesthetics_jax.train import optimizer, steps

    size = clip.VARIANTS[variant].vision.image_size
    model = models.create("clip", variant=variant, heads={"emd": {"type": "emd", "num_bins": 10}})
    rng = jax.random.key(0)
    image_shape = (size, size, 3)
    params = jax.eval_shape(
        lambda r: model.init({"params": r, "dropout": r}, jnp.zeros((1, *image_shape), jnp.uint8)), rng
    )["params"]
    config = ml_collections.ConfigDict(dict(
        optimizer="adamw", optimizer_kwargs={}, lr=1e-4, grad_clip_norm=1.0,
        schedule=[(".*", dict(warmup_steps=100, decay_type="cosine"))]))
    tx, _ = optimizer.make_optimizer(config, params, total_steps=1000)
    state = jax.eval_shape(functools.partial(steps.create_state, model, tx, image_shape=image_shape), rng)
    return state


def plan(state, fsdp: int, min_size: int) -> dict:
    """Per-device bytes of params and optimiser state under the FSDP plan for `fsdp` devices."""
    import jax

    from aesthetics_jax.train import sharding

    mesh = jax.sharding.AbstractMesh((1, fsdp), sharding.BATCH_AXES)
    out = {}
    for part in ("params", "opt_state"):
        tree = getattr(state, part)
        out[part] = sharding.summarize(sharding.describe(sharding.state_shardings(mesh, tree, min_size=min_size), tree))
    return out


def measure(state, fsdp: int, min_size: int) -> dict:
    """Allocates the state (zeros) with the plan's shardings on the 8-device mesh; bytes on one device."""
    import jax
    import jax.numpy as jnp

    from aesthetics_jax.train import sharding

    mesh = sharding.make_mesh(fsdp)
    shardings = sharding.state_shardings(mesh, state, min_size=min_size)
    allocated = jax.jit(lambda: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), state),
                        out_shardings=shardings)()
    jax.block_until_ready(allocated)
    one_device = lambda tree: sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(tree))  # noqa: E731
    out = {"params": one_device(allocated.params), "opt_state": one_device(allocated.opt_state)}
    device = mesh.devices.flat[0]
    assert all(x.addressable_shards[0].device == device for x in jax.tree.leaves(allocated))
    del allocated
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=["vit_b16", "vit_l14"])
    parser.add_argument("--fsdp", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--min-size", type=int, default=None, help="elements; default sharding.DEFAULT_MIN_SIZE")
    parser.add_argument("--measure", nargs="*", default=["tiny", "vit_b16"],
                        help="variants to allocate on 8 simulated devices (none: plan only)")
    parser.add_argument("--measure-max-gib", type=float, default=4.0)
    args = parser.parse_args(argv)
    command = " ".join([".venv/bin/python", "benchmarks/fsdp_memory.py", *(sys.argv[1:] if argv is None else argv)])

    _setup_devices()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import jax

    from aesthetics_jax.train import sharding

    min_size = sharding.DEFAULT_MIN_SIZE if args.min_size is None else args.min_size
    print(f"command: `{command}`")
    print(f"jax {jax.__version__}, {jax.device_count()} {jax.devices()[0].platform} devices; "
          f"min_size {min_size} elements; AdamW (mu, nu) + EMD head (10 bins), float32 params\n")
    print("| model | params | fsdp | sharded arrays | params / device (MiB) | opt state / device (MiB) "
          "| state / device (MiB) | vs fsdp=1 | measured state / device (MiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    variants = list(dict.fromkeys(args.variants + list(args.measure)))
    for variant in variants:
        state = abstract_state(variant)
        n_params = sum(x.size for x in jax.tree.leaves(state.params))
        whole = plan(state, 1, min_size)
        base = whole["params"]["bytes_per_device"] + whole["opt_state"]["bytes_per_device"]
        for fsdp in args.fsdp:
            p = plan(state, fsdp, min_size)
            per_device = p["params"]["bytes_per_device"] + p["opt_state"]["bytes_per_device"]
            measured = "—"
            if variant in args.measure:
                if jax.device_count() % fsdp:
                    measured = f"n/a ({jax.device_count()} devices)"
                elif per_device * jax.device_count() > args.measure_max_gib * 2**30:
                    measured = f"skipped ({per_device * jax.device_count() / 2**30:.1f} GiB over {jax.device_count()} devices)"
                else:
                    got = measure(state, fsdp, min_size)
                    if got["params"] != p["params"]["bytes_per_device"] or got["opt_state"] != p["opt_state"]["bytes_per_device"]:
                        raise AssertionError(f"{variant} fsdp={fsdp}: allocated {got} per device, plan {p}")
                    measured = f"{(got['params'] + got['opt_state']) / MIB:.3f} (= plan)"
            print(f"| clip {variant} + emd | {n_params / 1e6:.2f} M | {fsdp} | "
                  f"{p['params']['sharded_arrays']} / {p['params']['arrays']} | "
                  f"{p['params']['bytes_per_device'] / MIB:.3f} | {p['opt_state']['bytes_per_device'] / MIB:.3f} | "
                  f"{per_device / MIB:.3f} | {per_device / base:.3f} | {measured} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
