r"""Train a ClipCap attribute expert (CG-IAA stage 2, generative): critiques of one attribute group.

  # an expert on CG-IAA's released critiques of one group, from a converted CLIP and GPT-2
  python launch.py --config configs/clipcap_attr.py:attribute=dof,clip=CLIP_DIR,gpt2=GPT2_DIR --workdir W/dof \
      --config.data.manual_dir /data/AVA --config.data.captions.path /data/CG-IAA/data \
      --config.data.captions.gpt2_tokenizer GPT2_DIR
  # the demo: a tiny expert from scratch on the demo critiques (README "Attribute critiques")
  python launch.py --config configs/clipcap_attr.py:demo,attribute=dof --workdir W/dof_demo

``CLIP_DIR`` is a CLIP conversion (``aesthetics-jax convert --from openai-clip FILE --arch clip --out
CLIP_DIR``; CG-IAA's base is its VLAP ViT-B/16, which ``convert --from cgiaa`` also holds: give that
bundle as clip= and its image tower is taken); ``GPT2_DIR`` a transformers GPT-2 directory
(config.json + model.safetensors, vocab.json + merges.txt). Any attribute whose captions a caption
build has works (``data.captions.groups``; DPC-Captions or AVA-Captions too).

Recipe (CG-IAA's released training, SCIENCE.md section 6): the CLIP image tower frozen, its feature
the L2-normalised projected class token; the mapper (8 layers, prefix 40) from scratch and GPT-2
fine-tuned together; token cross-entropy on captions ending in "." cut to 40 tokens; AdamW lr 2e-5
(no weight decay: transformers' AdamW default), 5000 linear warm-up steps then linear decay; batch
40 (the released training's is not stated for CG-IAA; ClipCap's default is 40). Padding is masked
out of the loss (the released code ignores token id 0 instead, which also drops GPT-2's "!").

Evaluation (``evaluate/critique.py``): held-out token perplexity, the experts' critiques of the
held-out images (beam 5, as released) and, where the build has attribute labels (the demo), the
accuracy of the class keyword the critique names against chance.

Variants (``configs/clipcap_attr.py:V1,V2``): attribute=G (color | composition | dof | general),
clip=DIR, gpt2=DIR, variant=NAME (CLIP size), demo, smoke.

Demo: the demo critiques (``demo_captions``) with a GPT-2 BPE vocabulary learnt from them
(``write_demo_tokenizer``), a tiny CLIP tower (``clip_vlap.DEMO_VISION``) and a tiny GPT-2, all from
scratch on the 2-core CPU. With no pretrained CLIP to freeze, the tower trains with the expert (the
schedule trains every parameter); the mapper is shortened (prefix 4, 2 layers).
"""

import ml_collections

from configs import clip_vlap
from configs import common

GROUPS = clip_vlap.GROUPS
DEMO_GPT2 = dict(vocab_size=512, n_positions=128, n_embd=128, n_layer=2, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0,
                 attn_pdrop=0.0, eos_token_id=0)
DEMO_CLIPCAP = dict(prefix_length=4, clip_length=4, num_layers=2, num_heads=4, mlp_ratio=2.0)


