"""The composed aesthetics model: preprocessing -> backbone -> pool -> dropout -> heads.

    images (raw [0, 255] pixels, NHWC, uint8 or float)
      -> normalize(images, preset)              float32, see `preprocessing.py`
      -> cast to the compute dtype
      -> backbone(x, train)                     {'feature_map', 'pooled'?}
      -> pooled (float32; global average of the feature map if the backbone gives none)
      -> Dropout(dropout)                       active only with train=True (rng 'dropout')
      -> cast to the compute dtype -> every head -> {head_name: {key: float32 array}}

Variables: `{'params': {'backbone': ..., <head_name>: ...}, 'batch_stats': {'backbone': ...}}`.
Parameter paths are the nested keys joined by '/', e.g. `backbone/conv_pw_13/kernel`,
`backbone/conv_pw_13_bn/scale`, `emd/dense/kernel` (what
`flax.traverse_util.flatten_dict(params, sep='/')` produces), so freezing regexes such as
`^backbone/conv_pw_1[0-3]` or `^emd/` select by layer.

Methods (all usable with `model.apply(variables, x, method=...)`):
  __call__(images, train=False, return_features=False, **inputs)
      head outputs; with return_features also `outputs['features'] = {'feature_map': float32
      [B, h, w, C], 'pooled': float32 [B, C]}`. `inputs` (e.g. `critique_tokens`) go to the
      backbone, for backbones that read more than the image (`critique_text`, `cgiaa`).
  features(images, train=False)            backbone outputs (feature_map in compute dtype,
                                           pooled float32).
  heads_from_pooled(pooled, train=False)   dropout + heads on given pooled features.
  heads_from_feature_map(feature_map, train=False)
      global-average-pool then heads: the differentiable feature_map -> outputs map for
      Grad-CAM on CNN backbones, whose pooled output *is* that average.

Head names must be identifiers and may not be `backbone`, `head_dropout` or `features`.
"""

from __future__ import annotations

import re
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from aesthetics_jax.models import heads as heads_lib
from aesthetics_jax.models import preprocessing

RESERVED_NAMES = ("backbone", "head_dropout", "features")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def global_average_pool(feature_map):
    """Mean over all axes but the first (batch) and last (channels), in float32."""
    return jnp.mean(feature_map.astype(jnp.float32), axis=tuple(range(1, feature_map.ndim - 1)))


def check_head_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"head name {name!r} must match {_NAME_RE.pattern} (it is a parameter path key)")
    if name in RESERVED_NAMES:
        raise ValueError(f"head name {name!r} is reserved ({', '.join(RESERVED_NAMES)})")


class AestheticsModel(nn.Module):
    """Backbone plus named heads; see the module docstring.

    Attributes:
      backbone: a Linen module, `backbone(x, train) -> {'feature_map', 'pooled' (optional)}`.
      heads: `{name: {'type': ..., **kwargs}}` or the equivalent tuple of `(name, ((key, value),
        ...))` pairs that `models.create` passes (hashable).
      preprocess: a preset of `preprocessing.PRESETS`.
      dropout: dropout rate on the pooled features (NIMA uses 0.75).
      dtype: compute dtype; params and batch statistics stay float32.
    """

    backbone: nn.Module
    heads: Any
    preprocess: str = "none"
    dropout: float = 0.0
    dtype: Any = jnp.float32

    def setup(self):
        items = self.heads.items() if hasattr(self.heads, "items") else self.heads
        head_modules = {}
        for name, config in items:
            check_head_name(name)
            head_modules[name] = heads_lib.build_head(name, dict(config), self.dtype)
        if not head_modules:
            raise ValueError("a model needs at least one head")
        self.head_modules = head_modules
        self.head_dropout = nn.Dropout(rate=self.dropout)

    def features(self, images, train: bool = False, **inputs):
        x = preprocessing.normalize(images, self.preprocess).astype(self.dtype)
        features = dict(self.backbone(x, train=train, **inputs))
        pooled = features.get("pooled")
        if pooled is None:
            pooled = global_average_pool(features["feature_map"])
        features["pooled"] = pooled.astype(jnp.float32)
        return features

    def heads_from_pooled(self, pooled, train: bool = False):
        x = self.head_dropout(pooled.astype(jnp.float32), deterministic=not train)
        x = x.astype(self.dtype)
        return {name: head(x) for name, head in self.head_modules.items()}

    def heads_from_feature_map(self, feature_map, train: bool = False):
        return self.heads_from_pooled(global_average_pool(feature_map), train=train)

    def __call__(self, images, train: bool = False, return_features: bool = False, **inputs):
        features = self.features(images, train=train, **inputs)
        outputs = self.heads_from_pooled(features["pooled"], train=train)
        if return_features:
            outputs["features"] = {
                "feature_map": features["feature_map"].astype(jnp.float32),
                "pooled": features["pooled"],
            }
        return outputs
