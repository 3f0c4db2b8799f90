r"""CG-IAA stage 3: the multi-attribute fusion model (``models/cgiaa.py``) trained on AVA scores.

  python launch.py --config configs/cgiaa.py:runs=W --workdir W/fusion --config.data.manual_dir /data/AVA

``runs=W`` names the directory holding the earlier stages' workdirs (``configs/clip_vlap.py``):
``W/vlap`` (the VLAP CLIP: its image tower becomes the fusion model's ``base``) and
``W/expert_<group>`` for each expert (its image tower, text tower and temperature). Any of them may
instead be a converted CLIP directory (``aesthetics-jax convert --from openai-clip ... --arch clip``),
e.g. CG-IAA's released ``base_model.pt`` after VLAP. ``init_from.sources`` maps their parameters
onto the fusion model by prefix (``^visual/`` -> ``backbone/base/`` ...), strictly: every tower
parameter must be filled; the fusion layers and the EMD head start from scratch (``dont_load``).

The model (our design; CG-IAA's MAP fusion is not released, see ``models/cgiaa.py``): the VLAP image
embedding v, each expert's image embedding f_e and the text embedding t_e of the critiques its
image matches in a fixed bank (``model.prompts``; soft attention over the bank at the expert's CLIP
temperature) are tokens of a one-block transformer whose visual token feeds NIMA's 10-bin EMD
head. The towers are frozen (``schedule``); the fusion block and the head train with the
distribution-aware EMD loss.

Variants (``configs/cgiaa.py:V1,V2,...``):
  runs=W             where the VLAP / expert workdirs are (init_from.sources)
  fusion=F           attention (default; the demo: concat) | concat | none (fusion off: the VLAP
                     image embedding alone feeds the head; no expert is loaded)
  drop=G             leave expert G (color | composition | dof | general) out
  textual=soft|hard  soft attention over an expert's critique bank, or its best match only
  textual=generated,critiques=FILE
                     the experts' text towers read the critiques each image was *given* (``aesthetics-jax
                     critique`` JSON lines by the ClipCap experts, ``data.critiques``) instead of
                     matching a bank (``configs/critique_iaa.py`` scores from those critiques alone)
  train_base=N|all   also fine-tune the last N blocks of the base image tower (default 0), or all of it
  expert_tokens=both|text
                     what each expert gives the fusion: its image feature and its textual feature
                     (both, the default) or the textual feature only (text; the demo's default)
                     (``--config.model.expert_dropout P``: each expert's tokens dropped per
                     training example with probability P; 0 by default, 0.5 in the demo)
  demo               the embedded demo (the tiny CLIP of ``clip_vlap.py:demo``; critique banks =
                     the demo's attribute class prompts); ``configs/clip_demo.py`` runs all stages
  smoke              a few steps on a tiny demo render (tests)

``get_sweep(arg)`` lists the ablation: fusion on, fusion off, and each expert dropped.
"""

import ml_collections

from configs import clip_vlap, common

GROUPS = clip_vlap.GROUPS

#: Critique banks for real AVA runs: what each expert's matches are read against (CG-IAA's expert
#: critiques are free text; these are short attribute statements of both polarities).
PROMPTS = {
    "color": ("vivid, well balanced colours", "dull, washed out colours", "beautiful soft natural light",
              "harsh light with blown highlights", "too dark and underexposed", "great contrast and tones",
              "an unpleasant colour cast", "rich black and white tones"),
    "composition": ("strong composition following the rule of thirds", "the subject is well framed",
                    "cluttered composition with a distracting background", "the horizon is tilted",
                    "too much empty space around the subject", "nice leading lines and symmetry",
                    "the subject is cut off at the edge", "a simple, minimal composition"),
    "dof": ("shallow depth of field with creamy bokeh", "the subject is sharp and in focus",
            "blurry and out of focus", "everything is sharp from front to back", "distracting motion blur",
            "the focus is on the wrong spot"),
    "general": ("a stunning, beautiful photograph", "a boring snapshot", "a strong mood and emotion",
                "grainy and noisy", "an excellent capture of the moment", "the image lacks impact",
                "heavy compression artefacts", "a creative, original idea"),
}


