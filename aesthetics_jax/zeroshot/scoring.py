"""CLIP-IQA over decoded photos: input preprocessing + batching around `clip_iqa.ClipIQA`.

`ClipIQA` takes pixel batches that are already the right size; this is the layer `predict`
(`clip-iqa:DIR`) and the `clip_iqa` evaluator (`aesthetics-jax evaluate clip-iqa`) share, so that
both prepare an image the same way::

    scorer = ClipIQAScorer.from_dir("clip_b16", prompts="pyiqa")
    pixels = scorer.prepare(rgb_uint8)             # [H, W, 3] -> the model input (see below)
    pair_scores = scorer.pair_scores([pixels, ...])  # [N, P] float32; score = pair_scores.mean(1)

Preprocessing (`input_transform`), from upright RGB uint8 pixels:

  pos_embed='none'          CLIP's own inference preprocessing at the model's size S
                            (`image_size` must be S or unset): Resize(S) of the shorter side with
                            Pillow BICUBIC (antialiased), the longer side int(S * long / short),
                            then CenterCrop(S) -- OpenAI's / open_clip's `preprocess` and what the
                            CLIP-IQA paper feeds its ViT/ResNet CLIPs; the `torchvision` transform
                            with bicubic=1 (`data.preprocessing`, as LAION bundles use).
  pos_embed='interpolate'   any size goes through (positional embeddings resampled, see
                            `clip_iqa`):
                              image_size unset or 0  native: the whole image as decoded, no resize,
                                                     no crop (pyiqa's `clipiqa` practice). Trailing
                                                     pixels beyond the last full patch are dropped
                                                     by the patch convolution. Images of different
                                                     shapes are scored in separate batches and
                                                     every new shape compiles once; images over
                                                     MAX_NATIVE_TOKENS patches are refused (ask for
                                                     an image_size instead).
                              image_size=N           the same Resize(N) + CenterCrop(N) at N.

Batches: images are grouped by shape and scored in chunks of `batch_size`, each chunk padded with
zero images to the next power of two (at most `batch_size`) so that few shapes compile; the padding
rows are dropped.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from aesthetics_jax.zeroshot import clip_iqa

#: Native-size images with more patches than this are refused (attention memory grows with its square).
MAX_NATIVE_TOKENS = 16384


def input_transform(model_image_size: int, patch_size: int, pos_embed: str = "none",
                    image_size: int | None = None) -> dict | None:
    """The `data.preprocessing` transform spec of the model input (module docstring); None = native."""
    from aesthetics_jax.data import preprocessing  # pylint: disable=g-import-not-at-top

    if pos_embed not in clip_iqa.POS_EMBED:
        raise ValueError(f"pos_embed must be one of {clip_iqa.POS_EMBED}, got {pos_embed!r}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer))
                                   or image_size < 0):
        raise ValueError(f"image_size must be a non-negative integer (0 = native size), got {image_size!r}")
    if pos_embed == "none":
        if image_size not in (None, model_image_size):
            raise ValueError(f"CLIP-IQA with pos_embed='none' scores at the model's image_size {model_image_size}; "
                             f"got image_size={image_size}: use pos_embed='interpolate' for other sizes")
        size = model_image_size
    elif not image_size:
        return None
    else:
        size = int(image_size)
        if size < patch_size:
            raise ValueError(f"image_size {size} is smaller than one {patch_size}x{patch_size} patch")
    return preprocessing.transform_spec("torchvision", resize_size=size, image_size=size, bicubic=1)


def describe_input(transform: dict | None) -> str:
    if transform is None:
        return "native size (no resize, no crop; positional embeddings interpolated)"
    from aesthetics_jax.data import preprocessing  # pylint: disable=g-import-not-at-top

    return preprocessing.describe_transform(transform)


class ClipIQAScorer:
    """`ClipIQA` with its input transform and batching (module docstring).

    Attributes: `iqa` (the `ClipIQA`), `transform` (spec or None = native), `batch_size`, `names`
    (one 'positive|negative' label per pair), `pairs`, `options` (JSON-able description).
    """

    def __init__(self, iqa: clip_iqa.ClipIQA, *, image_size: int | None = None, batch_size: int = 32,
                 options: dict | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.iqa = iqa
        self.batch_size = int(batch_size)
        self.transform = input_transform(iqa.image_size, iqa.patch_size, iqa.pos_embed, image_size)
        self.options = {"prompts": [list(p) for p in iqa.pairs], "pos_embed": iqa.pos_embed, "kernel": iqa.kernel,
                        "model_image_size": iqa.image_size, "patch_size": iqa.patch_size,
                        "input": self.transform or "native", "input_description": describe_input(self.transform),
                        **(options or {})}

    @classmethod
    def from_dir(cls, clip_dir: str | os.PathLike, prompts: str | os.PathLike | Sequence[Sequence[str]] = "default", *,
                 pos_embed: str = "none", image_size: int | None = None, kernel: str = "bicubic",
                 batch_size: int = 32) -> "ClipIQAScorer":
        """From a CLIP conversion directory (`aesthetics-jax convert --from openai-clip|open-clip|hf-clip FILE
        --arch clip --out DIR`); `prompts` as `clip_iqa.load_prompts` (set name, prompt file or pairs)."""
        if not os.path.isdir(clip_dir):
            raise FileNotFoundError(f"clip-iqa: no directory {clip_dir} (a CLIP conversion directory, written by "
                                    "`aesthetics-jax convert --from openai-clip|open-clip|hf-clip FILE --arch clip "
                                    "--out DIR`)")
        pairs = clip_iqa.load_prompts(prompts)
        if pos_embed not in clip_iqa.POS_EMBED:  # before loading the weights
            raise ValueError(f"pos_embed must be one of {clip_iqa.POS_EMBED}, got {pos_embed!r}")
        iqa = clip_iqa.ClipIQA.from_dir(clip_dir, pairs, pos_embed=pos_embed, kernel=kernel)
        prompt_set = "custom"  # a list of pairs
        if isinstance(prompts, (str, os.PathLike)):
            text = os.fspath(prompts)
            prompt_set = text if text in clip_iqa.PROMPT_SETS else os.path.abspath(text)
        return cls(iqa, image_size=image_size, batch_size=batch_size,
                   options={"clip_dir": os.path.abspath(clip_dir), "prompt_set": prompt_set})

    @property
    def names(self) -> list[str]:
        return self.iqa.names

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return self.iqa.pairs

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        """Upright RGB uint8 [H, W, 3] -> the model input (uint8); ValueError when it cannot be scored."""
        from aesthetics_jax.data import preprocessing  # pylint: disable=g-import-not-at-top

        if self.transform is not None:
            return preprocessing.apply_transform(pixels, self.transform)
        h, w = pixels.shape[:2]
        p = self.iqa.patch_size
        if h < p or w < p:
            raise ValueError(f"image {w}x{h} is smaller than one {p}x{p} patch (native-size CLIP-IQA)")
        tokens = (h // p) * (w // p)
        if tokens > MAX_NATIVE_TOKENS:
            raise ValueError(f"image {w}x{h} has {tokens} patches of {p}x{p} at native size (limit "
                             f"{MAX_NATIVE_TOKENS}); score it with an image_size")
        return np.ascontiguousarray(pixels)

    def pair_scores(self, images) -> np.ndarray:
        """Prepared images (an array [N, H, W, 3] or a list of [H, W, 3], any mix of shapes) -> [N, P]."""
        n = len(images)
        out = np.zeros((n, len(self.pairs)), np.float32)
        groups: dict[tuple, list[int]] = {}
        for i in range(n):
            groups.setdefault(tuple(np.shape(images[i])), []).append(i)
        for shape, indices in groups.items():
            for start in range(0, len(indices), self.batch_size):
                part = indices[start : start + self.batch_size]
                batch = np.stack([np.asarray(images[i], np.float32) for i in part])
                padded = min(self.batch_size, 1 << (len(part) - 1).bit_length())
                if padded > len(part):
                    batch = np.concatenate([batch, np.zeros((padded - len(part), *shape), np.float32)])
                out[part] = self.iqa.pair_scores(batch)[: len(part)]
        return out
