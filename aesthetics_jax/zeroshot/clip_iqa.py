"""CLIP-IQA (Wang, Chan & Loy, "Exploring CLIP for Assessing the Look and Feel of Images", AAAI 2023).

For each antonym prompt pair (positive, negative) the score of an image is the softmax over the
pair of CLIP's logits, i.e. of exp(logit_scale) * cosine(image, text), taken at the positive
prompt; with several pairs the per-pair scores are averaged (pyiqa's `clipiqa`)::

    iqa = ClipIQA.from_dir("clip_b16", prompts="pyiqa")      # aesthetics-jax convert ... --arch clip
    pair_scores, score = iqa(images_uint8)                   # [N, P], [N]  (in [0, 1], higher = better)

Prompt sets (`PROMPT_SETS`, each a list of (positive, negative) = (desirable, undesirable)):

  default         the paper's quality prompt pair: "Good photo." / "Bad photo.".
  ava_attributes  the paper's "look" attribute pairs whose desirable side is unambiguous (its
                  attribute list: quality, brightness, sharpness, noisiness, colorfulness,
                  contrast), written as "<Adjective> photo." like the paper's default. The paper
                  names the noise pair "Noisy/Clean"; here the clean prompt comes first so that
                  every pair's first prompt is the desirable one and higher always means better.
                  (Transcribed from the paper's attribute table, not from released code: check
                  wording against the paper before quoting numbers.)
  pyiqa           the five pairs of pyiqa's `clipiqa` (pyiqa/archs/clipiqa_arch.py,
                  "we assemble multiple prompts to improve the results"): 'Good image'/'bad image',
                  'Sharp image'/'blurry image', 'sharp edges'/'blurry edges', 'High resolution
                  image'/'low resolution image', 'Noise-free image'/'noisy image' (verbatim, no
                  full stops). pyiqa uses OpenAI's RN50 (no positional embedding, any input size);
                  this module scores the ViT towers of `models.clip`, so numbers differ from
                  pyiqa's benchmark table (AVA SRCC 0.338 for RN50).

Any list of (positive, negative) string pairs can be passed instead of a set name, and
`load_prompts(text)` also reads a prompt file: one pair per line, `positive|negative` (blank lines
and lines starting with `#` skipped), e.g. `Sharp photo.|Blurry photo.`.

Inputs are raw pixels, uint8 (or float in [0, 255]) NHWC; CLIP's mean/std normalisation (the
'clip' preset) is applied inside the jitted forward. Resizing / cropping is the caller's job:

  pos_embed='none' (default)  images must be image_size x image_size (the model's training size,
                              e.g. 224); anything else is a ValueError naming both sizes.
  pos_embed='interpolate'     any H, W >= patch_size: the patch grid is H // patch x W // patch
                              (trailing pixels beyond the last full patch are dropped by the
                              stride-patch convolution, as in OpenAI / open_clip / transformers),
                              and the patch position embeddings ([g, g, width], class-token
                              position kept as is) are resampled to that grid, separably, with
                              PyTorch's `F.interpolate(..., align_corners=False)` semantics,
                              no antialiasing:
                                bicubic   Keys cubic convolution, A = -0.75, source index
                                          (i + 0.5) * in/out - 0.5 (not clamped), taps clamped to
                                          the border (torch's `upsample_bicubic2d`);
                                bilinear  source index clamped at 0, right tap clamped.
                              'bicubic' is what transformers' `CLIPVisionEmbeddings.
                              interpolate_pos_encoding` uses (tested equal to it) and what
                              timm's `resample_abs_pos_embed` / open_clip's `resize_pos_embed`
                              default to. Those two pass `antialias=True`, which changes the result
                              only when the grid *shrinks* (inputs smaller than image_size); this
                              module never antialiases (transformers' behaviour) -- prefer
                              upscaling inputs to at least image_size.
                              At the model's own grid the embedding is used unchanged (== 'none').

Text embeddings of all prompts are computed once at construction (L2-normalised, float32).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from aesthetics_jax.models import clip as clip_model
from aesthetics_jax.models import clip_tokenizer
from aesthetics_jax.models import preprocessing

PROMPT_SETS: dict[str, list[tuple[str, str]]] = {
    "default": [("Good photo.", "Bad photo.")],
    "ava_attributes": [
        ("Good photo.", "Bad photo."),
        ("Bright photo.", "Dark photo."),
        ("Sharp photo.", "Blurry photo."),
        ("Clean photo.", "Noisy photo."),
        ("Colorful photo.", "Dull photo."),
        ("High contrast photo.", "Low contrast photo."),
    ],
    "pyiqa": [
        ("Good image", "bad image"),
        ("Sharp image", "blurry image"),
        ("sharp edges", "blurry edges"),
        ("High resolution image", "low resolution image"),
        ("Noise-free image", "noisy image"),
    ],
}
POS_EMBED = ("none", "interpolate")
KERNELS = ("bicubic", "bilinear")


def resolve_prompts(prompts: str | Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """A `PROMPT_SETS` name or a sequence of (positive, negative) pairs -> list of pairs."""
    if isinstance(prompts, str):
        if prompts not in PROMPT_SETS:
            raise ValueError(f"unknown CLIP-IQA prompt set {prompts!r}; known: {', '.join(PROMPT_SETS)} "
                             "(or pass a list of (positive, negative) prompt pairs)")
        return list(PROMPT_SETS[prompts])
    pairs = []
    for i, pair in enumerate(prompts):
        if isinstance(pair, str) or len(pair) != 2 or not all(isinstance(p, str) and p.strip() for p in pair):
            raise ValueError(f"prompt pair {i} must be (positive, negative), two non-empty strings; got {pair!r}")
        pairs.append((pair[0], pair[1]))
    if not pairs:
        raise ValueError("no prompt pairs given")
    return pairs


def load_prompts(spec: str | os.PathLike | Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """A `PROMPT_SETS` name, a prompt file (`positive|negative` per line) or a list of pairs -> pairs.

    A set name wins over a file of the same name; anything else that is not a readable file is a
    ValueError naming the known sets. File errors name the file and line."""
    if not isinstance(spec, (str, os.PathLike)):
        return resolve_prompts(spec)
    text = os.fspath(spec)
    if text in PROMPT_SETS:
        return resolve_prompts(text)
    if not os.path.isfile(text):
        raise ValueError(f"unknown CLIP-IQA prompt set {text!r}; known: {', '.join(PROMPT_SETS)} (or a file of "
                         "'positive|negative' lines)")
    pairs = []
    with open(text, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = [p.strip() for p in line.split("|")]
            if len(parts) != 2 or not all(parts):
                raise ValueError(f"{text}:{line_no}: expected 'positive|negative' (two non-empty prompts separated "
                                 f"by one '|'), got {line!r}")
            pairs.append((parts[0], parts[1]))
    if not pairs:
        raise ValueError(f"{text}: no prompt pairs (one 'positive|negative' per line)")
    return pairs


# --- position-embedding resampling (torch F.interpolate, align_corners=False, no antialias) ---

def _cubic_weights(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys cubic-convolution weights of the taps at offsets -1, 0, 1, 2 for fraction t: [n, 4]."""
    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


