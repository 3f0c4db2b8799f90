"""Quiet by default: what `launch.py` and `aesthetics-jax` show on the terminal.

Entry points print their own progress lines and final summaries (stdout / stderr). Library log
records -- absl, Orbax's dozens of INFO lines per checkpoint, JAX's backend probing, TFDS's
progress bars -- are hidden unless asked for:

    python launch.py ... --verbosity=0          # absl INFO records (1: DEBUG)
    python launch.py ... --log_level=info       # the same, by name
    aesthetics-jax --log_level=info predict ...  # any command (also --verbosity=N)
    AESTHETICS_JAX_LOG_LEVEL=info bash scripts/demo.sh

Warnings and errors always show (a fallback, a skipped image, a resumed run), except the ones in
`_NOISE`: warnings that third-party code emits for this project's normal operation and that ask
nothing of the user.
"""

from __future__ import annotations

import logging
import os

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
ENV = "AESTHETICS_JAX_LOG_LEVEL"

# (logger-independent) message prefixes dropped while quiet: TFDS warns about every builder
# config object that is not in its static BUILDER_CONFIGS list, which is how builds are named here.
_NOISE = ("Using custom data configuration",)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_NOISE)


_FILTER = _DropNoise()


def resolve(log_level: str | None = None, verbosity: int | None = None) -> int:
    """The python logging level for ``--log_level`` / ``--verbosity`` / ``$AESTHETICS_JAX_LOG_LEVEL``
    (WARNING when none is given). absl's convention: verbosity 0 = INFO, >= 1 = DEBUG."""
    if log_level is None and verbosity is None:
        log_level = os.environ.get(ENV) or None
    if log_level is not None:
        key = str(log_level).lower()
        if key not in LEVELS:
            raise ValueError(f"log level {log_level!r}: use one of {', '.join(LEVELS)}")
        return LEVELS[key]
    if verbosity is not None:
        return logging.DEBUG if verbosity >= 1 else logging.INFO if verbosity == 0 else logging.WARNING
    return logging.WARNING


def configure(level: int = logging.WARNING) -> int:
    """Applies ``level`` to absl (and so Orbax, JAX, TFDS, grain) and to TFDS's progress bars."""
    from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top

    absl_logging.set_verbosity({logging.DEBUG: absl_logging.DEBUG, logging.INFO: absl_logging.INFO,
                                logging.WARNING: absl_logging.WARNING}.get(level, absl_logging.ERROR))
    logging.getLogger().setLevel(level)
    handler = absl_logging.get_absl_handler()
    if level > logging.INFO:
        handler.addFilter(_FILTER)
    else:
        handler.removeFilter(_FILTER)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if level <= logging.INFO else "2")
    return level


def tfds_progress_bars() -> bool:
    """Whether TFDS may draw its tqdm bars (only when INFO records are shown): call before a build."""
    return logging.getLogger().getEffectiveLevel() <= logging.INFO
