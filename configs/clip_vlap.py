r"""Vision-language aesthetic pretraining (VLAP, CG-IAA stage 1) and the attribute experts (stage 2).

  # VLAP: contrastive fine-tuning of a converted CLIP on AVA image-comment pairs
  python launch.py --config configs/clip_vlap.py --workdir W/vlap \
      --config.data.manual_dir /data/AVA --config.data.captions.format ava_captions \
      --config.data.captions.path /data/AVA-Captions/CLEAN_AVA_FULL_COMMENTS.json \
      --config.init_from.workdir CLIP_DIR
  # an attribute expert: the VLAP model tuned on one group's critiques (CG-IAA's released files)
  python launch.py --config configs/clip_vlap.py:expert=color --workdir W/color \
      --config.data.manual_dir /data/AVA --config.data.captions.path /data/CG-IAA/data \
      --config.init_from.workdir W/vlap

``CLIP_DIR`` is a converted CLIP (``aesthetics-jax convert --from openai-clip|open-clip|hf-clip FILE
--arch clip --out CLIP_DIR``); its image/text tower sizes must match ``config.model`` (ViT-B/16 by
default: CG-IAA's base model). The data are image-caption records over the AVA directory
(``data/builders/captions.py``), split by AVA's official test list: no test image is used in
pretraining; retrieval on it is the evaluator.

Objective (Radford et al. 2021; CG-IAA): symmetric InfoNCE over the *global* batch (all devices'
images against all devices' captions), one caption drawn per image per step, learnable temperature
read clamped at exp(logit_scale) <= 100; images whose captions are identical count as positives of
each other (``losses.clip_infonce`` with target ``tokens``; exactly the plain loss when captions are
distinct). Trained parameters (``schedule``, regex over
``visual/...``, ``text/...``, ``logit_scale``): the last ``tune_blocks`` residual blocks of both
towers, their final LayerNorms and projections and the temperature; everything else frozen
(``tune_blocks=all``: every parameter). CG-IAA's exact VLAP recipe is not released; AdamW with
weight decay 0.2 (OpenAI's) and a short warm-up are this config's choices.

Variants (``configs/clip_vlap.py:V1,V2``):
  expert=GROUP   an attribute expert (color | composition | dof | general): the captions of that
                 group only (``data.captions.groups``), initialised from a VLAP run
  tune_blocks=N  last N blocks of each tower (default 2); ``all``: the whole model
  variant=NAME   CLIP size (vit_b32, vit_b16, vit_l14, vit_l14_336)
  demo           the embedded demo: critiques written from each image's degradations, a tiny CLIP
                 trained from scratch on CPU (``configs/clip_demo.py`` drives the whole pipeline)
  smoke          a few steps of the tiny CLIP on a small demo render (tests)
"""

import ml_collections

from configs import common

GROUPS = ("color", "composition", "dof", "general")

#: The demo's tiny CLIP image tower (`clip.CLIPConvNet`): five 3x3 stride-2 convolutions with batch
#: norm (24 -> 128 channels) on 112-px crops, mean + sd pooling, projection to 64. Noise, JPEG
#: blocks and blur are pixel-level: on the demo's votes from scratch (batch 32, 1,200 steps) it
#: reached held-out SRCC 0.75, without batch norm 0.63; the ViT with a conv stem (`DEMO_VISION`)
#: 0.45 in 3,000 steps, MobileNet 0.69 (BENCHMARKS.md "CG-IAA demo").
DEMO_CONVNET = dict(image_size=112, arch="convnet", conv_widths=(24, 48, 64, 96, 128), embed_dim=64)
#: The small ViT (conv stem to a 7 x 7 grid, 2 blocks of width 64) the ClipCap demo's captioner
#: reads (`configs/clipcap_attr.py:demo`; its tower is trained there, with the captioner).
DEMO_VISION = dict(image_size=112, patch_size=16, width=64, layers=2, num_heads=4, embed_dim=64, act="gelu", stem="conv",
                   stem_width=16, stem_depth=2)
DEMO_RESIZE = 128  # random 112-px crops of the 128-px image in training, the centre crop in evaluation
DEMO_TEXT = dict(context_length=32, width=64, layers=2, num_heads=4, embed_dim=64, act="gelu")


def tune_schedule(tune_blocks, layers: int, text_layers: int, sched: dict) -> list:
    """Regex schedule: the last ``tune_blocks`` blocks of both towers + final LNs, projections and the
    temperature train with ``sched``; the rest is frozen. ``"all"``: every parameter trains.
    ``layers=0``: an image tower without blocks (``clip.CLIPConvNet``), which can only train whole."""
    if tune_blocks == "all":
        return [(".*", sched)]
    n = int(tune_blocks)
    if n and not layers:
        raise ValueError(f"tune_blocks={n}: the image tower has no blocks (a convolutional tower trains whole: "
                         "tune_blocks=all)")
    if not 0 <= n <= min(layers, text_layers):
        raise ValueError(f"tune_blocks={n}: the towers have {layers} / {text_layers} blocks")
    vision = "|".join(str(i) for i in range(layers - n, layers))
    text = "|".join(str(i) for i in range(text_layers - n, text_layers))
    rules = [("^visual/(ln_post|proj)", sched), ("^text/(ln_final|text_projection)", sched), ("^logit_scale$", sched)]
    if n:
        rules = [(f"^visual/resblocks_({vision})/", sched), (f"^text/resblocks_({text})/", sched)] + rules
    return rules + [(".*", None)]


