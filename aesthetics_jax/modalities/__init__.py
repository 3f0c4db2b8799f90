"""Map producers: a batch of images -> single-channel float maps in [0, 1], registered by name.

    producer = modalities.create('spectral')                  # or create('spectral', variant='hou2007')
    maps = producer(images)         # [N, H, W, 3] RGB in [0, 255] (uint8 or float) -> float32 [N, H, W]
    maps = modalities.compute_maps(producer, [img_a, img_b, img_c])   # mixed sizes, input order kept
    producer.metadata()             # {"name": ..., "params": {...}[, "weights_sha256": ...]}

The contract (`MapProducer`, a structural protocol: no base class to inherit):

  name        the registry name.
  __call__    images [N, H, W, 3], RGB pixels in [0, 255], uint8 or float -> float32 [N, H, W] maps
              in [0, 1] at the input resolution, finite for every input (a flat image included:
              each producer documents what it returns for one). Returns a numpy array or a
              jax.Array; callers that need numpy wrap it in `np.asarray`.
  metadata()  a JSON-serialisable dict with at least "name" and "params" (the keyword arguments
              that `create(name, **params)` needs to rebuild the producer) and, for producers with
              weights, "weights_sha256" of the weight file; it is written into the metadata of
              datasets built from the maps, so a map can always be traced to what made it.

A producer need not be traceable by JAX (depth or blur producers may wrap torch or OpenCV code);
producers written in JAX also expose their pure, jit-able batched function (e.g.
`spectral.spectral_saliency`) for use inside larger jitted programs. Sanitising hostile files
(truncated, huge, CMYK, 16-bit ...) is the image-reading layer's job (`data.image_io`): a producer
receives decoded RGB pixels.

`compute_maps(producer, images, batch_size, max_batch_bytes)` handles lists of differently sized
images: it groups them by (shape, dtype), calls the producer on each group in batches of at most
`batch_size` images and `max_batch_bytes` of maps (a jitted producer compiles once per distinct
(batch, image) shape), checks each result's shape, and returns float32 numpy maps in input order.
Batches are stacked into 64-byte aligned arrays (`aligned_empty`), which JAX's CPU backend takes
without a copy.

Registry: `PRODUCERS` maps a name to (module, factory); the module is imported only when `create`
asks for that name (no import-time registration), as `cli.COMMANDS` does. One file per kind:

  spectral   spectral-residual saliency, training-free, no weights (the default saliency)
  msinet     MSI-Net saliency (Kroner et al. 2020) with converted SALICON weights
  blur       blur / defocus map (Zhuo & Sim 2011 re-blur gradient ratio, dense), training-free; 1 = sharp
  depth      monocular relative depth from a local Depth Anything V2 / DPT checkpoint (torch); 1 = nearest

Files and builds: `modalities/files.py` (`compute_map_files`, behind `aesthetics-jax maps` =
`modalities/commands.py` and `data_prep/maps.py`) reads image files with the builders' checked
reader `data.image_io.read_image` and builds through `data.pipeline.make_source`, and writes maps
as PNGs with an index and a skip report.

Imports run one way: this package may import numpy, jax, cv2, `aesthetics_jax.models` and
`aesthetics_jax.data` (files.py: image reading and build sources), never train / export / predict /
evaluate; `data/builders/eva_patches.py` imports `modalities` lazily inside its build (a builder that
computes maps), never at module level.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

import numpy as np

PRODUCERS: dict[str, tuple[str, str]] = {
    "spectral": ("aesthetics_jax.modalities.spectral", "SpectralSaliency"),
    "msinet": ("aesthetics_jax.modalities.msinet", "MSINetSaliency"),
    "blur": ("aesthetics_jax.modalities.blur", "BlurMap"),
    "depth": ("aesthetics_jax.modalities.depth", "DepthMap"),
}

DEFAULT_SALIENCY = "spectral"

# compute_maps keeps one call's float32 maps within this many bytes: on the CPU backend, XLA's
# result buffers are fresh memory and glibc serves blocks above 32 MB by mmap, so larger results
# page-fault on every call (measured: spectral saliency of 128 photos of 500x375, 96 MB of maps,
# runs at half the per-image speed of batches of 32).
MAX_BATCH_BYTES = 24 * 2**20


@runtime_checkable
class MapProducer(Protocol):
    """images [N, H, W, 3] in [0, 255] -> float32 maps [N, H, W] in [0, 1] (see the module docstring)."""

    name: str

    def __call__(self, images: Any) -> Any: ...

    def metadata(self) -> dict: ...


def create(name: str, **params) -> MapProducer:
    """The producer registered as `name`, built with `params` (its module is imported now)."""
    if name not in PRODUCERS:
        raise ValueError(f"unknown map producer {name!r}; known: {', '.join(sorted(PRODUCERS))}")
    module_name, factory = PRODUCERS[name]
    return getattr(importlib.import_module(module_name), factory)(**params)


def aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised C-contiguous array starting at a 64-byte boundary.

    JAX's CPU client wraps such a numpy buffer without copying; any other buffer is copied on the
    way in, slowly (measured ~10x a memcpy: 0.5 ms for one 500x375 RGB photo, about twice the
    spectral saliency itself). `compute_maps` stacks its batches into these.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buffer = np.empty(nbytes + 64, np.uint8)
    start = -buffer.ctypes.data % 64
    return buffer[start:start + nbytes].view(dtype).reshape(shape)


def stage_images(images):
    """A producer's input as it should reach jit: a jax.Array or a 64-byte aligned, C-contiguous numpy
    array, uint8 kept, anything else float32 (`aligned_empty` says why the alignment matters)."""
    import jax  # pylint: disable=g-import-not-at-top

    if isinstance(images, jax.Array):
        return images if images.dtype == np.uint8 else images.astype(np.float32)
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = images.astype(np.float32)
    if images.ctypes.data % 64 or not images.flags.c_contiguous:
        aligned = aligned_empty(images.shape, images.dtype)
        aligned[...] = images
        images = aligned
    return images


def compute_maps(producer: MapProducer, images: list[np.ndarray], batch_size: int = 32,
                 max_batch_bytes: int = MAX_BATCH_BYTES) -> list[np.ndarray]:
    """Maps of differently sized images [H_i, W_i, 3], in input order: float32 [H_i, W_i] each.

    Images of one (shape, dtype) are stacked and passed to `producer` in batches of at most
    `batch_size` images, fewer where their float32 maps would exceed `max_batch_bytes` (at least
    one image per batch); a result whose shape is not [n, H, W] is an error naming the producer.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    images = [np.asarray(image) for image in images]
    groups: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        if image.ndim != 3:
            raise ValueError(f"image {i} has shape {image.shape}; expected [H, W, C]")
        groups.setdefault((image.shape, image.dtype.str), []).append(i)
    maps: list[np.ndarray | None] = [None] * len(images)
    for (shape, _), members in groups.items():
        size = max(1, min(batch_size, max_batch_bytes // (4 * shape[0] * shape[1])))
        for start in range(0, len(members), size):
            chunk = members[start:start + size]
            batch = aligned_empty((len(chunk), *shape), images[chunk[0]].dtype)
            np.stack([images[i] for i in chunk], out=batch)
            result = np.asarray(producer(batch), dtype=np.float32)
            if result.shape != (len(chunk), *shape[:2]):
                raise ValueError(f"map producer {getattr(producer, 'name', producer)!r} returned shape "
                                 f"{result.shape} for a batch of shape {batch.shape}")
            for i, m in zip(chunk, result):
                maps[i] = m
    return maps
