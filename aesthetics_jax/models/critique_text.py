"""Critique-based scoring backbone (`critique_text`): an image's generated critiques -> a feature.

CG-IAA's text-only IAA (its README; SCIENCE.md section 6: critique-only AVA SRCC 0.712): the
critiques the attribute experts wrote about an image go through the CLIP text tower, and a small
head scores them. Here::

    critique_tokens [B, A, T]    CLIP tokens of each image's critique per attribute (A attributes,
                                 `data.critiques`: `datasets.CritiqueSource`)
    t_a = l2(text(tokens[:, a])) [B, D]   the text tower (`text/...`, a CLIP conversion's `text/`)
    pooled = [t_1, ..., t_A]     [B, A * D]
    (hidden > 0)  pooled = GELU(Dense(hidden)(pooled))   (`mlp/`)

then `AestheticsModel`'s dropout and heads (NIMA's EMD head in `configs/critique_iaa.py`). The
image itself is not read (`visual` is False): the score comes from the words alone, as CG-IAA's
text-only variant. The text tower is usually frozen (`config.schedule`), initialised from the
CLIP the critiques' experts read (`init_from` a CLIP conversion or a critic bundle).

Returns {'pooled': float32 [B, A * D or hidden], 'feature_map': pooled as a [B, 1, 1, F] grid
(no spatial map exists; Grad-CAM does not apply)}.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from aesthetics_jax.models import clip as clip_lib

_TEXT_FIELDS = tuple(f.name for f in dataclasses.fields(clip_lib.CLIPTextConfig))


class CritiqueText(nn.Module):
    """Text tower over generated critiques (module docstring).

    Attributes:
      variant: CLIP variant whose text tower this is (`clip.VARIANTS`).
      text: overrides of the text tower's `CLIPTextConfig` fields (vocab_size, context_length,
        width, layers, num_heads, mlp_ratio, embed_dim, act, eot_token_id).
      attributes: how many critiques per image (A).
      hidden: width of the optional GELU layer after the concatenation (0: none).
    """

    variant: str = "vit_b16"
    text: Any = None
    attributes: int = 4
    hidden: int = 0
    dtype: Any = jnp.float32
    reads_pixels = False  # not a field: exporters (ONNX / SavedModel: an `images` graph) refuse it

    @property
    def text_config(self) -> clip_lib.CLIPTextConfig:
        if self.variant not in clip_lib.VARIANTS:
            raise ValueError(f"unknown CLIP variant {self.variant!r}; known: {', '.join(clip_lib.VARIANTS)}")
        overrides = dict(self.text or {})
        unknown = sorted(set(overrides) - set(_TEXT_FIELDS))
        if unknown:
            raise ValueError(f"critique_text: unknown text tower field(s) {unknown}; known: {list(_TEXT_FIELDS)}")
        return clip_lib._resolve(clip_lib.VARIANTS[self.variant].text, overrides)

    @nn.compact
    def __call__(self, x, train: bool = False, critique_tokens=None):
        del train
        if critique_tokens is None:
            raise ValueError("the critique_text model scores generated critiques: the batch needs `critique_tokens` "
                             "(config.data.critiques.path: `aesthetics-jax critique` JSON lines over the build's images)")
        tokens = jnp.asarray(critique_tokens)
        b, a, t = tokens.shape
        if a != self.attributes:
            raise ValueError(f"critique_tokens hold {a} critiques per image, the model expects {self.attributes}")
        cfg = self.text_config
        text = clip_lib.CLIPTextTransformer(cfg, None, self.dtype, name="text")
        embeds = clip_lib.l2_normalize(text(tokens.reshape(b * a, t))).reshape(b, a * cfg.embed_dim)
        pooled = embeds.astype(jnp.float32)
        if self.hidden:
            pooled = nn.gelu(nn.Dense(self.hidden, dtype=self.dtype, param_dtype=jnp.float32, name="mlp")(
                pooled.astype(self.dtype)), approximate=False).astype(jnp.float32)
        del x
        return {"pooled": pooled, "feature_map": pooled[:, None, None, :]}
