"""Convolutions with CPU-fast formulations, parameter-compatible with `nn.Conv`, and the Keras-style
conv the MobileNets build from.

`DepthwiseConv(features=C*m, kernel_size=(kh, kw), strides, padding)` computes exactly what
`nn.Conv(features, kernel_size, strides, padding, feature_group_count=C, use_bias=False)` computes,
and `PointwiseConv(features)` what `nn.Conv(features, (1, 1), use_bias=False)` computes; both store
the same parameter (`kernel`: [kh, kw, 1, C*m] with output channel c*m + j reading input channel c;
[1, 1, C, D]), so checkpoints and the Keras / torchvision converters see no difference.

Why: XLA's CPU backend lowers a grouped convolution with one channel per group to a slow generic
loop, and a 1x1 convolution to its generic convolution path rather than its tuned GEMM. Measured on
the 2-core CI box (jax 0.10.2, batch 32, float32):
  depthwise 3x3, forward / gradient: 56x56x16 47.8 / 115 ms as a grouped conv vs 2.0 / 31 ms as a
  sum of shifted products; 28x28x64 40.8 / 129 ms vs 1.3 / 50 ms (`benchmarks/depthwise.py`). The
  shifted form is kh*kw strided slices of the padded input, each multiplied by one kernel tap and
  summed; XLA fuses it into one elementwise loop.
  1x1, forward: 112x112, 32->64 channels 82 ms vs 31 ms as a [B*H*W, C] x [C, D] matrix product;
  56x56, 128->128 78 ms vs 28 ms; 7x7, 1024->1024 18 ms vs 12 ms.

`impl` of each layer: 'conv' (XLA's convolution, best on GPU/TPU, where cuDNN and the TPU compiler
have depthwise kernels and lower 1x1 convolutions to GEMMs), the CPU form ('shifted' / 'dot'), or
'auto' = the CPU form on the CPU backend and 'conv' elsewhere, decided when the function is traced.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Padding = str | Sequence[tuple[int, int]]
DEPTHWISE_IMPLS = ("auto", "conv", "shifted")
POINTWISE_IMPLS = ("auto", "conv", "dot")
KERAS_KERNEL_INIT = nn.initializers.glorot_uniform()


def _explicit_padding(padding: Padding, size: Sequence[int], kernel: Sequence[int], strides: Sequence[int]):
    """TensorFlow/Flax padding semantics as explicit (before, after) pairs per spatial axis."""
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return [(0, 0)] * len(size)
        if mode != "SAME":
            raise ValueError(f"padding must be 'SAME', 'VALID' or explicit pairs, got {padding!r}")
        pairs = []
        for n, k, s in zip(size, kernel, strides):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pairs.append((total // 2, total - total // 2))
        return pairs
    return [tuple(int(v) for v in pair) for pair in padding]


def depthwise_shifted(x: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: Padding) -> jax.Array:
    """Depthwise conv of NHWC `x` with a [kh, kw, 1, C*m] kernel as a sum of shifted products."""
    kh, kw, _, out_channels = kernel.shape
    channels = x.shape[-1]
    if out_channels % channels:
        raise ValueError(f"kernel has {out_channels} outputs, not a multiple of the {channels} input channels")
    multiplier = out_channels // channels
    if multiplier > 1:
        x = jnp.repeat(x, multiplier, axis=-1)  # output channel c*m + j reads input channel c
    (pt, pb), (pl, pr) = _explicit_padding(padding, x.shape[1:3], (kh, kw), strides)
    x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    sh, sw = strides
    out_h = (x.shape[1] - kh) // sh + 1
    out_w = (x.shape[2] - kw) // sw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"input {x.shape[1:3]} (padded) is smaller than the {kh}x{kw} kernel")
    out = None
    for i in range(kh):
        for j in range(kw):
            tap = lax.slice(x, (0, i, j, 0), (x.shape[0], i + (out_h - 1) * sh + 1, j + (out_w - 1) * sw + 1, out_channels),
                            (1, sh, sw, 1))
            term = tap * kernel[i, j, 0]
            out = term if out is None else out + term
    return out


def _kernel_and_impl(module, x, kernel_shape, impls: tuple[str, ...], cpu_form: str):
    """Declares `kernel`, promotes (x, kernel) to the compute dtype, resolves 'auto'."""
    if module.impl not in impls:
        raise ValueError(f"impl must be one of {impls}, got {module.impl!r}")
    kernel = module.param("kernel", module.kernel_init, kernel_shape, module.param_dtype)
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=module.dtype)
    impl = module.impl
    if impl == "auto":
        impl = cpu_form if jax.default_backend() == "cpu" else "conv"
    return x, kernel, impl


class DepthwiseConv(nn.Module):
    """Bias-free depthwise convolution; see the module docstring."""

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    padding: Padding = "SAME"
    impl: str = "auto"
    kernel_init: Any = KERAS_KERNEL_INIT
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        x, kernel, impl = _kernel_and_impl(self, x, (*self.kernel_size, 1, self.features), DEPTHWISE_IMPLS, "shifted")
        if impl == "shifted":
            return depthwise_shifted(x, kernel, self.strides, self.padding)
        padding = self.padding if isinstance(self.padding, str) else [tuple(p) for p in self.padding]
        return lax.conv_general_dilated(x, kernel, tuple(self.strides), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels)


class PointwiseConv(nn.Module):
    """Bias-free 1x1, stride-1 convolution over NHWC inputs; see the module docstring."""

    features: int
    impl: str = "auto"
    kernel_init: Any = KERAS_KERNEL_INIT
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        x, kernel, impl = _kernel_and_impl(self, x, (1, 1, x.shape[-1], self.features), POINTWISE_IMPLS, "dot")
        if impl == "dot":
            out = jnp.dot(x.reshape(-1, x.shape[-1]), kernel[0, 0])
            return out.reshape(*x.shape[:-1], self.features)
        return lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def keras_conv(x, features: int, kernel: int, stride: int, padding: Padding, name: str, *, groups: int = 1,
               dtype: Any = jnp.float32, depthwise_impl: str = "auto", pointwise_impl: str = "auto"):
    """A Keras applications conv layer (no bias, glorot-uniform kernel, float32 params) named `name`.

    Call it from a Flax module's compact method: the layer becomes that module's child. 1x1 stride-1
    convolutions are `PointwiseConv`, depthwise ones (`groups` == input channels) `DepthwiseConv`,
    the rest `nn.Conv`; all store the same `kernel` parameter.
    """
    if kernel == 1 and stride == 1 and groups == 1:
        return PointwiseConv(features, impl=pointwise_impl, dtype=dtype, name=name)(x)
    if groups > 1:
        return DepthwiseConv(features, (kernel, kernel), strides=(stride, stride), padding=padding,
                             impl=depthwise_impl, dtype=dtype, name=name)(x)
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=padding, use_bias=False,
                   kernel_init=KERAS_KERNEL_INIT, dtype=dtype, param_dtype=jnp.float32, name=name)(x)
