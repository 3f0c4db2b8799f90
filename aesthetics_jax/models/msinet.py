"""MSI-Net saliency (Kroner et al., Neural Networks 2020; alexanderkroner/saliency `model.py`) in Flax.

Data flow (NHWC; "2/2" = 2x2 window, stride 2, VALID; "2/1 same" = 2x2 window, stride 1, SAME)::

    images  [N, H, W, 3] RGB in [0, 255] (uint8 or float)
      -> float32 - [103.939, 116.779, 123.68]   Caffe's *BGR* means applied to the RGB channels, no
                                                 channel flip: exactly what the released model does
      -> conv1 (conv1_1, conv1_2: 64) -> pool 2/2 -> conv2 (128 x2) -> pool 2/2
      -> conv3 (256 x3) -> pool3 2/2 ------------------------------------------------+
      -> conv4 (512 x3) -> pool4 2/1 same -------------------------------------------+  concat
      -> conv5 (512 x3, dilation 2) -> pool5 2/1 same -------------------------------+  1280 ch
      -> aspp: conv1_1 1x1 | conv1_2 3x3 d4 | conv1_3 3x3 d8 | conv1_4 3x3 d12 |
               conv1_5 1x1 on the spatial mean, broadcast back   (each 256, ReLU) -> concat 1280
               -> conv2 1x1 256, ReLU                                 [N, H/8, W/8, 256]
      -> decoder: 3 x (legacy bilinear x2 -> 3x3 conv, ReLU) with 128, 64, 32 channels
               -> conv4 3x3 to 1 channel, no activation
      -> per image: x -= min(x); x /= max(x) + 1e-7                  [N, 8*(H//8), 8*(W//8), 1]
                                                                     float32 in [0, 1)

Every convolution is 'SAME'-padded with a bias and (except decoder/conv4) a ReLU. Sides should be
multiples of 8 (the released models were trained at 240x320 etc.); other sizes behave as the TF
graph does (VALID pooling floors, so the output is 8*(H//8) x 8*(W//8)).

The normalisation is the released `_normalize`: the max is taken *after* subtracting the min, i.e.
`(x - min) / (max - min + 1e-7)` -- SCIENCE.md's shorthand `(x - min) / (max + 1e-7)` means the max
of the shifted map.

Upsampling is TF1 `tf.image.resize_bilinear` with its defaults (align_corners=False,
half_pixel_centers=False): output pixel i samples input coordinate `i * in/out` (no half-pixel
shift), which differs from `jax.image.resize`. :func:`resize_bilinear` implements TF's kernel
exactly (float32 source coordinates, `lower = max(floor(c), 0)`, `upper = min(ceil(c), in - 1)`,
`top + (bottom - top) * y_lerp` after the same lerp along x); `half_pixel_centers=True` gives TF2's
`tf.image.resize(..., 'bilinear', antialias=False)`, which the released preprocessing uses. The ASPP
global branch resizes a 1x1 map, which both kernels reduce to a broadcast.

Parameters mirror the TF variable names: `{'conv1': {'conv1_1': {'kernel', 'bias'}}, ...,
'aspp': {'conv1_1' ... 'conv1_5', 'conv2'}, 'decoder': {'conv1' ... 'conv4'}}`, so
`flax.traverse_util.flatten_dict(params, sep='/')` yields `conv1/conv1_1/kernel` etc., kernels HWIO
as in TF. :data:`PARAM_SHAPES` lists all 46 tensors (24.9 M parameters); the converter
(`convert/msinet.py`) maps TF tensors to them 1:1.

`dtype` is the compute dtype (params stay float32; the normalisation runs in float32).

CPU forms (same results up to float summation order; 'auto' picks them on the CPU backend when
the function is traced, as `models/conv.py` does): `MSINet(conv_impl=...)` runs dilated 3x3
convolutions as :func:`dilated_conv_split` (skips rows of the kernel that only meet padding) or as
XLA's dilated convolution; :func:`make_forward` (what the map producer uses) runs the images of a
batch one by one inside one compiled program on the CPU, whose cache then holds one image's
activations. Measured in `benchmarks/msinet.py`.

Converted weights live in a directory with `msinet.safetensors` and `convert.json`
(`convert/msinet.py` writes it); :func:`load_weights` reads it back, sha256-checked, without
TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Subtracted from the RGB input as the released model does (Caffe's BGR order, applied to RGB).
MEAN = (103.939, 116.779, 123.68)
EPSILON = 1e-7
OUTPUT_STRIDE = 8
# Files of a converted-weights directory (`convert/msinet.py` writes them, `load_weights` reads them).
WEIGHTS_FILE = "msinet.safetensors"
CONV_IMPLS = ("auto", "conv", "split")
META_FILE = "convert.json"

# (scope, layer, kernel size, input channels, output channels, dilation) in graph order.
LAYERS = (
    ("conv1", "conv1_1", 3, 3, 64, 1), ("conv1", "conv1_2", 3, 64, 64, 1),
    ("conv2", "conv2_1", 3, 64, 128, 1), ("conv2", "conv2_2", 3, 128, 128, 1),
    ("conv3", "conv3_1", 3, 128, 256, 1), ("conv3", "conv3_2", 3, 256, 256, 1), ("conv3", "conv3_3", 3, 256, 256, 1),
    ("conv4", "conv4_1", 3, 256, 512, 1), ("conv4", "conv4_2", 3, 512, 512, 1), ("conv4", "conv4_3", 3, 512, 512, 1),
    ("conv5", "conv5_1", 3, 512, 512, 2), ("conv5", "conv5_2", 3, 512, 512, 2), ("conv5", "conv5_3", 3, 512, 512, 2),
    ("aspp", "conv1_1", 1, 1280, 256, 1), ("aspp", "conv1_2", 3, 1280, 256, 4), ("aspp", "conv1_3", 3, 1280, 256, 8),
    ("aspp", "conv1_4", 3, 1280, 256, 12), ("aspp", "conv1_5", 1, 1280, 256, 1), ("aspp", "conv2", 1, 1280, 256, 1),
    ("decoder", "conv1", 3, 256, 128, 1), ("decoder", "conv2", 3, 128, 64, 1), ("decoder", "conv3", 3, 64, 32, 1),
    ("decoder", "conv4", 3, 32, 1, 1),
)

# '/'-joined parameter path (= TF variable name) -> shape, in graph order.
PARAM_SHAPES: dict[str, tuple[int, ...]] = {
    f"{scope}/{layer}/{leaf}": shape
    for scope, layer, k, cin, cout, _ in LAYERS
    for leaf, shape in (("kernel", (k, k, cin, cout)), ("bias", (cout,)))
}
NUM_PARAMS = int(sum(np.prod(s) for s in PARAM_SHAPES.values()))


# ----------------------------------------------------------------------------- TF bilinear resize


def resize_weights(in_size: int, out_size: int, half_pixel_centers: bool):
    """TF's `compute_interpolation_weights` for one axis: (lower, upper, lerp) numpy arrays.

    Computed in float32 as TF does (`scale = in / out` as float; legacy `c = i * scale`,
    half-pixel `c = (i + 0.5) * scale - 0.5`)."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"resize from {in_size} to {out_size} pixels: sizes must be positive")
    scale = np.float32(in_size) / np.float32(out_size)
    i = np.arange(out_size, dtype=np.float32)
    coord = (i + np.float32(0.5)) * scale - np.float32(0.5) if half_pixel_centers else i * scale
    floor = np.floor(coord)
    lower = np.maximum(floor, 0).astype(np.int32)
    upper = np.minimum(np.ceil(coord), in_size - 1).astype(np.int32)
    lerp = (coord - floor).astype(np.float32)
    return lower, upper, lerp


