r"""Critique-based scoring (CG-IAA's text-only IAA): an image's generated critiques -> its score.

  # 1. critiques of every AVA image by the experts (a critic bundle: `convert --from cgiaa`)
  aesthetics-jax critique /data/AVA/images --model cgiaa_critic > /data/ava_critiques.jsonl
  # 2. the CLIP text tower (frozen) reads each image's four critiques; a head learns the votes
  python launch.py --config configs/critique_iaa.py:clip=cgiaa_critic,critiques=/data/ava_critiques.jsonl \
      --workdir W/critique_iaa --config.data.manual_dir /data/AVA

Model (`models/critique_text.py`, backbone `critique_text`): the critiques' L2-normalised CLIP text
embeddings, concatenated over the attributes (color, composition, dof, general), a GELU layer
(`hidden` 512) and NIMA's 10-bin EMD head with dropout; the image is not read. The text tower comes
from `clip=` (a CLIP conversion's `text/`, or a critic bundle's `critics/clip/text/` -- CG-IAA's
VLAP CLIP) and stays frozen. Data: the AVA build plus `data.critiques` (`datasets.CritiqueSource`:
an image without a critique is an error naming it). CG-IAA reports critique-only AVA SRCC 0.712
(PLCC 0.720); its head is not published -- this one is ours.

The same critiques feed the fusion model as textual features: `configs/cgiaa.py` with
`--config.model.textual generated` and `--config.data.critiques.path FILE` (each expert's text
tower reads the critique its ClipCap twin wrote, instead of matching a prompt bank).

Variants (``configs/critique_iaa.py:V1,V2``): clip=DIR, critiques=FILE, attributes=a+b+... (subset,
in the file's names), demo (the demo's votes, critiques from `scripts/critique_demo.sh`, a tiny text
tower trained from scratch: no pretrained CLIP on the demo), smoke.
"""

import ml_collections

from configs import clip_vlap
from configs import common

ATTRIBUTES = ("color", "composition", "dof", "general")


def _options(arg):
    return common.option_dict(arg, ("demo", "smoke"), ("clip", "critiques", "attributes"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    options = _options(arg)
    attributes = tuple(options["attributes"].split("+")) if options.get("attributes") else ATTRIBUTES
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = common.ava_data()
    c.data.image_size = c.data.resize_size = 32  # the image is decoded but not read: keep it small
    c.data.critiques = ml_collections.ConfigDict(dict(path=options.get("critiques", ""), attributes=attributes,
                                                      context_length=77))
    c.model = ml_collections.ConfigDict(dict(
        name="critique_text", variant="vit_b16", text={}, attributes=len(attributes), hidden=512, dropout=0.1,
        preprocess="none", dtype="float32", heads=dict(emd=dict(type="emd", num_bins=10))))
    c.losses = common.emd_losses(r=2)
    c.batch_size = 128
    c.eval_batch_size = 256
    c.num_epochs = 10
    c.total_steps = 0
    c.optimizer = "adamw"
    c.optimizer_kwargs = dict(weight_decay=1e-4)
    c.lr = 1e-3
    c.schedule = [("^backbone/text/", None), (".*", dict(warmup_steps=200, decay_type="cosine"))]
    c.grad_clip_norm = 1.0
    if options.get("clip"):
        c.init_from = ml_collections.ConfigDict(dict(
            sources=[dict(workdir=options["clip"], rename=[("^(critics/clip/)?text/", "backbone/text/")])],
            dont_load=["^backbone/mlp/", "^emd/"]))
    else:
        c.init_from = ml_collections.ConfigDict(dict(workdir="", step=-1, dont_load=[]))  # "" = none
    c.log_every = 50
    c.eval_every = 0
    c.ckpt_every = 1000
    c.keep_ckpts = 2
    c.best_metric = "val/emd/srcc"
    c.best_mode = "max"
    c.evals = common.evals(val_split="validation", test_split="test")

    if "demo" in options or "smoke" in options:
        c.data.name = "demo"
        c.data.demo = ml_collections.ConfigDict(dict(seed=0, versions_per_photo=120))
        c.data.val_fraction = 0.1
        c.data.critiques.context_length = clip_vlap.DEMO_TEXT["context_length"]
        c.model.variant = "tiny"
        c.model.text = {k: v for k, v in clip_vlap.DEMO_TEXT.items()}
        c.model.hidden = 64
        c.schedule = [(".*", dict(warmup_steps=100, decay_type="cosine"))]  # no pretrained tower: train it
        c.batch_size = 32
        c.eval_batch_size = 64
        c.total_steps = 1500
        c.lr = 5e-4
        c.log_every = 100
        c.ckpt_every = 500
    if "smoke" in options:
        c.data.demo.versions_per_photo = 3
        c.data.demo.image_size = 48
        c.model.text = dict(clip_vlap.DEMO_TEXT, width=32, embed_dim=24)
        c.model.hidden = 16
        c.data.num_threads = 2
        c.batch_size = 8
        c.eval_batch_size = 8
        c.total_steps = 4
        c.log_every = 2
    return c