def _options(arg: str | None) -> dict:
    options = common.option_dict(arg, ("demo", "smoke"), ("expert", "tune_blocks", "variant"))
    if "expert" in options and options["expert"] not in GROUPS:
        raise ValueError(f"expert must be one of {GROUPS}, got {options['expert']!r}")
    return options


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    options = _options(arg)
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = "contrastive"

    c.data = common.ava_data()
    c.data.name = "captions"
    c.data.val_fraction = 0.0  # the test split (AVA's official list) is the retrieval evaluation
    c.data.image_size = 224
    c.data.resize_size = 224  # CG-IAA: Resize(224, 224), no crop (random flips only)
    c.data.captions = ml_collections.ConfigDict(dict(
        format="cgiaa" if "expert" in options else "ava_captions", path="",
        groups=(options["expert"],) if "expert" in options else (), context_length=77))

    c.model = ml_collections.ConfigDict(dict(
        name="clip", variant=options.get("variant", "vit_b16"), dtype="float32", attention=None,
        vision={}, text={}))
    # target "tokens": images with identical captions in a batch are positives of each other
    # (short AVA comments such as "Nice shot!" repeat; the demo's critiques repeat a lot).
    c.losses = ml_collections.ConfigDict(dict(infonce=dict(type="clip_infonce", output="clip.logits", target="tokens")))

    c.batch_size = 256
    c.eval_batch_size = 256
    c.num_epochs = 5
    c.total_steps = 0
    c.optimizer = "adamw"
    c.optimizer_kwargs = dict(weight_decay=0.2, b2=0.98, eps=1e-6)
    c.lr = 1e-5
    tune = options.get("tune_blocks", "2")
    from aesthetics_jax.models import clip  # pylint: disable=g-import-not-at-top

    base = clip.VARIANTS[c.model.variant]
    c.tune_blocks = tune
    c.schedule = tune_schedule(tune, base.vision.layers, base.text.layers, dict(warmup_steps=200, decay_type="cosine"))
    c.grad_clip_norm = 1.0
    c.init_from = ml_collections.ConfigDict(dict(workdir="", step=-1, dont_load=[]))  # "" = none

    c.log_every = 50
    c.eval_every = 0
    c.ckpt_every = 1000
    c.keep_ckpts = 2
    c.evals = ml_collections.ConfigDict(dict(test=dict(type="retrieval", split="test")))

    if "demo" in options or "smoke" in options:
        c.data.name = "captions"
        c.data.demo = ml_collections.ConfigDict(dict(seed=0, versions_per_photo=120))  # = nima_demo: one render
        c.data.image_size, c.data.resize_size = DEMO_CONVNET["image_size"], DEMO_RESIZE
        c.data.captions.context_length = DEMO_TEXT["context_length"]
        c.model.variant = "tiny"
        c.model.vision = dict(DEMO_CONVNET)
        c.model.text = dict(DEMO_TEXT)
        c.tune_blocks = tune = options.get("tune_blocks", "all")  # from scratch: everything trains
        c.schedule = tune_schedule(tune, 0, DEMO_TEXT["layers"], dict(warmup_steps=100, decay_type="cosine"))
        c.optimizer_kwargs = dict(weight_decay=0.0, b2=0.98, eps=1e-6)  # measured without decay (BENCHMARKS)
        c.lr = 2e-3 if "expert" not in options else 2e-4
        c.batch_size = 64
        c.eval_batch_size = 64
        c.total_steps = 800 if "expert" not in options else 100
        c.grad_clip_norm = 1.0
        from aesthetics_jax.data.builders import demo_captions  # pylint: disable=g-import-not-at-top

        # Zero-shot attribute classification of the held-out photos (labels.csv beside the critiques).
        c.evals.test.classes = {g: dict(demo_captions.ATTRIBUTE_CLASSES[g]) for g in GROUPS}
        c.evals.test.labels = ""
        c.log_every = 100
        c.ckpt_every = 400
    if "smoke" in options:
        c.data.demo.versions_per_photo = 3
        c.data.demo.image_size = 48
        c.data.image_size = c.data.resize_size = 32
        c.model.vision = dict(DEMO_CONVNET, image_size=32, conv_widths=(8, 16), embed_dim=24)
        c.model.text = dict(DEMO_TEXT, width=32, embed_dim=24)
        c.schedule = tune_schedule("all", 0, DEMO_TEXT["layers"], dict(decay_type="constant"))
        c.data.num_threads = 2
        c.batch_size = 8
        c.eval_batch_size = 8
        c.total_steps = 4
        c.log_every = 2
        c.ckpt_every = 1000
    return c
