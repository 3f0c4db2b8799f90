"""Orbax checkpointing of the train state together with the Grain iterator state.

Layout: ``WORKDIR/checkpoints/<step>/{state,data}``. ``state`` is the whole ``TrainState``
(params, batch stats, optimiser state, step); ``data`` is the Grain iterator's position, so a
resumed run reads exactly the batches an uninterrupted run would have read. Retention: the last
``keep`` checkpoints plus the best ``keep_best`` by ``best_metric`` (checkpoints saved with
evaluation metrics), through Orbax preservation policies.
"""

from __future__ import annotations

import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers as cm


class Checkpointer:
    def __init__(
        self,
        directory: str,
        *,
        keep: int = 2,
        best_metric: str | None = None,
        best_mode: str = "max",
        keep_best: int = 1,
        async_save: bool = True,
    ):
        if best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
        policies = [cm.LatestN(n=keep)]
        if best_metric:
            policies.append(
                cm.BestN(
                    get_metric_fn=lambda m: m[best_metric],
                    reverse=best_mode == "min",  # BestN keeps the tail of an ascending sort.
                    n=keep_best,
                    keep_checkpoints_without_metrics=False,
                )
            )
        self.best_metric = best_metric
        options = ocp.CheckpointManagerOptions(
            preservation_policy=cm.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save,
            create=True,
        )
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "data": grain.checkpoint.CheckpointHandler(),
            },
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        return self._manager.best_step() if self.best_metric else None

    def save(self, step: int, state: Any, data_iter=None, *, metrics: dict | None = None, force=False):
        items = {"state": ocp.args.StandardSave(state)}
        if data_iter is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iter)
        if metrics is not None:
            metrics = {k: float(v) for k, v in metrics.items()}
        saved = self._manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=force)
        if saved:
            logging.info("checkpoint saved at step %d in %s", step, self.directory)
        return saved

    def restore(self, abstract_state: Any, data_iter=None, step: int | None = None):
        """Restores ``step`` (default: latest) into the shardings of ``abstract_state``."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iter is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        logging.info("restored checkpoint of step %d from %s", step, self.directory)
        return restored["state"]

    def wait(self):
        self._manager.wait_until_finished()

    def close(self):
        self._manager.wait_until_finished()
        self._manager.close()


def restore_variables(directory: str, step: int | None = None) -> tuple[dict[str, Any], int]:
    """``({'params', 'batch_stats'}, step)`` of checkpoint ``step`` (None = latest) in ``directory``.

    Restores the ``state`` item without needing its optimiser structure, onto this host's first
    device when the saved topology is not available here (a checkpoint written on 8 devices
    restores on a 1-device laptop). FileNotFoundError lists the available steps.
    """
    manager = ocp.CheckpointManager(
        os.path.abspath(directory), item_handlers={"state": ocp.StandardCheckpointHandler()},
        options=ocp.CheckpointManagerOptions(read_only=True),
    )
    try:
        steps = manager.all_steps()
        step = manager.latest_step() if step is None else int(step)
        if step is None or step not in steps:
            raise FileNotFoundError(f"no checkpoint of step {step} in {directory}; available steps {sorted(steps)}")
        fallback = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        state = manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(fallback_sharding=fallback)))["state"]
    finally:
        manager.close()
    return {"params": state["params"], "batch_stats": state.get("batch_stats") or {}}, step


def restore_params(directory: str, step: int | None = None) -> dict[str, Any]:
    """Params and batch stats of another run's checkpoint (for init-from / stage-2 training)."""
    return restore_variables(directory, step)[0]
