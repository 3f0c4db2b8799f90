"""CG-IAA multi-attribute fusion backbone (`cgiaa`): a VLAP CLIP image tower + attribute experts.

CG-IAA (SCIENCE.md §6) has three stages: (1) VLAP, CLIP fine-tuned on image-comment pairs -> the
*base* image tower; (2) multi-attribute experts (color, composition, dof, general) that describe an
image's attribute; (3) "MAP", a fusion of the experts' textual features with the visual feature.
MAP is not released. This module is **our** fusion, built only from CLIP towers (no captioning
decoder): each expert is a CLIP image + text tower pair that *retrieves* the best-matching critiques
from a fixed bank of attribute prompts instead of generating one. Input: normalised pixels (the
`clip` preset; `AestheticsModel` normalises raw [0, 255] images), NHWC.

Per forward pass, with D = CLIP embed_dim, E experts, K_e prompts for expert e::

    v    = l2(base(x).pooled)                        [B, D]   VLAP image embedding (ln_post(CLS) @ proj)
    f_e  = l2(expert_e(x).pooled)                    [B, D]   expert e's attribute (image) feature
    T_e  = l2(text_e(tokenize(prompts[e])))          [K_e, D] expert e's critique bank (text tower)
    s_e  = exp(clip(logit_scale_e, 0, log 100)) * f_e T_e^T   [B, K_e]   CLIP logits (scale clamped as CLIP
                                                                     training clamps it)
    w_e  = softmax(s_e)                   textual='soft'  (default)
         = one_hot(argmax(s_e))           textual='hard'  (the literal "best-matching critique")
    t_e  = w_e T_e                                   [B, D]   expert e's textual feature
    t_e  = l2(text_e(critique_tokens[:, e]))         textual='generated': the critique expert e's
                                                     ClipCap twin *wrote* about the image (batch
                                                     `critique_tokens` [B, E, T], experts in order;
                                                     `datasets.CritiqueSource`); no bank, no matching,
                                                     no logit scales

`l2` is `clip.l2_normalize`. With textual='hard', w_e is constant (argmax + one-hot, under
`stop_gradient`): no gradient flows through the *matching* -- `logit_scale_e` gets exactly zero
gradient and `expert_e` is reached only through its own token f_e -- while `text_e` still gets a
gradient through the *value* t_e = T_e[argmax] (the selected critique's embedding only). With
'soft', gradients flow through both w_e and T_e.

Fusion (`fusion=`), F = `fusion_dim` (None: D), all fusion parameters under `fusion/`:

  'attention' (default)  tokens z = [P_v v, P_f1 f_1, ..., P_fE f_E, P_t1 t_1, ..., P_tE t_E]
                         ([B, 1 + 2E, F]; each token has its own Dense P with bias -- the bias *is*
                         the learned per-token (kind x expert) type embedding, so no separate
                         type-embedding table is kept: it would be the same function class with a
                         redundant parameter); then `fusion_layers` pre-LN transformer blocks
                         (clip.ResidualAttentionBlock: width F, `fusion_heads` heads, MLP ratio 4,
                         exact GELU, no mask); pooled = LN(z_0) (token 0, the visual token, acts
                         as the class token; v also reaches it through the residual stream).
                         The fusion blocks use JAX's default attention (1 + 2E tokens: a fused
                         kernel buys nothing); `attention=` applies to the CLIP towers.
  'concat'               u = [v, f_1..f_E, t_1..t_E]  ([B, (1 + 2E) D]);
                         pooled = fc2(GELU(fc1(u))) + residual(v)   (Dense layers, F outputs).
  'none'                 pooled = v: the fusion-off ablation. NO expert, text, logit-scale or
                         fusion parameters are created (`experts`/`prompts` are then ignored).

Expert dropout (`expert_dropout=p`, training only): per example and expert, f_e and t_e are zeroed
with probability p before the fusion (modality dropout). Stacking frozen experts invites the
fusion to trust critiques that are right on the images the experts were tuned on and much less on
new photos; dropout keeps the visual path able to stand alone.

Ablations: drop an expert by leaving it out of `experts` (its four parameter groups disappear and
the token sequence / concat width shrinks); `experts=()` requires fusion='none'.

Returns {'pooled': float32 [B, F] ([B, D] for 'none'), 'feature_map': base patch grid [B, g, g,
width] (compute dtype; Grad-CAM target), 'tokens': base last-block tokens [B, 1 + g*g, width]
(ViT towers only), 'expert_weights': {e: w_e float32 [B, K_e]} ({} for 'none')}. `AestheticsModel` reads only
'pooled' and 'feature_map'; `model.apply(variables, images, method='features')['expert_weights']`
gives the matches from raw images. `attribute_matches(x)` (on the backbone, normalised pixels)
returns per expert {'scores': s_e, 'weights': w_e, 'index': argmax_k s_e (int32 [B])};
`CGIAAFusion(...).prompt_bank[e][index]` is the matched critique's text.

Parameter paths (the module's own tree; under `AestheticsModel` each gets the `backbone/` prefix)::

    base/...               = a CLIP checkpoint's `visual/...` exactly (conv1/kernel, class_embedding,
                             positional_embedding, ln_pre, resblocks_{i}/..., ln_post, proj)
    expert_{e}/...         = expert e's CLIP `visual/...` (same architecture as base)
    text_{e}/...           = expert e's CLIP `text/...` (token_embedding, positional_embedding,
                             resblocks_{i}/..., ln_final, text_projection)
    logit_scale_{e}        = expert e's CLIP `logit_scale` (scalar log value; init log(1/0.07))
    fusion/proj_visual, fusion/proj_attr_{e}, fusion/proj_text_{e}   Dense D -> F   ('attention')
    fusion/resblocks_{i}/..., fusion/ln_post                                        ('attention')
    fusion/fc1 ((1+2E) D -> F), fusion/fc2 (F -> F), fusion/residual (D -> F)        ('concat')

so `params['backbone']['base'] = clip_params['visual']`, `params['backbone']['expert_color'] =
color_clip['visual']`, `['text_color'] = color_clip['text']`, `['logit_scale_color'] =
color_clip['logit_scale']` load converted CLIP checkpoints (`convert/clip.py`).

Freezing: `freeze_regex(experts, train_base=False, train_base_blocks=0, ...)` is a regex over
parameter paths selecting the towers to freeze, for `config.schedule`:
`[(freeze_regex(experts), None), ('.*', sched)]` trains the fusion and the heads only. It selects
`^backbone/(expert_{e}|text_{e}|logit_scale_{e})(/|$)` for every expert (logit scales trainable
with `train_logit_scales=True`) and all of `base/` unless `train_base=True`;
`train_base_blocks=k` keeps `base/`'s last k resblocks + ln_post + proj trainable (needs the
tower's `layers`, from `variant`/`layers`).

Cost: one forward runs 1 + E image towers and the E text towers on their K_e prompts each
(sum_e K_e text sequences per forward, whatever the batch size; recomputed every call even when
frozen, which keeps the module stateless -- for frozen text towers the bank embeddings are
constant and the cost is small next to the image towers).

Prompts: `prompts` maps expert -> critiques; a dict, ConfigDict or tuple of `(expert, (str, ...))`
pairs, normalised to that tuple (module fields must be hashable). Entries override
`DEFAULT_PROMPTS` per expert; entries for experts not in `experts` are ignored; an expert needs a
non-empty bank. Every prompt must fit the text context length (an error names it otherwise).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aesthetics_jax.models import clip as clip_lib
from aesthetics_jax.models import clip_tokenizer

EXPERTS = ("color", "composition", "dof", "general")
TEXTUAL = ("soft", "hard", "generated")
FUSIONS = ("attention", "concat", "none")
MAX_LOGIT_SCALE = clip_lib.MAX_LOG_LOGIT_SCALE  # OpenAI: exp(scale) read clamped to [1, 100]

# Short attribute critiques (good and bad) per expert; every one fits the tiny text context (16).
DEFAULT_PROMPTS: dict[str, tuple[str, ...]] = {
    "color": (
        "vivid, well balanced colors",
        "dull, washed out colors",
        "beautiful warm natural light",
        "harsh light with blown highlights",
        "too dark and underexposed",
        "nice contrast and tones",
    ),
    "composition": (
        "strong composition using the rule of thirds",
        "the subject is well framed",
        "cluttered composition with a distracting background",
        "the horizon is tilted",
        "too much empty space around the subject",
        "nice leading lines and symmetry",
        "the subject is cut off at the edge",
    ),
    "dof": (
        "shallow depth of field with soft bokeh",
        "the subject is sharp and in focus",
        "blurry and out of focus",
        "everything is sharp from front to back",
        "distracting motion blur",
    ),
    "general": (
        "a stunning, beautiful photograph",
        "a boring snapshot",
        "a strong mood and emotion",
        "an average photo",
        "a poor quality photo",
        "a creative and original idea",
    ),
}

_VISION_FIELDS = tuple(f.name for f in dataclasses.fields(clip_lib.CLIPVisionConfig))
_TEXT_FIELDS = ("vocab_size", "context_length", "width", "layers", "num_heads", "mlp_ratio", "embed_dim", "act")


def normalize_prompts(prompts) -> tuple | None:
    """dict / ConfigDict / iterable of (expert, texts) pairs -> ((expert, (text, ...)), ...) (hashable)."""
    if prompts is None:
        return None
    if isinstance(prompts, str):
        raise ValueError(f"prompts must map expert -> list of strings, got the string {prompts!r}")
    items = list(prompts.items() if hasattr(prompts, "items") else prompts)
    out = []
    for item in items:
        if isinstance(item, str) or len(item) != 2:
            raise ValueError(f"prompts must map expert -> list of strings, got the entry {item!r}")
        expert, texts = item
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"prompts[{expert!r}] must be a list of strings, got {texts!r}")
        out.append((str(expert), tuple(texts)))
    names = [e for e, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"prompts name an expert twice: {names}")
    return tuple(out)


def _normalize_experts(experts) -> tuple:
    if isinstance(experts, str):
        raise ValueError(f"experts must be a list of names, got the string {experts!r}")
    return tuple(str(e) for e in experts)


@functools.lru_cache(maxsize=64)
def _tokenize(texts: tuple[str, ...], context_length: int) -> np.ndarray:
    return clip_tokenizer.tokenize(list(texts), context_length=context_length)


def freeze_regex(
    experts=EXPERTS,
    *,
    train_base: bool = False,
    train_base_blocks: int = 0,
    train_logit_scales: bool = False,
    variant: str = "vit_b16",
    layers: int | None = None,
    arch: str | None = None,
    prefix: str = "backbone/",
) -> str | None:
    """Regex over parameter paths selecting the frozen CG-IAA towers (None: nothing frozen).

    Frozen: every expert's `expert_{e}`, `text_{e}` (and `logit_scale_{e}` unless
    `train_logit_scales`), and `base/` unless `train_base`; with `train_base_blocks=k > 0` only the
    base's embeddings and first `layers - k` resblocks are frozen (its last k blocks, ln_post and
    proj train). `fusion/` and the heads are never selected.
    """
    experts = _normalize_experts(experts)
    if train_base and train_base_blocks:
        raise ValueError("train_base=True already trains the whole base; leave train_base_blocks at 0")
    names = []
    for e in experts:
        names += [f"expert_{e}", f"text_{e}"] + ([] if train_logit_scales else [f"logit_scale_{e}"])
    if not train_base:
        if train_base_blocks:
            if arch == "convnet":
                raise ValueError(f"train_base_blocks={train_base_blocks}: a convolutional tower (arch convnet) has no "
                                 "blocks; train the whole base (train_base=True) or none of it")
            if variant not in clip_lib.VARIANTS:
                raise ValueError(f"unknown CLIP variant {variant!r}; known: {', '.join(clip_lib.VARIANTS)}")
            total = clip_lib.VARIANTS[variant].vision.layers if layers is None else int(layers)
            if not 0 < train_base_blocks <= total:
                raise ValueError(f"train_base_blocks must be in 1..{total} (the base's layers), got {train_base_blocks}")
            frozen = ["conv1", "class_embedding", "positional_embedding", "ln_pre"]
            frozen += [f"resblocks_{i}" for i in range(total - train_base_blocks)]
            names.append(f"base/({'|'.join(frozen)})")
        else:
            names.append("base")
    if not names:
        return None
    return f"^{prefix}({'|'.join(names)})(/|$)"


#: What each expert contributes to the fusion: its image feature f_e and its textual feature t_e
#: ('both'), or t_e only ('text': what the expert *says* about the image, not its raw features).
EXPERT_TOKENS = ("both", "text")


class _AttentionFusion(nn.Module):
    """Per-token projections to `dim`, pre-LN transformer blocks, LN(token 0)."""

    experts: tuple
    dim: int
    layers: int
    num_heads: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, v, attrs, texts):
        def proj(x, name):
            return nn.Dense(self.dim, dtype=self.dtype, param_dtype=jnp.float32, name=name)(x.astype(self.dtype))

        tokens = [proj(v, "proj_visual")]
        tokens += [proj(attrs[e], f"proj_attr_{e}") for e in self.experts if e in attrs]
        tokens += [proj(texts[e], f"proj_text_{e}") for e in self.experts]
        z = jnp.stack(tokens, axis=1)
        for i in range(self.layers):
            z = clip_lib.ResidualAttentionBlock(
                self.dim, self.num_heads, 4.0, "gelu", False, None, self.dtype, name=f"resblocks_{i}"
            )(z)
        return clip_lib._layer_norm("ln_post")(z[:, 0].astype(jnp.float32))


class _ConcatFusion(nn.Module):
    """fc2(GELU(fc1([v, f..., t...]))) + residual(v)."""

    experts: tuple
    dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, v, attrs, texts):
        def dense(name):
            return nn.Dense(self.dim, dtype=self.dtype, param_dtype=jnp.float32, name=name)

        u = jnp.concatenate([v] + [attrs[e] for e in self.experts if e in attrs] + [texts[e] for e in self.experts],
                            axis=-1)
        h = dense("fc2")(jax.nn.gelu(dense("fc1")(u.astype(self.dtype)), approximate=False))
        return (h + dense("residual")(v.astype(self.dtype))).astype(jnp.float32)


class CGIAAFusion(nn.Module):
    """CG-IAA backbone: VLAP base tower + per-attribute CLIP experts + fusion (module docstring).

    Attributes:
      variant: CLIP variant (`clip.VARIANTS`) of the base and every expert image tower.
      image_size, patch_size, width, layers, num_heads, mlp_ratio, embed_dim, act, stem, stem_width,
        stem_depth, arch, conv_widths: image tower overrides (as `clip.vision_tower`); shared by
        base and experts.
      text_variant: CLIP variant of the expert text towers (None: `variant`).
      text_vocab_size, text_context_length, text_width, text_layers, text_num_heads,
        text_mlp_ratio, text_embed_dim, text_act: text tower overrides.
      experts: expert names (identifiers; default color, composition, dof, general).
      prompts: per-expert critique banks overriding `DEFAULT_PROMPTS` (see module docstring).
      textual: 'soft' (softmax matching weights) or 'hard' (one-hot best match).
      fusion: 'attention', 'concat' or 'none'.
      fusion_dim: fused feature width F (None: the CLIP embed_dim).
      fusion_layers, fusion_heads: transformer blocks and heads of the 'attention' fusion.
      attention: `jax.nn.dot_product_attention` implementation for the CLIP towers.
      pad_tokens_to: image token padding of the image towers (see clip.py).
      expert_tokens: 'both' (f_e and t_e reach the fusion) or 'text' (t_e only).
      expert_dropout: in training, each example loses each expert's tokens (f_e, t_e zeroed: the
        token becomes its projection's bias) with this probability (rng 'dropout'), so the fusion
        cannot lean on critiques that are right on the experts' own training images only.
      train_base_statistics: a batch-norm base tower (arch 'convnet') uses batch statistics in
        training (True: it is fine-tuned) or its running averages (False: it is frozen); the
        frozen experts always use their running averages. No effect on ViT towers.
      dtype: compute dtype; params stay float32.
    """

    variant: str = "vit_b16"
    image_size: int | None = None
    patch_size: int | None = None
    width: int | None = None
    layers: int | None = None
    num_heads: int | None = None
    mlp_ratio: float | None = None
    embed_dim: int | None = None
    act: str | None = None
    stem: str | None = None
    stem_width: int | None = None
    stem_depth: int | None = None
    arch: str | None = None
    conv_widths: Any = None
    text_variant: str | None = None
    text_vocab_size: int | None = None
    text_context_length: int | None = None
    text_width: int | None = None
    text_layers: int | None = None
    text_num_heads: int | None = None
    text_mlp_ratio: float | None = None
    text_embed_dim: int | None = None
    text_act: str | None = None
    experts: Any = EXPERTS
    prompts: Any = None
    textual: str = "soft"
    fusion: str = "attention"
    fusion_dim: int | None = None
    fusion_layers: int = 1
    fusion_heads: int = 8
    attention: str | None = None
    pad_tokens_to: int = 0
    expert_tokens: str = "both"
    expert_dropout: float = 0.0
    train_base_statistics: bool = True
    dtype: Any = jnp.float32

    def __post_init__(self):
        # Config values arrive as lists / dicts / ConfigDicts; module fields must be hashable.
        object.__setattr__(self, "experts", _normalize_experts(self.experts))
        object.__setattr__(self, "prompts", normalize_prompts(self.prompts))
        super().__post_init__()

    # ----------------------------------------------------------------------------------------
    # Configuration

    @property
    def vision_config(self) -> clip_lib.CLIPVisionConfig:
        if self.variant not in clip_lib.VARIANTS:
            raise ValueError(f"unknown CLIP variant {self.variant!r}; known: {', '.join(clip_lib.VARIANTS)}")
        return clip_lib._resolve(clip_lib.VARIANTS[self.variant].vision, {f: getattr(self, f) for f in _VISION_FIELDS})

    @property
    def text_config(self) -> clip_lib.CLIPTextConfig:
        variant = self.variant if self.text_variant is None else self.text_variant
        if variant not in clip_lib.VARIANTS:
            raise ValueError(f"unknown CLIP text_variant {variant!r}; known: {', '.join(clip_lib.VARIANTS)}")
        overrides = {f: getattr(self, f"text_{f}") for f in _TEXT_FIELDS}
        return clip_lib._resolve(clip_lib.VARIANTS[variant].text, overrides)

    @property
    def active_experts(self) -> tuple:
        """The experts that get towers: `experts`, or none with fusion='none'."""
        return () if self.fusion == "none" else self.experts

    @property
    def prompt_bank(self) -> dict[str, tuple[str, ...]]:
        """expert -> its critiques, in bank order (index k of `attribute_matches`)."""
        given = dict(self.prompts or ())
        bank = {}
        for e in self.active_experts:
            texts = given.get(e, DEFAULT_PROMPTS.get(e))
            if texts is None:
                raise ValueError(f"expert {e!r} has no prompts: pass prompts={{{e!r}: [...]}} "
                                 f"(defaults exist for {', '.join(DEFAULT_PROMPTS)})")
            if not texts:
                raise ValueError(f"expert {e!r} has an empty prompt bank")
            bank[e] = tuple(texts)
        return bank

    def _check(self):
        if self.textual not in TEXTUAL:
            raise ValueError(f"textual must be one of {TEXTUAL}, got {self.textual!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        for e in self.experts:
            if not e.isidentifier():
                raise ValueError(f"expert name {e!r} must be an identifier (it is a parameter name)")
        if len(set(self.experts)) != len(self.experts):
            raise ValueError(f"experts name an expert twice: {self.experts}")
        if not self.experts and self.fusion != "none":
            raise ValueError(f"experts=() leaves nothing to fuse: use fusion='none', not {self.fusion!r}")
        if not 0.0 <= self.expert_dropout < 1.0:
            raise ValueError(f"expert_dropout must be in [0, 1), got {self.expert_dropout}")
        if self.expert_tokens not in EXPERT_TOKENS:
            raise ValueError(f"expert_tokens must be one of {EXPERT_TOKENS}, got {self.expert_tokens!r}")
        if self.fusion_layers < 0:
            raise ValueError(f"fusion_layers must be >= 0, got {self.fusion_layers}")

    def setup(self):
        self._check()
        vision = self.vision_config
        tower = dict(
            variant=self.variant,
            **dataclasses.asdict(vision),
            pooled="projected",
            attention=self.attention,
            pad_tokens_to=self.pad_tokens_to,
            dtype=self.dtype,
        )
        self.base = clip_lib.vision_tower(**tower, name="base")
        experts = self.active_experts
        if not experts:
            return
        text = self.text_config
        if text.embed_dim != vision.embed_dim:
            raise ValueError(f"text embed_dim {text.embed_dim} != image embed_dim {vision.embed_dim}: the expert "
                             "matching is a cosine between the two")
        self.expert_towers = {e: clip_lib.vision_tower(**tower, name=f"expert_{e}") for e in experts}
        self.text_towers = {e: clip_lib.CLIPTextTransformer(text, self.attention, self.dtype, name=f"text_{e}")
                            for e in experts}
        if self.textual != "generated":  # a critique bank to match against, at each expert's CLIP temperature
            bank = self.prompt_bank
            tokens = {}
            for e in experts:
                try:
                    tokens[e] = _tokenize(bank[e], text.context_length)
                except ValueError as err:
                    raise ValueError(f"expert {e!r}: a prompt does not fit the text context: {err}") from None
            self._bank_tokens = tokens
            self.logit_scales = {
                e: self.param(f"logit_scale_{e}", nn.initializers.constant(math.log(1 / 0.07)), (), jnp.float32)
                for e in experts
            }
        dim = vision.embed_dim if self.fusion_dim is None else int(self.fusion_dim)
        if self.fusion == "attention":
            if dim % self.fusion_heads:
                raise ValueError(f"fusion_dim {dim} is not divisible by fusion_heads {self.fusion_heads}")
            self.fusion_module = _AttentionFusion(experts, dim, self.fusion_layers, self.fusion_heads, self.dtype,
                                                  name="fusion")
        else:
            self.fusion_module = _ConcatFusion(experts, dim, self.dtype, name="fusion")

    # ----------------------------------------------------------------------------------------
    # Forward

    def _match(self, e, x):
        """Expert e on normalised pixels -> (f_e [B, D], T_e [K, D], s_e [B, K], w_e [B, K])."""
        f = clip_lib.l2_normalize(self.expert_towers[e](x)["pooled"])
        bank = clip_lib.l2_normalize(self.text_towers[e](jnp.asarray(self._bank_tokens[e])))
        scale = jnp.exp(jnp.clip(self.logit_scales[e], 0.0, MAX_LOGIT_SCALE))
        scores = scale * jnp.dot(f, bank.T, precision=jax.lax.Precision.HIGHEST)
        if self.textual == "soft":
            weights = jax.nn.softmax(scores, axis=-1)
        else:
            weights = jax.lax.stop_gradient(jax.nn.one_hot(jnp.argmax(scores, axis=-1), bank.shape[0],
                                                           dtype=jnp.float32))
        return f, bank, scores, weights

    def attribute_matches(self, x):
        """Normalised pixels -> {expert: {'scores' [B, K], 'weights' [B, K], 'index' int32 [B]}}."""
        if self.textual == "generated":
            raise ValueError("textual='generated' matches no critique bank: the critiques come with the batch")
        out = {}
        for e in self.active_experts:
            _, _, scores, weights = self._match(e, x)
            out[e] = {"scores": scores, "weights": weights, "index": jnp.argmax(scores, axis=-1).astype(jnp.int32)}
        return out

    def _fused_attrs(self, attrs: dict) -> dict:
        """The experts' image features the fusion reads: all ('both') or none ('text')."""
        return attrs if self.expert_tokens == "both" else {}

    def _drop_experts(self, attrs: dict, texts: dict, train: bool):
        """Expert dropout: in training, each example loses each expert's tokens (f_e and t_e set to
        zero, so the token is its projection's bias: a learnt "absent expert") with probability
        `expert_dropout` (rng stream 'dropout'); identity otherwise."""
        if not train or not self.expert_dropout:
            return attrs, texts
        keep = jax.random.bernoulli(self.make_rng("dropout"), 1.0 - self.expert_dropout,
                                    (next(iter(texts.values())).shape[0], len(self.active_experts)))
        masks = {e: keep[:, i, None].astype(texts[e].dtype) for i, e in enumerate(self.active_experts)}
        return {e: a * masks[e] for e, a in attrs.items()}, {e: t * masks[e] for e, t in texts.items()}

    def __call__(self, x, train: bool = False, critique_tokens=None):
        # Only a batch-norm tower (arch 'convnet') reads `train`: the base uses batch statistics while
        # it trains (train_base_statistics), the frozen experts always their running averages.
        base = self.base(x, train=train and self.train_base_statistics)
        v = clip_lib.l2_normalize(base["pooled"])
        out = {"feature_map": base["feature_map"], "expert_weights": {}}
        if "tokens" in base:
            out["tokens"] = base["tokens"]
        if not self.active_experts:
            out["pooled"] = v
            return out
        attrs, texts = {}, {}
        if self.textual == "generated":
            if critique_tokens is None or critique_tokens.shape[1] != len(self.active_experts):
                raise ValueError(f"textual='generated' reads one generated critique per expert {self.active_experts}: "
                                 "the batch needs critique_tokens [B, E, T] (config.data.critiques, attributes in "
                                 f"the experts' order); got {None if critique_tokens is None else critique_tokens.shape}")
            for i, e in enumerate(self.active_experts):
                if self.expert_tokens == "both":  # nothing is matched: the image tower only feeds f_e
                    attrs[e] = clip_lib.l2_normalize(self.expert_towers[e](x)["pooled"])
                texts[e] = clip_lib.l2_normalize(self.text_towers[e](jnp.asarray(critique_tokens)[:, i]))
            out["pooled"] = self.fusion_module(v, *self._drop_experts(attrs, texts, train)).astype(jnp.float32)
            return out
        for e in self.active_experts:
            f, bank, _, weights = self._match(e, x)
            attrs[e] = f
            texts[e] = jnp.dot(weights, bank, precision=jax.lax.Precision.HIGHEST)
            out["expert_weights"][e] = weights
        out["pooled"] = self.fusion_module(v, *self._drop_experts(self._fused_attrs(attrs), texts, train)
                                           ).astype(jnp.float32)
        return out


__all__ = ["CGIAAFusion", "DEFAULT_PROMPTS", "EXPERT_TOKENS", "EXPERTS", "FUSIONS", "TEXTUAL", "freeze_regex",
           "normalize_prompts"]
