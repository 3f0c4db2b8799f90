"""Monocular relative depth maps from a local Depth Anything V2 or DPT checkpoint: images -> [0, 1].

    producer = DepthMap("weights/depth-anything-v2-small")   # a transformers checkpoint directory
    maps = producer(images)              # [N, H, W, 3] RGB 0..255 -> [N, H, W] float32, 1 = nearest
    producer.metadata()                  # {'name': 'depth', 'params': {...}, 'weights_sha256', 'model_type', ...}
    modalities.create("depth", model_dir="weights/depth-anything-v2-small")   # the same, through the registry

The checkpoint is a directory as `save_pretrained` writes it (config.json, model.safetensors or
pytorch_model.bin, optionally preprocessor_config.json): the Hugging Face conversions of Depth
Anything V2 (model_type 'depth_anything', a DINOv2 backbone) and of DPT (model_type 'dpt'). It is
loaded with `transformers.AutoModelForDepthEstimation.from_pretrained(model_dir,
local_files_only=True)`: nothing is downloaded, and a directory that does not exist is an error,
never a hub name. torch and transformers (the [torch] extra) are imported only when a producer is
built; this module imports without them. This is data preparation only: training never runs it.

Per call (all images of one call share H x W, so they share the geometry below and run as batches
of `batch_size`):

  1. check: images [N, H, W, 3]; an image whose shorter side is below `min_side` (default 32
     pixels) is refused with a ValueError (the network would see an upsampled blob, and its output
     would be its own positional prior, not the image's depth) -- `compute_maps` / `files.py` record
     it as `map_failed` and go on with the other images;
  2. pixels: uint8 as given; float pixels made finite (NaN -> 0), clipped to [0, 255] and rounded
     to uint8 (the reference processors resize 8-bit images);
  3. network input size, transformers' `DPTImageProcessor` rule: scale factors th / H and tw / W to
     the target (th, tw) (`input_size`, else the checkpoint's preprocessor size); with
     `keep_aspect_ratio` both sides use the factor closer to 1 ("scale as little as possible");
     each side becomes round(scale * side / m) * m (Python's round, half to even) for m =
     `ensure_multiple_of`. Depth Anything V2 (518, m = 14): a 500 x 375 (W x H) photo -> 518 x 392.
     A side that comes out below one patch (an extreme aspect ratio) is refused like step 1.
     [differs from the original Depth Anything V2 code, which resizes so that the *shorter* side
     is >= 518 ('lower_bound', 690 x 518 here); the Hugging Face checkpoints are used as
     transformers uses them];
  4. resize to that size with Pillow's `Image.resize` and the checkpoint's `resample` (bicubic for
     both families: Pillow's convolution resampling, a = -0.5, antialiased when shrinking), uint8 ->
     uint8 -- exactly what transformers' PIL-backend processor (`DPTImageProcessorPil`) does. The
     torchvision-backend `DPTImageProcessor` (transformers 5's default) resizes with torch's uint8
     antialiased bicubic, which rounds differently from Pillow: measured up to 2 grey levels on
     0.1-0.6 % of the values (500 x 375 photos to 518 x 392 and to the tests' small sizes;
     tests/test_depth.py asserts <= 2 levels on < 1 %);
  5. x = float32(pixel * rescale_factor) (1/255, computed in float64 as transformers does), then
     (x - mean) / std in float32 (Depth Anything: ImageNet mean/std; DPT: 0.5 / 0.5), as
     [N, 3, h, w];
  6. `_forward`: the model's `predicted_depth` [N, h', w'] under `torch.inference_mode`, in chunks
     of `batch_size`, on `device` in `dtype`, returned as float32 numpy -- the only step that needs
     torch;
  7. back to H x W by bicubic interpolation with a = -0.75, half-pixel centres and clamped borders
     (torch's `interpolate(mode='bicubic', align_corners=False)`, which transformers'
     `post_process_depth_estimation` uses), written here in numpy;
  8. per-image min-max to [0, 1]. `predicted_depth` of DPT and of relative Depth Anything is
     relative *inverse* depth (disparity, affine-invariant as in MiDaS training): large = near, so
     m = (d - min) / (max - min) is 1 at the nearest and 0 at the farthest point of each image. A
     metric Depth Anything checkpoint (config `depth_estimation_type='metric'`, depth in metres:
     large = far) is flipped so that 1 = nearest holds for every checkpoint. `polarity='far'` gives
     1 - m (1 = farthest). The scale is per image: relative depth carries no absolute scale, so
     values of different images are not comparable distances.

Degenerate input. An image whose prediction is flat (max - min <= 1e-5 * max |d|, e.g. a model
that outputs a constant) maps to zeros, for either polarity. Maps are always finite: a model output
with NaN or inf (e.g. float16 overflow) is a ValueError, never a map.

Parameters (all recorded in `metadata()['params']`, which rebuilds the producer):

  model_dir       the checkpoint directory.
  input_size      target (height, width) of step 3, or one int for both; default: the checkpoint's
                  preprocessor_config.json `size`, else 518 (Depth Anything) / 384 (DPT).
  batch_size      images per forward pass (default 4).
  device, dtype   torch device ('cpu', 'cuda', 'cuda:1', ...) and weights / compute dtype
                  ('float32'; 'float16' or 'bfloat16' on accelerators).
  polarity        'near' (default, 1 = nearest) or 'far'.
  min_side        smallest accepted shorter side in pixels (default 32).
  backend         'torch' (the only one today).

Preprocessing parameters come from the checkpoint's preprocessor_config.json when it has one (keys
of transformers' DPT image processor: size, keep_aspect_ratio, ensure_multiple_of, resample,
do_resize, do_rescale, rescale_factor, do_normalize, image_mean, image_std; padding and center
cropping are refused), else from documented defaults: Depth Anything V2 as its Hugging Face
checkpoints ship it (518 x 518, keep aspect, multiple of 14, bicubic, ImageNet mean/std); DPT as
transformers' `DPTImageProcessor` defaults (384 x 384, no aspect keeping, bicubic, mean = std =
0.5). The original DPT code keeps the aspect ratio with sides a multiple of 32, but transformers'
DPT with its built-in ViT (or hybrid) backbone reshapes tokens to a square grid and so only takes
square inputs: such checkpoints with `keep_aspect_ratio` or a non-square size are refused when the
producer is built.

A later JAX implementation: callers use only `modalities.create("depth", model_dir=...)` and the
`MapProducer` protocol (`__call__`, `metadata`). Steps 1-5, 7 and 8 are numpy/Pillow; a JAX
backend replaces `_load_model` and `_forward` (pixel_values [N, 3, h, w] float32 numpy ->
predicted_depth [N, h', w'] float32 numpy) and registers under `backend='jax'`.

Sources: L. Yang, B. Kang, Z. Huang, Z. Zhao, X. Xu, J. Feng, H. Zhao, "Depth Anything V2",
NeurIPS 2024 (arXiv 2406.09414); R. Ranftl, A. Bochkovskiy, V. Koltun, "Vision Transformers for
Dense Prediction", ICCV 2021 (arXiv 2103.13413); R. Ranftl et al., "Towards Robust Monocular Depth
Estimation: Mixing Datasets for Zero-shot Cross-dataset Transfer" (MiDaS), TPAMI 2022 (the
affine-invariant inverse-depth output both inherit); transformers' DPT and Depth Anything classes.
Cost and speed: benchmarks/depth.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any

import numpy as np

NAME = "depth"
POLARITIES = ("near", "far")
BACKENDS = ("torch",)
DTYPES = ("float32", "float16", "bfloat16")
MODEL_TYPES = ("depth_anything", "dpt")
# image_processor_type values whose preprocessing this module reproduces (transformers' DPT family;
# Depth Anything checkpoints name DPTImageProcessor too).
PROCESSOR_TYPES = ("DPTImageProcessor", "DPTImageProcessorPil", "DPTImageProcessorFast", "DPTFeatureExtractor")
PROCESSOR_FILE = "preprocessor_config.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Pillow's resampling codes (PIL.Image.Resampling), as preprocessor_config.json stores them.
RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
DEFAULT_PREPROCESSING = {
    "depth_anything": {"size": (518, 518), "keep_aspect_ratio": True, "ensure_multiple_of": 14, "resample": 3,
                       "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                       "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD},
    "dpt": {"size": (384, 384), "keep_aspect_ratio": False, "ensure_multiple_of": 1, "resample": 3,
            "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": (0.5, 0.5, 0.5), "image_std": (0.5, 0.5, 0.5)},
}
# Weight files in the order transformers looks for them; the first present is what it loads.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
FLAT_TOLERANCE = 1e-5


# -- checkpoint files -------------------------------------------------------------------------------

def read_config(model_dir: str) -> dict:
    """config.json of a checkpoint directory, checked to be a supported depth model."""
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"{NAME}: model_dir {model_dir!r} is not a directory (a local checkpoint "
                                f"directory as save_pretrained writes it is needed; nothing is downloaded)")
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        raise ValueError(f"{NAME}: {model_dir} has no config.json: not a transformers checkpoint directory")
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{NAME}: cannot read {path}: {e}") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in MODEL_TYPES:
        raise ValueError(f"{NAME}: {path} has model_type {model_type!r}; supported: {', '.join(MODEL_TYPES)} "
                         f"(Depth Anything V2 and DPT depth checkpoints)")
    return config


def weight_files(model_dir: str) -> list[str]:
    """The weight files transformers loads from `model_dir`, in a deterministic (sorted) order.

    model.safetensors, else the shards named in model.safetensors.index.json, else pytorch_model.bin,
    else the shards of pytorch_model.bin.index.json.
    """
    for name in WEIGHT_FILES:
        path = os.path.join(model_dir, name)
        if not os.path.isfile(path):
            continue
        if not name.endswith(".index.json"):
            return [path]
        try:
            with open(path) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{NAME}: cannot read the shard index {path}: {e}") from None
        missing = [s for s in shards if not os.path.isfile(os.path.join(model_dir, s))]
        if not shards or missing:
            raise ValueError(f"{NAME}: {path} names missing shards {missing or '(none listed)'}")
        return [os.path.join(model_dir, s) for s in shards]
    raise ValueError(f"{NAME}: {model_dir} holds no weights (looked for {', '.join(WEIGHT_FILES)})")


def weights_sha256(paths: list[str]) -> str:
    """sha256 of the weight file (one file: that file's own sha256); of their bytes concatenated in
    the given order for shards."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _size_pair(value, what: str) -> tuple[int, int]:
    if isinstance(value, dict):
        if "height" not in value or "width" not in value:
            raise ValueError(f"{NAME}: {what} must give height and width (DPT image processor), got {value!r}")
        value = (value["height"], value["width"])
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in value)):
        raise ValueError(f"{NAME}: {what} must be a positive int or (height, width), got {value!r}")
    return int(value[0]), int(value[1])


