"""CLIP (OpenAI / open_clip / Hugging Face layout) in Flax Linen: image tower, text tower, scoring.

Image tower (`CLIPVisionTransformer`, registered as backbone `clip`)::

    conv1                 Conv patch x patch, stride patch, no bias  -> [B, g, g, width]
    class_embedding       [width]  prepended token
    positional_embedding  [1 + g*g, width]
    ln_pre                LayerNorm (pre-LN: applied to the embeddings before the blocks)
    resblocks_{i}         x += attn(ln_1(x)); x += mlp(ln_2(x))
                            attn/in_proj   Dense(3*width)  (q, k, v concatenated, OpenAI layout)
                            attn/out_proj  Dense(width)
                            c_fc           Dense(mlp_ratio*width) -> act -> c_proj Dense(width)
    ln_post               LayerNorm on the class token
    proj                  [width, embed_dim] projection, no bias

    Returns {'pooled': [B, embed_dim] (pooled='projected') or [B, width] ln_post(class token)
    (pooled='pre_projection'), float32;  'feature_map': [B, g, g, width] the patch tokens of the
    last block (compute dtype; the grid for Grad-CAM);  'tokens': [B, 1 + g*g, width] the whole
    last-block sequence (compute dtype)}.
    `model.apply(v, tokens, method='pool_tokens')` is the differentiable tokens -> pooled map.

`CLIPConvNet` (arch='convnet', `conv_widths`) is a small convolutional image tower with batch
norm and [mean, sd] pooling for towers trained from scratch (the CPU demo; see its docstring);
`vision_tower(**fields)` builds whichever tower the fields name.

Text tower (`CLIPTextTransformer`): token_embedding, positional_embedding [context_length,
width], causal resblocks, ln_final, text_projection [width, embed_dim]; the text feature is
ln_final(x) at the end-of-text token (the first position holding `eot_token_id`; OpenAI's
`argmax(tokens)` picks the same position because EOT is the largest id).

`CLIP` holds both (`visual`, `text`) and `logit_scale` (the stored log value, as in every
checkpoint); `encode_image` takes *normalised* pixels (NHWC; `preprocessing.normalize(x, 'clip')`),
`encode_text` token ids from `clip_tokenizer.tokenize`. `zero_shot_scores` is cosine similarity
times exp(logit_scale): HF's `logits_per_image`.

Activation: OpenAI-trained weights use QuickGELU (x * sigmoid(1.702 x)); open_clip's own models
use exact GELU (erf); HF's config names it (`hidden_act`). LayerNorms (eps 1e-5) compute in
float32 whatever the compute dtype (as OpenAI's `LayerNorm` subclass does) and return the
compute dtype.

Attention is `jax.nn.dot_product_attention`; `attention='cudnn'` selects cuDNN's fused (flash)
kernel on GPU (bf16/fp16 only; head dim a multiple of 8), `'xla'` the portable one, None JAX's
default (XLA in jax 0.10). `pad_tokens_to=k` pads the image token axis to a multiple of k (e.g.
8 or 64: ViT-B/16's 197 -> 200 / 256) with zeros and masks the padded keys
(`key_value_seq_lengths`), a tuning knob for kernels that prefer aligned lengths; the padded rows
never reach an output, so results equal the unpadded model's (tested).

Variants (`VARIANTS`): vit_b32, vit_b16, vit_l14 (OpenAI 224-px towers; their text towers are all
width 512/768 x 12 layers), vit_l14_336, and `tiny` for tests. Any field can be overridden:
`models.create('clip', variant='vit_b16', pooled='pre_projection', heads=...)`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aesthetics_jax.models import preprocessing

LN_EPS = 1e-5
ACTIVATIONS = ("quick_gelu", "gelu", "gelu_tanh")
STEMS = ("patch", "conv")
ARCHS = ("vit", "convnet")
POOLED = ("projected", "pre_projection")


@dataclasses.dataclass(frozen=True)
class CLIPVisionConfig:
    image_size: int = 224
    patch_size: int = 16
    width: int = 768
    layers: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    embed_dim: int = 512
    act: str = "quick_gelu"
    stem: str = "patch"
    stem_width: int = 0
    stem_depth: int = 1
    arch: str = "vit"
    conv_widths: tuple = ()

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        # Config files give lists (JSON, ConfigDict); the config must hash like the rest.
        object.__setattr__(self, "conv_widths", tuple(int(w) for w in self.conv_widths))


@dataclasses.dataclass(frozen=True)
class CLIPTextConfig:
    vocab_size: int = 49408
    context_length: int = 77
    width: int = 512
    layers: int = 12
    num_heads: int = 8
    mlp_ratio: float = 4.0
    embed_dim: int = 512
    act: str = "quick_gelu"
    eot_token_id: int = 49407


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
    vision: CLIPVisionConfig = CLIPVisionConfig()
    text: CLIPTextConfig = CLIPTextConfig()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CLIPConfig":
        return cls(vision=CLIPVisionConfig(**d["vision"]), text=CLIPTextConfig(**d["text"]))


def _config(vision: dict, text: dict) -> CLIPConfig:
    return CLIPConfig(CLIPVisionConfig(**vision), CLIPTextConfig(**text))


VARIANTS: dict[str, CLIPConfig] = {
    "vit_b32": _config(dict(patch_size=32, width=768, layers=12, num_heads=12, embed_dim=512),
                       dict(width=512, layers=12, num_heads=8, embed_dim=512)),
    "vit_b16": _config(dict(patch_size=16, width=768, layers=12, num_heads=12, embed_dim=512),
                       dict(width=512, layers=12, num_heads=8, embed_dim=512)),
    "vit_l14": _config(dict(patch_size=14, width=1024, layers=24, num_heads=16, embed_dim=768),
                       dict(width=768, layers=12, num_heads=12, embed_dim=768)),
    "vit_l14_336": _config(dict(image_size=336, patch_size=14, width=1024, layers=24, num_heads=16, embed_dim=768),
                           dict(width=768, layers=12, num_heads=12, embed_dim=768)),
    "tiny": _config(dict(image_size=32, patch_size=8, width=32, layers=2, num_heads=4, embed_dim=24),
                    dict(vocab_size=49408, context_length=16, width=32, layers=2, num_heads=4, embed_dim=24)),
}


def activation(name: str, x):
    if name == "quick_gelu":
        return x * jax.nn.sigmoid(1.702 * x)
    if name == "gelu":
        return jax.nn.gelu(x, approximate=False)
    if name == "gelu_tanh":
        return jax.nn.gelu(x, approximate=True)
    raise ValueError(f"unknown CLIP activation {name!r}; known: {', '.join(ACTIVATIONS)}")


def _layer_norm(name):
    """LayerNorm computing in float32 (callers cast in and out); params `<name>/scale`, `/bias`."""
    return nn.LayerNorm(epsilon=LN_EPS, dtype=jnp.float32, param_dtype=jnp.float32, name=name)


class MultiheadAttention(nn.Module):
    """Self-attention with a fused q/k/v projection (`in_proj`) and `out_proj`."""

    width: int
    num_heads: int
    causal: bool = False
    attention: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, kv_lengths=None):
        b, t, _ = x.shape
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by num_heads {self.num_heads}")
        head_dim = self.width // self.num_heads
        qkv = nn.Dense(3 * self.width, dtype=self.dtype, param_dtype=jnp.float32, name="in_proj")(x)
        qkv = qkv.reshape(b, t, 3, self.num_heads, head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        out = jax.nn.dot_product_attention(
            q,
            k,
            v,
            scale=head_dim**-0.5,
            is_causal=self.causal,
            key_value_seq_lengths=kv_lengths,
            implementation=self.attention,
        )
        out = out.reshape(b, t, self.width)
        return nn.Dense(self.width, dtype=self.dtype, param_dtype=jnp.float32, name="out_proj")(out)


class ResidualAttentionBlock(nn.Module):
    width: int
    num_heads: int
    mlp_ratio: float = 4.0
    act: str = "quick_gelu"
    causal: bool = False
    attention: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, kv_lengths=None):
        y = _layer_norm("ln_1")(x.astype(jnp.float32)).astype(self.dtype)
        y = MultiheadAttention(self.width, self.num_heads, self.causal, self.attention, self.dtype, name="attn")(
            y, kv_lengths
        )
        x = x + y
        y = _layer_norm("ln_2")(x.astype(jnp.float32)).astype(self.dtype)
        hidden = int(round(self.width * self.mlp_ratio))
        y = nn.Dense(hidden, dtype=self.dtype, param_dtype=jnp.float32, name="c_fc")(y)
        y = activation(self.act, y)
        y = nn.Dense(self.width, dtype=self.dtype, param_dtype=jnp.float32, name="c_proj")(y)
        return x + y


def _project(x, proj, dtype):
    """x [B, width] (float32) @ proj in the compute dtype, returned as float32."""
    return jnp.dot(x.astype(dtype), proj.astype(dtype)).astype(jnp.float32)


def _resolve(base, overrides: dict):
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(base, **overrides)


class _VisionTowerFields(nn.Module):
    """The fields and resolved `config` shared by the CLIP image towers (`vision_tower`)."""

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
    pooled: str = "projected"
    attention: str | None = None
    pad_tokens_to: int = 0
    dtype: Any = jnp.float32

    @property
    def config(self) -> CLIPVisionConfig:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown CLIP variant {self.variant!r}; known: {', '.join(VARIANTS)}")
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(CLIPVisionConfig)}
        return _resolve(VARIANTS[self.variant].vision, fields)


class CLIPVisionTransformer(_VisionTowerFields):
    """CLIP image tower; also the `clip` backbone of `models.create` (see module docstring).

    Attributes:
      variant: a key of `VARIANTS`; the fields below left at None take its values.
      image_size, patch_size, width, layers, num_heads, mlp_ratio, embed_dim, act, stem, stem_width,
        stem_depth: overrides.
        stem 'patch' is CLIP's patchify conv1 (every released checkpoint); 'conv' replaces it by
        log2(patch_size) stages, each a 3x3 stride-2 convolution (`stem_{i}`) then stem_depth - 1
        residual 3x3 stride-1 convolutions (`stem_{i}_{j}`: x + GELU(conv(x))), channels doubling
        from stem_width (0: width / 2^(stages-1), at least 8), GELU, and a 1x1 projection to width
        (`stem_proj`): the convolutional stem of Xiao et al. 2021 ("Early convolutions help
        transformers see better"), deepened for towers trained from scratch on little data that
        must see pixel-level degradations; same token grid, no pretrained weights exist for it.
      arch, conv_widths: must be 'vit' / unused here ('convnet' is `CLIPConvNet`; `vision_tower`
        builds whichever a config names).
      pooled: 'projected' (the CLIP image embedding) or 'pre_projection' (ln_post(class token)).
      attention: `jax.nn.dot_product_attention` implementation: None, 'xla' or 'cudnn'.
      pad_tokens_to: 0, or pad the token axis to a multiple of this with masked keys.
    """

    def setup(self):
        cfg = self.config
        if cfg.arch != "vit":
            raise ValueError(f"CLIPVisionTransformer is the 'vit' tower, got arch {cfg.arch!r}: build image towers "
                             "with clip.vision_tower(...), which picks CLIPConvNet for 'convnet'")
        if cfg.act not in ACTIVATIONS:
            raise ValueError(f"unknown CLIP activation {cfg.act!r}; known: {', '.join(ACTIVATIONS)}")
        if self.pooled not in POOLED:
            raise ValueError(f"pooled must be one of {POOLED}, got {self.pooled!r}")
        if self.attention not in (None, "xla", "cudnn"):
            raise ValueError(f"attention must be None, 'xla' or 'cudnn', got {self.attention!r}")
        if self.pad_tokens_to < 0:
            raise ValueError(f"pad_tokens_to must be >= 0, got {self.pad_tokens_to}")
        if cfg.image_size % cfg.patch_size:
            raise ValueError(f"image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}")
        grid = cfg.image_size // cfg.patch_size
        if cfg.stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {cfg.stem!r}")
        if cfg.stem == "patch":
            self.conv1 = nn.Conv(
                cfg.width,
                (cfg.patch_size, cfg.patch_size),
                strides=(cfg.patch_size, cfg.patch_size),
                padding="VALID",
                use_bias=False,
                dtype=self.dtype,
                param_dtype=jnp.float32,
            )
        else:
            n = cfg.patch_size.bit_length() - 1
            if cfg.patch_size != 2**n or n < 1:
                raise ValueError(f"stem 'conv' needs a power-of-two patch_size, got {cfg.patch_size}")
            if cfg.stem_width < 0 or cfg.stem_depth < 1:
                raise ValueError(f"stem_width must be >= 0 and stem_depth >= 1, got {cfg.stem_width}, {cfg.stem_depth}")
            widths = [cfg.stem_width * 2**i if cfg.stem_width else max(cfg.width // 2 ** (n - 1 - i), 8) for i in range(n)]
            conv = functools.partial(nn.Conv, kernel_size=(3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                                     param_dtype=jnp.float32)
            self.stem_convs = [
                [conv(w, strides=(2, 2), name=f"stem_{i}")] + [conv(w, name=f"stem_{i}_{j}") for j in range(1, cfg.stem_depth)]
                for i, w in enumerate(widths)
            ]
            self.stem_proj = nn.Conv(cfg.width, (1, 1), use_bias=False, dtype=self.dtype, param_dtype=jnp.float32)
        scale = cfg.width**-0.5
        self.class_embedding = self.param(
            "class_embedding", nn.initializers.normal(scale), (cfg.width,), jnp.float32
        )
        self.positional_embedding = self.param(
            "positional_embedding", nn.initializers.normal(scale), (grid * grid + 1, cfg.width), jnp.float32
        )
        self.ln_pre = _layer_norm("ln_pre")
        self.resblocks = [
            ResidualAttentionBlock(
                cfg.width, cfg.num_heads, cfg.mlp_ratio, cfg.act, False, self.attention, self.dtype, name=f"resblocks_{i}"
            )
            for i in range(cfg.layers)
        ]
        self.ln_post = _layer_norm("ln_post")
        self.proj = self.param("proj", nn.initializers.normal(scale), (cfg.width, cfg.embed_dim), jnp.float32)

    def embed(self, x):
        """Normalised pixels [B, H, W, 3] -> ln_pre(patch + class tokens + positions) [B, T, width]."""
        cfg = self.config
        if x.shape[1:3] != (cfg.image_size, cfg.image_size):
            raise ValueError(f"CLIP {self.variant} expects {cfg.image_size}x{cfg.image_size} images, got {x.shape}")
        if cfg.stem == "patch":
            x = self.conv1(x.astype(self.dtype))
        else:
            x = x.astype(self.dtype)
            for down, *residual in self.stem_convs:
                x = jax.nn.gelu(down(x), approximate=False)
                for conv in residual:
                    x = x + jax.nn.gelu(conv(x), approximate=False)
            x = self.stem_proj(x)
        b = x.shape[0]
        x = x.reshape(b, -1, cfg.width)
        cls = jnp.broadcast_to(self.class_embedding.astype(self.dtype), (b, 1, cfg.width))
        x = jnp.concatenate([cls, x], axis=1) + self.positional_embedding.astype(self.dtype)
        return self.ln_pre(x.astype(jnp.float32)).astype(self.dtype)

    def transformer(self, x):
        t = x.shape[1]
        kv_lengths = None
        if self.pad_tokens_to > 1 and t % self.pad_tokens_to:
            padded = -(-t // self.pad_tokens_to) * self.pad_tokens_to
            x = jnp.pad(x, ((0, 0), (0, padded - t), (0, 0)))
            kv_lengths = jnp.full((x.shape[0],), t, jnp.int32)
        for block in self.resblocks:
            x = block(x, kv_lengths)
        return x[:, :t]

    def pool_tokens(self, tokens):
        """Last-block tokens [B, T, width] -> pooled features (float32), per `pooled`."""
        x = self.ln_post(tokens[:, 0].astype(jnp.float32))
        if self.pooled == "pre_projection":
            return x
        return _project(x, self.proj, self.dtype)

    def __call__(self, x, train: bool = False):
        del train  # no dropout / batch statistics in CLIP
        tokens = self.transformer(self.embed(x))
        cfg = self.config
        grid = cfg.image_size // cfg.patch_size
        feature_map = tokens[:, 1:].reshape(tokens.shape[0], grid, grid, cfg.width)
        return {"pooled": self.pool_tokens(tokens), "feature_map": feature_map, "tokens": tokens}


class CLIPConvNet(_VisionTowerFields):
    """A convolutional CLIP image tower (arch='convnet') with batch norm, for towers trained from scratch.

    CLIP's own convolutional towers (RN50 ...) are ResNets with batch norm and attention pooling;
    this is a small plain relative for the CPU demo, where a tower must learn pixel-level
    degradations (noise, JPEG blocking, blur) from ~1,400 photos in minutes::

        conv_{i}, bn_{i}    for each width w_i of conv_widths: 3x3 conv, stride 2, no bias ->
                            BatchNorm (momentum 0.9, eps 1e-5, float32) -> ReLU
        pooling             [mean, sd] over the last grid per channel    [B, 2 w_last]
                            (the sd is what sees texture energy: noise and blocking raise it, blur
                            lowers it; mean pooling alone measured worse)
        proj                [2 w_last, embed_dim] projection, no bias (pooled='projected')

    On the demo's votes (112-px crops, batch 32, 1,200 steps) this tower from scratch reached
    held-out SRCC 0.75, the same widths without batch norm 0.63, with group norm 0.51, and the ViT
    with the conv stem 0.45 in 3,000 steps (BENCHMARKS.md "CG-IAA demo"). No released checkpoint
    has this tower. Returns {'pooled', 'feature_map': the last grid [B, g, g, w_last]}; no tokens.
    BatchNorm uses batch statistics when called with train=True (and updates `batch_stats`).
    """

    def setup(self):
        cfg = self.config
        if cfg.arch != "convnet":
            raise ValueError(f"CLIPConvNet is the 'convnet' tower, got arch {cfg.arch!r}")
        if not cfg.conv_widths or any(w < 1 for w in cfg.conv_widths):
            raise ValueError(f"arch 'convnet' needs conv_widths, positive channel counts, got {cfg.conv_widths!r}")
        if self.pooled not in POOLED:
            raise ValueError(f"pooled must be one of {POOLED}, got {self.pooled!r}")
        self.convs = [nn.Conv(w, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=False, dtype=self.dtype,
                              param_dtype=jnp.float32, name=f"conv_{i}") for i, w in enumerate(cfg.conv_widths)]
        self.norms = [nn.BatchNorm(momentum=0.9, epsilon=LN_EPS, dtype=jnp.float32, param_dtype=jnp.float32,
                                   name=f"bn_{i}") for i in range(len(cfg.conv_widths))]
        features = 2 * cfg.conv_widths[-1]
        self.proj = self.param("proj", nn.initializers.normal(features**-0.5), (features, cfg.embed_dim), jnp.float32)

    def __call__(self, x, train: bool = False):
        cfg = self.config
        if x.shape[1:3] != (cfg.image_size, cfg.image_size):
            raise ValueError(f"CLIP {self.variant} expects {cfg.image_size}x{cfg.image_size} images, got {x.shape}")
        x = x.astype(self.dtype)
        for conv, norm in zip(self.convs, self.norms):
            x = jax.nn.relu(norm(conv(x).astype(jnp.float32), use_running_average=not train)).astype(self.dtype)
        grid = x.astype(jnp.float32)
        mean = jnp.mean(grid, axis=(1, 2))
        sd = jnp.sqrt(jnp.var(grid, axis=(1, 2)) + LN_EPS)
        pooled = jnp.concatenate([mean, sd], axis=-1)
        if self.pooled == "projected":
            pooled = _project(pooled, self.proj, self.dtype)
        return {"pooled": pooled, "feature_map": x}


def vision_tower(**fields) -> nn.Module:
    """The image tower a set of `CLIPVisionTransformer` fields describes: `CLIPConvNet` when the
    resolved arch is 'convnet', else `CLIPVisionTransformer` (`name=` etc. pass through)."""
    arch = _VisionTowerFields(**{k: v for k, v in fields.items() if k != "name"}).config.arch
    return (CLIPConvNet if arch == "convnet" else CLIPVisionTransformer)(**fields)


class CLIPTextTransformer(nn.Module):
    """CLIP text tower: token ids [B, context_length] -> text embedding [B, embed_dim] (float32)."""

    config: CLIPTextConfig = CLIPTextConfig()
    attention: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens, projected: bool = True):
        cfg = self.config
        if tokens.ndim != 2 or tokens.shape[1] > cfg.context_length:
            raise ValueError(f"tokens must be [B, <= {cfg.context_length}], got shape {tokens.shape}")
        t = tokens.shape[1]
        emb = nn.Embed(cfg.vocab_size, cfg.width, param_dtype=jnp.float32, name="token_embedding",
                       embedding_init=nn.initializers.normal(0.02))
        pos = self.param("positional_embedding", nn.initializers.normal(0.01), (cfg.context_length, cfg.width),
                         jnp.float32)
        x = (emb(tokens) + pos[:t]).astype(self.dtype)
        for i in range(cfg.layers):
            x = ResidualAttentionBlock(
                cfg.width, cfg.num_heads, cfg.mlp_ratio, cfg.act, True, self.attention, self.dtype, name=f"resblocks_{i}"
            )(x)
        x = _layer_norm("ln_final")(x.astype(jnp.float32))
        eot = jnp.argmax((tokens == cfg.eot_token_id).astype(jnp.int32), axis=-1)
        x = jnp.take_along_axis(x, eot[:, None, None], axis=1)[:, 0]
        proj = self.param("text_projection", nn.initializers.normal(cfg.width**-0.5), (cfg.width, cfg.embed_dim),
                          jnp.float32)
        return _project(x, proj, self.dtype) if projected else x


def _vision_kwargs(cfg: CLIPVisionConfig) -> dict:
    return dataclasses.asdict(cfg)


class CLIP(nn.Module):
    """Both towers and the logit scale: params `visual/...`, `text/...`, `logit_scale` (log value)."""

    config: CLIPConfig = VARIANTS["vit_b16"]
    attention: str | None = None
    pad_tokens_to: int = 0
    dtype: Any = jnp.float32

    def setup(self):
        self.visual = vision_tower(
            variant="vit_b16",
            **_vision_kwargs(self.config.vision),
            attention=self.attention,
            pad_tokens_to=self.pad_tokens_to,
            dtype=self.dtype,
        )
        self.text = CLIPTextTransformer(self.config.text, self.attention, self.dtype)
        self.logit_scale = self.param("logit_scale", nn.initializers.constant(jnp.log(1 / 0.07)), (), jnp.float32)

    def encode_image(self, pixels, train: bool = False):
        """Normalised pixels [B, H, W, 3] -> image embeddings [B, embed_dim] (not L2-normalised).
        `train` reaches only a batch-norm tower (`CLIPConvNet`): batch statistics in training."""
        return self.visual(pixels, train=train)["pooled"]

    def encode_text(self, tokens):
        """Token ids [B, T] -> text embeddings [B, embed_dim] (not L2-normalised)."""
        return self.text(tokens)

    def __call__(self, pixels, tokens):
        """Returns `(logits_per_image [Bi, Bt], image_embeds, text_embeds)`."""
        image = self.encode_image(pixels)
        text = self.encode_text(tokens)
        return zero_shot_scores(image, text, self.logit_scale), image, text


def l2_normalize(x, axis: int = -1):
    x = jnp.asarray(x, jnp.float32)
    return x / jnp.linalg.norm(x, axis=axis, keepdims=True)


def zero_shot_scores(image_emb, text_emb, logit_scale):
    """Cosine similarity times exp(logit_scale): [Ni, D] x [Nt, D] -> logits [Ni, Nt] (float32).

    `logit_scale` is the *log* scale as stored in checkpoints (`params['logit_scale']`; OpenAI
    ~4.6052 = log 100). `jax.nn.softmax(logits, axis=-1)` gives zero-shot class probabilities over
    the prompts, e.g. "a photo of high aesthetic quality" vs "... low ...".
    """
    image = l2_normalize(image_emb)
    text = l2_normalize(text_emb)
    sims = jnp.dot(image, text.T, precision=jax.lax.Precision.HIGHEST)
    return jnp.exp(jnp.asarray(logit_scale, jnp.float32)) * sims


#: OpenAI's clamp of the learned temperature: exp(logit_scale) <= 100 (open_clip clamps the stored
#: log value to [0, log 100] after every step; here the forward pass reads it clamped).
MAX_LOG_LOGIT_SCALE = float(jnp.log(100.0))


class ContrastiveCLIP(CLIP):
    """Both CLIP towers on raw pixels, for contrastive (VLAP) training and retrieval evaluation.

    A `CLIP` (its params exactly: `visual/...`, `text/...`, `logit_scale`), so a converted
    checkpoint (`aesthetics-jax convert ... --arch clip`) loads into it unchanged and a trained one
    loads into `CLIP`, `ClipIQA` or a `cgiaa` fusion model's towers by prefix.

    `__call__(images, tokens=None, train=False)`: images are raw [0, 255] pixels (NHWC), normalised
    here with the CLIP preset; returns `{'clip': {'image_embed': [B, D] (L2-normalised)}}` plus,
    with `tokens` [B, T] (one caption per image, `clip_tokenizer.tokenize`), `'text_embed'` [B, D]
    (L2-normalised), `'logit_scale'` = exp(clamped log scale) (scalar) and `'logits'`
    [B, B] = scale * image_embed @ text_embed.T (image i, caption j; the diagonal are the pairs).
    Under `jit` with a batch sharded over devices these are the *global* batch's logits, so the
    InfoNCE loss (`losses.clip_infonce`) contrasts every image with every caption of the step.
    While initialising, the text tower is created on dummy tokens when none are given.
    `embed_text(tokens)` gives L2-normalised text embeddings (retrieval evaluation).

    The temperature is OpenAI's: the stored log scale is read clamped to [0, log 100]
    (`MAX_LOG_LOGIT_SCALE`; open_clip clamps the parameter in place after each step — reading it
    clamped gives the same forward pass without a side effect in the step function).
    """

    def scale(self):
        return jnp.exp(jnp.clip(self.logit_scale, 0.0, MAX_LOG_LOGIT_SCALE))

    def embed_image(self, images, train: bool = False):
        return l2_normalize(self.encode_image(preprocessing.normalize(images, "clip"), train=train))

    def embed_text(self, tokens):
        return l2_normalize(self.encode_text(tokens))

    def __call__(self, images, tokens=None, train: bool = False):
        image = self.embed_image(images, train=train)  # train: batch norm of a CLIPConvNet tower
        out = {"image_embed": image}
        if tokens is None and self.is_initializing():
            tokens = jnp.zeros((1, self.config.text.context_length), jnp.int32)
        if tokens is not None:
            text = self.embed_text(tokens)
            out["text_embed"] = text
            out["logit_scale"] = self.scale()
            if text.shape[0] == image.shape[0]:
                out["logits"] = out["logit_scale"] * jnp.dot(image, text.T, precision=jax.lax.Precision.HIGHEST)
        return {"clip": out}


def create_contrastive(variant: str = "vit_b16", *, dtype: Any = jnp.float32, attention: str | None = None,
                       pad_tokens_to: int = 0, vision: dict | None = None, text: dict | None = None) -> ContrastiveCLIP:
    """`ContrastiveCLIP` of `VARIANTS[variant]` with `vision` / `text` field overrides (e.g. a
    converted checkpoint's `convert.json['clip_config']` parts, or a demo's tiny towers)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown CLIP variant {variant!r}; known: {', '.join(VARIANTS)}")
    base = VARIANTS[variant]
    try:
        config = CLIPConfig(dataclasses.replace(base.vision, **dict(vision or {})),
                            dataclasses.replace(base.text, **dict(text or {})))
    except TypeError as e:
        raise ValueError(f"CLIP tower override: {e}; vision fields {[f.name for f in dataclasses.fields(CLIPVisionConfig)]}, "
                         f"text fields {[f.name for f in dataclasses.fields(CLIPTextConfig)]}") from None
    return ContrastiveCLIP(config, attention, pad_tokens_to, jnp.dtype(dtype))
