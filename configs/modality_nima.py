r"""Modality NIMA (Lisaius & Wehrwein, "Explaining Automatic Image Assessment"): NIMA on RGB, on a
perceptual modality map of the same images (depth, saliency, blur), or on RGB + the map.

  python launch.py --config configs/modality_nima.py:MODALITY[,BACKBONE][,freeze=K][,init=INIT] \
      --workdir W --config.data.manual_dir /data/AVA [--config.init_from.workdir SRC]

What the paper does not publish (SCIENCE.md §5: map methods, loss weights, frozen layers) is
chosen here, and every choice is a field of this config, so a sweep can vary it:

  MODALITY   rgb | depth | saliency | blur | rgb+depth | rgb+saliency | rgb+blur
             (``config.data.modality``: the map producer and how the map is fed; ``data.modality``
             in data/datasets.py). Maps are built once per (dataset, producer, params) by the
             ``modality`` builder -- 8-bit PNGs with the dataset's own ids, labels and splits --
             and reused by every run. A single map is fed as 3 equal channels (what ImageNet
             kernels expect); ``rgb+X`` feeds it as a 4th channel beside RGB, the input convolution
             widened and its new channel initialised to the mean of the RGB kernels
             (``models.extend_input_kernel``, applied when init_from loads a 3-channel kernel).
               saliency  producer "spectral" (training-free); with ``saliency=msinet`` MSI-Net
                         (``--config.data.modality.params.weights=DIR``, a directory written by
                         ``aesthetics-jax convert --from msi-net``)
               blur      producer "blur" (Zhuo & Sim 2011 re-blur gradient ratio; 1 = sharp)
               depth     producer "depth" from a local transformers checkpoint
                         (Depth Anything V2 / DPT): ``--config.data.modality.params.model_dir=DIR``
  saliency=  spectral (default) | msinet: the saliency producer of the saliency modalities
  BACKBONE   mobilenet (default; NIMA's MobileNet v1 alpha 1, 224 px) | inception (InceptionV3, 299 px)
  freeze=K   variable layer freezing: the first K backbone blocks from the input are frozen
             (parameters out of the optimiser, BatchNorm in inference mode, no gradient). Blocks:
             MobileNet stem + 13 depthwise-separable blocks (K = 0..14), InceptionV3 stem + 11
             mixed blocks (K = 0..12); 0 = full fine-tuning (default), the maximum = head only.
  init=INIT  imagenet (default): ``init_from.workdir`` = a converted ImageNet backbone
             (``aesthetics-jax convert --from keras mobilenet_1_0_224_tf_no_top.h5 --arch mobilenet
             --out mobilenet_imagenet``), head freshly initialised (dont_load ^emd/);
             transfer: ``init_from.workdir`` = an RGB NIMA workdir or bundle (backbone and head);
             scratch: random initialisation.
  smoke      a few steps on the tiny AVA fixture (tests).

Loss: the distribution-aware objective, EMD (r = 2) + 0.1 MSE(mean) + 0.1 MSE(sd) of the score
distributions (``losses.distribution_aware``; weights ``config.losses.emd.mean_weight`` /
``sd_weight``, r ``config.losses.emd.r``). Optimiser: Adam, lr 3e-5 with a cosine decay (idealo's
fine-tuning rate), 10 epochs, batch 96, dropout 0.75 (NIMA's). Evaluation: the aesthetic suite
(SRCC, PLCC, EMD r1/r2, JS divergence, histogram intersection, sd SRCC/PLCC, mode accuracy) on
the validation (model selection) and test splits; then ``aesthetics-jax analyze modalities --run
rgb=W_rgb --run blur=W_blur ... --by tags`` compares what each modality explains.
"""

import ml_collections

from aesthetics_jax import models
from configs import common

MODALITIES = ("rgb", "depth", "saliency", "blur", "rgb+depth", "rgb+saliency", "rgb+blur")
BACKBONES = ("mobilenet", "inception")
INITS = ("imagenet", "transfer", "scratch")
# A map kind -> (producer, its default parameters).
PRODUCERS = {
    "saliency": ("spectral", {}),
    "blur": ("blur", {}),
    "depth": ("depth", {"model_dir": ""}),
}
SALIENCY = {"spectral": ("spectral", {}), "msinet": ("msinet", {"weights": ""})}