def read_preprocessing(model_dir: str, model_type: str) -> tuple[dict, str]:
    """(preprocessing parameters, source): the checkpoint's preprocessor_config.json, else the
    documented defaults for `model_type` (see the module docstring)."""
    prep = dict(DEFAULT_PREPROCESSING[model_type])
    path = os.path.join(model_dir, PROCESSOR_FILE)
    if not os.path.isfile(path):
        return prep, f"defaults for {model_type}"
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{NAME}: cannot read {path}: {e}") from None
    kind = config.get("image_processor_type") or config.get("feature_extractor_type")
    if kind is not None and kind not in PROCESSOR_TYPES:
        raise ValueError(f"{NAME}: {path} names image processor {kind!r}; this producer reproduces "
                         f"{', '.join(PROCESSOR_TYPES)} only")
    if config.get("do_pad") and config.get("size_divisor"):
        raise ValueError(f"{NAME}: {path} asks for padding to a multiple of {config['size_divisor']} (do_pad), "
                         f"which this producer does not reproduce")
    if config.get("do_center_crop"):
        raise ValueError(f"{NAME}: {path} asks for center cropping, which this producer does not reproduce")
    for key in ("keep_aspect_ratio", "do_resize", "do_rescale", "do_normalize"):
        if config.get(key) is not None:
            prep[key] = bool(config[key])
    if config.get("size") is not None:
        prep["size"] = _size_pair(config["size"], f"{path}: size")
    if config.get("ensure_multiple_of") is not None:
        prep["ensure_multiple_of"] = int(config["ensure_multiple_of"])
    if config.get("resample") is not None:
        prep["resample"] = int(config["resample"])
    if config.get("rescale_factor") is not None:
        prep["rescale_factor"] = float(config["rescale_factor"])
    for key in ("image_mean", "image_std"):
        if config.get(key) is not None:
            value = config[key]
            value = [value] * 3 if isinstance(value, (int, float)) else list(value)
            if len(value) != 3:
                raise ValueError(f"{NAME}: {path}: {key} must have 3 values, got {config[key]!r}")
            prep[key] = tuple(float(v) for v in value)
    if prep["resample"] not in RESAMPLE_NAMES:
        raise ValueError(f"{NAME}: {path}: unknown resample {prep['resample']!r}; known: {RESAMPLE_NAMES}")
    if prep["ensure_multiple_of"] < 1:
        raise ValueError(f"{NAME}: {path}: ensure_multiple_of must be >= 1, got {prep['ensure_multiple_of']}")
    if min(prep["image_std"]) <= 0:
        raise ValueError(f"{NAME}: {path}: image_std must be positive, got {prep['image_std']}")
    return prep, path