def resize_bilinear(x, size: tuple[int, int], *, half_pixel_centers: bool = False):
    """TF's bilinear `ResizeBilinear` kernel on an NHWC array (numpy in -> numpy out, else jnp).

    `half_pixel_centers=False` (default) is TF1 `tf.compat.v1.image.resize_bilinear` with its
    defaults (align_corners=False); `True` is TF2 `tf.image.resize(method='bilinear',
    antialias=False)`. Integer inputs become float32; float inputs keep their dtype. numpy inputs
    give results bit-identical to TF's CPU kernel; under XLA, FMA contraction may change the last
    bits."""
    out_h, out_w = (int(s) for s in size)
    if x.ndim != 4:
        raise ValueError(f"resize_bilinear expects NHWC, got shape {tuple(x.shape)}")
    xp = np if isinstance(x, np.ndarray) else jnp
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(np.float32)
    _, in_h, in_w, _ = x.shape
    y_lo, y_hi, y_lerp = resize_weights(in_h, out_h, half_pixel_centers)
    x_lo, x_hi, x_lerp = resize_weights(in_w, out_w, half_pixel_centers)
    x_lerp = x_lerp.astype(x.dtype)[None, None, :, None]
    y_lerp = y_lerp.astype(x.dtype)[None, :, None, None]
    left, right = xp.take(x, x_lo, axis=2), xp.take(x, x_hi, axis=2)
    rows = left + (right - left) * x_lerp  # every input row, interpolated along x
    top, bottom = xp.take(rows, y_lo, axis=1), xp.take(rows, y_hi, axis=1)
    return top + (bottom - top) * y_lerp