def modality_data(modality: str, saliency: str = "spectral") -> ml_collections.ConfigDict:
    """``config.data.modality`` for one of MODALITIES (saliency maps by SALIENCY[saliency])."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; known: {list(MODALITIES)}")
    if modality == "rgb":
        return ml_collections.ConfigDict(dict(input="rgb", producer="", params={}, batch_size=8))
    kind = modality.split("+")[-1]
    producer, params = SALIENCY[saliency] if kind == "saliency" else PRODUCERS[kind]
    return ml_collections.ConfigDict(dict(input="rgb+map" if modality.startswith("rgb+") else "map",
                                          producer=producer, params=dict(params), batch_size=8))


def apply_freezing(c: ml_collections.ConfigDict, frozen_blocks: int, schedule: dict) -> None:
    """Sets ``model.frozen_blocks`` and ``schedule`` (frozen blocks first, then everything else)."""
    kwargs = {k: c.model[k] for k in ("num_blocks", "num_mixed") if k in c.model}
    regex = models.freeze_regex(c.model.name, frozen_blocks, **kwargs)
    c.model.frozen_blocks = frozen_blocks
    c.schedule = ([(regex, None)] if regex else []) + [(".*", schedule)]


def apply_init(c: ml_collections.ConfigDict, init: str) -> None:
    c.init_from = ml_collections.ConfigDict(dict(workdir="", step=-1, dont_load=[]))  # "" = none
    if init == "imagenet":
        c.init_from.dont_load = ["^emd/"]
    c.init = init  # recorded for the report; the workdir is set on the command line


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    names, options = common.parse_options(arg, flags=MODALITIES + BACKBONES + ("smoke",),
                                          options={"freeze": int, "init": INITS, "saliency": tuple(SALIENCY)})
    modality = [n for n in names if n in MODALITIES]
    backbone = [n for n in names if n in BACKBONES]
    if len(modality) > 1 or len(backbone) > 1:
        raise ValueError(f"name one modality and at most one backbone, got {sorted(names)}")
    modality = modality[0] if modality else "rgb"
    backbone = backbone[0] if backbone else "mobilenet"

    c = ml_collections.ConfigDict()
    c.seed = 0
    c.modality = modality
    c.data = common.ava_data()
    c.data.val_fraction = 0.05
    c.data.image_size, c.data.resize_size = (299, 320) if backbone == "inception" else (224, 256)
    c.data.modality = modality_data(modality, options.get("saliency", "spectral"))

    c.model = common.nima_model(name=backbone, width=1.0, dropout=0.75)
    c.losses = common.distribution_aware_losses(r=2, mean_weight=0.1, sd_weight=0.1)

    c.batch_size = 96
    c.eval_batch_size = 128
    c.num_epochs = 10
    c.total_steps = 0
    c.optimizer = "adam"
    c.optimizer_kwargs = {}
    c.lr = 3e-5
    c.grad_clip_norm = 0.0
    apply_freezing(c, options.get("freeze", 0), dict(warmup_steps=500, decay_type="cosine"))
    apply_init(c, options.get("init", "imagenet"))

    c.log_every = 100
    c.eval_every = 2000
    c.ckpt_every = 2000
    c.keep_ckpts = 2
    c.best_metric = "val/emd/srcc"
    c.best_mode = "max"
    c.evals = common.evals(val_split="validation", test_split="test")

    if "smoke" in names:
        common.make_smoke(c)  # 32 px, width 0.25, batch 8, 6 steps
        if backbone == "inception":  # InceptionV3 needs >= 75 px: stem + 2 mixed blocks
            c.data.image_size, c.data.resize_size = 75, 80
            c.model.num_mixed = 2
        else:
            c.model.num_blocks = 3
        blocks = models.num_backbone_blocks(backbone, **{k: c.model[k] for k in ("num_blocks", "num_mixed")
                                                         if k in c.model})
        apply_freezing(c, min(options.get("freeze", 0), blocks), dict(warmup_steps=1, decay_type="cosine"))
    return c


def get_sweep(arg: str | None = None) -> list[str]:
    """The paper's grid: each single-input modality (RGB, depth, saliency, blur) x variable layer
    freezing (none, the lower half of MobileNet's 14 blocks, all: head only). ``arg`` is prefixed to
    every member (e.g. ``inception,saliency=msinet``; an Inception sweep's freeze levels are then
    the same block counts of its 12). Run over seeds with ``aesthetics-jax sweep run
    configs/modality_nima.py --seeds 0,1,2 --set data.manual_dir=/data/AVA ...``; depth needs
    ``--set data.modality.params.model_dir=DIR`` for its members."""
    base = f"{arg}," if arg else ""
    blocks = 12 if "inception" in (arg or "").split(",") else 14
    return [f"{base}{modality},freeze={k}" for modality in ("rgb", "depth", "saliency", "blur")
            for k in (0, blocks // 2, blocks)]
