"""ClipCap (Mokady et al. 2021) as CG-IAA's attribute experts use it: a CLIP image feature -> a GPT-2 prefix.

    cfg = clipcap.VARIANTS["cgiaa"]                     # CG-IAA's released experts (SCIENCE.md section 6)
    model = clipcap.ClipCap(cfg)
    logits = model.apply(v, features, tokens)          # teacher forcing: [B, T, vocab], position t
                                                        # predicts tokens[:, t]
    prefix = model.apply(v, features, method="prefix")  # [B, prefix_length, n_embd] GPT-2 inputs

`features` are CLIP image features: CG-IAA feeds the L2-normalised projected class token
(`ln_post(CLS) @ proj`, 512 for ViT-B/16); `critique/` computes them from pixels.

Mapper (`clip_project`, the released "transformer_encoder" mapping; parameter names follow the
released state dict's)::

    linear          Dense(prefix_dim -> clip_length * n_embd), reshaped to [B, clip_length, n_embd]
    prefix_const    [prefix_length, n_embd] learned constant, appended after the projected tokens
    layers_{i}      pre-LN transformer layer, i < num_layers:
                      x += project(attention(norm1(x)))      to_queries (no bias), to_keys_values
                                                             (no bias; keys then values), project
                                                             (bias); num_heads heads, softmax over keys
                      x += mlp/fc2(relu(mlp/fc1(norm2(x))))  hidden mlp_ratio * n_embd
    output          the last prefix_length tokens (the positions of the constant)

then GPT-2 (`gpt`, `models/gpt2.py`) reads the prefix followed by the caption's token embeddings.
LayerNorm eps 1e-5 (torch's default), computed in float32.

Teacher forcing (training, parity): ``__call__(features, tokens)`` returns the logits at positions
prefix_length - 1 ... prefix_length + T - 2 of the GPT-2 sequence, i.e. the prediction of every
caption token from the prefix and the tokens before it. Padding: token ids < 0 are padding (masked
as attention keys, embedded as id 0, left out of the loss by `losses.caption_xent`). The released
training pads with id 0 and ignores id 0 in the loss (which never trains GPT-2's token 0, "!");
negative padding keeps every real token.

Decoding (beam search, greedy, top-p) with a fixed-size KV cache lives in `critique/decoding.py`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aesthetics_jax.models import clip as clip_lib
from aesthetics_jax.models import gpt2 as gpt2_lib
from aesthetics_jax.models import preprocessing

LN_EPS = 1e-5


@dataclasses.dataclass(frozen=True)
class ClipCapConfig:
    prefix_dim: int = 512
    prefix_length: int = 40
    clip_length: int = 40
    num_layers: int = 8
    num_heads: int = 8
    mlp_ratio: float = 2.0
    gpt2: gpt2_lib.GPT2Config = gpt2_lib.GPT2Config()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ClipCapConfig":
        d = dict(d)
        return cls(gpt2=gpt2_lib.GPT2Config.from_dict(d.pop("gpt2")), **d)


VARIANTS: dict[str, ClipCapConfig] = {
    # CG-IAA's experts: ViT-B/16 feature (512), prefix 40, 8 mapper layers, GPT-2 small.
    "cgiaa": ClipCapConfig(),
    "tiny": ClipCapConfig(prefix_dim=24, prefix_length=4, clip_length=4, num_layers=2, num_heads=4,
                          gpt2=gpt2_lib.VARIANTS["tiny"]),
}


def _layer_norm(name):
    return nn.LayerNorm(epsilon=LN_EPS, dtype=jnp.float32, param_dtype=jnp.float32, name=name)


class MapperAttention(nn.Module):
    width: int
    num_heads: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        b, n, c = x.shape
        if c % self.num_heads:
            raise ValueError(f"mapper width {c} is not divisible by num_heads {self.num_heads}")
        hd = c // self.num_heads
        dense = lambda f, bias, name: nn.Dense(f, use_bias=bias, dtype=self.dtype, param_dtype=jnp.float32, name=name)
        q = dense(c, False, "to_queries")(x).reshape(b, n, self.num_heads, hd)
        kv = dense(2 * c, False, "to_keys_values")(x).reshape(b, n, 2, self.num_heads, hd)
        out = jax.nn.dot_product_attention(q, kv[:, :, 0], kv[:, :, 1], scale=hd**-0.5)
        return dense(c, True, "project")(out.reshape(b, n, c))


class MapperLayer(nn.Module):
    width: int
    num_heads: int
    mlp_ratio: float = 2.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        y = _layer_norm("norm1")(x.astype(jnp.float32)).astype(self.dtype)
        x = x + MapperAttention(self.width, self.num_heads, self.dtype, name="attn")(y)
        y = _layer_norm("norm2")(x.astype(jnp.float32)).astype(self.dtype)
        return x + MapperMlp(int(self.width * self.mlp_ratio), self.dtype, name="mlp")(y)


class MapperMlp(nn.Module):
    hidden: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        y = nn.Dense(self.hidden, dtype=self.dtype, param_dtype=jnp.float32, name="fc1")(x)
        return nn.Dense(x.shape[-1], dtype=self.dtype, param_dtype=jnp.float32, name="fc2")(jax.nn.relu(y))


class TransformerMapper(nn.Module):
    """CLIP feature [B, prefix_dim] -> GPT-2 prefix [B, prefix_length, n_embd] (module docstring)."""

    config: ClipCapConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features):
        cfg = self.config
        width = cfg.gpt2.n_embd
        if features.ndim != 2 or features.shape[-1] != cfg.prefix_dim:
            raise ValueError(f"ClipCap expects features [B, {cfg.prefix_dim}], got {features.shape}")
        b = features.shape[0]
        x = nn.Dense(cfg.clip_length * width, dtype=self.dtype, param_dtype=jnp.float32, name="linear")(
            features.astype(self.dtype)).reshape(b, cfg.clip_length, width)
        const = self.param("prefix_const", nn.initializers.normal(1.0), (cfg.prefix_length, width), jnp.float32)
        x = jnp.concatenate([x, jnp.broadcast_to(const.astype(self.dtype), (b, *const.shape))], axis=1)
        for i in range(cfg.num_layers):
            x = MapperLayer(width, cfg.num_heads, cfg.mlp_ratio, self.dtype, name=f"layers_{i}")(x)
        return x[:, cfg.clip_length:]


class ClipCap(nn.Module):
    """Mapper (`clip_project`) + GPT-2 (`gpt`); see the module docstring."""

    config: ClipCapConfig = ClipCapConfig()
    dtype: Any = jnp.float32

    def setup(self):
        self.clip_project = TransformerMapper(self.config, self.dtype)
        self.gpt = gpt2_lib.GPT2LMHeadModel(self.config.gpt2, self.dtype)

    def prefix(self, features):
        return self.clip_project(features)

    def embed_tokens(self, ids):
        return self.gpt.embed_tokens(ids)

    def lm(self, embeds, cache=None, attention_mask=None, deterministic=True, last_only=False):
        """GPT-2 on input embeddings: ``(logits [B, T, vocab] float32, cache)`` (``last_only``: [B, 1, vocab])."""
        return self.gpt(embeds, cache=cache, attention_mask=attention_mask, deterministic=deterministic,
                        last_only=last_only)

    def __call__(self, features, tokens, *, deterministic: bool = True):
        tokens = jnp.asarray(tokens)
        prefix = self.prefix(features)
        p = prefix.shape[1]
        valid = tokens >= 0
        embeds = jnp.concatenate([prefix, self.embed_tokens(jnp.maximum(tokens, 0))], axis=1)
        mask = jnp.concatenate([jnp.ones((tokens.shape[0], p), bool), valid], axis=1)
        logits, _ = self.lm(embeds, attention_mask=mask, deterministic=deterministic)
        return logits[:, p - 1:-1]


def image_features(visual_outputs) -> jax.Array:
    """CG-IAA's expert input: the L2-normalised projected CLIP image feature (float32)."""
    pooled = visual_outputs["pooled"].astype(jnp.float32)
    return pooled / jnp.linalg.norm(pooled, axis=-1, keepdims=True)


