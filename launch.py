r"""Train and evaluate one experiment config.

  python launch.py --config configs/nima_demo.py --workdir workdirs/demo
  python launch.py --config configs/nima_ava.py:stage1 --workdir W \
      --config.data.manual_dir /data/AVA --config.batch_size 64

``--config FILE.py[:ARG]`` calls ``get_config(ARG)`` in FILE; any field can be overridden with
``--config.a.b=value``. Running the same command again resumes from the workdir's last checkpoint.
Quiet by default (progress lines and the final metrics table); ``--verbosity=0`` or
``--log_level=info`` brings back the absl / Orbax / TFDS INFO records (``logging_setup``).
"""

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and evaluation outputs.")
_LOG_LEVEL = flags.DEFINE_enum("log_level", None, ["debug", "info", "warning", "error"],
                               "Library log records to show (default: warnings only; also --verbosity=0).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from aesthetics_jax import logging_setup

    verbosity = flags.FLAGS["verbosity"]
    logging_setup.configure(logging_setup.resolve(_LOG_LEVEL.value, verbosity.value if verbosity.present else None))
    # Imported here so that `--help` does not initialise JAX.
    from aesthetics_jax.train.trainer import train_and_evaluate

    logging.info("config:\n%s", _CONFIG.value)
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
