"""Maps of folders / builds as PNG files: a thin wrapper over `aesthetics-jax maps compute`.

    python data_prep/maps.py SOURCE [SOURCE ...] --out DIR [--producer spectral] [--param k=v] [--bits 16|8]
                             [--shard I/N] [--batch_size 16] [--split S] [--data_dir D] [--lenient] [--quiet]

Same arguments as `aesthetics-jax maps compute` (aesthetics_jax/modalities/commands.py); the work is
`aesthetics_jax.modalities.files.compute_map_files`. See data_prep/README.md.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root

from aesthetics_jax.modalities import commands  # noqa: E402  pylint: disable=wrong-import-position

if __name__ == "__main__":
    sys.exit(commands.main(["compute", *sys.argv[1:]]))