def _options(arg):
    options = common.option_dict(arg, ("demo", "smoke"), ("runs", "fusion", "drop", "textual", "critiques", "train_base",
                                                                   "expert_tokens"))
    if options.get("fusion", "attention") not in ("attention", "concat", "none"):
        raise ValueError(f"fusion must be attention, concat or none, got {options['fusion']!r}")
    if options.get("textual", "soft") not in ("soft", "hard", "generated"):
        raise ValueError(f"textual must be soft, hard or generated, got {options['textual']!r}")
    if "drop" in options and options["drop"] not in GROUPS:
        raise ValueError(f"drop must be one of {GROUPS}, got {options['drop']!r}")
    return options


def init_sources(runs: str, experts, fusion: str, textual: str = "soft", expert_tokens: str = "both") -> list:
    """``init_from.sources``: the VLAP image tower -> base, each expert's towers -> its slots (no
    temperature with textual='generated': nothing is matched; no image tower either when only the
    critiques are fused, expert_tokens='text')."""
    sources = [dict(workdir=f"{runs}/vlap", step=-1, rename=[("^visual/", "backbone/base/")])]
    if fusion == "none":
        return sources
    for g in experts:
        rename = [("^text/", f"backbone/text_{g}/")]
        if textual != "generated" or expert_tokens == "both":
            rename.append(("^visual/", f"backbone/expert_{g}/"))
        if textual != "generated":
            rename.append(("^logit_scale$", f"backbone/logit_scale_{g}"))
        sources.append(dict(workdir=f"{runs}/expert_{g}", step=-1, rename=rename))
    return sources


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    options = _options(arg)
    demo = "demo" in options or "smoke" in options
    fusion = options.get("fusion", "concat" if demo else "attention")
    experts = tuple(g for g in GROUPS if g != options.get("drop")) if fusion != "none" else ()
    # The demo fuses what the experts say (t_e) but not their image features (held-out SRCC with
    # both 0.45, t_e only 0.58 with the attention fusion, in an earlier venv; BENCHMARKS.md).
    expert_tokens = options.get("expert_tokens", "text" if demo else "both")
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = common.ava_data()
    c.data.image_size = 224
    c.data.resize_size = 224  # CG-IAA: Resize(224, 224), no crop
    c.data.val_fraction = 0.05
    # textual=generated: each image's generated critiques (`aesthetics-jax critique` JSON lines),
    # one per expert in the experts' order, read by the experts' text towers.
    c.data.critiques = ml_collections.ConfigDict(dict(path=options.get("critiques", ""), attributes=experts,
                                                      context_length=77))

    c.model = ml_collections.ConfigDict(dict(
        name="cgiaa", variant="vit_b16", dtype="float32", dropout=0.0, experts=experts,
        prompts={g: PROMPTS[g] for g in experts}, textual=options.get("textual", "soft"), fusion=fusion,
        fusion_dim=256, fusion_layers=1, expert_tokens=expert_tokens, expert_dropout=0.0,
        heads=dict(emd=dict(type="emd", num_bins=10))))
    c.losses = common.distribution_aware_losses(r=2, mean_weight=0.1, sd_weight=0.1)

    c.batch_size = 128
    c.eval_batch_size = 256
    c.num_epochs = 10
    c.total_steps = 0
    c.optimizer = "adam"
    c.optimizer_kwargs = {}
    c.lr = 3e-4
    c.grad_clip_norm = 1.0
    c.train_base = options.get("train_base", "0")  # "all" or a number of the base tower's last blocks
    c.init_from = ml_collections.ConfigDict(dict(
        workdir="", sources=init_sources(options["runs"], experts, fusion, options.get("textual", "soft"), expert_tokens)
        if "runs" in options else [],
        dont_load=["^emd/", "^backbone/fusion/"]))

    c.log_every = 100
    c.eval_every = 2000
    c.ckpt_every = 2000
    c.keep_ckpts = 2
    c.best_metric = "val/emd/srcc"
    c.best_mode = "max"
    c.evals = common.evals(val_split="validation", test_split="test")

    if demo:
        from aesthetics_jax.data.builders import demo_captions  # pylint: disable=g-import-not-at-top

        c.data = common.demo_data(versions_per_photo=120)  # the render clip_vlap.py:demo captions
        c.data.image_size, c.data.resize_size = clip_vlap.DEMO_CONVNET["image_size"], clip_vlap.DEMO_RESIZE
        c.data.val_fraction = 0.1
        c.data.critiques = ml_collections.ConfigDict(dict(path=options.get("critiques", ""), attributes=experts,
                                                          context_length=clip_vlap.DEMO_TEXT["context_length"]))
        vision, text = clip_vlap.DEMO_CONVNET, clip_vlap.DEMO_TEXT
        c.model.variant = "tiny"
        c.model.update(vision)
        c.model.update({f"text_{k}": v for k, v in text.items()})
        c.model.prompts = {g: tuple(demo_captions.ATTRIBUTE_CLASSES[g].values()) for g in experts}
        c.model.fusion_dim = 64
        c.model.fusion_heads = 4
        # The experts are tiny CLIPs tuned on ~13 photos: their critiques are right on those photos
        # (even on new renders of them) and much less on unseen ones, and a fusion trained on the
        # former learns to trust them. Expert dropout and the concat fusion's linear path from v
        # keep the visual feature able to stand alone: held-out SRCC attention 0.51, attention +
        # dropout 0.63, concat 0.67, concat + dropout 0.69 (fusion off 0.70; one venv, one set of
        # stages; BENCHMARKS.md).
        c.model.expert_dropout = 0.5
        c.batch_size = 32
        c.eval_batch_size = 64
        c.total_steps = 1200
        c.lr = 1e-3
        # The demo's towers are trained from scratch on ~1,400 photos: the base tower is fine-tuned
        # with the fusion block (its batch norm on batch statistics), the experts stay frozen.
        c.train_base = options.get("train_base", "all")
        c.log_every = 100
        c.eval_every = 0
        c.ckpt_every = 500
    if "smoke" in options:
        c.data.demo.versions_per_photo = 3
        c.data.demo.image_size = 48
        c.data.image_size = c.data.resize_size = 32
        smoke = clip_vlap.get_config("smoke").model  # the towers the smoke VLAP trains, every field
        c.model.update(smoke.vision)
        c.model.update({f"text_{k}": v for k, v in smoke.text.items()})
        c.model.fusion_dim = 16
        c.data.num_threads = 2
        c.batch_size = 8
        c.eval_batch_size = 8
        c.total_steps = 4
        c.log_every = 2
        c.eval_every = 0

    from aesthetics_jax.models import cgiaa  # pylint: disable=g-import-not-at-top

    everything = c.train_base == "all"
    # A frozen base runs its batch norm (if any) on its running averages.
    c.model.train_base_statistics = c.train_base != "0"
    frozen = cgiaa.freeze_regex(experts, train_base=everything, train_base_blocks=0 if everything else int(c.train_base),
                                variant=c.model.variant, layers=c.model.get("layers"), arch=c.model.get("arch"))
    sched = dict(warmup_steps=100, decay_type="cosine")
    c.schedule = ([(frozen, None)] if frozen else []) + [(".*", sched)]
    return c


def get_sweep(arg: str | None = None) -> list[str]:
    """The ablation as config arguments: fusion on, fusion off, each expert dropped (``arg`` is
    prefixed to each, e.g. ``demo,runs=W``)."""
    base = f"{arg}," if arg else ""
    return [base.rstrip(","), f"{base}fusion=none"] + [f"{base}drop={g}" for g in GROUPS]