def _options(arg):
    options = common.option_dict(arg, ("demo", "smoke"), ("attribute", "clip", "gpt2", "variant"))
    if options.get("attribute", "color") not in GROUPS:
        raise ValueError(f"attribute must be one of {GROUPS}, got {options['attribute']!r}")
    return options


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    options = _options(arg)
    attribute = options.get("attribute", "color")
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = "caption"

    c.data = common.ava_data()
    c.data.name = "captions"
    c.data.val_fraction = 0.0
    c.data.image_size = 224
    c.data.resize_size = 224  # CG-IAA: Resize(224, 224)
    c.data.captions = ml_collections.ConfigDict(dict(
        format="cgiaa", path="", groups=(attribute,), context_length=77, tokenizer="gpt2",
        gpt2_tokenizer=options.get("gpt2", "") if options.get("gpt2") is not True else "", max_tokens=40))

    from aesthetics_jax.models import clipcap  # pylint: disable=g-import-not-at-top

    c.model = ml_collections.ConfigDict(dict(
        name="clipcap", dtype="float32", vision=dict(variant=options.get("variant", "vit_b16")),
        clipcap=clipcap.VARIANTS["cgiaa"].to_dict()))
    c.losses = ml_collections.ConfigDict(dict(caption=dict(type="caption_xent", output="caption.logits",
                                                           target="tokens")))
    c.batch_size = 40
    c.eval_batch_size = 64
    c.num_epochs = 10
    c.total_steps = 0
    c.optimizer = "adamw"
    c.optimizer_kwargs = dict(weight_decay=0.0)
    c.lr = 2e-5
    c.schedule = [("^visual/", None), (".*", dict(warmup_steps=5000, decay_type="linear"))]
    c.grad_clip_norm = 0.0
    sources = []
    if options.get("clip"):
        # A CLIP conversion (visual/...) or a critic bundle (critics/clip/visual/...): the image tower.
        sources.append(dict(workdir=options["clip"], rename=[("^(critics/clip/)?visual/", "visual/")]))
    if options.get("gpt2"):
        sources.append(dict(workdir=options["gpt2"], rename=[("^gpt/", "captioner/gpt/")]))
    c.init_from = ml_collections.ConfigDict(dict(
        sources=sources, dont_load=["^captioner/clip_project/"] + ([] if options.get("gpt2") else ["^captioner/gpt/"])))
    if not sources:
        c.init_from = ml_collections.ConfigDict(dict(workdir="", step=-1, dont_load=[]))  # "" = none

    c.log_every = 50
    c.eval_every = 0
    c.ckpt_every = 1000
    c.keep_ckpts = 2
    c.evals = ml_collections.ConfigDict(dict(test=dict(type="critique", split="test", method="beam", beam=5,
                                                       max_tokens=67, labels=None)))

    if "demo" in options or "smoke" in options:
        c.data.demo = ml_collections.ConfigDict(dict(seed=0, versions_per_photo=120))  # = nima_demo: one render
        c.data.image_size, c.data.resize_size = clip_vlap.DEMO_VISION["image_size"], clip_vlap.DEMO_RESIZE
        c.data.captions.gpt2_tokenizer = ""  # learnt from the demo critiques
        c.model.vision = dict(variant="tiny", **clip_vlap.DEMO_VISION)
        c.model.clipcap = dict(prefix_dim=clip_vlap.DEMO_VISION["embed_dim"], gpt2=dict(DEMO_GPT2), **DEMO_CLIPCAP)
        c.schedule = [(".*", dict(warmup_steps=100, decay_type="cosine"))]
        c.optimizer_kwargs = dict(weight_decay=0.01)
        c.lr = 5e-4
        c.batch_size = 32
        c.total_steps = 1500
        c.grad_clip_norm = 1.0
        c.evals.test.labels = ""  # labels.csv beside the demo critiques
        c.evals.test.max_tokens = 24
        c.log_every = 100
        c.ckpt_every = 500
    if "smoke" in options:
        c.data.demo.versions_per_photo = 3
        c.data.demo.image_size = 48
        c.data.image_size = c.data.resize_size = 32
        c.model.vision = dict(clip_vlap.DEMO_VISION, variant="tiny", image_size=32, patch_size=8, width=32,
                              embed_dim=24, stem_width=8)
        c.model.clipcap = dict(DEMO_CLIPCAP, prefix_dim=24, gpt2=dict(DEMO_GPT2, n_embd=32))
        c.data.num_threads = 2
        c.batch_size = 8
        c.eval_batch_size = 8
        c.total_steps = 4
        c.evals.test.beam = 2
        c.evals.test.max_tokens = 6
        c.log_every = 2
        c.ckpt_every = 1000
    return c
