"""Spectral-residual saliency and the map-producer registry.

References are independent of the code under test: OpenCV-contrib's own maps (a file written by
scripts/make_spectral_reference.py in a venv with opencv-contrib), OpenCV 5.0 primitives of the
project's venv for the individual steps, and a float64 numpy/scipy transcription of the authors'
MATLAB recipe for 'hou2007'.
"""

import functools
import math
import os

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from aesthetics_jax import modalities
from aesthetics_jax.modalities import spectral
from scripts.make_spectral_reference import PHOTOS, decode_map, pixel_sha256, reference_photo

REFERENCE = os.path.join(os.path.dirname(__file__), "data", "spectral_opencv_reference.npz")
PHOTO = {spec[0]: spec for spec in PHOTOS}


@functools.lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    return reference_photo(PHOTO[name])


def test_opencv_variant_matches_opencv_contrib_on_real_photos():
    reference = np.load(REFERENCE, allow_pickle=False)
    assert str(reference["opencv_version"]).startswith(("4.", "5."))
    names = [str(n) for n in reference["names"]]
    assert len(names) >= 10 and len({photo(n).shape for n in names}) == len(names)
    images = [photo(n) for n in names]
    for name, image, digest in zip(names, images, reference["sha256"]):
        assert pixel_sha256(image) == digest, f"{name}: skimage decoded other pixels than the reference's"
    maps = modalities.compute_maps(modalities.create("spectral"), images)
    errors = {}
    for name, saliency in zip(names, maps):
        expected = decode_map(reference[f"map__{name}"])
        assert saliency.shape == expected.shape and saliency.dtype == np.float32
        errors[name] = float(np.abs(saliency - expected).max())
    float_names = [k[len("floatmap__"):] for k in reference.files if k.startswith("floatmap__")]
    assert float_names
    for name, saliency in zip(float_names, modalities.compute_maps(
            modalities.create("spectral"), [photo(n).astype(np.float32) for n in float_names])):
        errors[f"{name} (float32 input)"] = float(np.abs(saliency - decode_map(reference[f"floatmap__{name}"])).max())
    print("max abs error vs OpenCV-contrib:", {k: f"{v:.1e}" for k, v in errors.items()})
    # Contract: 1e-3. Measured <= 2e-6 (float32 vs OpenCV's float64); 1e-4 catches step drift.
    assert max(errors.values()) <= 1e-4, errors


@pytest.mark.parametrize("shape", [(1, 1), (1, 300), (300, 1), (2, 2), (63, 65), (64, 64), (128, 96), (200, 457)])
def test_opencv_downsampling_is_bit_exact(shape):
    """Steps 1-2 (grey, 64x64 INTER_LINEAR_EXACT with uint8 rounding) equal OpenCV's exactly."""
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    expected = cv2.resize(cv2.cvtColor(np.ascontiguousarray(image[..., ::-1]), cv2.COLOR_BGR2GRAY), (64, 64),
                          interpolation=cv2.INTER_LINEAR_EXACT)
    got = np.asarray(spectral._opencv_downsample(jnp.asarray(image[None]), 64))[0]
    np.testing.assert_array_equal(got, expected.astype(np.float32))


@pytest.mark.parametrize("size", [(64, 64), (90, 120), (500, 375), (40, 41)])
def test_final_resize_matches_opencv_float_linear(size):
    rng = np.random.default_rng(size[0])
    low = rng.random((64, 64), dtype=np.float32)
    expected = cv2.resize(low, size[::-1], interpolation=cv2.INTER_LINEAR_EXACT)  # float -> INTER_LINEAR
    got = np.asarray(spectral._upsample(jnp.asarray(low[None]), *size))[0]
    np.testing.assert_allclose(got, expected, atol=2e-7)