# -- geometry, pre- and post-processing (numpy / Pillow) ----------------------------------------------

def network_size(height: int, width: int, size: tuple[int, int], keep_aspect_ratio: bool,
                 multiple: int) -> tuple[int, int]:
    """(h, w) of the network input for an image of height x width: transformers' DPT rule (step 3)."""
    scale_h, scale_w = size[0] / height, size[1] / width
    if keep_aspect_ratio:
        if abs(1 - scale_w) < abs(1 - scale_h):
            scale_h = scale_w
        else:
            scale_w = scale_h

    def fit(value: float) -> int:
        fitted = round(value / multiple) * multiple
        return int(fitted if fitted >= 0 else math.ceil(value / multiple) * multiple)

    return fit(scale_h * height), fit(scale_w * width)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[N, H, W, 3] pixels as uint8: uint8 unchanged; others finite (NaN -> 0), clipped, rounded."""
    if images.dtype == np.uint8:
        return images
    pixels = np.nan_to_num(images.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
    return np.rint(np.clip(pixels, 0.0, 255.0)).astype(np.uint8)


def preprocess(images: np.ndarray, prep: dict, size: tuple[int, int]) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float32 pixel_values [N, 3, h, w] (steps 4-5) at network size `size`."""
    from PIL import Image  # pylint: disable=g-import-not-at-top

    if prep["do_resize"] and size != images.shape[1:3]:
        resized = np.empty((len(images), *size, 3), np.uint8)
        for i, image in enumerate(images):
            resized[i] = np.asarray(Image.fromarray(image).resize((size[1], size[0]), resample=prep["resample"]))
        images = resized
    if prep["do_rescale"]:
        x = (images.astype(np.float64) * prep["rescale_factor"]).astype(np.float32)
    else:
        x = images.astype(np.float32)
    if prep["do_normalize"]:
        x = (x - np.asarray(prep["image_mean"], np.float32)) / np.asarray(prep["image_std"], np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _cubic_coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices [out, 4], weights [out, 4]) of torch's bicubic (A = -0.75, align_corners=False)."""
    a = np.float32(-0.75)
    scale = np.float32(in_size) / np.float32(out_size)
    real = scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    base = np.floor(real)
    t = real - base

    def near(x):     # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):      # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    one = np.float32(1.0)
    weights = np.stack([far(t + one), near(t), near(one - t), far((one - t) + one)], axis=1).astype(np.float32)
    indices = np.clip(base.astype(np.int64)[:, None] + np.arange(-1, 3)[None, :], 0, in_size - 1)
    return indices, weights


