r"""Train and evaluate one experiment config.

  python launch.py --config configs/nima_demo.py --workdir workdirs/demo
  python launch.py --config configs/nima_ava.py:stage1 --workdir W \
      --config.data.manual_dir /data/AVA --config.batch_size 64

``--config FILE.py[:ARG]`` calls ``get_config(ARG)`` in FILE; any field can be overridden with
``--config.a.b=value``. Running the same command again resumes from the workdir's last checkpoint.
"""

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and evaluation outputs.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # Imported here so that `--help` does not initialise JAX.
    from aesthetics_jax.train.trainer import train_and_evaluate

    logging.info("config:\n%s", _CONFIG.value)
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