def test_phasor_is_cos_sin_of_opencv_cart_to_polar_angle():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2, 4096)) * 10.0 ** rng.integers(-3, 6, size=(2, 4096))
    x[:8], y[:8] = [0, 0, 1, -1, 0, 0, 2, -2], [0, 1, 0, 0, -1, 3, 2, -2]
    _, angle = cv2.cartToPolar(x, y)                          # OpenCV's fast atan2, not np.arctan2
    cos, sin = spectral._opencv_phasor(jnp.asarray(y, jnp.float32), jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(np.asarray(cos), np.cos(angle.ravel()), atol=2e-6)
    np.testing.assert_allclose(np.asarray(sin), np.sin(angle.ravel()), atol=2e-6)
    assert np.abs(angle.ravel() - np.mod(np.arctan2(y, x), 2 * np.pi)).max() > 1e-5   # it is approximate


@pytest.mark.parametrize("variant", spectral.VARIANTS)
@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 500, 3), (500, 3, 1)])
def test_shape_range_and_dtypes(variant, shape):
    rng = np.random.default_rng(7)
    producer = modalities.create("spectral", variant=variant)
    for images in (rng.integers(0, 256, (2, *shape), dtype=np.uint8), rng.random((2, *shape)) * 255.0):
        maps = np.asarray(producer(images))
        assert maps.shape == (2, *shape[:2]) and maps.dtype == np.float32
        assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0


@pytest.mark.parametrize("variant", spectral.VARIANTS)
def test_flat_and_hostile_pixels_give_a_finite_uniform_map(variant):
    producer = spectral.SpectralSaliency(variant)
    flat = np.stack([np.full((45, 60, 3), v, np.uint8) for v in (0, 1, 128, 255)])
    np.testing.assert_array_equal(np.asarray(producer(flat)), np.ones((4, 45, 60), np.float32))
    hostile = np.full((4, 45, 60, 3), 100.0, np.float32)
    hostile[0] = np.nan
    hostile[1] = np.inf
    hostile[2] = -1e30
    hostile[3, ::2] = np.nan                            # NaN -> 0: stripes of 0 and 100
    maps = np.asarray(producer(hostile))
    np.testing.assert_array_equal(maps[:3], np.ones((3, 45, 60), np.float32))
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0


def test_batch_equals_single_images_and_jit():
    images = np.stack([photo("astronaut_56x40"), photo("astronaut_56x40")[::-1], 255 - photo("astronaut_56x40")])
    for variant in spectral.VARIANTS:
        producer = spectral.SpectralSaliency(variant)
        batch = np.asarray(producer(images))
        singles = np.concatenate([np.asarray(producer(image[None])) for image in images])
        np.testing.assert_allclose(batch, singles, atol=1e-6)
        assert np.abs(batch[0] - batch[1][::-1]).max() > 1e-2          # not one map for all
        fn = jax.jit(functools.partial(spectral.spectral_saliency, variant=variant))
        np.testing.assert_allclose(np.asarray(fn(jnp.asarray(images))), batch, atol=1e-6)


# --- hou2007: an independent float64 transcription of the MATLAB recipe ----------------------------

def _keys_cubic(x):
    ax = np.abs(x)
    inner = 1.5 * ax**3 - 2.5 * ax**2 + 1
    outer = -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
    return np.where(ax <= 1, inner, np.where(ax <= 2, outer, 0.0))


def _matlab_imresize_axis0(a, scale, out_len):
    """imresize along axis 0, one output row at a time: antialiased bicubic, symmetric padding."""
    stretch = min(scale, 1.0)
    support = 2.0 / stretch
    pad = int(math.ceil(support)) + 2
    padded = np.pad(a, [(pad, pad)] + [(0, 0)] * (a.ndim - 1), mode="symmetric")
    rows = []
    for i in range(1, out_len + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)                  # 1-based source coordinate
        j = np.arange(math.floor(u - support), math.ceil(u + support) + 1)
        w = stretch * _keys_cubic(stretch * (u - j))
        rows.append(np.tensordot(w / w.sum(), padded[j - 1 + pad], axes=1))
    return np.stack(rows)


