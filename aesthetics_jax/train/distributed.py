"""Multi-process (multi-host) start-up: ``initialize()`` before anything touches JAX devices.

Three cases, decided by ``plan()``:

* explicit: ``coordinator`` ("host:port"), ``num_processes`` and ``process_id`` all given (the
  ``launch.py`` flags ``--coordinator --num_processes --process_id``) -> ``jax.distributed.initialize``
  with exactly those, cluster auto-detection off. Giving some but not all is an error: a process that
  silently ran alone would train on its shard as if it were the whole job.
* auto-detected: no flags, and one of the cluster environments JAX itself recognises
  (``jax._src.clusters``: Open MPI, SLURM, Cloud TPU VMs on GCE or GKE; in that order, the order
  ``jax.distributed.initialize()`` tries them) is present with more than one process ->
  ``jax.distributed.initialize()`` lets JAX read the coordinator, process count and id from that
  environment. One exception: JAX's SLURM detection restricts each process to the GPU whose index is
  ``SLURM_LOCALID`` (it assumes one process per GPU); with one task per node (``SLURM_NTASKS`` equal to
  the step's node count) that would leave a node's other GPUs idle, so there the same parameters are
  read from SLURM and passed explicitly with every local device visible.
* neither: a single process; nothing is initialised (``jax.distributed`` is not needed then, and a
  SLURM allocation with one task, e.g. an interactive ``srun``, stays a plain single-process run).

On CPU, cross-process collectives need an implementation chosen before the backend starts; JAX 0.10.2
reads it from ``jax_cpu_collectives_implementation`` (default "gloo", the one that works between
processes over TCP without MPI); ``initialize`` sets "gloo" unless ``JAX_CPU_COLLECTIVES_IMPLEMENTATION``
chose another, so a CPU run (the localhost test: 2 processes x 4 CPU devices) all-reduces correctly.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import jax

__all__ = ["plan", "initialize", "barrier"]


def _check_explicit(coordinator, num_processes, process_id) -> None:
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    missing = [name for name, value in given.items() if value is None]
    if len(missing) not in (0, 3):
        present = ", ".join(f"--{name}" for name in given if name not in missing)
        raise ValueError(f"multi-process flags: {present} given without {', '.join('--' + m for m in missing)}; "
                         "give all three of --coordinator host:port, --num_processes N, --process_id I "
                         "(or none, to auto-detect a TPU pod / SLURM / Open MPI job)")
    if missing:
        return
    host, sep, port = str(coordinator).rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--coordinator must be host:port (e.g. localhost:12345 or 10.0.0.1:8476), got {coordinator!r}")
    if isinstance(num_processes, bool) or int(num_processes) != num_processes or num_processes < 1:
        raise ValueError(f"--num_processes must be a positive integer, got {num_processes!r}")
    if isinstance(process_id, bool) or int(process_id) != process_id or not 0 <= process_id < num_processes:
        raise ValueError(f"--process_id must be in [0, {num_processes}) for --num_processes {num_processes}, "
                         f"got {process_id!r}")


def _detected_cluster():
    """The first cluster environment JAX's auto-detection would use, or None (mpi4py, opt-in only in
    JAX, is skipped as JAX skips it)."""
    from jax._src import clusters  # pylint: disable=g-import-not-at-top  (JAX's own detection)

    for env in clusters.ClusterEnv._cluster_types:  # pylint: disable=protected-access
        if not env.opt_in_only_method and env.is_env_present():
            return env
    return None


def _slurm_one_task_per_node() -> bool:
    nodes = (os.environ.get("SLURM_STEP_NUM_NODES") or os.environ.get("SLURM_NNODES")
             or os.environ.get("SLURM_JOB_NUM_NODES"))
    return bool(nodes) and int(nodes) == int(os.environ["SLURM_NTASKS"])


def plan(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
         local_device_ids: Sequence[int] | None = None) -> dict[str, Any] | None:
    """The keyword arguments ``initialize`` will pass to ``jax.distributed.initialize``, with a
    ``"how"`` entry ("explicit", "auto: <environment>"), or None for a single-process run.

    Raises ValueError for partial or invalid explicit flags. Reads the environment only; starts nothing.
    """
    _check_explicit(coordinator, num_processes, process_id)
    ids = None if local_device_ids is None else [int(i) for i in local_device_ids]
    if coordinator is not None:
        return dict(how="explicit", coordinator_address=str(coordinator), num_processes=int(num_processes),
                    process_id=int(process_id), local_device_ids=ids, cluster_detection_method="deactivate")
    env = _detected_cluster()
    if env is None or env.get_process_count() < 2:
        if ids is not None:
            raise ValueError("--local_device_ids applies to multi-process runs: give it with --coordinator, "
                             "--num_processes and --process_id, or inside a detected cluster job")
        return None
    if env.__name__ == "SlurmCluster" and ids is None and _slurm_one_task_per_node():
        return dict(how="auto: SLURM, one task per node (all of its devices)",
                    coordinator_address=env.get_coordinator_address(
                        timeout_secs=300, override_coordinator_port=os.environ.get("JAX_COORDINATOR_PORT")),
                    num_processes=env.get_process_count(), process_id=env.get_process_id(),
                    local_device_ids=None, cluster_detection_method="deactivate")
    return dict(how=f"auto: {env.__name__}", local_device_ids=ids)


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               local_device_ids: Sequence[int] | None = None) -> dict[str, Any] | None:
    """Starts ``jax.distributed`` as ``plan()`` decides (see the module docstring); returns the plan
    (None: single process, nothing done). Call it before any JAX computation or device query."""
    if jax.distributed.is_initialized():
        raise RuntimeError("jax.distributed is already initialised in this process")
    kwargs = plan(coordinator, num_processes, process_id, local_device_ids)
    if kwargs is None:
        return None
    if not os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**{k: v for k, v in kwargs.items() if k != "how"})
    return kwargs


def barrier(name: str, timeout_s: int = 6 * 3600) -> None:
    """Waits until every process reaches ``barrier(name)`` (no-op with one process).

    Uses the coordination service of ``jax.distributed`` (through Orbax's barrier function), not a
    device collective: on CPU a collective waits only 30 s for its peers (gloo's key-value timeout
    in jaxlib 0.10.2), too short for process 0 building a dataset while the others wait.
    """
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

    ocp.multihost.get_barrier_sync_fn()(key=f"aesthetics_jax:{name}", timeout_ms=int(timeout_s * 1000))
