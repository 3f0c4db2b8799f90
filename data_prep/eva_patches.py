"""Saliency patches of an EVA build: a thin wrapper over `aesthetics-jax data build eva_patches`.

    python data_prep/eva_patches.py --data_dir D [--parent_config default] [--maps_dir M] [--shard I/N]
                                    [--patches_per_image 5] [--top_focus 0.5] [--sampling component_then_pixel]
                                    [--seed 0] [--producer spectral] [--param k=v] [--jpeg_quality 95] [--quiet]

Same options as `aesthetics-jax data build eva_patches` (aesthetics_jax/data/commands.py); the work is
`aesthetics_jax.data.builders.eva_patches.build_eva_patches`. See data_prep/README.md.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root

from aesthetics_jax.data import commands  # noqa: E402  pylint: disable=wrong-import-position

if __name__ == "__main__":
    sys.exit(commands.main(["build", "eva_patches", *sys.argv[1:]]))