def resize_bicubic(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 [N, h, w] -> [N, H, W]: torch's `interpolate(mode='bicubic', align_corners=False)`."""
    maps = np.asarray(maps, np.float32)
    if maps.shape[1:] == tuple(size):
        return maps
    out = maps
    for axis, new in ((2, size[1]), (1, size[0])):
        indices, weights = _cubic_coefficients(out.shape[axis], new)
        taken = np.take(out, indices, axis=axis)            # [..., new, 4, ...] along `axis`
        shape = [1] * taken.ndim
        shape[axis], shape[axis + 1] = new, 4
        out = (taken * weights.reshape(shape)).sum(axis=axis + 1, dtype=np.float32)
    return out


def normalize_depth(depth: np.ndarray, larger_is_nearer: bool = True, polarity: str = "near") -> np.ndarray:
    """Per-image min-max of [N, H, W] predictions to [0, 1] with 1 = nearest (polarity 'near') or
    1 = farthest ('far'); flat predictions -> zeros (step 8)."""
    depth = np.asarray(depth, np.float32)
    if not np.isfinite(depth).all():
        raise ValueError(f"{NAME}: the depth model produced non-finite values")
    low = depth.min(axis=(1, 2), keepdims=True)
    high = depth.max(axis=(1, 2), keepdims=True)
    spread = high - low
    flat = ~(spread > np.float32(FLAT_TOLERANCE) * np.maximum(np.abs(high), np.abs(low)))
    maps = (depth - low) / np.where(flat, np.float32(1.0), spread)
    if larger_is_nearer == (polarity == "far"):
        maps = np.float32(1.0) - maps
    return np.where(flat, np.float32(0.0), np.clip(maps, 0.0, 1.0)).astype(np.float32)


# -- the torch backend ----------------------------------------------------------------------------

def _load_model(model_dir: str, device: str, dtype: str):
    """The transformers depth model of `model_dir` on `device` in `dtype`, in eval mode (torch)."""
    import torch  # pylint: disable=g-import-not-at-top
    from transformers import AutoModelForDepthEstimation  # pylint: disable=g-import-not-at-top

    try:
        torch_device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{NAME}: invalid torch device {device!r}: {e}") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{NAME}: device {device!r} requested but torch finds no CUDA device")
    try:
        model = AutoModelForDepthEstimation.from_pretrained(model_dir, local_files_only=True,
                                                            dtype=getattr(torch, dtype))
    except Exception as e:  # pylint: disable=broad-except  (corrupt weights raise safetensors' own error)
        raise ValueError(f"{NAME}: cannot load {model_dir} with transformers' AutoModelForDepthEstimation: "
                         f"{type(e).__name__}: {e}") from e
    return model.to(torch_device).eval()


