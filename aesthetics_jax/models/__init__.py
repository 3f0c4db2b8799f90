"""Model registry: `models.create(name, heads=..., ...)` -> a Flax Linen module.

    model = models.create('mobilenet', heads={'emd': {'type': 'emd'}}, dropout=0.75, width=1.0)
    variables = model.init({'params': rng, 'dropout': rng}, images, train=False)
    outputs, state = model.apply(variables, images, train=True, rngs={'dropout': rng},
                                 mutable=['batch_stats'])
    outputs = model.apply(variables, images)          # {'emd': {'logits', 'distribution', 'mean', 'sd'}}

`images` are raw pixels in [0, 255]; the model normalises them with its `preprocess` preset
(default per backbone below). See `model.py` for the composition, variable layout and parameter
path format, `heads.py` for head types and output keys, and the backbone files for the Keras
layer names that parameters carry.

Backbones are an explicit dict, name -> (module, class, default preset); a backbone's module is
imported only when it is created. Backbone kwargs:

  mobilenet      width (Keras alpha; 0.25/0.5/0.75/1.0 have ImageNet weights), depth_multiplier=1,
                 num_blocks=13 (fewer: tiny test variant), frozen_blocks=0 (variable freezing)
  mobilenet_v2   width (0.35 ... 1.4), num_blocks=17 (fewer: tiny test variant),
                 layout='keras' | 'torchvision' (symmetric stride-2 padding, BN eps 1e-5)
  inception      InceptionV3: layout='keras' (BN without gamma, pooling excludes padding) |
                 'torchvision' (BN gamma, count_include_pad pooling), transform_input=False
                 (torchvision's ImageNet-mean/std -> [-1, 1] remap), num_mixed=11 (fewer: tiny
                 test variant), width=1.0 (filter multiplier: reduced demo model), frozen_blocks=0
                 (variable freezing); feature_map = last kept mixed block (Grad-CAM target)
  clip           CLIP image tower: variant='vit_b16' (vit_b32, vit_b16, vit_l14, vit_l14_336, tiny),
                 pooled='projected' | 'pre_projection', attention=None|'xla'|'cudnn',
                 pad_tokens_to=0, overrides image_size, patch_size, width, layers, num_heads,
                 mlp_ratio, embed_dim, act ('quick_gelu' | 'gelu'); see `clip.py`
  cgiaa          CG-IAA fusion: VLAP CLIP image tower (`base`) + per-attribute CLIP experts
                 (image + text tower matching a critique bank) fused by `fusion`='attention' |
                 'concat' | 'none'; experts=('color', 'composition', 'dof', 'general'), prompts
                 (dict expert -> critiques), textual='soft' | 'hard', fusion_dim, fusion_layers,
                 fusion_heads, the `clip` image overrides and text_variant / text_* overrides;
                 see `cgiaa.py` (also its `freeze_regex`); textual='generated' fuses the text
                 embeddings of generated critiques (batch `critique_tokens`)
  critique_text  critique-based scoring: the CLIP text tower over each image's generated critiques
                 (batch `critique_tokens` [B, A, T]), variant, text (text tower overrides),
                 attributes=A, hidden; the image is not read; see `critique_text.py`

Variable layer freezing (`frozen_blocks`, mobilenet and inception): `num_backbone_blocks(name,
**kw)` counts the blocks in input order and `freeze_regex(name, k, **kw)` selects the parameters
of the first k, for `config.schedule`; the backbone itself runs those blocks frozen (BatchNorm in
inference mode, no gradient). `extend_input_kernel` widens a pretrained RGB input convolution
for RGB + map input.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

import flax.linen as nn
import jax.numpy as jnp

from aesthetics_jax.models import heads as heads_lib
from aesthetics_jax.models import preprocessing
from aesthetics_jax.models.model import AestheticsModel, check_head_name, global_average_pool


class BackboneEntry(NamedTuple):
    module: str
    cls: str
    preprocess: str


BACKBONES: dict[str, BackboneEntry] = {
    "mobilenet": BackboneEntry("aesthetics_jax.models.mobilenet", "MobileNet", "keras_tf"),
    "mobilenet_v2": BackboneEntry("aesthetics_jax.models.mobilenet_v2", "MobileNetV2", "keras_tf"),
    "inception": BackboneEntry("aesthetics_jax.models.inception", "Inception", "keras_tf"),
    "clip": BackboneEntry("aesthetics_jax.models.clip", "CLIPVisionTransformer", "clip"),
    "cgiaa": BackboneEntry("aesthetics_jax.models.cgiaa", "CGIAAFusion", "clip"),
    "critique_text": BackboneEntry("aesthetics_jax.models.critique_text", "CritiqueText", "none"),
}


def _entry(name: str) -> BackboneEntry:
    if name not in BACKBONES:
        raise ValueError(f"Unknown model {name!r}; known models: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name]


def default_preprocess(name: str) -> str:
    """The input normalisation preset the backbone `name` was trained with."""
    return _entry(name).preprocess


def create_backbone(name: str, *, dtype: Any = jnp.float32, **kwargs) -> nn.Module:
    """Builds the (unbound) backbone module `name` with its kwargs."""
    entry = _entry(name)
    cls = getattr(importlib.import_module(entry.module), entry.cls)
    allowed = sorted(f for f in cls.__dataclass_fields__ if f not in ("parent", "name", "dtype"))
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"model {name!r}: unknown backbone options {unknown}; allowed: {allowed}")
    return cls(dtype=dtype, **kwargs)


def _freeze_head_config(config) -> tuple:
    items = []
    for key, value in config.items():
        if isinstance(value, (list, tuple)):
            value = tuple(value)
        items.append((key, value))
    return tuple(items)


def create(
    name: str,
    *,
    heads,
    preprocess: str | None = None,
    dtype: Any = jnp.float32,
    dropout: float = 0.0,
    **backbone_kwargs,
) -> AestheticsModel:
    """Builds backbone `name` with `heads` (`{head_name: {'type': ..., **kw}}`, dict or ConfigDict).

    Args:
      name: a key of `BACKBONES`.
      heads: head configs, see `heads.py`; at least one.
      preprocess: preset of `preprocessing.PRESETS`; None = the backbone's default.
      dtype: compute dtype (e.g. jnp.bfloat16 or 'bfloat16'); params stay float32.
      dropout: dropout rate on the pooled features.
      **backbone_kwargs: passed to the backbone (see the table in this module's docstring).
    """
    dtype = jnp.dtype(dtype)
    backbone = create_backbone(name, dtype=dtype, **backbone_kwargs)
    preprocess = default_preprocess(name) if preprocess is None else preprocess
    if preprocess not in preprocessing.PRESETS:
        raise ValueError(f"Unknown preprocess preset {preprocess!r}; known presets: {', '.join(preprocessing.PRESETS)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if not heads:
        raise ValueError("heads must name at least one head, e.g. {'emd': {'type': 'emd'}}")
    frozen = []
    for head_name, config in heads.items():
        # Validate names, types and options now rather than at the first init.
        check_head_name(head_name)
        heads_lib.build_head(head_name, config, dtype)
        frozen.append((head_name, _freeze_head_config(config)))
    return AestheticsModel(
        backbone=backbone, heads=tuple(frozen), preprocess=preprocess, dropout=float(dropout), dtype=dtype
    )


# backbone name -> the kwarg holding its block count, and the count's default.
_BLOCK_COUNTS = {"mobilenet": ("num_blocks", 13), "inception": ("num_mixed", 11)}


def num_backbone_blocks(name: str, **backbone_kwargs) -> int:
    """Blocks of backbone `name` in input order, stem included (the largest `frozen_blocks`)."""
    if name not in _BLOCK_COUNTS:
        raise ValueError(f"variable layer freezing is defined for {sorted(_BLOCK_COUNTS)}, not {name!r}")
    key, default = _BLOCK_COUNTS[name]
    return int(backbone_kwargs.get(key, default)) + 1


def freeze_regex(name: str, frozen_blocks: int, prefix: str = "backbone/", **backbone_kwargs) -> str | None:
    """Regex over parameter paths selecting the first `frozen_blocks` blocks of backbone `name` (None: none)."""
    count = num_backbone_blocks(name, **backbone_kwargs)
    module = importlib.import_module(_entry(name).module)
    return module.freeze_regex(frozen_blocks, count - 1, prefix=prefix)


def extend_input_kernel(kernel, in_channels: int):
    """A conv kernel [kh, kw, C, F] widened to `in_channels` inputs: every new input channel gets the
    mean of the C pretrained kernels (RGB + map: the map starts as a grey-level input)."""
    kernel = jnp.asarray(kernel)
    if kernel.ndim != 4 or in_channels < kernel.shape[2]:
        raise ValueError(f"cannot extend a kernel of shape {kernel.shape} to {in_channels} input channels")
    mean = jnp.mean(kernel, axis=2, keepdims=True)
    return jnp.concatenate([kernel] + [mean] * (in_channels - kernel.shape[2]), axis=2)


__all__ = [
    "BACKBONES",
    "extend_input_kernel",
    "freeze_regex",
    "num_backbone_blocks",
    "AestheticsModel",
    "create",
    "create_backbone",
    "default_preprocess",
    "global_average_pool",
]
