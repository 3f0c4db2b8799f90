"""Spectral-residual saliency (Hou & Zhang, CVPR 2007): training-free, batched, jit-able.

    producer = SpectralSaliency()                          # variant='opencv' (the default)
    maps = producer(images)          # [N, H, W, 3] RGB in [0, 255] -> float32 [N, H, W] in [0, 1]
    fn = jax.jit(functools.partial(spectral_saliency, variant='hou2007'))   # the pure function

`spectral_saliency(images, variant, size)` is a pure function of the pixels: every resampling and
filter matrix depends only on the static shape and is built with numpy at trace time, so one
compiled program serves every batch of one shape. `images` is ``[N, H, W, C]`` with C = 3 (RGB)
or 1 (grey), uint8 or float in [0, 255]; the two dtypes follow different arithmetic, as OpenCV's
do (below). Maps are float32 ``[N, H, W]`` in [0, 1] at the input resolution.

Variant ``opencv`` -- OpenCV-contrib ``cv2.saliency.StaticSaliencySpectralResidual`` (source
``modules/saliency/src/staticSaliencySpectralResidual.cpp``, identical on the 4.x and 5.x
branches, and the 5.0.0 wheel), reproduced step by step (g: grey image, F: spectrum):

  1. g = cvtColor(BGR2GRAY). OpenCV 5.0 on uint8 computes ``(9798 R + 19235 G + 3735 B + 2^14) >> 15``
     (Q15 weights; checked equal to cv2 5.0 on all 2^24 colours -- the Q14 table of older releases
     differs by one grey level on ~1 % of colours); on float, ``0.299 R + 0.587 G + 0.114 B``.
     The contrib code calls BGR2GRAY on the array it is given: our input is RGB, so the reference
     is OpenCV fed ``rgb[..., ::-1]``, i.e. the luminance it intends.
  2. g64 = resize(g, 64x64, INTER_LINEAR_EXACT), aspect ignored. For uint8 this is OpenCV's
     bit-exact bilinear: source x = (d + 0.5) * src/dst - 0.5, two taps, weights rounded to 8
     fractional bits (out of 256), clamped to the edge pixel outside, no anti-aliasing; the result
     is round((sum_yx wy * wx * g) / 2^16) -> uint8. Only the 128 x 128 pixels that carry taps
     are read (one gather), so the grey conversion costs the same whatever the photo size. In
     float32 these integer sums are exact (< 2^24). The uint8 rounding is not a detail:
     skipping it moves the final map by up to 3e-2 (measured on the reference photos). Float
     input falls back (as in OpenCV) to INTER_LINEAR with float weights and no rounding. An exact
     2x reduction, which OpenCV sends to INTER_AREA, gives the same numbers (weights 128/128).
  3. F = DFT(g64); |F| = magnitude, phase = cartToPolar's angle, which is OpenCV's *fast* atan2
     (a 7th-order polynomial in float32, ~1e-4 rad error): reproduced (`_opencv_phasor`). With
     the exact phase F / |F| the final maps would differ from OpenCV's by up to 5e-5.
  4. L = log(|F| + 1); R = L - blur3x3(L) (box mean, BORDER_REFLECT_101).
  5. s = |IDFT(exp(R) * e^{i phase})| (OpenCV's inverse DFT is unscaled; scale cancels in step 7).
  6. s = GaussianBlur(s, 5x5, sigma 8, BORDER_REFLECT_101); s = s * s (squared *after* the blur).
  7. s = s / max(s) -> float32; resize(s, (W, H), INTER_LINEAR_EXACT), which on float32 is plain
     INTER_LINEAR: weights (1 - fx, fx), fx = frac((d + 0.5) * 64 / size - 0.5), clamped at edges.

OpenCV runs steps 3-6 in float64; here they run in float32, with the mean removed before the DFT
and the DC term restored as the exact sum (this keeps float32 FFT error on weak frequencies ~1e-7
of the image's contrast rather than of its brightness). Measured against opencv-contrib 5.0.0's
float32 maps of the 12 reference photos (scripts/make_spectral_reference.py): max abs error
<= 6e-7 (the stored reference, quantised to 16 bits, adds up to 7.6e-6).

Variant ``hou2007`` -- the authors' MATLAB recipe, as we read it (SCIENCE.md section 2)::

    g = im2double(rgb2gray(img)); g = imresize(g, 64 / size(g, 2));
    F = fft2(g); R = log(abs(F)) - imfilter(log(abs(F)), fspecial('average', 3), 'replicate');
    s = abs(ifft2(exp(R + i * angle(F)))) .^ 2;
    s = mat2gray(imfilter(s, fspecial('gaussian', [10 10], 2.5)));

  - rgb2gray: Y = first row of inv(NTSC YIQ matrix) = (0.298936, 0.587043, 0.114021) . RGB,
    rounded to an integer for uint8 input (MATLAB returns uint8); not rounded for float input.
    im2double's 1/255 is dropped: the residual is invariant to intensity scale.
  - imresize by the scale 64/W (aspect kept): output (ceil(64 H / W), 64) -- computed in integer
    arithmetic; MATLAB's floating product can round up by one row in rare cases -- with MATLAB's
    defaults: bicubic (Keys, a = -0.5), anti-aliased when shrinking (kernel stretched by 1/scale,
    width 4/scale), input position u = x/scale + (1 - 1/scale)/2 (1-based x), weights normalised
    to sum 1, symmetric (half-sample mirror) indices beyond the borders. The same scale is used
    for both axes, as imresize does when given a scale. Images taller than 16 x their width are
    squeezed to 16 x 64 (that axis then uses its own scale): the recipe's working image would
    otherwise grow without bound (a 1-pixel-wide column of 500 rows -> 32000 x 64).
  - log|F|: a zero magnitude would give -inf; |F| is floored at 1e-6 |F(0,0)| (below float32's
    FFT resolution, so real photos never reach it).
  - 'average' 3x3 with replicate borders; exp(R + i angle F) = exp(R) F / |F| (phase 0 where F = 0).
  - fspecial('gaussian', [10 10], 2.5): taps exp(-t^2 / 12.5) at t = -4.5 ... 4.5, normalised;
    imfilter correlates with the kernel's centre at tap floor((10 + 1) / 2) = 5 (1-based), i.e.
    output(i) = sum_k w_k in(i + k) for k = -4 ... 5 (a half-pixel shift, as in MATLAB), with
    zero padding (imfilter's default).
  - mat2gray: (s - min) / (max - min).
  - The MATLAB recipe stops at the 64-wide map; here it is resized to the input size with the same
    float bilinear as the opencv variant's step 7 (convex weights: stays in [0, 1]).

Degenerate input. A *flat* image -- its working-resolution grey image spans <= 1e-3 grey levels
(exactly constant for uint8 input) -- has no spectral residual to speak of: the algorithm's
output would be floating-point noise (OpenCV returns a near-uniform map for mid-grey, a blob in the
top-left corner for black). Both variants return a uniform map of ones for it (every pixel equally
salient: the uniform-saliency baseline). Float pixels are made finite and clipped to [0, 255]
first (NaN -> 0), and the map is clipped to [0, 1] at the end, so the output is always finite and
in range. Images that are flat along one axis only (pure stripes) have spectra whose zero bins
carry rounding-noise phases in any implementation, OpenCV's included: their maps are finite but
not reproducible across implementations.

Precision on accelerators: every matrix product passes ``precision=HIGHEST`` (TF32 would break
float32 accuracy); step 2's exact sums are elementwise products, not matrix products.

Speed (2-core CPU, 500x375 photos, see benchmarks/spectral.py): the producer reads 128 x 128 of
each photo's pixels, runs the 64 x 64 spectral step, and writes the map, ~0.25 ms per photo in
batches of 8-32; the final resize (writing the full-size float32 map) is about 40 % of it. Keep
batches to ~24 MB of maps: XLA's CPU result buffers are fresh, 4 KB-paged memory, and a 96 MB
result (128 photos) spends more time in page faults than in arithmetic.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from aesthetics_jax.modalities import stage_images

VARIANTS = ("opencv", "hou2007")

_HIGHEST = jax.lax.Precision.HIGHEST

# OpenCV 5.0 cvtColor(BGR2GRAY) on uint8, Q15 weights for (R, G, B); float path weights.
_OPENCV_GREY_Q15 = (9798, 19235, 3735)
_OPENCV_GREY_FLOAT = (0.299, 0.587, 0.114)
# MATLAB rgb2gray: the first row of the inverse of the NTSC RGB -> YIQ matrix.
_MATLAB_GREY = tuple(np.linalg.inv(np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647],
                                             [1.0, -1.106, 1.703]]))[0].tolist())

# A working-resolution grey image spanning at most this many grey levels is flat (see docstring).
FLAT_RANGE = 1e-3
# hou2007 keeps the aspect ratio up to this height / width; taller images are squeezed to it.
HOU2007_MAX_ASPECT = 16


# --- resampling and filter matrices (numpy, built once per shape at trace time) --------------------

def _opencv_linear_exact_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """INTER_LINEAR_EXACT (uint8) along one axis: indices [dst, 2] and integer weights [dst, 2] / 256.

    OpenCV: scale = 1 / (dst / src) in double; f = scale * (d + 0.5) - 0.5; i = floor(f);
    inside [0, src - 2]: taps (i, i + 1), w1 = round(256 (f - i)) (ties to even, as softdouble's
    cvRound), w0 = 256 - w1; beyond either edge: the edge pixel with weight 256. src == dst copies.
    """
    index = np.zeros((dst, 2), np.int64)
    weight = np.zeros((dst, 2), np.int64)
    if src == dst:
        index[:, 0] = index[:, 1] = np.arange(dst)
        weight[:, 0] = 256
        return index, weight
    scale = 1.0 / (dst / src)
    for d in range(dst):
        f = scale * (d + 0.5) - 0.5
        i = math.floor(f)
        if i >= 0 and src > 1 and i < src - 1:
            w1 = int(np.round((f - i) * 256.0))
            index[d] = (i, i + 1)
            weight[d] = (256 - w1, w1)
        else:
            edge = src - 1 if (i >= 0 and src > 1) else 0
            index[d] = (edge, edge)
            weight[d, 0] = 256
    return index, weight


def _opencv_linear_float_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """INTER_LINEAR on float images along one axis: indices [dst, 2], float32 weights [dst, 2].

    OpenCV 5.0 (measured on its weights): fx = (d + 0.5) * scale - 0.5 with scale = 1 / (dst / src),
    sx = floor(fx), fx -= sx, all in double; sx < 0 -> (sx, fx) = (0, 0); sx >= src - 1 ->
    (src - 1, 0); float32 weights (1 - fx, fx).
    """
    index = np.zeros((dst, 2), np.int64)
    weight = np.zeros((dst, 2), np.float32)
    if src == dst:
        index[:, 0] = index[:, 1] = np.arange(dst)
        weight[:, 0] = 1.0
        return index, weight
    scale = 1.0 / (dst / src)
    for d in range(dst):
        fx = (d + 0.5) * scale - 0.5
        sx = math.floor(fx)
        fx -= sx
        if sx < 0:
            sx, fx = 0, 0.0
        if sx >= src - 1:
            sx, fx = src - 1, 0.0
        index[d] = (sx, min(sx + 1, src - 1))
        weight[d] = (np.float32(1.0) - np.float32(fx), np.float32(fx))
    return index, weight


def _taps_to_matrix(index: np.ndarray, weight: np.ndarray, src: int) -> np.ndarray:
    """Two-tap (index, weight) rows -> a dense [dst, src] float32 matrix."""
    matrix = np.zeros((index.shape[0], src), np.float64)
    np.add.at(matrix, (np.repeat(np.arange(index.shape[0]), 2), index.ravel()), weight.ravel())
    return matrix.astype(np.float32)


def _opencv_gaussian_taps(ksize: int, sigma: float) -> np.ndarray:
    """cv::getGaussianKernel(ksize, sigma, CV_64F) for sigma > 0: exp(-t^2 / (2 sigma^2)), normalised."""
    t = np.arange(ksize) - (ksize - 1) / 2.0
    taps = np.exp(-t * t / (2.0 * sigma * sigma))
    return taps / taps.sum()


def _matlab_cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB imresize 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


def _matlab_imresize_matrix(src: int, dst: int, scale: float) -> np.ndarray:
    """[dst, src] float32 matrix of MATLAB imresize(..., scale) along one axis (bicubic, antialias)."""
    width = 4.0
    if scale < 1.0:
        width /= scale
        kernel = lambda x: scale * _matlab_cubic(scale * x)  # noqa: E731
    else:
        kernel = _matlab_cubic
    u = np.arange(1, dst + 1) / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    position = left[:, None] + np.arange(taps)[None, :]                     # 1-based
    weight = kernel(u[:, None] - position)
    weight = weight / weight.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(src), np.arange(src)[::-1]])          # half-sample symmetric
    index = mirror[np.mod(position.astype(np.int64) - 1, 2 * src)]
    matrix = np.zeros((dst, src), np.float64)
    np.add.at(matrix, (np.repeat(np.arange(dst), taps), index.ravel()), weight.ravel())
    return matrix.astype(np.float32)


def hou2007_working_shape(height: int, width: int, size: int = 64) -> tuple[int, int]:
    """(rows, cols) of the hou2007 working image: width `size`, height ceil(size * H / W) capped."""
    return min(max(1, -(-size * height // width)), HOU2007_MAX_ASPECT * size), size


# --- JAX steps -----------------------------------------------------------------------------------

def _sandwich(left: jax.Array, x: jax.Array, right: jax.Array) -> jax.Array:
    """left @ x @ right.T for a batch x [N, a, b] (full float32 precision on every backend)."""
    x = jnp.einsum("nab,cb->nac", x, right, precision=_HIGHEST)
    return jnp.einsum("ra,nac->nrc", left, x, precision=_HIGHEST)


_PAD_MODES = {"reflect101": "reflect", "replicate": "edge", "zero": "constant"}


def _filter2d(x: jax.Array, taps: np.ndarray, offsets: range, mode: str) -> jax.Array:
    """Separable correlation of [N, h, w] with `taps` along both axes: out(i) = sum_k taps_k x(i + offsets_k).

    Border modes: 'reflect101' (OpenCV BORDER_DEFAULT: ... 2 1 | 0 1 2 ... | n-2 n-3 ...; needs
    n > max |offset|), 'replicate' (MATLAB 'replicate'), 'zero' (MATLAB imfilter's default).
    """
    before, after = -offsets[0], offsets[-1]
    for axis in (1, 2):
        n = x.shape[axis]
        pad = [(0, 0)] * x.ndim
        pad[axis] = (before, after)
        padded = jnp.pad(x, pad, mode=_PAD_MODES[mode])
        x = sum(np.float32(tap) * jax.lax.slice_in_dim(padded, before + offset, before + offset + n, axis=axis)
                for tap, offset in zip(taps, offsets))
    return x


def _clean_float(pixels: jax.Array) -> jax.Array:
    """Float pixels -> finite float32 in [0, 255] (NaN -> 0)."""
    pixels = jnp.nan_to_num(pixels.astype(jnp.float32), nan=0.0, posinf=255.0, neginf=0.0)
    return jnp.clip(pixels, 0.0, 255.0)


def _opencv_grey(pixels: jax.Array) -> jax.Array:
    """cvtColor(BGR2GRAY) of RGB pixels [..., C] -> float32 grey (integer-valued for uint8)."""
    if pixels.shape[-1] == 1:
        return pixels[..., 0].astype(jnp.float32)
    if pixels.dtype == jnp.uint8:
        r, g, b = (pixels[..., c].astype(jnp.int32) for c in range(3))
        wr, wg, wb = _OPENCV_GREY_Q15
        return ((r * wr + g * wg + b * wb + (1 << 14)) >> 15).astype(jnp.float32)
    wr, wg, wb = _OPENCV_GREY_FLOAT
    return pixels[..., 2] * wb + pixels[..., 1] * wg + pixels[..., 0] * wr


def _opencv_phasor(y: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(cos, sin) of the angle OpenCV's cartToPolar gives the point (x, y): its fastAtan2.

    fastAtan2 (float32): c = min(|x|, |y|) / (max(|x|, |y|) + DBL_EPSILON), a = p(c) degrees with
    p(c) = (((p7 c^2 + p5) c^2 + p3) c^2 + p1) c (a 7th-order fit of atan on [0, 1], ~1e-4 rad
    error), then a -> 90 - a if |x| < |y|, 180 - a if x < 0, 360 - a if y < 0. Here cos and sin of
    the octant angle a (<= 45 degrees) come from their Taylor series (error < 2e-9) and the three
    reflections swap or negate them -- no trigonometric calls, which cost more on XLA's CPU backend
    than the whole rest of the spectral step.
    """
    p1, p3, p5, p7 = (np.float32(c) * np.float32(180.0 / np.pi) for c in (
        0.9997878412794807, -0.3258083974640975, 0.1555786518463281, -0.04432655554792128))
    eps = np.float32(np.finfo(np.float64).eps)
    ax, ay = jnp.abs(x), jnp.abs(y)
    steep = ax < ay
    c = jnp.where(steep, ax / (ay + eps), ay / (ax + eps))
    c2 = c * c
    a = (((p7 * c2 + p5) * c2 + p3) * c2 + p1) * c * np.float32(np.pi / 180.0)   # radians, [0, pi/4]
    a2 = a * a
    sin_a = a * (1 - a2 / 6 * (1 - a2 / 20 * (1 - a2 / 42 * (1 - a2 / 72))))
    cos_a = 1 - a2 / 2 * (1 - a2 / 12 * (1 - a2 / 30 * (1 - a2 / 56 * (1 - a2 / 90))))
    cos_t = jnp.where(steep, sin_a, cos_a)
    sin_t = jnp.where(steep, cos_a, sin_a)
    return jnp.where(x < 0, -cos_t, cos_t), jnp.where(y < 0, -sin_t, sin_t)


def _spectrum(grey: jax.Array) -> jax.Array:
    """2-D DFT of [N, h, w] float32, computed on the mean-removed image with the exact DC restored.

    A real-input FFT (half the cost of a complex one on XLA's CPU backend) gives columns
    0 ... w // 2; the others follow from Hermitian symmetry, F[k, l] = conj(F[-k mod h, w - l]).
    """
    h, w = grey.shape[-2:]
    total = jnp.sum(grey, axis=(-2, -1))
    half = jnp.fft.rfft2(grey - (total / (h * w))[:, None, None])
    mirrored = jnp.roll(jnp.flip(half, axis=1), 1, axis=1)                      # row k -> -k mod h
    spectrum = jnp.concatenate([half, jnp.conj(mirrored[:, :, (w - 1) // 2:0:-1])], axis=2)
    return spectrum.at[:, 0, 0].set(total.astype(spectrum.dtype))


def _modulus(z: jax.Array) -> jax.Array:
    """|z| as sqrt(re^2 + im^2): cheaper than hypot, and the squares here stay below 1e13."""
    return jnp.sqrt(z.real * z.real + z.imag * z.imag)


def _is_flat(grey: jax.Array) -> jax.Array:
    return (jnp.max(grey, axis=(-2, -1)) - jnp.min(grey, axis=(-2, -1))) <= FLAT_RANGE


def _opencv_downsample(images: jax.Array, size: int) -> jax.Array:
    """Steps 1-2 of the opencv variant: [N, H, W, C] -> grey [N, size, size] float32."""
    height, width = images.shape[1:3]
    exact = images.dtype == jnp.uint8
    taps = _opencv_linear_exact_taps if exact else _opencv_linear_float_taps
    (rows, wy), (cols, wx) = taps(height, size), taps(width, size)
    # Only the tapped pixels are read, in one gather: [N, 2 (row tap) x size x 2 (column tap) x size].
    tapped = rows.T.reshape(-1, 1) * width + cols.T.reshape(1, -1)
    pixels = jnp.take(images.reshape(images.shape[0], height * width, images.shape[-1]),
                      jnp.asarray(tapped.ravel(), jnp.int32), axis=1, mode="clip")
    if not exact:
        pixels = _clean_float(pixels)
    grey = _opencv_grey(pixels).reshape(-1, 2, size, 2, size)
    weight = (np.asarray(wy.T, np.float32)[:, :, None, None] * np.asarray(wx.T, np.float32)[None, None])
    grey = jnp.sum(grey * weight[None], axis=(1, 3))     # = sum_pq wy_p wx_q g (exact: integers < 2^24)
    if exact:  # integer sum of weights out of 2^16: round half up to uint8, as OpenCV's fixed point
        grey = jnp.floor(grey * np.float32(1.0 / 65536.0) + np.float32(0.5))
    return grey


def _opencv_residual_map(grey: jax.Array) -> jax.Array:
    """Steps 3-7 (before the final resize) on [N, h, w] grey: max-normalised float32 map."""
    spectrum = _spectrum(grey)
    log_amplitude = jnp.log1p(_modulus(spectrum))
    blurred = _filter2d(log_amplitude, np.full(3, 1.0 / 3.0), range(-1, 2), "reflect101")
    cos, sin = _opencv_phasor(spectrum.imag, spectrum.real)
    magnitude = jnp.exp(log_amplitude - blurred)
    residual = jax.lax.complex(magnitude * cos, magnitude * sin)
    saliency = _modulus(jnp.fft.ifft2(residual))
    saliency = _filter2d(saliency, _opencv_gaussian_taps(5, 8.0), range(-2, 3), "reflect101")
    saliency = saliency * saliency
    return saliency / jnp.max(saliency, axis=(-2, -1), keepdims=True)


def _hou2007_grey(images: jax.Array, size: int) -> jax.Array:
    """rgb2gray + imresize(64 / W) of [N, H, W, C] -> [N, ceil(size H / W), size] float32."""
    height, width = images.shape[1:3]
    if images.dtype == jnp.uint8:
        pixels = images.astype(jnp.float32)
    else:
        pixels = _clean_float(images)
    if pixels.shape[-1] == 1:
        grey = pixels[..., 0]
    else:
        wr, wg, wb = (np.float32(c) for c in _MATLAB_GREY)
        grey = pixels[..., 0] * wr + pixels[..., 1] * wg + pixels[..., 2] * wb
        if images.dtype == jnp.uint8:
            grey = jnp.floor(grey + np.float32(0.5))
    rows, cols = hou2007_working_shape(height, width, size)
    scale = size / width
    row_scale = scale if rows == -(-size * height // width) else rows / height   # capped: own scale
    return _sandwich(jnp.asarray(_matlab_imresize_matrix(height, rows, row_scale)), grey,
                     jnp.asarray(_matlab_imresize_matrix(width, cols, scale)))


def _hou2007_residual_map(grey: jax.Array) -> jax.Array:
    """The MATLAB recipe after imresize on [N, h, w]: min-max normalised float32 map."""
    spectrum = _spectrum(grey)
    amplitude = _modulus(spectrum)
    floor = 1e-6 * jnp.abs(spectrum[:, :1, :1]) + np.float32(1e-30)
    log_amplitude = jnp.log(jnp.maximum(amplitude, floor))
    blurred = _filter2d(log_amplitude, np.full(3, 1.0 / 3.0), range(-1, 2), "replicate")
    phase = jnp.where(amplitude > 0, spectrum / jnp.where(amplitude > 0, amplitude, 1.0), 1.0)
    saliency = _modulus(jnp.fft.ifft2(jnp.exp(log_amplitude - blurred) * phase)) ** 2
    t = np.arange(10) - 4.5
    gauss = np.exp(-t * t / (2.0 * 2.5 * 2.5))
    gauss = gauss / gauss.sum()
    saliency = _filter2d(saliency, gauss, range(-4, 6), "zero")
    low = jnp.min(saliency, axis=(-2, -1), keepdims=True)
    high = jnp.max(saliency, axis=(-2, -1), keepdims=True)
    return (saliency - low) / jnp.maximum(high - low, np.float32(1e-30))


def _upsample(saliency: jax.Array, height: int, width: int) -> jax.Array:
    """Float INTER_LINEAR resize [N, h, w] -> [N, height, width]: columns by matmul, rows by lerp."""
    h, w = saliency.shape[1:]
    cols, wx = _opencv_linear_float_taps(w, width)
    saliency = jnp.einsum("nab,cb->nac", saliency, jnp.asarray(_taps_to_matrix(cols, wx, w)),
                          precision=_HIGHEST)                                  # [N, h, width]
    rows, wy = _opencv_linear_float_taps(h, height)
    top = jnp.take(saliency, jnp.asarray(rows[:, 0], jnp.int32), axis=1, mode="clip")
    bottom = jnp.take(saliency, jnp.asarray(rows[:, 1], jnp.int32), axis=1, mode="clip")
    return top * jnp.asarray(wy[:, 0])[:, None] + bottom * jnp.asarray(wy[:, 1])[:, None]


def _check_params(variant: str, size: int) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown spectral saliency variant {variant!r}; known: {', '.join(VARIANTS)}")
    if int(size) != size or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")


def _check_images(images) -> None:
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"spectral saliency expects [N, H, W, 3] RGB (or [N, H, W, 1] grey) images, "
                         f"got shape {tuple(images.shape)}")


def working_grey(images: jax.Array, variant: str = "opencv", size: int = 64) -> jax.Array:
    """Stage 1: [N, H, W, C] pixels -> the working-resolution grey image [N, h, w] float32."""
    if images.dtype != jnp.uint8:
        images = images.astype(jnp.float32)
    if variant == "opencv":
        return _opencv_downsample(images, size)
    return _hou2007_grey(images, size)


def working_map(grey: jax.Array, variant: str = "opencv") -> jax.Array:
    """Stage 2: working grey [N, h, w] -> saliency [N, h, w] in [0, 1]; ones for a flat image."""
    saliency = _opencv_residual_map(grey) if variant == "opencv" else _hou2007_residual_map(grey)
    saliency = jnp.where(jnp.isfinite(saliency), jnp.clip(saliency, 0.0, 1.0), 0.0)
    return jnp.where(_is_flat(grey)[:, None, None], 1.0, saliency)


def resize_map(saliency: jax.Array, height: int, width: int) -> jax.Array:
    """Stage 3: [N, h, w] -> [N, height, width] by OpenCV's float INTER_LINEAR, clipped to [0, 1]."""
    return jnp.clip(_upsample(saliency, height, width), 0.0, 1.0)


def spectral_saliency(images: jax.Array, variant: str = "opencv", size: int = 64) -> jax.Array:
    """Spectral-residual saliency of a batch: [N, H, W, C] in [0, 255] -> float32 [N, H, W] in [0, 1].

    Pure and jit-able with `variant` and `size` static (the working resolution: size x size for
    'opencv', width `size` with the aspect kept for 'hou2007'). See the module docstring.
    """
    _check_params(variant, size)
    _check_images(images)
    saliency = working_map(working_grey(images, variant, size), variant)
    return resize_map(saliency, *images.shape[1:3])


# The producer's stages, jitted once per process (compilations are shared by all instances).
_working_grey_jit = jax.jit(working_grey, static_argnames=("variant", "size"))
_working_map_jit = jax.jit(working_map, static_argnames=("variant",))
_resize_map_jit = jax.jit(resize_map, static_argnums=(1, 2))


class SpectralSaliency:
    """Map producer ``spectral``: `spectral_saliency` run as three jitted stages.

    SpectralSaliency(variant='opencv' | 'hou2007', size=64). Calls take [N, H, W, 3] RGB (or
    [N, H, W, 1] grey), uint8 or float in [0, 255] (other dtypes are read as float32), and return
    a float32 jax.Array [N, H, W] in [0, 1]. No weights.

    The stages (`working_grey`, `working_map`, `resize_map`) are jitted separately so that the
    costly middle one (~0.8 s to compile on a 2-core CPU) is compiled once per batch size and
    working shape -- for 'opencv' always size x size -- while each new image shape compiles only
    the two cheap resampling programs (~0.3 s). The numbers equal `spectral_saliency`'s.
    """

    name = "spectral"

    def __init__(self, variant: str = "opencv", size: int = 64):
        _check_params(variant, size)
        self.variant, self.size = variant, int(size)

    def __call__(self, images) -> jax.Array:
        images = stage_images(images)
        _check_images(images)
        grey = _working_grey_jit(images, variant=self.variant, size=self.size)
        return _resize_map_jit(_working_map_jit(grey, variant=self.variant), *images.shape[1:3])

    def metadata(self) -> dict:
        return {"name": self.name, "params": {"variant": self.variant, "size": self.size}}

    def __repr__(self) -> str:
        return f"SpectralSaliency(variant={self.variant!r}, size={self.size})"
