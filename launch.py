r"""Train and evaluate one experiment config.

  python launch.py --config configs/nima_demo.py --workdir workdirs/demo
  python launch.py --config configs/nima_ava.py:stage1 --workdir W \
      --config.data.manual_dir /data/AVA --config.batch_size 64

``--config FILE.py[:ARG]`` calls ``get_config(ARG)`` in FILE; any field can be overridden with
``--config.a.b=value``. Running the same command again resumes from the workdir's last checkpoint.
Quiet by default (progress lines and the final metrics table); ``--verbosity=0`` or
``--log_level=info`` brings back the absl / Orbax / TFDS INFO records (``logging_setup``).

Multi-host (README "Multi-host training"): on a TPU pod slice, in a SLURM job with several tasks or
under Open MPI the processes find each other by themselves (run the same command on every host /
task); elsewhere give every process the same ``--coordinator host:port --num_processes N`` and its
own ``--process_id``:

  python launch.py --config configs/nima_demo.py --workdir /shared/w \
      --coordinator 10.0.0.1:8476 --num_processes 2 --process_id 0     # and 1 on the other host

Progress lines, logs and evaluation outputs come from process 0 only.
"""

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and evaluation outputs.")
_LOG_LEVEL = flags.DEFINE_enum("log_level", None, ["debug", "info", "warning", "error"],
                               "Library log records to show (default: warnings only; also --verbosity=0).")
_COORDINATOR = flags.DEFINE_string("coordinator", None, "Multi-process: host:port of process 0's coordinator "
                                   "(with --num_processes, --process_id; default: auto-detect TPU pod / SLURM).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-process: the number of processes.", lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-process: this process's index in [0, num_processes).",
                                   lower_bound=0)
_LOCAL_DEVICE_IDS = flags.DEFINE_list("local_device_ids", None, "Multi-process: the local device ids (e.g. GPUs) "
                                      "this process uses (default: all, or the cluster's choice).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from aesthetics_jax import logging_setup

    verbosity = flags.FLAGS["verbosity"]
    level = logging_setup.resolve(_LOG_LEVEL.value, verbosity.value if verbosity.present else None)
    logging_setup.configure(level)
    # Imported here so that `--help` does not initialise JAX; jax.distributed starts before the
    # trainer (or anything else) queries devices, as it must.
    from aesthetics_jax.train import distributed

    local_ids = _LOCAL_DEVICE_IDS.value
    if local_ids is not None and not all(i.strip().isdigit() for i in local_ids):
        raise app.UsageError(f"--local_device_ids must be comma-separated device indices, got {','.join(local_ids)!r}")
    local_ids = None if local_ids is None else [int(i) for i in local_ids]
    try:
        started = distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, local_ids)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    if started is not None:
        import jax

        logging.info("jax.distributed (%s): process %d of %d, %d local / %d global devices", started["how"],
                     jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())
        if jax.process_index() != 0:  # logs come from process 0; the others show errors only
            logging_setup.configure(max(level, logging_setup.LEVELS["error"]))
    from aesthetics_jax.train.trainer import train_and_evaluate

    logging.info("config:\n%s", _CONFIG.value)
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
