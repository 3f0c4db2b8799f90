"""MobileNet v1 backbone with the layer structure and names of `keras.applications.MobileNet`.

Structure (Keras 3.15 `keras/src/applications/mobilenet.py`, `include_top=False`)::

    conv1      Conv2D 3x3, int(32*width) filters, stride 2, padding 'same', no bias
    conv1_bn   BatchNorm (eps 1e-3, momentum 0.99), ReLU6
    13 depthwise-separable blocks i = 1..13 with pointwise filters int(f*width),
    f = 64, 128, 128, 256, 256, 512 (x6), 1024, 1024, stride 2 at blocks 2, 4, 6, 12:
      [ZeroPadding2D ((0, 1), (0, 1)) before a stride-2 block, then padding 'valid';
       padding 'same' at stride 1]
      conv_dw_{i}      DepthwiseConv2D 3x3, depth_multiplier, no bias
      conv_dw_{i}_bn   BatchNorm, ReLU6
      conv_pw_{i}      Conv2D 1x1, no bias
      conv_pw_{i}_bn   BatchNorm, ReLU6

Flax mapping:
  * Module names are the Keras layer names, so `params['conv_dw_3']['kernel']` is Keras layer
    `conv_dw_3`'s kernel and the Keras converter (`aesthetics_jax.convert.keras`) maps by name.
  * Keras' ZeroPadding2D + 'valid' is folded into the conv's explicit padding ((0, 1), (0, 1)),
    which is the identical computation. Flax 'SAME' is TensorFlow's 'SAME' (extra padding at the
    end), so `conv1` matches Keras at every input size, odd ones included.
  * Convolutions come from `conv.keras_conv`: DepthwiseConv2D is `conv.DepthwiseConv` (parameters
    identical to `nn.Conv(feature_group_count=C)`, shifted products on CPU; `depthwise_impl`), 1x1
    ones `conv.PointwiseConv` (a GEMM on CPU; `pointwise_impl`). The depthwise kernel is [3, 3, 1, C*m] with
    output channel c*m + j, which is Keras' [3, 3, C, m] kernel reshaped (C order).
  * BatchNorm: Keras' momentum 0.99 means the same in Flax (`ra = 0.99 ra + 0.01 batch`);
    scale/bias are params, mean/var live in `batch_stats`, always float32.
  * Kernels use Keras' default initialiser (glorot_uniform), so from-scratch training behaves
    like the Keras original.

`width` is Keras' `alpha` (ImageNet weights exist for 0.25, 0.5, 0.75, 1.0; any value > 0 builds).
`num_blocks` (1..13) truncates the network after block `num_blocks`: a tiny variant for tests
with the same names as the full one.

Variable layer freezing (the modality NIMA configs): the network is `num_blocks + 1` blocks in
input order -- block 0 = `conv1` + `conv1_bn`, block i = `conv_dw_i`, `conv_pw_i` and their BNs.
`frozen_blocks = k` runs blocks 0..k-1 as frozen layers run in Keras (`trainable = False`):
BatchNorm in inference mode (running statistics used, never updated) and no gradient flowing
into them (`stop_gradient` after block k-1; their parameters are also excluded from the
optimiser by `freeze_regex(k)`, which the configs put in `config.schedule`). k = 0: full
fine-tuning; k = num_blocks + 1: the whole backbone is fixed, only the head trains.

Output: `{'feature_map': [B, h, w, C] in the compute dtype, 'pooled': [B, C] float32 global
average}`; h = w = 7 for 224 px input with all 13 blocks.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aesthetics_jax.models import conv

# (pointwise filters at width 1, stride) for blocks 1..13.
BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)

def block_names(index: int) -> tuple[str, ...]:
    """The layer names of block `index` (0 = the stem conv, i = depthwise-separable block i)."""
    if index == 0:
        return ("conv1", "conv1_bn")
    return (f"conv_dw_{index}", f"conv_dw_{index}_bn", f"conv_pw_{index}", f"conv_pw_{index}_bn")


def freeze_regex(frozen_blocks: int, num_blocks: int = len(BLOCKS), prefix: str = "backbone/") -> str | None:
    """Regex over parameter paths selecting blocks 0..frozen_blocks-1 (None for 0 frozen blocks)."""
    if not 0 <= frozen_blocks <= num_blocks + 1:
        raise ValueError(f"frozen_blocks must be in 0..{num_blocks + 1} (stem + {num_blocks} blocks), got {frozen_blocks}")
    if frozen_blocks == 0:
        return None
    names = [n for i in range(frozen_blocks) for n in block_names(i)]
    return f"^{prefix}({'|'.join(names)})/"


BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99


class MobileNet(nn.Module):
    """MobileNet v1 feature extractor (Keras applications names; see module docstring)."""

    width: float = 1.0
    depth_multiplier: int = 1
    num_blocks: int = len(BLOCKS)
    dtype: Any = jnp.float32
    depthwise_impl: str = "auto"  # see conv.py: 'conv' | 'shifted' | 'auto'
    pointwise_impl: str = "auto"  # see conv.py: 'conv' | 'dot' | 'auto'
    frozen_blocks: int = 0  # blocks run frozen from the input (module docstring)

    def _conv(self, x, features: int, kernel: int, stride: int, padding, name: str, groups: int = 1):
        return conv.keras_conv(x, features, kernel, stride, padding, name, groups=groups, dtype=self.dtype,
                               depthwise_impl=self.depthwise_impl, pointwise_impl=self.pointwise_impl)

    def _bn_relu6(self, x, name: str, train: bool):
        x = nn.BatchNorm(
            use_running_average=not train,
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name=name,
        )(x)
        return nn.relu6(x)

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.width <= 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        if not 1 <= self.num_blocks <= len(BLOCKS):
            raise ValueError(f"num_blocks must be in 1..{len(BLOCKS)}, got {self.num_blocks}")
        if not 0 <= self.frozen_blocks <= self.num_blocks + 1:
            raise ValueError(f"frozen_blocks must be in 0..{self.num_blocks + 1}, got {self.frozen_blocks}")
        x = x.astype(self.dtype)
        x = self._conv(x, int(32 * self.width), 3, 2, "SAME", "conv1")
        x = self._bn_relu6(x, "conv1_bn", train and self.frozen_blocks <= 0)
        x = jax.lax.stop_gradient(x) if self.frozen_blocks == 1 else x
        for i, (filters, stride) in enumerate(BLOCKS[: self.num_blocks], start=1):
            block_train = train and i >= self.frozen_blocks
            channels = x.shape[-1]
            padding = "SAME" if stride == 1 else ((0, 1), (0, 1))
            x = self._conv(x, channels * self.depth_multiplier, 3, stride, padding, f"conv_dw_{i}", groups=channels)
            x = self._bn_relu6(x, f"conv_dw_{i}_bn", block_train)
            x = self._conv(x, int(filters * self.width), 1, 1, "SAME", f"conv_pw_{i}")
            x = self._bn_relu6(x, f"conv_pw_{i}_bn", block_train)
            if i == self.frozen_blocks - 1:
                x = jax.lax.stop_gradient(x)
        pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        return {"feature_map": x, "pooled": pooled}
