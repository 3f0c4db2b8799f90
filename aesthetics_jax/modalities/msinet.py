"""MSI-Net saliency maps: images -> float32 maps in [0, 1], used as the released model is used.

    producer = MSINetSaliency("weights/msinet")     # a directory written by
                                                    # `aesthetics-jax convert --from msi-net SRC --out DIR`
    maps = producer(images)                         # [N, H, W, 3] RGB 0..255 -> [N, H, W] float32
    producer.metadata()                             # {'name': 'msinet', 'params': {weights, batch_size,
                                                    #  dtype}, 'weights_sha256', 'source', 'preprocessing'}
    modalities.create("msinet", weights="weights/msinet")   # the same, through the registry

Per image (the released hub model's documented use, SCIENCE.md §1/§2; all images of one call share
H x W, so they share the geometry below and run as one batch):

  1. target size: of (320, 320), (240, 320), (320, 240) (H, W; the SALICON training shapes) the one
     whose aspect ratio H/W is closest to the image's, the first of that order on a tie;
  2. aspect-preserving resize: `scale = min(th / H, tw / W)` and new sides `round(scale * side)`,
     computed in float32 with round-half-to-even as `tf.image.resize(..., preserve_aspect_ratio=True)`
     does, then TF2 bilinear (half-pixel centres, no antialiasing) in float32 -- raw 0..255 values,
     no other normalisation (the model subtracts its own mean);
  3. zero padding to the target, `pad // 2` before and the rest after, on each axis;
  4. `models.msinet.MSINet` (`make_forward`: jitted, images one by one on the CPU; params from
     `models.msinet.load_weights`, sha256-checked);
  5. the padding cropped off, the map resized back to H x W with the same TF2 bilinear kernel,
     clipped to [0, 1] (the model's per-image normalisation already maps into [0, 1)).

Float pixels are made finite and clipped to [0, 255] first (NaN -> 0; decoded images are
unchanged). A flat image still gets a structured map (the zero padding and the network's borders
shape it); only a decoder output constant over the whole padded input gives all zeros. Maps are
always finite (the normalisation divides by max + 1e-7).

The model runs in chunks of `batch_size` images; a last, smaller chunk is padded up to a power of
two so that at most log2(batch_size) + 1 shapes per target size get compiled. Pre- and
post-processing are numpy (no compilation per input size). Producers of one dtype share one
jitted forward, hence its compiled programs. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from aesthetics_jax.models import msinet as msinet_model

NAME = "msinet"
# (H, W) in the order the reference code compares them (ties go to the first).
TARGET_SIZES = ((320, 320), (240, 320), (320, 240))


def target_size(height: int, width: int) -> tuple[int, int]:
    """The (H, W) of `TARGET_SIZES` whose aspect ratio H/W is closest to `height / width`."""
    aspect = height / width
    return min(TARGET_SIZES, key=lambda s: abs(aspect - s[0] / s[1]))


def fit_geometry(height: int, width: int, target: tuple[int, int]):
    """`((new_h, new_w), (top, bottom), (left, right))`: the aspect-preserving resize of
    `tf.image.resize(preserve_aspect_ratio=True)` (float32 scale, round half to even) and the
    zero padding that centres it in `target`."""
    th, tw = target
    scale = min(np.float32(th) / np.float32(height), np.float32(tw) / np.float32(width))
    new_h = int(np.round(np.float32(scale) * np.float32(height)))
    new_w = int(np.round(np.float32(scale) * np.float32(width)))
    pad_h, pad_w = th - new_h, tw - new_w
    return (new_h, new_w), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)


@functools.lru_cache(maxsize=None)
def _forward(dtype: str):
    """One jitted forward per compute dtype, shared by all producers (and their compiled shapes)."""
    return msinet_model.make_forward(jnp.dtype(dtype))


def _chunk_size(n: int, batch_size: int) -> int:
    size = 1
    while size < n:
        size *= 2
    return min(size, batch_size)


class MSINetSaliency:
    """MSI-Net map producer; see the module docstring.

    Args:
      weights: a directory written by `convert.msinet.convert` (or its `msinet.safetensors`).
      batch_size: images per model call.
      dtype: compute dtype of the network ('float32'; 'bfloat16' on accelerators).
    """

    name = NAME

    def __init__(self, weights: str, *, batch_size: int = 8, dtype: Any = "float32"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        params, meta = msinet_model.load_weights(weights)
        self.weights = os.path.abspath(weights)
        self.batch_size = int(batch_size)
        self.dtype = jnp.dtype(dtype)
        self._meta = meta
        self._params = jax.device_put(params)
        self._forward = _forward(self.dtype.name)

    def __call__(self, images) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{self.name}: expected images [N, H, W, 3] (RGB 0..255), got shape {images.shape}")
        n, height, width, _ = images.shape
        if n == 0 or height == 0 or width == 0:
            raise ValueError(f"{self.name}: empty image batch {images.shape}")
        target = target_size(height, width)
        (new_h, new_w), (top, bottom), (left, right) = fit_geometry(height, width, target)
        # finite pixels in [0, 255] (a no-op for decoded images; NaN -> 0 as spectral.py does)
        x = np.clip(np.nan_to_num(images.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0), 0.0, 255.0)
        if (new_h, new_w) != (height, width):
            x = msinet_model.resize_bilinear(x, (new_h, new_w), half_pixel_centers=True)
        x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
        maps = np.empty((n, *target), np.float32)
        for start in range(0, n, self.batch_size):
            chunk = x[start:start + self.batch_size]
            size = _chunk_size(len(chunk), self.batch_size)
            if len(chunk) < size:
                chunk = np.concatenate([chunk, np.zeros((size - len(chunk), *chunk.shape[1:]), np.float32)])
            maps[start:start + self.batch_size] = np.asarray(self._forward(self._params, chunk))[: n - start, ..., 0]
        maps = maps[:, top:target[0] - bottom, left:target[1] - right, None]
        maps = msinet_model.resize_bilinear(maps, (height, width), half_pixel_centers=True)[..., 0]
        return np.clip(maps, 0.0, 1.0).astype(np.float32)

    def metadata(self) -> dict:
        """`params` are the keyword arguments that rebuild this producer (`modalities.create('msinet',
        **params)`); `source` traces the weights to the released file they were converted from."""
        return {
            "name": self.name,
            "params": {"weights": self.weights, "batch_size": self.batch_size, "dtype": self.dtype.name},
            "weights_sha256": self._meta["weights"]["sha256"],
            "source": {"format": self._meta.get("format"), "sha256": self._meta.get("source", {}).get("sha256")},
            "preprocessing": {"target_sizes": [list(s) for s in TARGET_SIZES],
                              "resize": "TF2 bilinear, half-pixel centres, no antialiasing; aspect kept, zero padding"},
        }

    def __repr__(self) -> str:
        return f"MSINetSaliency(weights={self.weights!r}, batch_size={self.batch_size}, dtype={self.dtype.name!r})"