def _forward(model, pixel_values: np.ndarray) -> np.ndarray:
    """pixel_values float32 [N, 3, h, w] -> the model's predicted_depth, float32 numpy [N, h', w'].

    The one torch step (a JAX backend replaces this and `_load_model`)."""
    import torch  # pylint: disable=g-import-not-at-top

    parameter = next(model.parameters())
    with torch.inference_mode():
        x = torch.from_numpy(pixel_values).to(device=parameter.device, dtype=parameter.dtype)
        depth = model(pixel_values=x).predicted_depth
        if depth.ndim == 4:
            depth = depth[:, 0]
        return depth.float().cpu().numpy()


# -- the producer -----------------------------------------------------------------------------------

class DepthMap:
    """Depth map producer ``depth``; see the module docstring.

    DepthMap(model_dir, *, input_size=None, batch_size=4, device='cpu', dtype='float32',
    polarity='near', min_side=32, backend='torch'). Calls take [N, H, W, 3] RGB, uint8 or float in
    [0, 255], and return float32 numpy maps [N, H, W] in [0, 1]; 1 = nearest (polarity 'near').
    """

    name = NAME

    def __init__(self, model_dir: str, *, input_size: Any = None, batch_size: int = 4, device: str = "cpu",
                 dtype: str = "float32", polarity: str = "near", min_side: int = 32, backend: str = "torch"):
        if backend not in BACKENDS:
            raise ValueError(f"{NAME}: backend {backend!r} is not implemented; available: {', '.join(BACKENDS)}")
        if polarity not in POLARITIES:
            raise ValueError(f"{NAME}: unknown polarity {polarity!r}; known: {', '.join(POLARITIES)}")
        if dtype not in DTYPES:
            raise ValueError(f"{NAME}: unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"{NAME}: batch_size must be an integer >= 1, got {batch_size!r}")
        if isinstance(min_side, bool) or int(min_side) != min_side or min_side < 1:
            raise ValueError(f"{NAME}: min_side must be an integer >= 1, got {min_side!r}")
        self.model_dir = os.path.abspath(os.fspath(model_dir))
        self.config = read_config(self.model_dir)
        self.model_type = self.config["model_type"]
        self._weight_files = weight_files(self.model_dir)
        self.preprocessing, self._preprocessing_source = read_preprocessing(self.model_dir, self.model_type)
        if input_size is not None:
            self.preprocessing["size"] = _size_pair(input_size, "input_size")
        self.input_size = self.preprocessing["size"]
        self.batch_size, self.min_side = int(batch_size), int(min_side)
        self.device, self.dtype, self.polarity, self.backend = str(device), dtype, polarity, backend
        # metric Depth Anything predicts depth (large = far); every other supported head, inverse depth
        self.output = ("metric depth" if self.config.get("depth_estimation_type") == "metric"
                       else "relative inverse depth")
        self._patch = self._patch_size()
        if self._square_only() and self.preprocessing["do_resize"] and (
                self.preprocessing["keep_aspect_ratio"] or self.input_size[0] != self.input_size[1]):
            raise ValueError(f"{NAME}: {self.model_dir}: transformers' DPT with its built-in ViT/hybrid backbone "
                             f"takes square inputs only, but the preprocessing asks for size {self.input_size} "
                             f"with keep_aspect_ratio={self.preprocessing['keep_aspect_ratio']}")
        self._sha256 = weights_sha256(self._weight_files)
        self._model = _load_model(self.model_dir, self.device, self.dtype)

    def _patch_size(self) -> int:
        backbone = self.config.get("backbone_config") or {}
        patch = self.config.get("patch_size") if self.model_type == "depth_anything" else None
        patch = patch or backbone.get("patch_size") or self.config.get("patch_size") or 1
        return int(patch[0] if isinstance(patch, (list, tuple)) else patch)

    def _square_only(self) -> bool:
        """transformers' DPT reshapes ViT tokens to a square grid unless a non-hybrid backbone_config is set."""
        if self.model_type != "dpt":
            return False
        return not self.config.get("backbone_config") or bool(self.config.get("is_hybrid"))

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of the network input for images of height x width (step 3)."""
        if not self.preprocessing["do_resize"]:
            return height, width
        return network_size(height, width, self.input_size, self.preprocessing["keep_aspect_ratio"],
                            self.preprocessing["ensure_multiple_of"])

    def __call__(self, images) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{NAME}: expected images [N, H, W, 3] (RGB 0..255), got shape {images.shape}")
        n, height, width, _ = images.shape
        if n == 0:
            raise ValueError(f"{NAME}: empty image batch {images.shape}")
        if min(height, width) < self.min_side:
            raise ValueError(f"{NAME}: image of {height}x{width} pixels is smaller than min_side={self.min_side} "
                             f"on its shorter side; a depth map of it would show the model's prior, not the image")
        size = self.network_size(height, width)
        if min(size) < self._patch:
            raise ValueError(f"{NAME}: image of {height}x{width} pixels resizes to a network input of {size[0]}x"
                             f"{size[1]}, below one {self._patch}-pixel patch (aspect ratio too extreme)")
        if self._square_only() and size[0] != size[1]:
            raise ValueError(f"{NAME}: this DPT takes square inputs only; {height}x{width} gives {size}")
        pixels = to_uint8(images)
        maps = np.empty((n, height, width), np.float32)
        for start in range(0, n, self.batch_size):
            chunk = preprocess(pixels[start:start + self.batch_size], self.preprocessing, size)
            depth = _forward(self._model, chunk)
            if depth.ndim != 3 or len(depth) != len(chunk):
                raise ValueError(f"{NAME}: the model returned predicted_depth of shape {depth.shape} "
                                 f"for pixel_values of shape {chunk.shape}")
            maps[start:start + len(chunk)] = normalize_depth(
                resize_bicubic(depth, (height, width)), self.output != "metric depth", self.polarity)
        return maps

    def metadata(self) -> dict:
        """`params` rebuild this producer (`modalities.create('depth', **params)`); the rest traces the
        maps to the weights and the preprocessing."""
        prep = self.preprocessing
        return {
            "name": self.name,
            "params": {"model_dir": self.model_dir, "input_size": list(self.input_size),
                       "batch_size": self.batch_size, "device": self.device, "dtype": self.dtype,
                       "polarity": self.polarity, "min_side": self.min_side, "backend": self.backend},
            "weights_sha256": self._sha256,
            "weights_files": [os.path.basename(p) for p in self._weight_files],
            "model_type": self.model_type,
            "config_class": type(self._model.config).__name__,
            "model_class": type(self._model).__name__,
            "output": self.output,
            "convention": "per-image min-max; 1 = " + ("nearest" if self.polarity == "near" else "farthest"),
            "preprocessing": {"source": (os.path.basename(self._preprocessing_source)
                                         if self._preprocessing_source.endswith(PROCESSOR_FILE)
                                         else self._preprocessing_source),
                              "size": list(prep["size"]), "keep_aspect_ratio": prep["keep_aspect_ratio"],
                              "ensure_multiple_of": prep["ensure_multiple_of"],
                              "resample": RESAMPLE_NAMES[prep["resample"]] + " (Pillow)",
                              "do_resize": prep["do_resize"], "do_rescale": prep["do_rescale"],
                              "rescale_factor": prep["rescale_factor"], "do_normalize": prep["do_normalize"],
                              "image_mean": list(prep["image_mean"]), "image_std": list(prep["image_std"]),
                              "postprocess": "bicubic (torch, A=-0.75, align_corners=False) to H x W"},
        }

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.metadata()["params"].items())
        return f"DepthMap({params})"
