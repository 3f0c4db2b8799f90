"""Saliency-guided patches: exact `size` x `size` windows centred on salient pixels (numpy + OpenCV).

    rng = patch_rng(seed, parent_id)                       # one generator per image, stable
    result = extract_patches(pixels, saliency, rng=rng)    # uint8 [H, W, 3], float [H, W] in [0, 1]
    result.patches[k].pixels                               # uint8 [299, 299, 3]

The algorithm, for one image (pixels uint8 [H, W, 3] and its saliency map [H, W] in [0, 1]):

1. Upscaling. An image with a side shorter than `size` (299) is enlarged, aspect kept, so that its
   shorter side is exactly `size`: the longer side becomes max(size, round(long * size / short)).
   Pixels use cv2.INTER_CUBIC (saturated to uint8), the map cv2.INTER_LINEAR (convex weights: it
   stays in [0, 1]). Larger images are never resized. All later steps work on this *working image*.
2. Salient region. `threshold='continuous'` (default): salient = map >= 1 - top_focus.
   `threshold='seed'`: floor(256 * map) (at most 255) > int(255 * (1 - top_focus)), the seed's
   chain (MSI-Net map -> matplotlib's 256-entry grey LUT -> x 255 -> uint8 -> cv2.threshold
   THRESH_BINARY, which keeps values strictly above the threshold) on a [0, 1] map. The two rules
   agree exactly at top_focus 0.25, 0.5 and 0.75 and differ by less than 1/256 elsewhere (matplotlib's
   LUT also drops one grey level at 24 of its 256 entries through float rounding; none of them is
   at the default threshold, and that quirk is not reproduced). For a map stored as an 8-bit PNG
   (values v / 255), 'continuous' at top_focus 0.5 is v >= 128, the seed's v > 127.
   Fallback: when no pixel passes, the region is the map's top-k pixels: every pixel whose value is
   >= the k-th largest value, k = min(fallback_top_k, H * W) (ties included, so a flat map makes
   every pixel eligible rather than favouring a corner). The result says `fallback=True`. Never
   an exception.
3. Centres, `num_patches` of them, drawn independently (with replacement) from the region:
   'component_then_pixel' (the seed's): 8-connected components of the region
   (cv2.connectedComponents, the seed's connectivity), one chosen uniformly, then one of its pixels
   uniformly -- small components are as likely as large ones; 'uniform': one pixel uniformly over
   all region pixels -- components weighted by area. Draw order per patch: component, then pixel
   (two `rng.integers` calls); pixels of a component are taken in raster order.
4. Windows. The window of centre (cy, cx) is rows [top, top + size), columns [left, left + size)
   with top = clip(cy - size // 2, 0, H - size), left likewise: centred on the centre when that
   fits, otherwise shifted inward, never clipped -- every patch is exactly size x size.
5. Statistics per patch, on the working image's region mask R (threshold or fallback) and map S:
   coverage = |R inside the window| / |R|    (the share of the image's salient pixels it holds)
   salient_fraction = |R inside the window| / size^2   (how much of the patch is salient)
   saliency_mass = sum of S inside the window / sum of S (0 for an all-zero map)
6. Seeding. `patch_rng(seed, key)` = numpy Generator (PCG64) seeded with the first 128 bits of
   sha256(f"aesthetics_jax.patches:{seed}:{key}") -- stable across processes and machines (never
   Python's salted `hash()`), independent of the order images are processed in, and different
   for every image. Same seed and inputs -> the same centres (numpy's Generator streams are stable
   within a numpy version).

Differences from the seed (Aesthetics-XAI `extract_saliency_patches.py`): its 299 window is
clipped at the borders (half size 149: at most 298 x 298, smaller near an edge, and smaller images
give smaller patches) -- here windows shift inward and small images are upscaled, so every patch
is exactly size x size; its `random` is unseeded -- here every image has its own seeded generator;
it raises ValueError when no pixel passes the threshold -- here the top-k fallback; it thresholds
the 8-bit grey map (see step 2 for the exact relation).
"""

from __future__ import annotations

import dataclasses
import hashlib

import cv2
import numpy as np

__all__ = ["PATCH_SIZE", "SAMPLINGS", "THRESHOLDS", "Patch", "PatchSet", "patch_rng", "working_shape", "upscale",
           "salient_region", "components", "sample_centres", "window", "extract_patches"]

