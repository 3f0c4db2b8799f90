"""Image-caption builds over AVA (CG-IAA critiques, DPC-Captions, AVA-Captions, raw AVA comments): a thin
wrapper over `aesthetics-jax data build captions`.

    python data_prep/captions.py --format cgiaa|dpc|ava_captions|ava_comments --captions PATH
                                 --manual_dir AVA_DIR --data_dir OUT [--val_fraction F --seed S]
                                 [--resize_shorter N] [--quiet]

Same options as `aesthetics-jax data build captions` (aesthetics_jax/data/commands.py); the work is
`aesthetics_jax.data.builders.captions.build_captions`. See data_prep/README.md.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root

from aesthetics_jax.data import commands  # noqa: E402  pylint: disable=wrong-import-position

if __name__ == "__main__":
    sys.exit(commands.main(["build", "captions", *sys.argv[1:]]))
