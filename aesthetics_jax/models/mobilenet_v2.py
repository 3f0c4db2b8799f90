"""MobileNetV2 backbone with the layer structure and names of `keras.applications.MobileNetV2`.

Structure (Keras 3.15 `keras/src/applications/mobilenet_v2.py`, `include_top=False`)::

    Conv1      Conv2D 3x3, _make_divisible(32*width, 8) filters, stride 2, 'same', no bias
    bn_Conv1   BatchNorm (eps 1e-3, momentum 0.999), ReLU6
    17 inverted-residual blocks, block_id 0..16, (expansion t, filters f, stride s):
      0: t=1 f=16 | 1-2: f=24, s=2,1 | 3-5: f=32, s=2,1,1 | 6-9: f=64, s=2,1,1,1
      10-12: f=96 | 13-15: f=160, s=2,1,1 | 16: f=320     (t=6 from block 1 on)
      Block 0 is named `expanded_conv_*` and has no expansion; block i >= 1 is `block_{i}_*`:
        {p}expand, {p}expand_BN       1x1 Conv2D to t * C_in, BatchNorm, ReLU6   (i >= 1)
        [ZeroPadding2D correct_pad(x, 3) before a stride-2 depthwise, then 'valid']
        {p}depthwise, {p}depthwise_BN 3x3 DepthwiseConv2D, BatchNorm, ReLU6
        {p}project, {p}project_BN     1x1 Conv2D to _make_divisible(int(f*width), 8), BatchNorm
        residual add when stride 1 and C_in == C_out
    Conv_1     Conv2D 1x1 to 1280 (or _make_divisible(1280*width, 8) when width > 1), no bias
    Conv_1_bn  BatchNorm, ReLU6

Flax mapping as in `mobilenet.py`: module names are the Keras layer names; Keras' ZeroPadding2D +
'valid' is folded into explicit conv padding (`correct_pad`: ((0, 1), (0, 1)) for even spatial
sizes, ((1, 1), (1, 1)) for odd ones, decided from the static shape exactly as Keras does);
convolutions via `conv.keras_conv` (depthwise as `conv.DepthwiseConv`, same parameters as
`nn.Conv(feature_group_count=C)`); BatchNorm momentum 0.999 has the same meaning in Flax and Keras.

`width` is Keras' `alpha` (ImageNet weights exist for 0.35, 0.5, 0.75, 1.0, 1.3, 1.4).
`num_blocks` (1..17) keeps blocks 0..num_blocks-1, then `Conv_1`: a tiny variant for tests.

Output: `{'feature_map': [B, h, w, C] in the compute dtype, 'pooled': [B, C] float32 global
average}`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from aesthetics_jax.models import conv

# (expansion, filters at width 1, stride) for block_id 0..16.
BLOCKS = (
    (1, 16, 1),
    (6, 24, 2),
    (6, 24, 1),
    (6, 32, 2),
    (6, 32, 1),
    (6, 32, 1),
    (6, 64, 2),
    (6, 64, 1),
    (6, 64, 1),
    (6, 64, 1),
    (6, 96, 1),
    (6, 96, 1),
    (6, 96, 1),
    (6, 160, 2),
    (6, 160, 1),
    (6, 160, 1),
    (6, 320, 1),
)

LAYOUTS = ("keras", "torchvision")
BN_EPSILON = {"keras": 1e-3, "torchvision": 1e-5}
BN_MOMENTUM = {"keras": 0.999, "torchvision": 0.9}


def _make_divisible(v, divisor, min_value=None):
    """Keras/TF-slim channel rounding: nearest multiple of `divisor`, never below 90% of `v`."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _correct_pad(spatial, kernel: int = 3):
    """Keras `imagenet_utils.correct_pad` for a static (h, w)."""
    return tuple((kernel // 2 - (1 - size % 2), kernel // 2) for size in spatial)


class MobileNetV2(nn.Module):
    """MobileNetV2 feature extractor (Keras applications names; see module docstring)."""

    width: float = 1.0
    num_blocks: int = len(BLOCKS)
    layout: str = "keras"
    dtype: Any = jnp.float32
    depthwise_impl: str = "auto"  # see conv.py: 'conv' | 'shifted' | 'auto'
    pointwise_impl: str = "auto"  # see conv.py: 'conv' | 'dot' | 'auto'

    def _stride2_padding(self, spatial):
        if self.layout == "torchvision":
            return ((1, 1), (1, 1))
        return _correct_pad(spatial)

    def _conv(self, x, features: int, kernel: int, stride: int, padding, name: str, groups: int = 1):
        return conv.keras_conv(x, features, kernel, stride, padding, name, groups=groups, dtype=self.dtype,
                               depthwise_impl=self.depthwise_impl, pointwise_impl=self.pointwise_impl)

    def _bn(self, x, name: str, train: bool):
        return nn.BatchNorm(
            use_running_average=not train,
            momentum=BN_MOMENTUM[self.layout],
            epsilon=BN_EPSILON[self.layout],
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name=name,
        )(x)

    def _inverted_res_block(self, inputs, expansion: int, stride: int, filters: int, block_id: int, train: bool):
        in_channels = inputs.shape[-1]
        out_channels = _make_divisible(int(filters * self.width), 8)
        x = inputs
        if block_id:
            prefix = f"block_{block_id}_"
            x = self._conv(x, expansion * in_channels, 1, 1, "SAME", prefix + "expand")
            x = nn.relu6(self._bn(x, prefix + "expand_BN", train))
        else:
            prefix = "expanded_conv_"
        channels = x.shape[-1]
        padding = "SAME" if stride == 1 else self._stride2_padding(x.shape[1:3])
        x = self._conv(x, channels, 3, stride, padding, prefix + "depthwise", groups=channels)
        x = nn.relu6(self._bn(x, prefix + "depthwise_BN", train))
        x = self._conv(x, out_channels, 1, 1, "SAME", prefix + "project")
        x = self._bn(x, prefix + "project_BN", train)
        if in_channels == out_channels and stride == 1:
            x = inputs + x
        return x

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.width <= 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        if not 1 <= self.num_blocks <= len(BLOCKS):
            raise ValueError(f"num_blocks must be in 1..{len(BLOCKS)}, got {self.num_blocks}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        x = x.astype(self.dtype)
        stem_padding = "SAME" if self.layout == "keras" else ((1, 1), (1, 1))
        x = self._conv(x, _make_divisible(32 * self.width, 8), 3, 2, stem_padding, "Conv1")
        x = nn.relu6(self._bn(x, "bn_Conv1", train))
        for block_id, (expansion, filters, stride) in enumerate(BLOCKS[: self.num_blocks]):
            x = self._inverted_res_block(x, expansion, stride, filters, block_id, train)
        last_filters = _make_divisible(1280 * self.width, 8) if self.width > 1.0 else 1280
        x = self._conv(x, last_filters, 1, 1, "SAME", "Conv_1")
        x = nn.relu6(self._bn(x, "Conv_1_bn", train))
        pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        return {"feature_map": x, "pooled": pooled}
