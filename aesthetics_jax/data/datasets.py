"""From ``config.data`` to a prepared TFDS build and its random-access split sources.

``config.data.name`` selects the dataset:

    ava    the AVA builder over ``manual_dir`` (an AVA directory in its public layout), built into
           ``data_dir``.
    demo   the embedded demo dataset: rendered into ``<data_dir>/demo/raw`` in AVA's on-disk
           format (``config.data.demo`` holds its parameters), then built by the *same* AVA
           builder into ``<data_dir>/demo`` — separate from a real AVA build in the same data_dir.

Preparation is idempotent: an existing build is reused. Skipped records are logged here and
listed in the build's ``skipped.csv``.
"""

from __future__ import annotations

import os

from absl import logging

from aesthetics_jax.data import pipeline
from aesthetics_jax.data.builders import ava, base


def prepare(data_config):
    """Builds (or reuses) the dataset ``data_config`` names; returns the TFDS builder."""
    name = data_config.name
    data_dir = os.path.abspath(os.path.expanduser(data_config.data_dir))
    if name == "demo":
        from aesthetics_jax.data.builders import demo

        manual_dir = os.path.join(data_dir, "demo", "raw")
        summary = demo.build_demo_ava(manual_dir, **dict(data_config.demo))
        logging.info("demo dataset: %d images (%d train, %d test) in %s",
                     summary["num_images"], summary["num_train"], summary["num_test"], manual_dir)
        tfds_dir = os.path.join(data_dir, "demo")
    elif name == "ava":
        manual_dir = data_config.manual_dir
        if not manual_dir:
            raise ValueError("config.data.manual_dir must name the AVA directory (AVA.txt, images/, ...)")
        tfds_dir = data_dir
    else:
        raise ValueError(f"unknown dataset {name!r}; known: 'ava', 'demo'")

    builder = ava.build_ava(
        manual_dir, tfds_dir,
        val_fraction=data_config.get("val_fraction", 0.0),
        seed=data_config.get("split_seed", 0),
    )
    skipped = builder.info.metadata.get("num_skipped", 0) if builder.info.metadata else 0
    if skipped:
        logging.warning("%d records skipped while building %s; see %s", skipped, builder.info.full_name,
                        os.path.join(builder.data_dir, base.SKIPPED_REPORT))
    return builder


def splits(builder) -> list[str]:
    return list(builder.info.splits.keys())


def source(builder, split: str):
    """Random-access source of ``split`` with images left as JPEG bytes (decoded by the pipeline)."""
    return pipeline.make_source(builder, split)