# ----------------------------------------------------------------------------- the network


def dilated_conv_split(x, kernel, dilation: int):
    """A 'SAME' 3x3 convolution with dilation d (NHWC, HWIO, no bias) whose kernel rows (or
    columns) that only meet zero padding are skipped.

    Along the shorter spatial axis (n pixels) the kernel's outer taps sit at -d and +d: the centre
    row of the kernel is a 1x3 convolution over every row, the first only reaches output rows
    d..n-1 (reading input rows 0..n-d-1), the last output rows 0..n-d-1, and for d >= n neither
    reaches the image at all. Summing the partial convolutions is the same convolution with
    (n + 2 max(n - d, 0)) / 3n of the work (at 240x320, 30x40 maps: 0.96 for conv5's d = 2, 0.91,
    0.82, 0.73 for the ASPP's d = 4, 8, 12), at the price of three smaller convolutions, kernel
    slices and two adds. Only the order of the float sums differs. The whole MSI-Net forward at
    240x320 on the 2-core box (XLA CPU, jax 0.10.2, batch 1, best of 9, two runs): 637 / 670 ms
    with XLA's dilated convolutions, 601 / 626 ms with every dilated one split."""
    if kernel.shape[:2] != (3, 3):
        raise ValueError(f"dilated_conv_split handles 3x3 kernels, got {kernel.shape[:2]}")
    d = int(dilation)
    axis = 1 if x.shape[1] <= x.shape[2] else 2
    n = x.shape[axis]
    pads = [(0, 0), (d, d)] if axis == 1 else [(d, d), (0, 0)]

    def part(inputs, i):
        taps = jax.lax.slice_in_dim(kernel, i, i + 1, axis=axis - 1)
        return jax.lax.conv_general_dilated(inputs, taps, (1, 1), pads, rhs_dilation=(d, d),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    y = part(x, 1)
    if d < n:
        pad = [(0, 0)] * 4
        pad[axis] = (d, 0)
        y = y + jnp.pad(part(jax.lax.slice_in_dim(x, 0, n - d, axis=axis), 0), pad)
        pad[axis] = (0, d)
        y = y + jnp.pad(part(jax.lax.slice_in_dim(x, d, n, axis=axis), 2), pad)
    return y


class _Conv(nn.Module):
    """A TF `tf.layers.conv2d` (SAME, bias, optional dilation) with params `kernel` (HWIO), `bias`.

    1x1 convolutions are one [N*H*W, Cin] x [Cin, Cout] matrix product (XLA's CPU GEMM beats its
    1x1 convolution; see models/conv.py). Dilated 3x3 convolutions: `impl='split'` is
    :func:`dilated_conv_split`, `'conv'` XLA's dilated convolution, `'auto'` the split on the
    CPU backend and 'conv' elsewhere (decided when traced). The rest are XLA convolutions."""

    features: int
    kernel_size: int = 3
    dilation: int = 1
    relu: bool = True
    impl: str = "auto"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        if self.impl not in CONV_IMPLS:
            raise ValueError(f"impl must be one of {CONV_IMPLS}, got {self.impl!r}")
        k = self.kernel_size
        kernel = self.param("kernel", nn.initializers.glorot_uniform(), (k, k, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        split = self.impl == "split" or (self.impl == "auto" and jax.default_backend() == "cpu")
        if k == 1:
            y = jnp.dot(x.reshape(-1, x.shape[-1]), kernel[0, 0]).reshape(*x.shape[:-1], self.features)
        elif self.dilation > 1 and split:
            y = dilated_conv_split(x, kernel, self.dilation)
        else:
            y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", rhs_dilation=(self.dilation, self.dilation),
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
        y = y + bias
        return nn.relu(y) if self.relu else y


class _Stack(nn.Module):
    """A VGG block scope (`conv1` ... `conv5`): its convs applied in order, no pooling."""

    layers: tuple  # ((name, features, dilation), ...)
    impl: str = "auto"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        for name, features, dilation in self.layers:
            x = _Conv(features, 3, dilation, impl=self.impl, dtype=self.dtype, name=name)(x)
        return x


class _ASPP(nn.Module):
    """Scope `aspp`: four parallel convs, the global-context branch, the 1x1 fusion `conv2`."""

    impl: str = "auto"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features):
        conv = lambda name, f, k, d: _Conv(f, k, d, impl=self.impl, dtype=self.dtype, name=name)  # noqa: E731
        branches = [conv("conv1_1", 256, 1, 1)(features), conv("conv1_2", 256, 3, 4)(features),
                    conv("conv1_3", 256, 3, 8)(features), conv("conv1_4", 256, 3, 12)(features)]
        context = jnp.mean(features.astype(jnp.float32), axis=(1, 2), keepdims=True).astype(self.dtype)
        context = conv("conv1_5", 256, 1, 1)(context)
        branches.append(jnp.broadcast_to(context, branches[0].shape))  # TF resizes the 1x1 map: a broadcast
        return conv("conv2", 256, 1, 1)(jnp.concatenate(branches, axis=-1))


class _Decoder(nn.Module):
    """Scope `decoder`: 3 x (legacy bilinear x2 -> 3x3 conv + ReLU), then `conv4` to one channel."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        for name, features in (("conv1", 128), ("conv2", 64), ("conv3", 32)):
            x = _Conv(features, 3, dtype=self.dtype, name=name)(resize_bilinear(x, (2 * x.shape[1], 2 * x.shape[2])))
        return _Conv(1, 3, relu=False, dtype=self.dtype, name="conv4")(x)


# scope -> (its convs (name, features, dilation), pooling stride, pooling padding)
_ENCODER = tuple(
    (scope, tuple((layer, cout, d) for s, layer, _, _, cout, d in LAYERS if s == scope), stride, padding)
    for scope, stride, padding in (("conv1", 2, "VALID"), ("conv2", 2, "VALID"), ("conv3", 2, "VALID"),
                                   ("conv4", 1, "SAME"), ("conv5", 1, "SAME"))
)


class MSINet(nn.Module):
    """MSI-Net; see the module docstring. `__call__(images)` -> float32 [N, H', W', 1] in [0, 1).

    `conv_impl` ('auto' | 'conv' | 'split') chooses how dilated convolutions run (see `_Conv`)."""

    dtype: Any = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, images):
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"MSINet expects RGB images [N, H, W, 3], got shape {tuple(images.shape)}")
        if images.shape[1] < OUTPUT_STRIDE or images.shape[2] < OUTPUT_STRIDE:
            raise ValueError(f"MSINet needs sides of at least {OUTPUT_STRIDE} px, got {tuple(images.shape[1:3])}")
        x = (images.astype(jnp.float32) - jnp.asarray(MEAN, jnp.float32)).astype(self.dtype)
        pools = []
        for scope, layers, stride, padding in _ENCODER:
            x = _Stack(layers, impl=self.conv_impl, dtype=self.dtype, name=scope)(x)
            x = nn.max_pool(x, window_shape=(2, 2), strides=(stride, stride), padding=padding)
            pools.append(x)
        features = jnp.concatenate(pools[2:], axis=-1)  # pool3, pool4, pool5: 1280 channels
        x = _ASPP(impl=self.conv_impl, dtype=self.dtype, name="aspp")(features)
        x = _Decoder(dtype=self.dtype, name="decoder")(x).astype(jnp.float32)
        x = x - jnp.min(x, axis=(1, 2, 3), keepdims=True)
        return x / (EPSILON + jnp.max(x, axis=(1, 2, 3), keepdims=True))


def make_forward(dtype: Any = jnp.float32, per_image: bool | str = "auto", conv_impl: str = "auto"):
    """A jitted `forward(params, images) -> [N, H', W', 1]` running :class:`MSINet`.

    `per_image=True` runs the images of a batch one after another (`lax.map`) inside the one
    compiled program: on the CPU the activations of one 240x320 image (<= 20 MB per layer) stay
    in the cache, those of 8 (157 MB) do not, and per-image is faster (benchmarks/msinet.py).
    `'auto'` (default) = per image on the CPU backend, one batched program elsewhere (accelerators
    want the batch), decided when the function is traced. Results are the same either way (the
    normalisation is per image). `conv_impl`: see :class:`MSINet`."""
    if per_image not in (True, False, "auto"):
        raise ValueError(f"per_image must be True, False or 'auto', got {per_image!r}")
    model = MSINet(dtype=dtype, conv_impl=conv_impl)

    def batched(params, images):
        return model.apply({"params": params}, images)

    def forward(params, images):
        loop = jax.default_backend() == "cpu" if per_image == "auto" else per_image
        if loop and images.shape[0] > 1:
            return jax.lax.map(lambda image: batched(params, image[None])[0], images)
        return batched(params, images)

    return jax.jit(forward)


def load_weights(path: str) -> tuple[dict, dict]:
    """`(params, meta)` from a directory written by `convert.msinet.convert` (or its
    `msinet.safetensors`, with `convert.json` beside it), without TensorFlow.

    The safetensors file's sha256 must equal `meta['weights']['sha256']`, and its tensors must be
    exactly :data:`PARAM_SHAPES` (float32); otherwise ValueError. `params` are nested numpy arrays."""
    from safetensors.numpy import load_file

    directory = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    weights, meta_path = os.path.join(directory, WEIGHTS_FILE), os.path.join(directory, META_FILE)
    for f in (weights, meta_path):
        if not os.path.isfile(f):
            raise FileNotFoundError(f"{f}: missing; convert MSI-Net weights first "
                                    "(aesthetics-jax convert --from msi-net SRC --out DIR)")
    with open(meta_path) as f:
        meta = json.load(f)
    expected = meta.get("weights", {}).get("sha256")
    digest = hashlib.sha256()
    with open(weights, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if expected != digest.hexdigest():
        raise ValueError(f"{weights}: sha256 {digest.hexdigest()} differs from {expected} recorded in {meta_path}: "
                         "the file was modified or belongs to another conversion")
    flat = load_file(weights)
    errors = [f"missing {k!r}" for k in PARAM_SHAPES if k not in flat]
    errors += [f"unexpected {k!r}" for k in flat if k not in PARAM_SHAPES]
    errors += [f"{k!r} is {flat[k].dtype}{list(flat[k].shape)}, expected float32{list(s)}"
               for k, s in PARAM_SHAPES.items() if k in flat and (flat[k].shape != s or flat[k].dtype != np.float32)]
    if errors:
        raise ValueError(f"{weights}: not MSI-Net weights: " + "; ".join(errors))
    params: dict = {}
    for key in PARAM_SHAPES:
        node = params
        *scopes, leaf = key.split("/")
        for s in scopes:
            node = node.setdefault(s, {})
        node[leaf] = flat[key]
    return params, meta
