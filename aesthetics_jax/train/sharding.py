"""Device mesh and shardings.

The mesh has two axes, ``("data", "fsdp")``. The batch is split over both (every device sees its own
slice of the batch); the train state is replicated today, which is what ``fsdp=1`` means. The fsdp
axis is there so that sharding parameters later (large CLIP towers) is a change to
``state_shardings`` alone, not to the step functions or the trainer.

The same code runs on 1 CPU device, on 8 simulated CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``) and on GPUs/TPUs.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

BATCH_AXES = ("data", "fsdp")


def make_mesh(fsdp: int = 1, devices=None) -> Mesh:
    """A ``(data, fsdp)`` mesh over all devices; ``data = n_devices // fsdp``."""
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) % fsdp:
        raise ValueError(f"{len(devices)} devices cannot be split into fsdp={fsdp} groups")
    grid = np.asarray(devices).reshape(len(devices) // fsdp, fsdp)
    return Mesh(grid, BATCH_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over every device of the mesh."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def state_shardings(mesh: Mesh, state: Any) -> Any:
    """Shardings for every leaf of the train state (replicated while fsdp == 1)."""
    if mesh.shape["fsdp"] != 1:
        raise NotImplementedError(
            "parameter sharding over the fsdp axis is not implemented yet; use fsdp=1"
        )
    return jax.tree.map(lambda _: replicated(mesh), state)


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
            f"batch size {global_batch_size} is not divisible by the {n_dev} devices of the mesh"
        )
    return global_batch_size // jax.process_count()
