"""Modality versions of a build (maps with the parent's ids, labels, splits): a thin wrapper over
`aesthetics-jax data build modality`.

    python data_prep/modality.py --parent_dir <prepared build> --producer blur|spectral|msinet|depth
                                 [--param k=v] [--data_dir D] [--shard I/N] [--batch_size 8] [--quiet]

Same options as `aesthetics-jax data build modality` (aesthetics_jax/data/commands.py); the work is
`aesthetics_jax.data.builders.modality.build_modality`. See data_prep/README.md.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root

from aesthetics_jax.data import commands  # noqa: E402  pylint: disable=wrong-import-position

if __name__ == "__main__":
    sys.exit(commands.main(["build", "modality", *sys.argv[1:]]))