@functools.lru_cache(maxsize=64)
def interpolation_matrix(n_in: int, n_out: int, kernel: str = "bicubic") -> np.ndarray:
    """[n_out, n_in] float64 matrix M with `M @ x` = torch's 1-D `F.interpolate(x, n_out, mode,
    align_corners=False)` along that axis (separable: 2-D = rows then columns)."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown interpolation kernel {kernel!r}; known: {', '.join(KERNELS)}")
    if n_in < 1 or n_out < 1:
        raise ValueError(f"interpolation sizes must be >= 1, got {n_in} -> {n_out}")
    scale = n_in / n_out
    src = (np.arange(n_out) + 0.5) * scale - 0.5
    m = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    if kernel == "bilinear":
        src = np.maximum(src, 0.0)
        i0 = np.floor(src).astype(int)
        i0 = np.minimum(i0, n_in - 1)
        lam = src - i0
        i1 = np.minimum(i0 + 1, n_in - 1)
        np.add.at(m, (rows, i0), 1.0 - lam)
        np.add.at(m, (rows, i1), lam)
        return m
    i0 = np.floor(src).astype(int)
    w = _cubic_weights(src - i0)
    for k in range(4):
        np.add.at(m, (rows, np.clip(i0 - 1 + k, 0, n_in - 1)), w[:, k])
    return m


def resample_pos_embed(pos, old_grid: int, new_grid: tuple[int, int], kernel: str = "bicubic"):
    """Positional embedding [1 + old_grid**2, width] -> [1 + gh*gw, width] (class position first,
    unchanged; patch positions row-major, resampled on the 2-D grid). Unchanged at the same grid."""
    gh, gw = new_grid
    if (gh, gw) == (old_grid, old_grid):
        return pos
    width = pos.shape[-1]
    if pos.shape != (1 + old_grid * old_grid, width):
        raise ValueError(f"positional embedding {pos.shape} does not match a {old_grid}x{old_grid} grid + class token")
    mh = jnp.asarray(interpolation_matrix(old_grid, gh, kernel), jnp.float32)
    mw = jnp.asarray(interpolation_matrix(old_grid, gw, kernel), jnp.float32)
    grid = pos[1:].astype(jnp.float32).reshape(old_grid, old_grid, width)
    hi = jax.lax.Precision.HIGHEST
    grid = jnp.einsum("ah,hwc->awc", mh, grid, precision=hi)
    grid = jnp.einsum("bw,awc->abc", mw, grid, precision=hi)
    return jnp.concatenate([pos[:1].astype(jnp.float32), grid.reshape(gh * gw, width)], axis=0)


def _encode_image(m: clip_model.CLIP, pixels, pos_embed: str, kernel: str):
    """(bound CLIP, normalised pixels) -> image embeddings [N, D]; run via `CLIP.apply(method=...)`."""
    vis = m.visual
    if pos_embed == "none":
        return vis(pixels)["pooled"]
    cfg = vis.config
    x = vis.conv1(pixels.astype(vis.dtype))
    b, gh, gw, width = x.shape
    x = x.reshape(b, gh * gw, width)
    cls = jnp.broadcast_to(vis.class_embedding.astype(vis.dtype), (b, 1, width))
    pos = resample_pos_embed(vis.positional_embedding, cfg.image_size // cfg.patch_size, (gh, gw), kernel)
    x = jnp.concatenate([cls, x], axis=1) + pos.astype(vis.dtype)
    x = vis.ln_pre(x.astype(jnp.float32)).astype(vis.dtype)
    return vis.pool_tokens(vis.transformer(x))


def load_clip_dir(clip_dir: str | os.PathLike) -> tuple[clip_model.CLIPConfig, Any]:
    """`convert.clip.load_conversion`: `(CLIPConfig, params)` of a whole-CLIP conversion directory."""
    from aesthetics_jax.convert import clip as clip_convert  # pylint: disable=g-import-not-at-top

    return clip_convert.load_conversion(clip_dir)


class ClipIQA:
    """CLIP-IQA scorer over a `models.clip.CLIP` and its params (see the module docstring).

    Args:
      model: a `models.clip.CLIP` (its `config` gives image/patch size and context length).
      params: its params `{'visual', 'text', 'logit_scale'}` (the log scale, as stored).
      prompts: a `PROMPT_SETS` name or a list of (positive, negative) pairs.
      pos_embed: 'none' (inputs must be image_size square) or 'interpolate' (any size).
      kernel: 'bicubic' (default) or 'bilinear' for pos_embed='interpolate'.
      tokenizer: object with `tokenize(texts, context_length=...) -> [N, T] ids`; default the
        offline `clip_tokenizer.get_tokenizer()`.

    Attributes: `pairs`, `text_embeds` [2P, D] (L2-normalised; rows 2p / 2p+1 = positive /
    negative of pair p), `logit_scale` (exp of the stored log value), `image_size`, `patch_size`.
    """

    def __init__(self, model: clip_model.CLIP, params, prompts: str | Sequence[Sequence[str]] = "default", *,
                 pos_embed: str = "none", kernel: str = "bicubic", tokenizer=None):
        if pos_embed not in POS_EMBED:
            raise ValueError(f"pos_embed must be one of {POS_EMBED}, got {pos_embed!r}")
        if kernel not in KERNELS:
            raise ValueError(f"unknown interpolation kernel {kernel!r}; known: {', '.join(KERNELS)}")
        self.model = model
        self.params = params
        self.pairs = resolve_prompts(prompts)
        self.pos_embed = pos_embed
        self.kernel = kernel
        cfg = model.config
        self.image_size = cfg.vision.image_size
        self.patch_size = cfg.vision.patch_size
        tokenizer = tokenizer or clip_tokenizer.get_tokenizer()
        texts = [t for pair in self.pairs for t in pair]
        tokens = np.asarray(tokenizer.tokenize(texts, context_length=cfg.text.context_length))
        text = jax.jit(functools.partial(model.apply, method="encode_text"))({"params": params}, jnp.asarray(tokens))
        self.text_embeds = clip_model.l2_normalize(text)
        self.logit_scale = float(np.exp(np.float32(params["logit_scale"])))

        def forward(params, images, text_embeds):
            pixels = preprocessing.normalize(images, "clip")
            image = model.apply({"params": params}, pixels, pos_embed, kernel, method=_encode_image)
            logits = clip_model.zero_shot_scores(image, text_embeds, params["logit_scale"])
            pair_logits = logits.reshape(logits.shape[0], -1, 2)
            return jax.nn.softmax(pair_logits, axis=-1)[..., 0]

        self._forward = jax.jit(forward)

    @classmethod
    def from_dir(cls, clip_dir: str | os.PathLike, prompts: str | Sequence[Sequence[str]] = "default", *,
                 pos_embed: str = "none", kernel: str = "bicubic", dtype=jnp.float32, attention: str | None = None,
                 tokenizer=None) -> "ClipIQA":
        """From a CLIP conversion directory (see `load_clip_dir`)."""
        config, params = load_clip_dir(clip_dir)
        model = clip_model.CLIP(config, attention=attention, dtype=dtype)
        return cls(model, params, prompts, pos_embed=pos_embed, kernel=kernel, tokenizer=tokenizer)

    @property
    def names(self) -> list[str]:
        """One label per pair: 'positive|negative'."""
        return [f"{p}|{n}" for p, n in self.pairs]

    def check_images(self, images) -> None:
        shape = tuple(np.shape(images))
        if len(shape) != 4 or shape[-1] != 3:
            raise ValueError(f"CLIP-IQA takes images [N, H, W, 3] (raw pixels), got shape {shape}")
        h, w = shape[1:3]
        s = self.image_size
        if self.pos_embed == "none" and (h, w) != (s, s):
            raise ValueError(f"CLIP-IQA with pos_embed='none' needs {s}x{s} inputs (the model's image_size), got "
                             f"{h}x{w}; resize to {s}x{s} first or use pos_embed='interpolate'")
        if h < self.patch_size or w < self.patch_size:
            raise ValueError(f"images {h}x{w} are smaller than one {self.patch_size}x{self.patch_size} patch")

    def pair_scores(self, images) -> np.ndarray:
        """Raw pixels [N, H, W, 3] -> positive-prompt probability per pair [N, P] (float32)."""
        self.check_images(images)
        return np.asarray(self._forward(self.params, jnp.asarray(images), self.text_embeds))

    def __call__(self, images) -> tuple[np.ndarray, np.ndarray]:
        """Raw pixels [N, H, W, 3] -> `(pair_scores [N, P], score [N] = mean over pairs)`."""
        scores = self.pair_scores(images)
        return scores, scores.mean(axis=1)
