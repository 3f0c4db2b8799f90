"""Pictures of explanations: colour-mapped overlays and per-image contact sheets (numpy + OpenCV I/O).

Colours come from matplotlib's colormaps (`jet`, `viridis`, ...): a map value of 1 is the
colormap's top (jet: dark red, viridis: yellow), 0 its bottom (jet: dark blue, viridis: purple) --
the heat map is never inverted (the Aesthetics-XAI seed drew `1 - map`). Overlays blend
`alpha * colour + (1 - alpha) * image` in RGB; files are written as PNG (RGB order handled here).
"""

from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np

__all__ = ["colorize", "overlay", "contact_sheet", "write_png"]

_LABEL_HEIGHT = 14


def colorize(heat: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """uint8 RGB [H, W, 3] of a map [H, W] in [0, 1] (values outside are clipped; NaN -> 0)."""
    import matplotlib  # pylint: disable=g-import-not-at-top

    values = np.clip(np.nan_to_num(np.asarray(heat, np.float64), nan=0.0), 0.0, 1.0)
    rgba = matplotlib.colormaps[colormap](values)
    return np.clip(np.rint(rgba[..., :3] * 255.0), 0, 255).astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """uint8 RGB: `alpha * colorize(heat) + (1 - alpha) * image`; heat is resized to the image if needed."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    image = np.asarray(image, np.float32)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    heat = np.asarray(heat, np.float32)
    if heat.shape != image.shape[:2]:
        heat = cv2.resize(heat, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    blended = alpha * colorize(heat, colormap).astype(np.float32) + (1.0 - alpha) * image
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    band = np.full((_LABEL_HEIGHT, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(band, text[: max(1, tile.shape[1] // 6)], (2, _LABEL_HEIGHT - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.33,
                (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, tile], axis=0)


def contact_sheet(image: np.ndarray, rows: Sequence[tuple[str, Sequence[tuple[str, np.ndarray]]]], *,
                  saliency: np.ndarray | None = None, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """One picture per image: a row per method -- image | human saliency | one overlay per output.

    Args:
      image: uint8 RGB [H, W, 3], what the model saw.
      rows: `[(method, [(output name, map [H, W] in [0, 1]), ...]), ...]`.
      saliency: the human (reference) saliency map [H, W] in [0, 1], or None.
    Returns: uint8 RGB, tiles labelled (method / output) on a white band.
    """
    image = np.asarray(image, np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    lines = []
    for method, maps in rows:
        tiles = [_label(image, method)]
        if saliency is not None:
            tiles.append(_label(colorize(cv2.resize(np.asarray(saliency, np.float32), (image.shape[1], image.shape[0])),
                                         colormap), "saliency"))
        tiles += [_label(overlay(image, heat, alpha=alpha, colormap=colormap), name) for name, heat in maps]
        gap = np.full((tiles[0].shape[0], 2, 3), 255, np.uint8)
        lines.append(np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], axis=1))
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 2), (0, width - line.shape[1]), (0, 0)), constant_values=255) for line in lines]
    return np.concatenate(lines, axis=0)


def write_png(path: str, rgb: np.ndarray) -> None:
    """Writes uint8 RGB as PNG (OpenCV wants BGR); makes the parent directory."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, np.ascontiguousarray(np.asarray(rgb, np.uint8)[..., ::-1])):
        raise OSError(f"cannot write {path}")