class ClipCapCaptioner(nn.Module):
    """Pixels -> CLIP image tower (`visual`) -> normalised feature -> ClipCap (`clipcap`): the model
    `configs/clipcap_attr.py` trains (task 'caption'). ``__call__(x, tokens=..., train=...)`` returns
    ``{'caption': {'logits': [B, T, vocab], 'feature': [B, prefix_dim]}}`` (teacher forcing); without
    tokens (evaluation) ``{'caption': {'feature'}}`` only. Images are raw [0, 255] pixels,
    normalised with CLIP's mean/std here. Parameters: ``visual/...`` (the CLIP image tower, as in
    a CLIP conversion) and ``captioner/{clip_project, gpt}/...`` (as a critic bundle's experts).

    `vision`: `CLIPVisionTransformer` fields (variant, overrides); `clipcap`: a `ClipCapConfig` dict
    (or a `VARIANTS` key) whose `prefix_dim` must equal the tower's embed_dim.
    """

    vision: Any = None
    clipcap: Any = "cgiaa"
    dtype: Any = jnp.float32

    def setup(self):
        vision = dict(self.vision or {})
        vision.setdefault("variant", "vit_b16")
        vision["pooled"] = "projected"
        self.visual = clip_lib.CLIPVisionTransformer(dtype=self.dtype, **vision)
        cfg = self.clipcap_config
        if self.visual.config.embed_dim != cfg.prefix_dim:
            raise ValueError(f"ClipCap prefix_dim {cfg.prefix_dim} != the CLIP tower's embed_dim "
                             f"{self.visual.config.embed_dim}")
        self.captioner = ClipCap(cfg, self.dtype)

    @property
    def clipcap_config(self) -> ClipCapConfig:
        if isinstance(self.clipcap, str):
            if self.clipcap not in VARIANTS:
                raise ValueError(f"unknown ClipCap variant {self.clipcap!r}; known: {', '.join(VARIANTS)}")
            return VARIANTS[self.clipcap]
        if isinstance(self.clipcap, ClipCapConfig):
            return self.clipcap
        return ClipCapConfig.from_dict(_plain(self.clipcap))

    def features(self, x):
        x = preprocessing.normalize(x, "clip")
        return image_features(self.visual(x))

    def __call__(self, x, tokens=None, train: bool = False):
        features = self.features(x)
        if tokens is None:  # evaluation / initialisation: the feature only (GPT-2 runs once to exist)
            self.captioner(features, jnp.zeros((x.shape[0], 1), jnp.int32))
            return {"caption": {"feature": features}}
        logits = self.captioner(features, tokens, deterministic=not train)
        return {"caption": {"logits": logits, "feature": features}}


def _plain(d):
    if hasattr(d, "to_dict"):
        d = d.to_dict()
    if isinstance(d, dict) or hasattr(d, "items"):
        return {k: _plain(v) for k, v in dict(d).items()}
    if isinstance(d, (list, tuple)):
        return type(d)(_plain(v) for v in d)
    return d
