r"""Aesthetics-XAI (seed 000) on EVA: six scores from InceptionV3, full images vs saliency patches.

Six linear outputs (``scores`` head: total, difficulty, visual, composition, quality, semantic =
EVA's per-image means of score, difficulty, visual, composition, quality, semantic), MSE loss on
targets mapped to [0, 1] per score (``data.unit=True``: (m - lo) / (hi - lo), 0..10 for the
total, 1..4 for the others; the ``raw`` variant or ``--config.data.unit=False`` trains on the raw
mixed scales as the seed did). The split is EVA's stored by-image split (10 % validation, 10 %
test, seed 0): the patches of an image are in the image's split, so nothing leaks.

Variants (``configs/xai_eva.py:A,B,...``):
  full       (default) whole images squashed to 299 x 299 (resize_size = image_size: no crop;
             training adds only a horizontal flip)
  patches    the ``eva_patches`` build over the same EVA build (5 saliency patches of 299 x 299
             per image, ``config.data.patches``); test = the ``patches`` evaluator: every patch of
             a test image predicted, aggregated per image (mean; median / max / saliency-weighted
             by ``--config.evals.test.aggregate``), against full-image predictions of the same
             images, with paired bootstrap CIs of the difference
  stage1     backbone frozen, head trained (lr 1e-3)
  stage2     the top 2 Inception blocks + the head trained, everything below frozen, lr 1e-4,
             initialised from the stage-1 workdir (``--config.init_from.workdir W1``). The top
             blocks are Keras ``mixed9``/``mixed10`` = torchvision ``Mixed_7b``/``Mixed_7c``: the
             regex ``^backbone/(conv2d|batch_normalization)_(76|...|93)/`` matches exactly
             ``backbone/conv2d_{76..93}/kernel`` and ``backbone/batch_normalization_{76..93}/bias``
             (36 tensors; + ``/scale`` in the torchvision layout) -- the stage 2 the seed meant
             (its code unfroze everything). Neither stage: every parameter trained (lr 1e-4).
  mobilenet  MobileNet v1 (224; stage 2: blocks 12-13) instead of InceptionV3
  clip       CLIP ViT-B/16 image tower (224; stage 2: the last 2 residual blocks, ln_post, proj)
  raw        targets on EVA's raw scales
  smoke      tiny: InceptionV3 stem + 2 mixed blocks at 75 px (stage 2: the top one, ``Mixed_5c``),
             tiny MobileNet / CLIP at 32 px, 80 px patches, a few steps: seconds on a CPU (tests)

Batch statistics: the model runs in training mode, so BatchNorm running statistics of frozen
layers still follow the EVA batches (their *parameters* stay exactly unchanged).

The two-stage recipe from ImageNet weights (Keras or torchvision InceptionV3, converted to a
backbone-only checkpoint; ``convert.json`` in OUT records the flags)::

  aesthetics-jax convert --from keras inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5 \
      --arch inception --out incv3
  python launch.py --config configs/xai_eva.py:full,stage1 --workdir W1 \
      --config.data.manual_dir /data/eva-dataset --config.data.data_dir /data/tfds \
      --config.init_from.workdir incv3 --config.init_from.dont_load='["^scores/"]'
  python launch.py --config configs/xai_eva.py:full,stage2 --workdir W2 \
      --config.data.manual_dir /data/eva-dataset --config.data.data_dir /data/tfds \
      --config.init_from.workdir W1

torchvision weights (``--from torchvision inception_v3_google-0cc3c7bd.pth``) need the matching
model: add ``--config.model.layout=torchvision --config.model.transform_input=True
--config.model.preprocess=torch`` to both stages. The patch model is the same two commands with
``patches,stage1`` / ``patches,stage2``; to compare it with the full-image model of W2 rather than
with its own predictions on the full images, add ``--config.evals.test.full_from=W2`` (W2's
``eval/test_predictions.csv``; both runs must use the same ``data.unit``). Its
``eval/test_table.md`` is the side-by-side table.
"""

import ml_collections

from configs import common

SCORE_NAMES = ("total", "difficulty", "visual", "composition", "quality", "semantic")

# backbone: (model fields, image size, smoke model fields, smoke image size)
BACKBONES = {
    "inception": (dict(name="inception", layout="keras"), 299, dict(num_mixed=2), 75),
    "mobilenet": (dict(name="mobilenet", width=1.0), 224, dict(width=0.25, num_blocks=13), 32),
    "clip": (dict(name="clip", variant="vit_b16", pooled="projected"), 224, dict(variant="tiny"), 32),
}


