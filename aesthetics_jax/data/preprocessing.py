"""Host-side image preprocessing for NIMA-style training (numpy / OpenCV, uint8 in, uint8 out).

    decode_jpeg      JPEG (or any OpenCV-readable) bytes -> uint8 [H, W, 3] RGB. Greyscale and CMYK
                     files come back as 3-channel RGB. EXIF orientation is ignored, as TensorFlow's
                     decode_jpeg and PIL-based Keras loaders do, so pixels match published pipelines.
    resize           to a square `size` x `size` (aspect ratio is not kept, as in NIMA / idealo:
                     256 x 256). INTER_AREA (anti-aliased) when a side shrinks by more than 2x,
                     else INTER_LINEAR: between 1x and 2x bilinear already reads every source pixel,
                     and OpenCV's INTER_AREA at a non-integer ratio costs 4x the bilinear resize
                     (500x375 -> 256x256: 5.1 ms vs 1.3 ms on one core, more than the 3.3 ms decode).
    train_transform  resize -> random crop `image_size` -> horizontal flip with p = 1/2. The crop
                     offset is drawn first (row, then column, each uniform over all valid offsets
                     with `rng.integers`), then the flip (`rng.random() < 0.5`); the generator is the
                     one grain's `random_map` hands over, so augmentation is reproducible.
    eval_transform   resize -> centre crop `image_size`, offset (resize_size - image_size) // 2.

No normalisation happens here: batches stay uint8 and are normalised on device by the model's
input layer, so host memory and host-to-device traffic stay 4x smaller.

Inference transforms (`apply_transform(rgb, spec)`): a model bundle records how its images must be
prepared as a spec dict `{"name": ..., **fields}` (`transform_spec` validates one), so that
`predict` reproduces the preprocessing the weights were trained with:

    resize_center_crop  {resize_size, image_size, resize_shorter}: this project's training-time
                        evaluation transform (`eval_transform`) on the pixels a build stores
                        (`image_io.read_image(..., as_stored=True, resize_shorter=...)`).
    keras_load_img      {image_size}: Keras' `load_img(path, target_size=(S, S))` -- a squashing
                        resize with Pillow's NEAREST filter, aspect ratio not kept. idealo's NIMA
                        (`utils.load_image` -> `load_img`) and the Keras applications' documented
                        ImageNet usage (MobileNet, MobileNetV2, InceptionV3) use exactly this.
    torchvision         {resize_size, image_size}: torchvision's weights transforms
                        (`ImageClassification`): `Resize(resize_size)` of the shorter side with
                        Pillow's BILINEAR (antialiased) filter, the longer side
                        `int(resize_size * long / short)`, then `CenterCrop(image_size)` with the
                        offset `int(round((side - image_size) / 2))`.
    torchvision_squash  {image_size}: torchvision `Resize((image_size, image_size))` -- both sides to
                        image_size with Pillow's BILINEAR (BICUBIC with bicubic=1), aspect ratio not
                        kept (CG-IAA's released critique inference).

All of them start from the same checked, upright RGB pixels (`image_io.read_image`: EXIF orientation
applied, alpha over white, 16-bit scaled, CMYK converted), so a hostile file is repaired the same
way whatever the transform; for plain RGB / greyscale JPEGs (what the published pipelines were fed)
OpenCV's decode equals Pillow's, which Keras and torchvision use.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["decode_jpeg", "resize", "crop", "train_transform", "eval_transform", "TRANSFORMS", "transform_spec",
           "apply_transform", "describe_transform"]

_DECODE_FLAGS = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION


def decode_jpeg(data: bytes) -> np.ndarray:
    """uint8 [H, W, 3] RGB pixels of an encoded image; ValueError if it cannot be decoded."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _DECODE_FLAGS)
    if image is None:
        raise ValueError(f"cannot decode image ({len(data)} bytes)")
    return image


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Square resize to `size` x `size` (see the module docstring for the interpolation)."""
    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return image
    strong_shrink = height > 2 * size or width > 2 * size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if strong_shrink else cv2.INTER_LINEAR)


def crop(image: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """The `size` x `size` window whose top-left corner is (top, left)."""
    return image[top : top + size, left : left + size]


def _check_sizes(resize_size: int, image_size: int) -> None:
    if not 0 < image_size <= resize_size:
        raise ValueError(f"need 0 < image_size <= resize_size, got {image_size}, {resize_size}")


def train_transform(image: np.ndarray, rng: np.random.Generator, *, resize_size: int, image_size: int) -> np.ndarray:
    """Resize to resize_size^2, random image_size^2 crop, random horizontal flip (see module doc)."""
    _check_sizes(resize_size, image_size)
    image = resize(image, resize_size)
    top = int(rng.integers(0, resize_size - image_size + 1))
    left = int(rng.integers(0, resize_size - image_size + 1))
    image = crop(image, top, left, image_size)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    return np.ascontiguousarray(image)


def eval_transform(image: np.ndarray, *, resize_size: int, image_size: int) -> np.ndarray:
    """Resize to resize_size^2, then the central image_size^2 crop (deterministic)."""
    _check_sizes(resize_size, image_size)
    image = resize(image, resize_size)
    offset = (resize_size - image_size) // 2
    return np.ascontiguousarray(crop(image, offset, offset, image_size))


# ----------------------------------------------------------------------------- inference transforms

# name -> (required integer fields, optional fields with defaults)
TRANSFORMS = {
    "resize_center_crop": (("resize_size", "image_size"), {"resize_shorter": 0}),
    "keras_load_img": (("image_size",), {}),
    "torchvision": (("resize_size", "image_size"), {"bicubic": 0}),  # bicubic=1: CLIP's Resize(BICUBIC)
    "torchvision_squash": (("image_size",), {"bicubic": 0}),  # Resize((S, S)): CG-IAA's critique input
}


def transform_spec(name: str, **fields) -> dict:
    """A validated transform spec ``{"name": name, **fields}`` (see the module docstring)."""
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; known: {', '.join(TRANSFORMS)}")
    required, optional = TRANSFORMS[name]
    missing = [k for k in required if fields.get(k) is None]
    unknown = sorted(set(fields) - set(required) - set(optional))
    if missing or unknown:
        raise ValueError(f"transform {name!r} needs fields {list(required)} (optional {list(optional)}); "
                         f"missing {missing}, unknown {unknown}")
    spec = {"name": name, **optional, **{k: v for k, v in fields.items() if v is not None}}
    for key, value in spec.items():
        if key != "name" and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0):
            raise ValueError(f"transform {name!r}: {key} must be a non-negative integer, got {value!r}")
        if key != "name":
            spec[key] = int(value)
    if name == "resize_center_crop":
        _check_sizes(spec["resize_size"], spec["image_size"])
    if name in ("torchvision", "torchvision_squash") and spec["bicubic"] not in (0, 1):
        raise ValueError(f"transform 'torchvision': bicubic must be 0 (Pillow BILINEAR) or 1 (BICUBIC), got {spec['bicubic']}")
    if spec["image_size"] < 1:
        raise ValueError(f"transform {name!r}: image_size must be >= 1")
    return spec


def describe_transform(spec: dict) -> str:
    """One line saying what ``spec`` does (stored beside the spec in bundles and ONNX metadata)."""
    name = spec["name"]
    if name == "resize_center_crop":
        stored = f"stored shorter side <= {spec['resize_shorter']} (INTER_AREA), " if spec.get("resize_shorter") else ""
        return (f"{stored}square resize to {spec['resize_size']} (INTER_AREA when a side shrinks more than 2x, else "
                f"INTER_LINEAR), centre crop {spec['image_size']} (data.preprocessing.eval_transform)")
    if name == "keras_load_img":
        return (f"keras load_img(target_size=({spec['image_size']}, {spec['image_size']})): squashing resize, "
                "Pillow NEAREST, aspect ratio not kept")
    if name == "torchvision":
        resample = "BICUBIC" if spec.get("bicubic") else "BILINEAR"
        return (f"torchvision Resize({spec['resize_size']}) of the shorter side, Pillow {resample} (antialiased), "
                f"CenterCrop({spec['image_size']})")
    if name == "torchvision_squash":
        resample = "BICUBIC" if spec.get("bicubic") else "BILINEAR"
        return (f"torchvision Resize(({spec['image_size']}, {spec['image_size']})): squashing resize, Pillow {resample} "
                "(antialiased), aspect ratio not kept")
    raise ValueError(f"unknown transform {name!r}")


def _pil_resize(image: np.ndarray, width: int, height: int, resample) -> np.ndarray:
    from PIL import Image  # pylint: disable=g-import-not-at-top

    return np.asarray(Image.fromarray(image).resize((width, height), resample))


def apply_transform(image: np.ndarray, spec: dict) -> np.ndarray:
    """uint8 [S, S, 3] model input from uint8 [H, W, 3] RGB pixels, as ``spec`` says."""
    from PIL import Image  # pylint: disable=g-import-not-at-top

    name = spec["name"]
    if name == "resize_center_crop":
        return eval_transform(image, resize_size=spec["resize_size"], image_size=spec["image_size"])
    size = spec["image_size"]
    if name == "keras_load_img":
        if image.shape[:2] == (size, size):  # Pillow's resize to the same size is the identity
            return np.ascontiguousarray(image)
        return _pil_resize(image, size, size, Image.Resampling.NEAREST)
    if name == "torchvision":
        height, width = image.shape[:2]
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = spec["resize_size"], int(spec["resize_size"] * long / short)
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        if (new_w, new_h) != (width, height):
            resample = Image.Resampling.BICUBIC if spec.get("bicubic") else Image.Resampling.BILINEAR
            image = _pil_resize(image, new_w, new_h, resample)
        if min(new_w, new_h) < size:
            raise ValueError(f"torchvision transform: resize_size {spec['resize_size']} < image_size {size}")
        top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
        return np.ascontiguousarray(crop(image, top, left, size))
    if name == "torchvision_squash":
        if image.shape[:2] == (size, size):
            return np.ascontiguousarray(image)
        resample = Image.Resampling.BICUBIC if spec.get("bicubic") else Image.Resampling.BILINEAR
        return _pil_resize(image, size, size, resample)
    raise ValueError(f"unknown transform {name!r}; known: {', '.join(TRANSFORMS)}")
