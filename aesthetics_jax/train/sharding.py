"""Device mesh and shardings: data parallelism over every device, FSDP over the ``fsdp`` axis.

The mesh has two axes, ``("data", "fsdp")``, ``data * fsdp`` = the number of devices. The batch
is split over both (every device sees its own slice of the batch, so the global batch size must
be divisible by the device count). The train state is sharded over ``fsdp`` alone and replicated
over ``data``: with ``fsdp=1`` every device holds the whole state (plain data parallelism); with
``fsdp=k`` each device holds about 1/k of every large array (ZeRO-3 / FSDP) and XLA's SPMD
partitioner inserts the all-gathers (forward/backward) and reduce-scatters (gradients) inside the
jitted step. The step functions and the trainer do not change with ``fsdp``: the trainer only
passes ``state_shardings(mesh, abstract_state)`` as jit in/out shardings and as the Orbax restore
target.

The rule (``fsdp_spec``), applied leaf by leaf to params, optimiser state (Adam's ``mu``/``nu``
mirror the params' shapes, so they get the params' shardings), batch stats and the step:

  * scalars, and arrays with fewer than ``min_size`` elements (default ``DEFAULT_MIN_SIZE`` =
    2**10: biases, LayerNorm scales, small heads), are replicated: sharding them saves little
    memory and costs one more collective each;
  * otherwise the array is split over ``fsdp`` along its largest dimension that the fsdp size
    divides; among equally large such dimensions, the **last** one (a square Dense kernel
    ``[in, out]`` is split along ``out``);
  * an array with no dimension divisible by the fsdp size is replicated.

``describe(shardings, state)`` lists the plan (path, shape, spec, bytes, bytes per device) and
``summarize`` totals it; ``benchmarks/fsdp_memory.py`` prints it for CLIP ViT-B/16 and ViT-L/14.
Both work on abstract states (``jax.eval_shape``) and on a ``jax.sharding.AbstractMesh``, so a
plan for 64 devices can be computed on a laptop.

The same code runs on 1 CPU device, on 8 simulated CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``) and on GPUs/TPUs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

BATCH_AXES = ("data", "fsdp")
FSDP_AXIS = "fsdp"
DEFAULT_MIN_SIZE = 2**10  # elements; smaller arrays stay replicated


def make_mesh(fsdp: int = 1, devices=None) -> Mesh:
    """A ``(data, fsdp)`` mesh over all devices; ``data = n_devices // fsdp``."""
    devices = list(jax.devices() if devices is None else devices)
    if isinstance(fsdp, bool) or not isinstance(fsdp, (int, np.integer)) or fsdp < 1:
        raise ValueError(f"fsdp must be a positive integer, got {fsdp!r}")
    if len(devices) % fsdp:
        raise ValueError(
            f"fsdp={fsdp} does not divide the {len(devices)} devices: the mesh is (data, fsdp) "
            f"with data * fsdp = {len(devices)}; pick fsdp among "
            f"{[k for k in range(1, len(devices) + 1) if len(devices) % k == 0]}"
        )
    grid = np.asarray(devices).reshape(len(devices) // fsdp, fsdp)
    return Mesh(grid, BATCH_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over every device of the mesh."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def fsdp_spec(shape: Sequence[int], fsdp: int, *, min_size: int = DEFAULT_MIN_SIZE) -> P:
    """The FSDP rule for one array of ``shape`` (see the module docstring).

    ``P()`` (replicated) for ``fsdp == 1``, scalars, arrays of fewer than ``min_size`` elements
    and arrays with no dimension divisible by ``fsdp``; else ``fsdp`` on the largest divisible
    dimension, the last one among ties, e.g. ``(128, 32) -> P("fsdp", None)``,
    ``(32, 32) -> P(None, "fsdp")``, ``(17, 64) -> P(None, "fsdp")``.
    """
    shape = tuple(int(d) for d in shape)
    if fsdp < 1:
        raise ValueError(f"fsdp must be >= 1, got {fsdp}")
    if fsdp == 1 or not shape or math.prod(shape) < min_size:
        return P()
    divisible = [i for i, d in enumerate(shape) if d % fsdp == 0]
    if not divisible:
        return P()
    dim = max(divisible, key=lambda i: (shape[i], i))  # largest; the last among equals
    return P(*(FSDP_AXIS if i == dim else None for i in range(len(shape))))


def _shape(x) -> tuple[int, ...]:
    return tuple(getattr(x, "shape", np.shape(x)))


def state_shardings(mesh, state: Any, *, min_size: int = DEFAULT_MIN_SIZE) -> Any:
    """A ``NamedSharding`` for every leaf of ``state`` (abstract or concrete), by ``fsdp_spec``.

    ``mesh`` is a ``Mesh`` (or an ``AbstractMesh`` for planning) with an ``fsdp`` axis; arrays are
    replicated over the other axes. With ``fsdp == 1`` everything is replicated.
    """
    if FSDP_AXIS not in mesh.shape:
        raise ValueError(f"the mesh has no {FSDP_AXIS!r} axis: {dict(mesh.shape)}")
    n = int(mesh.shape[FSDP_AXIS])
    shardings = jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(_shape(x), n, min_size=min_size)), state)
    if n > 1:
        totals = summarize(describe(shardings, state))
        logging.info(
            "fsdp=%d: %d of %d arrays sharded; state %.1f MiB, %.1f MiB per device",
            n, totals["sharded_arrays"], totals["arrays"], totals["bytes"] / 2**20,
            totals["bytes_per_device"] / 2**20,
        )
    return shardings


