"""Write OpenCV-contrib's spectral-residual saliency maps of 12 real photographs to a reference file.

    python3 -m venv /tmp/ocv
    /tmp/ocv/bin/pip install opencv-contrib-python-headless numpy scikit-image
    /tmp/ocv/bin/python scripts/make_spectral_reference.py      # -> tests/data/spectral_opencv_reference.npz

Run it in a venv of its own: opencv-contrib-python-headless replaces the project's
opencv-python-headless (both install the `cv2` package). `tests/test_spectral.py` compares
`aesthetics_jax.modalities.spectral` (variant 'opencv') with this file.

Photos. `PHOTOS` is the recipe, not the pixels: each entry takes one of scikit-image's bundled
photographs (`skimage.data`; all PNG except rocket, a JPEG), grey ones stacked to RGB, rotates it
by k quarter turns (`np.rot90`), averages s x s blocks (integer mean, rounded half up: pure numpy,
so both venvs produce the same pixels), and crops (top, left, height, width). Sizes run from 56x40
to 500x375 in both orientations, with odd sizes, an exact 2x reduction (128x128: OpenCV's
INTER_AREA shortcut) and an image smaller than the 64x64 working size. The file stores each
photo's pixel sha256 so the test notices when a decoder produces other pixels.

Maps. OpenCV is fed `rgb[..., ::-1]` (it reads BGR): `StaticSaliencySpectralResidual.
computeSaliency` -> float32 [H, W] in [0, 1]. Each map is stored as q = round(65535 * map) (error
<= 7.7e-6, far below the 1e-3 parity bound) in uint16, encoded as second differences along both
axes (arithmetic mod 2^16; the bilinear final resize makes them mostly 0, so the file compresses to
~0.5 byte per pixel): `decode_map` undoes it.

File (`np.load(path, allow_pickle=False)`): `opencv_version`, `numpy_version`, `skimage_version`
(0-d str), `names`, `sha256` (1-d str, recipe order), `map__<name>` (uint16 [H, W]), and
`floatmap__<name>` for the `FLOAT_PHOTOS`, whose pixels OpenCV also received as float32 (its float
path: float grey weights, INTER_LINEAR without uint8 rounding).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

import numpy as np

# Photos also fed to OpenCV as float32 (same values): its float path (float grey, INTER_LINEAR).
FLOAT_PHOTOS = ("chelsea_90x120", "coins_192x151")

# name, skimage.data loader ('motorcycle': stereo_motorcycle()[0]), rot90 k, block, (top, left, h, w)
PHOTOS = (
    ("astronaut_500x375", "astronaut", 0, 1, (60, 6, 375, 500)),
    ("rocket_375x500", "rocket", 1, 1, (70, 26, 500, 375)),
    ("coffee_300x200", "coffee", 0, 2, (0, 0, 200, 300)),
    ("chelsea_200x150", "chelsea", 0, 2, (0, 12, 150, 200)),
    ("camera_240x320", "camera", 0, 1, (96, 136, 320, 240)),
    ("ihc_128x128", "immunohistochemistry", 0, 4, (0, 0, 128, 128)),
    ("motorcycle_185x125", "motorcycle", 0, 4, (0, 0, 125, 185)),
    ("coins_192x151", "coins", 0, 2, (0, 0, 151, 192)),
    ("moon_120x90", "moon", 0, 4, (19, 4, 90, 120)),
    ("chelsea_90x120", "chelsea", 1, 3, (15, 5, 120, 90)),
    ("astronaut_56x40", "astronaut", 0, 8, (4, 4, 40, 56)),
    ("brick_213x157", "brick", 0, 1, (100, 50, 157, 213)),
)

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data",
                           "spectral_opencv_reference.npz")


def reference_photo(spec) -> np.ndarray:
    """The uint8 RGB [h, w, 3] photo that one `PHOTOS` entry describes."""
    import skimage.data

    name, source, k, block, (top, left, height, width) = spec
    image = skimage.data.stereo_motorcycle()[0] if source == "motorcycle" else getattr(skimage.data, source)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = np.rot90(image[..., :3], k)
    if block > 1:
        rows, cols = image.shape[0] // block, image.shape[1] // block
        sums = image[:rows * block, :cols * block].astype(np.int64).reshape(rows, block, cols, block, 3).sum((1, 3))
        image = ((sums + block * block // 2) // (block * block)).astype(np.uint8)
    image = np.ascontiguousarray(image[top:top + height, left:left + width])
    if image.shape != (height, width, 3):
        raise ValueError(f"{name}: recipe gives shape {image.shape}, expected {(height, width, 3)}")
    return image


def pixel_sha256(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def encode_map(saliency: np.ndarray) -> np.ndarray:
    """float map in [0, 1] -> uint16 second differences of round(65535 * map) along both axes."""
    q = np.round(np.clip(saliency.astype(np.float64), 0.0, 1.0) * 65535.0).astype(np.uint16)
    for axis in (0, 0, 1, 1):
        q = np.diff(q, axis=axis, prepend=np.zeros_like(q.take([0], axis=axis)))
    return q


def decode_map(encoded: np.ndarray) -> np.ndarray:
    """Inverse of `encode_map`: float64 map = q / 65535."""
    q = encoded.astype(np.uint16)
    for axis in (1, 1, 0, 0):
        q = np.cumsum(q, axis=axis, dtype=np.uint16)
    return q.astype(np.float64) / 65535.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    import cv2
    import skimage

    if not hasattr(cv2, "saliency"):
        print("cv2.saliency is missing: run this with opencv-contrib-python-headless (see the docstring)",
              file=sys.stderr)
        return 2
    producer = cv2.saliency.StaticSaliencySpectralResidual_create()
    arrays, names, hashes = {}, [], []
    for spec in PHOTOS:
        image = reference_photo(spec)
        ok, saliency = producer.computeSaliency(np.ascontiguousarray(image[..., ::-1]))
        if not ok or saliency.shape != image.shape[:2]:
            raise RuntimeError(f"{spec[0]}: computeSaliency failed ({ok}, {getattr(saliency, 'shape', None)})")
        encoded = encode_map(saliency)
        assert np.abs(decode_map(encoded) - saliency).max() <= 0.5 / 65535 + 1e-7
        arrays[f"map__{spec[0]}"] = encoded
        if spec[0] in FLOAT_PHOTOS:
            ok, saliency = producer.computeSaliency(np.ascontiguousarray(image[..., ::-1], dtype=np.float32))
            assert ok and saliency.shape == image.shape[:2]
            arrays[f"floatmap__{spec[0]}"] = encode_map(saliency)
        names.append(spec[0])
        hashes.append(pixel_sha256(image))
        print(f"{spec[0]:20s} {image.shape[1]}x{image.shape[0]}  range [{saliency.min():.4f}, {saliency.max():.4f}]")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez_compressed(args.out, opencv_version=np.array(cv2.__version__), numpy_version=np.array(np.__version__),
                        skimage_version=np.array(skimage.__version__), names=np.array(names),
                        sha256=np.array(hashes), **arrays)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes), opencv {cv2.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