def stage2_regex(model: dict) -> str:
    """The backbone parameters stage 2 trains (the top blocks of ``model``; see the docstring)."""
    name = model["name"]
    if name == "inception":
        from aesthetics_jax.models import inception  # pylint: disable=g-import-not-at-top

        num_mixed = model.get("num_mixed", inception.NUM_MIXED)
        return inception.top_blocks_regex(2 if num_mixed >= 4 else 1, num_mixed)
    if name == "mobilenet":
        last = model.get("num_blocks", 13)
        return rf"^backbone/conv_(dw|pw)_({last - 1}|{last})(_bn)?/"
    if name == "clip":
        from aesthetics_jax.models import clip  # pylint: disable=g-import-not-at-top

        layers = model.get("layers") or clip.VARIANTS[model["variant"]].vision.layers
        top = "|".join(str(i) for i in range(max(layers - 2, 0), layers))
        return rf"^backbone/(resblocks_({top})/|ln_post/|proj$)"
    raise ValueError(f"no stage-2 rule for backbone {name!r}")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = common.parse_variants(
        arg, known=("full", "patches", "stage1", "stage2", "inception", "mobilenet", "clip", "raw", "smoke"))
    if {"full", "patches"} <= variants or {"stage1", "stage2"} <= variants:
        raise ValueError(f"variants {sorted(variants)}: pick one of full/patches and at most one of stage1/stage2")
    backbones = variants & set(BACKBONES)
    if len(backbones) > 1:
        raise ValueError(f"pick one backbone of {sorted(BACKBONES)}, got {sorted(backbones)}")
    backbone = backbones.pop() if backbones else "inception"
    patches = "patches" in variants
    smoke = "smoke" in variants
    model_fields, image_size, smoke_fields, smoke_size = BACKBONES[backbone]

    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = ml_collections.ConfigDict(dict(
        name="eva_patches" if patches else "eva",
        manual_dir="",  # the EVA directory (data/votes_filtered.csv, images/EVA_together/, ...)
        data_dir=common.default_data_dir(),
        train_split="train",
        val_fraction=0.1,
        test_fraction=0.1,
        split_seed=0,
        resize_shorter=0,
        unit="raw" not in variants,
        image_size=smoke_size if smoke else image_size,
        resize_size=smoke_size if smoke else image_size,  # = image_size: the whole image, squashed
        num_threads=2 if smoke else 4,
        num_workers=0,
    ))
    if patches:
        c.data.patches = ml_collections.ConfigDict(dict(
            patches_per_image=5, patch_size=299, top_focus=0.5, threshold="continuous",
            sampling="component_then_pixel", seed=0, producer="spectral", producer_params={}, maps_dir="",
            jpeg_quality=95, num_threads=2))

    model = dict(model_fields, **(smoke_fields if smoke else {}))
    c.model = ml_collections.ConfigDict(dict(
        model, dtype="float32", dropout=0.0,
        heads=dict(scores=dict(type="scores", names=list(SCORE_NAMES))),
    ))
    c.losses = ml_collections.ConfigDict(dict(
        scores=dict(type="mse", output="scores.scores", target="scores", weight=1.0),
    ))

    c.batch_size = 32
    c.eval_batch_size = 64
    c.num_epochs = 10
    c.total_steps = 0
    c.optimizer = "adam"
    c.optimizer_kwargs = {}
    c.lr = 1e-4
    sched = dict(warmup_steps=100, decay_type="cosine")
    c.schedule = [(".*", sched)]
    c.grad_clip_norm = 0.0
    c.init_from = ml_collections.ConfigDict(dict(workdir="", step=-1, dont_load=[]))  # "" = none

    c.log_every = 50
    c.eval_every = 1000
    c.ckpt_every = 1000
    c.keep_ckpts = 2
    c.best_metric = "val/scores/avg/srcc"
    c.best_mode = "max"
    c.evals = ml_collections.ConfigDict(dict(
        val=dict(type="aesthetic", split="validation", plots=False),  # patches: per-patch rows
        test=dict(type="aesthetic", split="test", plots=True),
    ))
    if patches:
        c.evals.test = ml_collections.ConfigDict(dict(
            type="patches", split="test", plots=True, full_from="", full_prefix="test", aggregate="mean",
            num_bootstrap=1000, seed=0, confidence=0.95, scale="raw", on_mismatch="error"))

    if "stage1" in variants:
        c.lr = 1e-3
        c.schedule = [("^scores/", sched), (".*", None)]
    if "stage2" in variants:
        c.lr = 1e-4
        c.schedule = [(stage2_regex(model), sched), ("^scores/", sched), (".*", None)]

    if smoke:
        if patches:
            c.data.patches.patch_size = 80
            c.data.patches.patches_per_image = 3
            c.evals.test.num_bootstrap = 200
        c.batch_size = 8
        c.eval_batch_size = 8
        c.total_steps = 3
        c.log_every = 1
        c.eval_every = 0
        c.ckpt_every = 3
        c.schedule = [(p, dict(s, warmup_steps=1) if s is not None else None) for p, s in c.schedule]
    return c


def get_sweep(arg: str | None = None) -> list[str]:
    """Aesthetics-XAI's comparison: whole images vs saliency patches, for InceptionV3 (the paper's)
    and MobileNet, all parameters trained (one stage; the two-stage recipe chains runs through
    ``init_from``, see the module docstring). ``arg`` is prefixed to every member."""
    base = f"{arg}," if arg else ""
    return [f"{base}{data},{backbone}" for backbone in ("inception", "mobilenet") for data in ("full", "patches")]
