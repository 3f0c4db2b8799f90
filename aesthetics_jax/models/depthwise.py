"""Depthwise 2-D convolution with a CPU-fast formulation, parameter-compatible with `nn.Conv`.

`DepthwiseConv(features=C*m, kernel_size=(kh, kw), strides, padding)` computes exactly what
`nn.Conv(features, kernel_size, strides, padding, feature_group_count=C, use_bias=False)` computes
and stores the same parameter (`kernel`, shape [kh, kw, 1, C*m], output channel c*m + j reads input
channel c), so checkpoints and the Keras / torchvision converters do not see a difference.

Why: XLA's CPU backend lowers a grouped convolution with one channel per group to a slow generic
loop. Measured on the 2-core CI box (jax 0.10.2, batch 32, 3x3, float32; forward / gradient):
56x56x16 47.8 / 115 ms as a grouped conv vs 2.0 / 31 ms as a sum of shifted products; 28x28x64
40.8 / 129 ms vs 1.3 / 50 ms (`benchmarks/depthwise.py`). The shifted form is kh*kw strided
slices of the padded input, each multiplied by one kernel tap and summed; XLA fuses it into one
elementwise loop.

`impl`: 'conv' (grouped `lax.conv_general_dilated`, best on GPU/TPU where cuDNN and the TPU
compiler have depthwise kernels), 'shifted', or 'auto' = 'shifted' on the CPU backend and 'conv'
elsewhere, decided when the function is traced.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Padding = str | Sequence[tuple[int, int]]
IMPLS = ("auto", "conv", "shifted")


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


class DepthwiseConv(nn.Module):
    """Bias-free depthwise convolution; see the module docstring."""

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    padding: Padding = "SAME"
    impl: str = "auto"
    kernel_init: Any = nn.initializers.glorot_uniform()
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        if self.impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {self.impl!r}")
        channels = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (*self.kernel_size, 1, self.features), self.param_dtype)
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        impl = self.impl
        if impl == "auto":
            impl = "shifted" if jax.default_backend() == "cpu" else "conv"
        if impl == "shifted":
            return depthwise_shifted(x, kernel, self.strides, self.padding)
        padding = self.padding if isinstance(self.padding, str) else [tuple(p) for p in self.padding]
        return lax.conv_general_dilated(x, kernel, tuple(self.strides), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels)