@dataclasses.dataclass(frozen=True)
class PlanRow:
    path: str  # "/"-joined key path, e.g. "params/backbone/conv1/kernel", "opt_state/.../mu/..."
    shape: tuple[int, ...]
    dtype: str
    spec: P
    bytes: int  # whole array
    bytes_per_device: int  # one device's shard

    @property
    def sharded(self) -> bool:
        return any(axis is not None for axis in self.spec)


def describe(shardings: Any, state: Any) -> list[PlanRow]:
    """One ``PlanRow`` per array leaf of ``state`` (in tree order) under ``shardings``."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    flat_shardings = treedef.flatten_up_to(shardings)
    rows = []
    for (path, x), sh in zip(leaves, flat_shardings):
        shape = _shape(x)
        itemsize = np.dtype(x.dtype).itemsize
        rows.append(PlanRow(
            path=jax.tree_util.keystr(path, simple=True, separator="/"),
            shape=shape,
            dtype=str(np.dtype(x.dtype)),
            spec=sh.spec,
            bytes=math.prod(shape) * itemsize,
            bytes_per_device=math.prod(sh.shard_shape(shape)) * itemsize,
        ))
    return rows


def summarize(rows: Sequence[PlanRow]) -> dict[str, int]:
    """Totals of a plan: arrays, sharded_arrays, bytes, replicated_bytes (whole arrays kept on
    every device), sharded_bytes (whole size of the sharded arrays), bytes_per_device."""
    return {
        "arrays": len(rows),
        "sharded_arrays": sum(r.sharded for r in rows),
        "bytes": sum(r.bytes for r in rows),
        "replicated_bytes": sum(r.bytes for r in rows if not r.sharded),
        "sharded_bytes": sum(r.bytes for r in rows if r.sharded),
        "bytes_per_device": sum(r.bytes_per_device for r in rows),
    }


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's slice of the global batch → global arrays sharded along the batch axis."""
    sharding = batch_sharding(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
    }


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """Per-process batch size; the global batch must split evenly over devices."""
    n_dev = mesh.devices.size
    if global_batch_size % n_dev:
        raise ValueError(
            f"batch size {global_batch_size} is not divisible by the {n_dev} devices of the mesh "
            f"{dict(mesh.shape)} (the batch is split over every device, fsdp included)"
        )
    return global_batch_size // jax.process_count()