def _hou2007_matlab(rgb_uint8):
    y = np.linalg.inv([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]])[0]
    grey = np.floor(rgb_uint8.astype(np.float64) @ y + 0.5) / 255.0      # rgb2gray (uint8) + im2double
    scale = 64 / grey.shape[1]
    grey = _matlab_imresize_axis0(grey, scale, math.ceil(64 * grey.shape[0] / grey.shape[1]))
    grey = _matlab_imresize_axis0(grey.T, scale, 64).T
    spectrum = np.fft.fft2(grey)
    log_amplitude = np.log(np.abs(spectrum))
    residual = log_amplitude - scipy.ndimage.uniform_filter(log_amplitude, 3, mode="nearest")
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    t = np.arange(-4.5, 5.0)
    kernel = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * 2.5**2))
    saliency = scipy.ndimage.correlate(saliency, kernel / kernel.sum(), mode="constant", origin=-1)
    saliency = (saliency - saliency.min()) / (saliency.max() - saliency.min())       # mat2gray
    height, width = rgb_uint8.shape[:2]
    return cv2.resize(saliency.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


@pytest.mark.parametrize("name", ["coffee_300x200", "camera_240x320", "astronaut_56x40", "coins_192x151"])
def test_hou2007_matches_matlab_transcription(name):
    image = photo(name)
    expected = _hou2007_matlab(image)
    got = np.asarray(spectral.SpectralSaliency("hou2007")(image[None]))[0]
    assert spectral.hou2007_working_shape(*image.shape[:2]) == (math.ceil(64 * image.shape[0] / image.shape[1]), 64)
    err = np.abs(got - expected).max()
    print(f"{name}: hou2007 max abs error vs float64 transcription {err:.1e}")
    assert err < 1e-4


# --- registry and compute_maps -------------------------------------------------------------------

def test_registry_create_and_metadata():
    producer = modalities.create("spectral")
    assert isinstance(producer, modalities.MapProducer) and producer.name == "spectral"
    assert producer.metadata() == {"name": "spectral", "params": {"variant": "opencv", "size": 64}}
    meta = modalities.create("spectral", variant="hou2007").metadata()
    assert modalities.create(meta["name"], **meta["params"]).metadata() == meta
    assert modalities.PRODUCERS["msinet"] == ("aesthetics_jax.modalities.msinet", "MSINetSaliency")
    assert modalities.DEFAULT_SALIENCY == "spectral"
    with pytest.raises(ValueError, match=r"unknown map producer 'nope'; known: blur, depth, msinet, spectral"):
        modalities.create("nope")
    with pytest.raises(ValueError, match="variant"):
        modalities.create("spectral", variant="matlab")
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        modalities.create("spectral")(np.zeros((4, 4, 3), np.uint8))


class _MeanProducer:
    """A stand-in producer: the channel mean / 255; records the batch shapes it receives."""

    name = "mean"

    def __init__(self):
        self.calls = []

    def __call__(self, images):
        self.calls.append(images.shape)
        return images.mean(axis=-1) / 255.0

    def metadata(self):
        return {"name": self.name, "params": {}}


def test_compute_maps_groups_batches_and_keeps_order():
    rng = np.random.default_rng(3)
    shapes = [(5, 7), (9, 4), (5, 7), (5, 7), (9, 4), (2, 3), (5, 7)]
    images = [rng.integers(0, 256, (*s, 3), dtype=np.uint8) for s in shapes]
    producer = _MeanProducer()
    maps = modalities.compute_maps(producer, images, batch_size=3)
    for image, m in zip(images, maps):
        assert m.dtype == np.float32
        np.testing.assert_allclose(m, image.mean(axis=-1) / 255.0, rtol=1e-6)
    assert sorted(producer.calls) == sorted([(3, 5, 7, 3), (1, 5, 7, 3), (2, 9, 4, 3), (1, 2, 3, 3)])
    capped = _MeanProducer()                    # maps of 5x7 and 9x4 take 140 and 144 bytes
    modalities.compute_maps(capped, images, batch_size=3, max_batch_bytes=300)
    assert sorted(capped.calls) == sorted([(2, 5, 7, 3), (2, 5, 7, 3), (2, 9, 4, 3), (1, 2, 3, 3)])

    spectral_maps = modalities.compute_maps(modalities.create("spectral"), images[:3])
    for image, m in zip(images[:3], spectral_maps):
        np.testing.assert_allclose(m, np.asarray(modalities.create("spectral")(image[None]))[0], atol=1e-6)


def test_compute_maps_rejects_a_producer_that_returns_the_wrong_shape():
    class Bad(_MeanProducer):
        def __call__(self, images):
            return np.zeros(images.shape[:2])

    with pytest.raises(ValueError, match="'mean' returned shape"):
        modalities.compute_maps(Bad(), [np.zeros((4, 5, 3), np.uint8)])