PATCH_SIZE = 299
SAMPLINGS = ("component_then_pixel", "uniform")
THRESHOLDS = ("continuous", "seed")
DEFAULT_FALLBACK_TOP_K = 1000


def patch_rng(seed: int, key) -> np.random.Generator:
    """The generator for the image `key` (e.g. its id) under `seed` (see step 6 of the docstring)."""
    digest = hashlib.sha256(f"aesthetics_jax.patches:{int(seed)}:{key}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def working_shape(height: int, width: int, size: int = PATCH_SIZE) -> tuple[int, int]:
    """(H, W) of the working image: unchanged when both sides are >= size, else the shorter side -> size."""
    if height <= 0 or width <= 0:
        raise ValueError(f"empty image {height}x{width}")
    if min(height, width) >= size:
        return height, width
    if height <= width:
        return size, max(size, int(round(width * size / height)))
    return max(size, int(round(height * size / width))), size


def upscale(pixels: np.ndarray, saliency: np.ndarray, size: int = PATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (INTER_CUBIC) and map (INTER_LINEAR) at the working size (unchanged if already large enough)."""
    height, width = pixels.shape[:2]
    target = working_shape(height, width, size)
    if target == (height, width):
        return pixels, saliency
    dsize = (target[1], target[0])
    return (cv2.resize(pixels, dsize, interpolation=cv2.INTER_CUBIC),
            cv2.resize(np.ascontiguousarray(saliency, dtype=np.float32), dsize, interpolation=cv2.INTER_LINEAR))


def salient_region(saliency: np.ndarray, top_focus: float = 0.5, *, threshold: str = "continuous",
                   fallback_top_k: int = DEFAULT_FALLBACK_TOP_K) -> tuple[np.ndarray, bool]:
    """(bool mask of the salient region, whether the top-k fallback was used); step 2 of the docstring."""
    if not 0 < top_focus <= 1:
        raise ValueError(f"top_focus must be in (0, 1], got {top_focus}")
    if threshold not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {THRESHOLDS}, got {threshold!r}")
    if fallback_top_k < 1:
        raise ValueError(f"fallback_top_k must be >= 1, got {fallback_top_k}")
    saliency = np.asarray(saliency, dtype=np.float32)
    if saliency.ndim != 2 or saliency.size == 0:
        raise ValueError(f"saliency map must be a non-empty [H, W] array, got shape {saliency.shape}")
    if not np.isfinite(saliency).all():
        raise ValueError("saliency map has non-finite values")
    if threshold == "continuous":
        mask = saliency >= np.float32(1.0 - top_focus)
    else:
        levels = np.minimum(np.floor(saliency * 256.0), 255.0)
        mask = levels > int(255 * (1 - top_focus))
    if mask.any():
        return mask, False
    k = min(int(fallback_top_k), saliency.size)
    kth = np.partition(saliency.ravel(), saliency.size - k)[saliency.size - k]
    return saliency >= kth, True


def components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """(number of labels incl. background 0, int32 labels) of the 8-connected components of `mask`."""
    return cv2.connectedComponents(np.ascontiguousarray(mask, dtype=bool).view(np.uint8), connectivity=8,
                                   ltype=cv2.CV_32S)


def sample_centres(mask: np.ndarray, num: int, rng: np.random.Generator, sampling: str = "component_then_pixel",
                   labelled: tuple[int, np.ndarray] | None = None) -> np.ndarray:
    """int64 [num, 2] (row, column) centres drawn from the True pixels of `mask` (step 3).

    `labelled`: `components(mask)` when the caller has it already.
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    mask = np.asarray(mask, dtype=bool)
    flat = np.flatnonzero(mask)
    if flat.size == 0:
        raise ValueError("empty region: nothing to sample from")
    width = mask.shape[1]
    if sampling == "uniform":
        chosen = flat[rng.integers(flat.size, size=num)] if num else flat[:0]
    else:
        count, labels = labelled if labelled is not None else components(mask)
        member_labels = labels.ravel()[flat]                       # labels 1..count-1, raster order
        order = np.argsort(member_labels, kind="stable")           # grouped by label, raster order within
        members = flat[order]
        starts = np.searchsorted(member_labels[order], np.arange(1, count + 1))
        chosen = np.empty(num, np.int64)
        for k in range(num):
            component = int(rng.integers(count - 1))
            start, stop = starts[component], starts[component + 1]
            chosen[k] = members[start + int(rng.integers(stop - start))]
    return np.stack([chosen // width, chosen % width], axis=1).astype(np.int64)


def window(centre, height: int, width: int, size: int = PATCH_SIZE) -> tuple[int, int]:
    """(top, left) of the size x size window around `centre`, shifted inside [0, H) x [0, W) (step 4)."""
    if height < size or width < size:
        raise ValueError(f"image {height}x{width} is smaller than the {size} window; upscale it first")
    cy, cx = int(centre[0]), int(centre[1])
    return min(max(cy - size // 2, 0), height - size), min(max(cx - size // 2, 0), width - size)


@dataclasses.dataclass(frozen=True)
class Patch:
    """One patch: pixels and where it came from, in working-image pixels (step 5 for the statistics)."""

    pixels: np.ndarray               # uint8 [size, size, 3]
    box: tuple[int, int, int, int]   # top, left, bottom, right (bottom / right exclusive)
    centre: tuple[int, int]          # the sampled (row, column)
    coverage: float
    salient_fraction: float
    saliency_mass: float


@dataclasses.dataclass(frozen=True)
class PatchSet:
    """The patches of one image and how they were found."""

    patches: list[Patch]
    working_shape: tuple[int, int]   # (H, W) after upscaling
    scale: float                     # working / original shorter side (1.0 when not upscaled)
    fallback: bool                   # the region is the top-k fallback
    region_pixels: int               # |R|
    num_components: int              # 8-connected components of R


def _box_sum(integral: np.ndarray, top: int, left: int, size: int) -> float:
    return float(integral[top + size, left + size] - integral[top, left + size] - integral[top + size, left]
                 + integral[top, left])


def extract_patches(pixels: np.ndarray, saliency: np.ndarray, *, rng: np.random.Generator, num_patches: int = 5,
                    size: int = PATCH_SIZE, top_focus: float = 0.5, sampling: str = "component_then_pixel",
                    threshold: str = "continuous", fallback_top_k: int = DEFAULT_FALLBACK_TOP_K) -> PatchSet:
    """`num_patches` exact size x size patches of `pixels` around salient pixels of `saliency` (module docstring)."""
    pixels = np.asarray(pixels)
    saliency = np.asarray(saliency, dtype=np.float32)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8 [H, W, 3], got {pixels.dtype} {pixels.shape}")
    if saliency.shape != pixels.shape[:2]:
        raise ValueError(f"saliency map shape {saliency.shape} differs from the image's {pixels.shape[:2]}")
    if num_patches < 0 or size < 1:
        raise ValueError(f"need num_patches >= 0 and size >= 1, got {num_patches}, {size}")
    if not np.isfinite(saliency).all():
        raise ValueError("saliency map has non-finite values")
    height, width = pixels.shape[:2]
    work_pixels, work_map = upscale(pixels, np.clip(saliency, 0.0, 1.0), size)
    work_height, work_width = work_pixels.shape[:2]
    mask, fallback = salient_region(work_map, top_focus, threshold=threshold, fallback_top_k=fallback_top_k)
    labelled = components(mask)
    centres = sample_centres(mask, num_patches, rng, sampling, labelled)
    region_pixels = int(mask.sum())
    mask_integral = cv2.integral(mask.view(np.uint8), sdepth=cv2.CV_64F)
    map_integral = cv2.integral(work_map, sdepth=cv2.CV_64F)
    total_mass = float(map_integral[-1, -1])
    patches = []
    for cy, cx in centres.tolist():
        top, left = window((cy, cx), work_height, work_width, size)
        inside = _box_sum(mask_integral, top, left, size)
        mass = _box_sum(map_integral, top, left, size)
        patches.append(Patch(
            pixels=np.ascontiguousarray(work_pixels[top:top + size, left:left + size]),
            box=(top, left, top + size, left + size), centre=(cy, cx),
            coverage=inside / region_pixels, salient_fraction=inside / (size * size),
            saliency_mass=min(1.0, max(0.0, mass / total_mass)) if total_mass > 0 else 0.0))
    return PatchSet(patches=patches, working_shape=(work_height, work_width),
                    scale=size / min(height, width) if (work_height, work_width) != (height, width) else 1.0,
                    fallback=fallback, region_pixels=region_pixels, num_components=int(labelled[0] - 1))
