r"""Aesthetics-XAI at demo scale: six scores from a reduced InceptionV3, full images vs saliency patches.

The whole method of ``configs/xai_eva.py`` on the embedded demo photographs, end to end on a
2-core CPU (``bash scripts/xai_demo.sh``, README "Reproducing Aesthetics-XAI"):

  1. data: the demo photographs in EVA's on-disk format (``data/builders/demo_eva.py``: six rated
     attributes from a documented model of the degradations; whole base photos held out as the
     test split), built by the same EVA builder as the real EVA (``config.data.demo``);
  2. ``patches`` variant: spectral-residual saliency maps (OpenCV variant, in JAX) of every image
     and 5 saliency-guided 128 x 128 patches per image (the ``eva_patches`` builder; the images are
     288 px on their longer side, so a patch keeps native pixels where the full image is
     downscaled -- EVA's ~800 px photos vs 299 px patches, at a third of the scale);
  3. the ``scores`` head (total, difficulty, visual, composition, quality, semantic), MSE on
     unit-scaled targets, on a reduced InceptionV3 trained from scratch (no pretrained weights on
     a demo): the stem and the first 4 mixed blocks (``mixed0``-``mixed3``: three InceptionA blocks
     and the first grid reduction) at width 0.25 (``inception.scaled_filters``), 128 x 128 input,
     all parameters trained in one stage (the two-stage recipe needs ImageNet weights, see
     ``xai_eva.py``);
  4. evaluation on the held-out photos: the ``full`` run predicts the whole test images; the
     ``patches`` run predicts every patch of the same images, aggregates per image (mean) and
     reads the full run's predictions (``--config.evals.test.full_from``) into one side-by-side
     table with paired bootstrap CIs (``eval/test_table.md``).

  python launch.py --config configs/xai_demo.py:full --workdir W/full
  python launch.py --config configs/xai_demo.py:patches --workdir W/patches \
      --config.evals.test.full_from=W/full
  python launch.py --config configs/xai_demo.py:patches,smoke --workdir /tmp/x   # seconds; tests

Both runs read (and the first one builds) the same data under ``config.data.data_dir``.
Measured numbers and wall times: BENCHMARKS.md.
"""

import ml_collections

from configs import common
from configs import xai_eva

PATCH_SIZE = 128


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = common.parse_variants(arg, known=("full", "patches", "smoke"))
    if {"full", "patches"} <= variants:
        raise ValueError("pick one of full / patches")
    patches = "patches" in variants
    smoke = "smoke" in variants
    c = xai_eva.get_config("patches" if patches else "full")

    c.data.manual_dir = ""
    c.data.demo = ml_collections.ConfigDict(dict(seed=0, versions_per_photo=100, image_size=288))
    c.data.image_size = PATCH_SIZE
    c.data.resize_size = PATCH_SIZE  # full images squashed whole to 128 x 128, as xai_eva squashes to 299
    c.data.num_threads = 2
    if patches:
        c.data.patches.patch_size = PATCH_SIZE

    c.model.num_mixed = 4
    c.model.width = 0.25
    c.model.dropout = 0.1

    c.batch_size = 16
    c.eval_batch_size = 64
    c.num_epochs = 0
    c.total_steps = 2500
    c.lr = 2e-3
    c.schedule = [(".*", dict(warmup_steps=50, decay_type="cosine"))]
    c.grad_clip_norm = 1.0
    c.log_every = 50
    c.eval_every = 500
    c.ckpt_every = 250
    c.best_metric = "val/scores/total/srcc"

    if smoke:
        c.data.demo.versions_per_photo = 3
        c.data.demo.image_size = 96
        c.data.image_size = c.data.resize_size = 80
        if patches:
            c.data.patches.patch_size = 80
            c.data.patches.patches_per_image = 3
            c.evals.test.num_bootstrap = 200
        c.model.num_mixed = 1
        c.model.width = 0.125
        c.batch_size = 8
        c.eval_batch_size = 8
        c.total_steps = 4
        c.log_every = 1
        c.eval_every = 0
        c.ckpt_every = 2
        c.schedule = [(".*", dict(warmup_steps=1, decay_type="cosine"))]
    return c
