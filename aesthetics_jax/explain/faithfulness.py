"""Faithfulness of explanation maps for regression models (aesthetic scores), in JAX.

An explanation map says which pixels matter to a prediction; a *faithful* map is one whose ranking
of pixels agrees with what actually changes the model's output when those pixels are taken away.
This module measures that with two perturbation protocols, each beside its chance level.

Inputs (all functions are batched; every array has the image axis first)
    ``predict_fn(images) -> scores``: ``images`` float32 ``[B, H, W, 3]`` with values in [0, 255]
    (the codebase's models normalise pixels themselves); ``scores`` ``[B]`` or ``[B, K]`` (K heads,
    e.g. the six Aesthetics-XAI outputs). ``output=j`` selects head ``j``; ``output=None`` keeps
    all heads, and every per-image result then gains a trailing ``K`` axis.
    ``maps``: float ``[N, H, W]`` (``[N, H, W, 1]`` is accepted) at image resolution; higher means
    more important. Only the *order* of the values is used.

Pixel order (shared by every protocol)
    Pixels are ranked by descending map value (rank 0 = most important). Ties are broken
    deterministically by raster (row-major) position: of two equal values the pixel with the
    smaller ``y * W + x`` comes first (a stable sort of ``-map``). NaN map values rank last (as
    ``-inf``) and ``-0.0`` equals ``0.0``. The ROAD reference code instead adds ``1e-4 * N(0, 1)``
    to the map to break ties at random; a constant map therefore removes pixels top-left first
    here, which the random-map baseline below never has (its ties have probability zero).

1. Deletion and insertion curves (RISE protocol, Petsiuk et al. 2018, adapted to regression)
    With ``S = num_steps`` (default 32, so 33 points per curve), step ``t = 0..S`` perturbs the
    ``n_t = floor(t * H * W / S)`` top-ranked pixels; the curve's abscissa is the exact fraction
    ``n_t / (H * W)`` (0 and 1 at the ends; RISE removes a fixed pixel count per step instead).
    * Deletion: the ``n_t`` top pixels of the original ``x`` are replaced by a baseline image:
      ``'zeros'`` (default: black), ``'blur'`` (the blurred copy below), a constant grey value or
      a per-channel colour. ``x_0 = x`` and ``x_S`` is the baseline image itself. RISE's zeros are
      zeros of the ImageNet-normalised tensor, i.e. the ImageNet mean colour: pass
      ``baseline=(123.675, 116.28, 103.53)`` to reproduce that.
    * Insertion: starts from the blurred copy ``blur(x)`` and puts the ``n_t`` top pixels of ``x``
      back. ``x_0 = blur(x)`` and ``x_S = x``.
    * Blur: a separable Gaussian, ``sigma = 5`` pixels by default (RISE's ``nsig=5``), taps
      ``exp(-k^2 / (2 sigma^2))`` for ``|k| <= int(truncate * sigma + 0.5)``, ``truncate = 4``,
      normalised to sum 1, with the border mode ``'reflect'`` of ``scipy.ndimage`` (``d c b a | a b
      c d``, OpenCV's ``BORDER_REFLECT``, NumPy's ``'symmetric'``); i.e. exactly
      ``scipy.ndimage.gaussian_filter(x, (sigma, sigma, 0), mode='reflect', truncate=4)``. RISE's
      own kernel is ``gaussian_filter`` of an 11x11 delta with sigma 5 (the Gaussian folded back
      into radius 5, so much flatter) applied as a zero-padded convolution to ImageNet-normalised
      tensors, which pulls a 5-pixel border toward the ImageNet mean colour; a plain Gaussian
      with reflected borders gives the model no such border artefact to react to.
    * Steps: RISE removes 224 pixels per step at 224x224 (224 steps); 32 steps keep the cost at
      ``N * 33`` forward passes, and the trapezoid AUC of these smooth curves barely moves.
    * Raw curve: ``scores[t] = f(x_t)`` (score units).
    * Normalised curve (the one whose AUC is reported): with ``x_full`` the fully perturbed image
      (baseline for deletion, blurred copy for insertion),
      ``c_t = (f(x_t) - f(x_full)) / (f(x) - f(x_full))``. Deletion curves run from 1 to 0,
      insertion curves from 0 to 1, whatever the image's score level, scale or the sign of the
      change, so areas are comparable across images: a faithful map gives a LOW deletion AUC
      (the score reaches the fully-perturbed value early) and a HIGH insertion AUC. Intermediate
      values may leave [0, 1] (non-monotone models); nothing is clipped.
    * Degenerate images: when ``|f(x) - f(x_full)| <= eps * max(1, |f(x)|, |f(x_full)|)``
      (``eps = 1e-5``) the endpoints carry no scale, and the normalised curve is defined as the
      straight line between them (``1 - fraction`` for deletion, ``fraction`` for insertion), whose
      AUC 0.5 is the uninformative value. No NaN is produced; ``degenerate`` flags such images and
      the summary reports their fraction.
    * AUC: trapezoid rule over the fraction axis [0, 1] (:func:`trapezoid_auc`); ``auc_raw`` is the
      same integral of the raw score curve, in score units.

2. ROAD (Rong et al., ICML 2022, "A Consistent and Efficient Evaluation Strategy for Attribution
   Methods"; reference code ``tleemann/road_evaluation``, ``road/imputations.py``)
    At each removal percentage ``p`` (default 10, 20, ..., 90) ``n_p = floor(p * H * W / 100)``
    pixels are removed: the ``n_p`` top-ranked ones (MoRF, most relevant first) or the ``n_p``
    bottom-ranked ones (LeRF, least relevant first), and filled by *noisy linear imputation*:
    * Each removed pixel equals the weighted mean of its in-image 8-neighbours, per channel:
      ``s_i x_i - sum_{j removed} w_ij x_j = sum_{j known} w_ij v_j`` with ``w = 1/6`` for the 4
      direct and ``1/12`` for the 4 diagonal neighbours (the reference's ``neighbors_weights``;
      they sum to 1) and ``s_i = sum_{j in image} w_ij`` (the reference drops out-of-image
      neighbours from the diagonal, i.e. renormalises at the border). Known pixels are fixed
      boundary values and are returned bit-exactly.
    * Solver: the system matrix is symmetric and, as long as the image keeps one known pixel,
      positive definite, so it is solved by conjugate gradients (float32), batched over images
      and channels (each system has its own step sizes and stopping test), started from the known
      pixels with removed ones at the channel's known mean. A CG run stops when the RMS over the
      removed pixels of CG's recursively updated residual is ``<= tol`` (``1e-6`` grey levels) or
      after ``max_iter`` iterations (default ``10 * (H + W)``, several times the O(H + W)
      iterations CG needs on such Laplace-type systems). In float32 the recursive residual drifts
      away from the true one, so a second run restarts from the true residual ``b - A x`` (one
      step of iterative refinement); this halves to quarters the error at no risk of the
      divergence that periodic residual replacement showed. In exact arithmetic CG reaches the
      direct solution in at most ``#removed`` steps; in float32 the remaining error is a
      conditioning floor, measured against float64 ``scipy.sparse.linalg.spsolve`` (max over
      pixels, 50 % / 90 % of a smooth map removed, i.e. one large region): 0.006 / 0.04 grey levels
      at 96x96, 0.02 / 0.14 at 192x192 -- far below the imputation noise (2.55). The tests compare
      with ``spsolve`` to 1e-6 of the value range on a small irregular mask. The reported
      ``residual`` is the true RMS residual ``||b - A x|| / sqrt(#removed)`` in grey levels (its
      float32 floor is ~1e-5..1e-4). An image with every pixel removed (never at p <= 90) has no
      boundary values: its removed pixels become 0 (plus noise).
    * Noise: i.i.d. ``N(0, noise_std^2)`` added to every removed pixel and channel after the
      solve; the reference uses ``noise=0.01`` on images scaled to [0, 1] (``ToTensor``, before
      normalisation), so the default here is ``noise_std = 0.01 * 255 = 2.55`` grey levels.
      Imputed values are not clipped (nor are they in the reference).
    * Score change: ``delta_p = f(x_imputed_p) - f(x)`` (signed, score units). Since a regression
      output can move either way, the per-image ROAD value is the mean over percentages of
      ``|delta_p|``. A faithful map gives a LARGE MoRF value and a SMALL LeRF value; ``road_gap =
      MoRF - LeRF`` combines them (larger is better).
    * The reference code's LeRF branch parameterises by the fraction *kept* (``th_p`` keeps the top
      ``th_p``, removing ``H*W - int(H*W*th_p)`` pixels); here both orders remove ``p`` percent.
      Over the symmetric default grid 10..90 the two parameterisations produce the same set of
      images (up to the rounding of the pixel count), so their means agree.

3. Random baseline
    :func:`random_maps` draws i.i.d. uniform [0, 1) maps (optionally Gaussian-smoothed with the
    blur above, ``smooth_sigma`` > 0), one per image from that image's key; the summary runs every
    protocol with ``num_random`` such maps and averages, so each faithfulness number has its
    chance level beside it (``random_*``).

Randomness and determinism
    A ``key`` is either one JAX key (split into one key per image) or an array of ``N`` keys (one
    per image: then results for image ``i`` do not depend on the other images in the batch). The
    noise of image ``i``, order ``o`` (0 = MoRF, 1 = LeRF), percentage index ``j`` uses
    ``fold_in(fold_in(key_i, o), j)``, independent of chunking. Nothing else is random.

Batching and jit
    All perturbed images of all images (``N * (S + 1)`` for a curve, ``N * (2P + 1)`` for ROAD) are
    scored in chunks of exactly ``chunk_size`` images (the last one padded), each chunk built on
    device from the originals by gathering and masking, so memory stays ``O(chunk_size)`` images
    and the compiled chunk function depends on ``chunk_size`` and the image size only (not on the
    batch size, nor on ``num_steps`` or the percentages). With
    ``jit=True`` (default) perturbation, imputation and ``predict_fn`` are one jitted function
    with ``predict_fn`` static (compiled once per ``predict_fn`` object and shape and reused
    across calls); with ``jit=False`` only the perturbation is jitted and ``predict_fn`` is called
    eagerly on each chunk (for non-traceable models, e.g. onnxruntime wrappers). Every public
    function except :func:`faithfulness_summary` (which returns Python floats) is a pure function
    of its array arguments and may itself be called under ``jax.jit`` (with the keyword options
    static) when ``predict_fn`` is traceable.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PredictFn = Callable[[jax.Array], jax.Array]

DEFAULT_NUM_STEPS = 32
DEFAULT_BLUR_SIGMA = 5.0
DEFAULT_BLUR_TRUNCATE = 4.0
DEFAULT_DEGENERATE_EPS = 1e-5
DEFAULT_CHUNK_SIZE = 64
DEFAULT_ROAD_PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
DEFAULT_ROAD_NOISE_STD = 0.01 * 255.0
DEFAULT_CG_TOL = 1e-6  # RMS of CG's recursive residual over removed pixels, grey levels

# ((row offset, column offset), weight), as ``neighbors_weights`` in the ROAD reference code.
ROAD_NEIGHBOUR_WEIGHTS = (
    ((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
    ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6),
)


class CurveResult(NamedTuple):
    """A deletion or insertion curve for a batch (``[..., K]`` axes only when ``output=None``
    and the model has K heads).

    fractions: ``[T]`` fraction of pixels perturbed at each step (T = num_steps + 1).
    scores: ``[N, T(, K)]`` raw predicted scores ``f(x_t)``.
    normalised: ``[N, T(, K)]`` ``(f(x_t) - f(x_full)) / (f(x) - f(x_full))``.
    auc: ``[N(, K)]`` trapezoid area under ``normalised``.
    auc_raw: ``[N(, K)]`` trapezoid area under ``scores``.
    degenerate: ``[N(, K)]`` bool, ``f(x)`` and ``f(x_full)`` indistinguishable (see module doc).
    """

    fractions: jax.Array
    scores: jax.Array
    normalised: jax.Array
    auc: jax.Array
    auc_raw: jax.Array
    degenerate: jax.Array


class RoadResult(NamedTuple):
    """ROAD results for a batch (``[..., K]`` axes only when ``output=None`` with K heads).

    percentages: ``[P]`` removal percentages.
    original: ``[N(, K)]`` ``f(x)``.
    morf_scores, lerf_scores: ``[N, P(, K)]`` scores of the imputed images.
    morf_change, lerf_change: ``[N, P(, K)]`` signed changes ``f(x_imputed) - f(x)``.
    morf, lerf: ``[N(, K)]`` mean over percentages of the absolute change.
    residual: ``[N, 2, P]`` largest (over channels) RMS residual of each imputation's linear
        system, grey levels (order 0 = MoRF, 1 = LeRF), to check convergence.
    """

    percentages: jax.Array
    original: jax.Array
    morf_scores: jax.Array
    lerf_scores: jax.Array
    morf_change: jax.Array
    lerf_change: jax.Array
    morf: jax.Array
    lerf: jax.Array
    residual: jax.Array


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


def gaussian_taps(sigma: float, truncate: float = DEFAULT_BLUR_TRUNCATE) -> np.ndarray:
    """The normalised 1-D Gaussian taps for offsets ``-r..r``, ``r = int(truncate * sigma + 0.5)``
    (``scipy.ndimage``'s kernel). ``sigma <= 0`` gives the identity ``[1.0]``."""
    if sigma <= 0:
        return np.ones(1)
    radius = int(truncate * float(sigma) + 0.5)
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (k / float(sigma)) ** 2)
    return taps / taps.sum()


def _filter_axis(x: jax.Array, taps: np.ndarray, axis: int) -> jax.Array:
    radius = (len(taps) - 1) // 2
    if radius == 0:
        return x * jnp.asarray(taps[0], x.dtype)
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    xp = jnp.pad(x, pad, mode="symmetric")  # == scipy.ndimage mode='reflect'
    out = None
    for j, w in enumerate(taps):
        term = jnp.asarray(w, x.dtype) * jax.lax.slice_in_dim(xp, j, j + n, axis=axis)
        out = term if out is None else out + term
    return out


def gaussian_blur(
    x: jax.Array,
    sigma: float = DEFAULT_BLUR_SIGMA,
    *,
    truncate: float = DEFAULT_BLUR_TRUNCATE,
    spatial_axes: tuple[int, int] = (-3, -2),
) -> jax.Array:
    """Separable Gaussian blur over ``spatial_axes`` (default: H and W of ``[..., H, W, C]``).

    Equals ``scipy.ndimage.gaussian_filter`` with ``sigma`` on the spatial axes and 0 elsewhere,
    ``mode='reflect'`` (half-sample symmetric border), ``truncate`` as given; float32 result.
    Use ``spatial_axes=(-2, -1)`` for ``[..., H, W]`` maps.
    """
    x = jnp.asarray(x, jnp.float32)
    axes = tuple(int(a) % x.ndim for a in spatial_axes)
    return _gaussian_blur_jit(x, float(sigma), float(truncate), axes)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _gaussian_blur_jit(x, sigma, truncate, axes):
    taps = gaussian_taps(sigma, truncate)
    for axis in axes:
        x = _filter_axis(x, taps, axis)
    return x


def trapezoid_auc(y: jax.Array, x: jax.Array | None = None) -> jax.Array:
    """Trapezoid-rule area under ``y`` along its last axis; ``x`` ``[T]`` defaults to
    ``linspace(0, 1, T)``. ``sum_t (x[t+1] - x[t]) * (y[t] + y[t+1]) / 2``."""
    y = jnp.asarray(y, jnp.float32)
    t = y.shape[-1]
    x = jnp.linspace(0.0, 1.0, t) if x is None else jnp.asarray(x, jnp.float32)
    return jnp.sum(jnp.diff(x) * (y[..., 1:] + y[..., :-1]) * 0.5, axis=-1)


def pixel_ranks(maps: jax.Array) -> jax.Array:
    """Rank of every pixel, int32 ``[N, H, W]``: 0 for the largest map value; ties in raster order,
    NaN last (see the module docstring)."""
    return _pixel_ranks_jit(_check_maps(maps))


@jax.jit
def _pixel_ranks_jit(maps):
    n, h, w = maps.shape
    flat = maps.reshape(n, h * w).astype(jnp.float32)
    flat = jnp.where(jnp.isnan(flat), -jnp.inf, flat)
    flat = jnp.where(flat == 0, 0.0, flat)  # -0.0 -> 0.0 so signed zeros tie
    order = jnp.argsort(-flat, axis=-1, stable=True)
    ranks = jnp.zeros((n, h * w), jnp.int32)
    ranks = jax.vmap(lambda r, o: r.at[o].set(jnp.arange(h * w, dtype=jnp.int32)))(ranks, order)
    return ranks.reshape(n, h, w)


def _per_image_keys(key, n: int):
    """One key per image: a single key is split into ``n``; an array of ``n`` keys is used as is."""
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    single = key.ndim == (0 if typed else 1)
    if single:
        return jax.random.split(key, n)
    if key.shape[0] != n:
        raise ValueError(f"got {key.shape[0]} keys for {n} images")
    return key


def random_maps(
    key,
    shape: tuple[int, int, int],
    *,
    smooth_sigma: float = 0.0,
) -> jax.Array:
    """Random explanation maps ``[N, H, W]``: i.i.d. uniform [0, 1), map ``i`` drawn from image
    ``i``'s key (see module doc), then Gaussian-smoothed (reflect border) when
    ``smooth_sigma > 0``."""
    n, h, w = (int(d) for d in shape)
    return _random_maps_jit(_per_image_keys(key, n), h, w, float(smooth_sigma))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _random_maps_jit(keys, h, w, smooth_sigma):
    maps = jax.vmap(lambda k: jax.random.uniform(k, (h, w), jnp.float32))(keys)
    if smooth_sigma > 0:
        maps = _gaussian_blur_jit(maps, smooth_sigma, DEFAULT_BLUR_TRUNCATE, (1, 2))
    return maps


# --------------------------------------------------------------------------------------------
# Noisy linear imputation (ROAD)
# --------------------------------------------------------------------------------------------


def _neighbour_sum(x: jax.Array) -> jax.Array:
    """``sum_o w_o x[p + o]`` over the 8 ROAD neighbours of ``x [..., H, W]``, 0 outside."""
    h, w = x.shape[-2:]
    xp = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)])
    out = None
    for (dy, dx), wt in ROAD_NEIGHBOUR_WEIGHTS:
        term = jnp.asarray(wt, x.dtype) * xp[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
        out = term if out is None else out + term
    return out


def _in_image_weight(h: int, w: int) -> np.ndarray:
    """``s_i``: the total weight of the neighbours of pixel i that lie inside the image."""
    s = np.zeros((h, w))
    for (dy, dx), wt in ROAD_NEIGHBOUR_WEIGHTS:
        ys = slice(max(0, -dy), h - max(0, dy))
        xs = slice(max(0, -dx), w - max(0, dx))
        s[ys, xs] += wt
    return s


_CG_PASSES = 2  # one CG run, then one restart from the true residual (see module doc)


def _batched_cg(values, removed, tol, max_iter) -> tuple[jax.Array, jax.Array]:
    """CG on every ``[M, H, W]`` system of the module doc; returns (solution, RMS residual)."""
    _, h, w = values.shape
    s = jnp.asarray(_in_image_weight(h, w), jnp.float32)
    r = removed.astype(jnp.float32)
    k = 1.0 - r
    v = values * k

    def apply(z):  # block-diagonal SPD operator: system rows on removed pixels, identity on known
        return r * (s * z - _neighbour_sum(r * z)) + k * z

    def sq(a):
        return jnp.sum(a * a, axis=(-2, -1))

    b = r * _neighbour_sum(v) + v
    n_known = jnp.sum(k, axis=(-2, -1))
    mean_known = jnp.sum(v, axis=(-2, -1)) / jnp.maximum(n_known, 1.0)
    x0 = v + r * mean_known[:, None, None]
    n_removed = jnp.maximum(jnp.sum(r, axis=(-2, -1)), 1.0)
    thresh = tol * tol * n_removed  # on the squared residual norm: RMS <= tol

    def cond(state):
        it, _, _, _, rs = state
        return (it < max_iter) & jnp.any(rs > thresh)

    def body(state):
        it, x, res, p, rs = state
        active = rs > thresh
        ap = apply(p)
        pap = jnp.sum(p * ap, axis=(-2, -1))
        alpha = jnp.where(active & (pap > 0), rs / jnp.where(pap > 0, pap, 1.0), 0.0)
        x = x + alpha[:, None, None] * p
        res = res - alpha[:, None, None] * ap
        rs_new = sq(res)
        beta = jnp.where(active & (rs > 0), rs_new / jnp.where(rs > 0, rs, 1.0), 0.0)
        p = jnp.where(active[:, None, None], res + beta[:, None, None] * p, p)
        return it + 1, x, res, p, jnp.where(active, rs_new, rs)

    x = x0
    for _ in range(_CG_PASSES):  # pass 2+: restart from the true residual (refinement)
        res = b - apply(x)
        state = (jnp.asarray(0, jnp.int32), x, res, res, sq(res))
        _, x, _, _, _ = jax.lax.while_loop(cond, body, state)
    rms = jnp.sqrt(sq(b - apply(x)) / n_removed)
    return jnp.where(removed, x, values), rms


def solve_linear_imputation(
    images: jax.Array,
    removed: jax.Array,
    *,
    tol: float = DEFAULT_CG_TOL,
    max_iter: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Noise-free linear imputation (module doc, ROAD): ``images [N, H, W, C]``,
    ``removed [N, H, W]`` bool (True = removed). Returns ``(filled [N, H, W, C],
    rms_residual [N, C])``; known pixels are returned unchanged, removed ones solve the
    8-neighbour weighted-mean system. ``tol``: RMS of CG's recursive residual over the removed
    pixels, grey levels; ``max_iter`` per CG run
    (default ``10 * (H + W)``)."""
    images = jnp.asarray(images, jnp.float32)
    n, h, w, c = images.shape
    removed = jnp.asarray(removed, bool)
    if removed.shape != (n, h, w):
        raise ValueError(f"removed must be {(n, h, w)}, got {removed.shape}")
    max_iter = 10 * (h + w) if max_iter is None else int(max_iter)
    return _solve_jit(images, removed, jnp.asarray(tol, jnp.float32), max_iter)


@functools.partial(jax.jit, static_argnums=3)
def _solve_jit(images, removed, tol, max_iter):
    n, h, w, c = images.shape
    vals = jnp.moveaxis(images, -1, 1).reshape(n * c, h, w)
    rem = jnp.broadcast_to(removed[:, None], (n, c, h, w)).reshape(n * c, h, w)
    filled, rel = _batched_cg(vals, rem, tol, max_iter)
    return jnp.moveaxis(filled.reshape(n, c, h, w), 1, -1), rel.reshape(n, c)


def noisy_linear_impute(
    images: jax.Array,
    removed: jax.Array,
    key=None,
    *,
    noise_std: float = DEFAULT_ROAD_NOISE_STD,
    tol: float = DEFAULT_CG_TOL,
    max_iter: int | None = None,
) -> jax.Array:
    """ROAD's noisy linear imputation: :func:`solve_linear_imputation` plus i.i.d.
    ``N(0, noise_std^2)`` on removed pixels (grey levels; default 2.55 = the reference's 0.01 on
    [0, 1] images). ``key``: one key or ``N`` keys (module doc); may be None iff ``noise_std == 0``.
    """
    filled, _ = solve_linear_imputation(images, removed, tol=tol, max_iter=max_iter)
    return _add_noise(filled, removed, key, noise_std)


def _add_noise(filled, removed, key, noise_std):
    if key is None:
        if noise_std != 0:
            raise ValueError("noisy_linear_impute needs a key when noise_std != 0")
        return filled
    n = filled.shape[0]
    keys = _per_image_keys(key, n)
    noise = jax.vmap(lambda k: jax.random.normal(k, filled.shape[1:], jnp.float32))(keys)
    return filled + jnp.where(removed[..., None], noise_std * noise, 0.0)


# --------------------------------------------------------------------------------------------
# Chunked scoring
# --------------------------------------------------------------------------------------------


def _check_images(images) -> jax.Array:
    images = jnp.asarray(images, jnp.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}")
    return images


def _check_maps(maps, images: jax.Array | None = None) -> jax.Array:
    maps = jnp.asarray(maps)
    if maps.ndim == 4 and maps.shape[-1] == 1:
        maps = maps[..., 0]
    if maps.ndim != 3:
        raise ValueError(f"maps must be [N, H, W], got shape {maps.shape}")
    if images is not None and maps.shape != images.shape[:3]:
        raise ValueError(f"maps {maps.shape} do not match images {images.shape}")
    return maps


def _select(scores: jax.Array, output: int | None, lead: int = 1) -> jax.Array:
    """Pick head ``output`` from scores with ``lead`` item axes and an optional trailing K axis."""
    if scores.ndim == lead:
        if output not in (None, 0):
            raise ValueError(f"output={output} but predict_fn returns one score per image")
        return scores
    if scores.ndim != lead + 1:
        raise ValueError(f"predict_fn must return [B] or [B, K]; got {scores.shape[lead:]} each")
    if output is None:
        return scores
    k = scores.shape[-1]
    if not -k <= output < k:
        raise ValueError(f"output={output} out of range for {k} heads")
    return scores[..., output]


# The jitted chunk functions take per-chunk arrays (gathered from the batch before the call), so
# their compiled shapes depend on chunk_size and the image size only, not on the batch size.


def _mix(head, tail, ranks, counts):
    """Pixels ranked below ``counts`` come from ``head``, the rest from ``tail``."""
    take = ranks < counts[:, None, None]
    return jnp.where(take[..., None], head, tail)


@functools.partial(jax.jit, static_argnums=0)
def _mix_predict(predict_fn, head, tail, ranks, counts):
    return jnp.asarray(predict_fn(_mix(head, tail, ranks, counts)), jnp.float32)


_mix_jit = jax.jit(_mix)


def _road_images(images, ranks, keys, counts, lerf, codes, noise_std, tol, max_iter):
    hw = ranks.shape[1] * ranks.shape[2]
    c = counts[:, None, None]
    removed = jnp.where(lerf[:, None, None], ranks >= hw - c, ranks < c)
    filled, rel = solve_linear_imputation(images, removed, tol=tol, max_iter=max_iter)
    item_keys = jax.vmap(lambda k, o, j: jax.random.fold_in(jax.random.fold_in(k, o), j))(
        keys, lerf.astype(jnp.int32), codes)
    return _add_noise(filled, removed, item_keys, noise_std), jnp.max(rel, axis=-1)


@functools.partial(jax.jit, static_argnums=(0, 9))
def _road_predict(predict_fn, images, ranks, keys, counts, lerf, codes, noise_std, tol, max_iter):
    x, rel = _road_images(images, ranks, keys, counts, lerf, codes, noise_std, tol, max_iter)
    return jnp.asarray(predict_fn(x), jnp.float32), rel


_road_images_jit = jax.jit(_road_images, static_argnums=8)
_take = jax.jit(lambda arrays, idx: [a[idx] for a in arrays])


def _chunks(item_arrays: Sequence[np.ndarray], chunk_size: int):
    """Split equal-length item arrays into chunks of ``chunk_size`` (last padded with item 0)."""
    total = len(item_arrays[0])
    chunk_size = max(1, int(chunk_size))  # fixed shape, even for few items: one compilation
    n_chunks = math.ceil(total / chunk_size)
    pad = n_chunks * chunk_size - total
    padded = [np.concatenate([a, np.repeat(a[:1], pad, axis=0)]) for a in item_arrays]
    for c in range(n_chunks):
        yield [jnp.asarray(a[c * chunk_size:(c + 1) * chunk_size]) for a in padded]


def _concat(parts, total):
    return jnp.concatenate(parts, axis=0)[:total]


def _score_mixes(predict_fn, head, tail, ranks, counts, *, chunk_size, jit):
    """Scores of every (image, count) mix: ``[N, len(counts), ...]``."""
    n = head.shape[0]
    t = len(counts)
    img_idx = np.repeat(np.arange(n, dtype=np.int32), t)
    cnt = np.tile(np.asarray(counts, np.int32), n)
    parts = []
    for ii, cc in _chunks([img_idx, cnt], chunk_size):
        hd, tl, rk = _take([head, tail, ranks], ii)
        if jit:
            parts.append(_mix_predict(predict_fn, hd, tl, rk, cc))
        else:
            parts.append(jnp.asarray(predict_fn(_mix_jit(hd, tl, rk, cc)), jnp.float32))
    scores = _concat(parts, n * t)
    return scores.reshape((n, t) + scores.shape[1:])


# --------------------------------------------------------------------------------------------
# Protocols
# --------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=2)
def _curve(scores, fractions, full_at_end: bool, eps) -> CurveResult:
    """Normalise a ``[N, T(, K)]`` score curve (module doc) and integrate it."""
    if full_at_end:  # deletion: x_0 = x, x_S = fully perturbed
        f_orig, f_full = scores[:, 0], scores[:, -1]
        line = 1.0 - fractions
    else:  # insertion: x_0 = fully perturbed, x_S = x
        f_orig, f_full = scores[:, -1], scores[:, 0]
        line = fractions
    den = f_orig - f_full
    scale = jnp.maximum(1.0, jnp.maximum(jnp.abs(f_orig), jnp.abs(f_full)))
    degenerate = jnp.abs(den) <= eps * scale
    safe = jnp.where(degenerate, 1.0, den)
    norm = (scores - f_full[:, None]) / safe[:, None]
    line = line.reshape((1, -1) + (1,) * (scores.ndim - 2))
    norm = jnp.where(degenerate[:, None], jnp.broadcast_to(line, norm.shape), norm)
    auc = trapezoid_auc(jnp.moveaxis(norm, 1, -1), fractions)
    auc_raw = trapezoid_auc(jnp.moveaxis(scores, 1, -1), fractions)
    return CurveResult(fractions, scores, norm, auc, auc_raw, degenerate)


def _step_counts(hw: int, num_steps: int) -> np.ndarray:
    if num_steps < 1:
        raise ValueError("num_steps must be >= 1")
    return (np.arange(num_steps + 1, dtype=np.int64) * hw) // num_steps


def deletion_curve(
    predict_fn: PredictFn,
    images: jax.Array,
    maps: jax.Array,
    *,
    num_steps: int = DEFAULT_NUM_STEPS,
    baseline: str | float | Sequence[float] = "zeros",
    blur_sigma: float = DEFAULT_BLUR_SIGMA,
    output: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    jit: bool = True,
    eps: float = DEFAULT_DEGENERATE_EPS,
) -> CurveResult:
    """Deletion curve (module doc, RISE): the top ``n_t`` pixels replaced by ``baseline``
    (``'zeros'``, ``'blur'`` = Gaussian blur of sigma ``blur_sigma``, a constant grey value, or
    one value per channel).
    Lower ``auc`` = more faithful."""
    images = _check_images(images)
    maps = _check_maps(maps, images)
    _, h, w, _ = images.shape
    if isinstance(baseline, str):
        if baseline == "zeros":
            base = jnp.zeros_like(images)
        elif baseline == "blur":
            base = gaussian_blur(images, blur_sigma)
        else:
            raise ValueError(f"unknown baseline {baseline!r}; use 'zeros', 'blur' or a number")
    else:
        colour = jnp.asarray(baseline, jnp.float32)
        if colour.ndim > 1 or (colour.ndim == 1 and colour.shape[0] != images.shape[-1]):
            raise ValueError(f"baseline colour must be a number or {images.shape[-1]} numbers")
        base = jnp.broadcast_to(colour, images.shape)
    counts = _step_counts(h * w, num_steps)
    scores = _score_mixes(predict_fn, base, images, pixel_ranks(maps), counts,
                          chunk_size=chunk_size, jit=jit)
    fractions = jnp.asarray(counts / (h * w), jnp.float32)
    return _curve(_select(scores, output, lead=2), fractions, True, eps)


def insertion_curve(
    predict_fn: PredictFn,
    images: jax.Array,
    maps: jax.Array,
    *,
    num_steps: int = DEFAULT_NUM_STEPS,
    blur_sigma: float = DEFAULT_BLUR_SIGMA,
    output: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    jit: bool = True,
    eps: float = DEFAULT_DEGENERATE_EPS,
) -> CurveResult:
    """Insertion curve (module doc, RISE): start from ``gaussian_blur(images, blur_sigma)`` and put
    the top ``n_t`` original pixels back. Higher ``auc`` = more faithful."""
    images = _check_images(images)
    maps = _check_maps(maps, images)
    _, h, w, _ = images.shape
    counts = _step_counts(h * w, num_steps)
    scores = _score_mixes(predict_fn, images, gaussian_blur(images, blur_sigma), pixel_ranks(maps),
                          counts, chunk_size=chunk_size, jit=jit)
    fractions = jnp.asarray(counts / (h * w), jnp.float32)
    return _curve(_select(scores, output, lead=2), fractions, False, eps)


def road(
    predict_fn: PredictFn,
    images: jax.Array,
    maps: jax.Array,
    key=None,
    *,
    percentages: Sequence[float] = DEFAULT_ROAD_PERCENTAGES,
    noise_std: float = DEFAULT_ROAD_NOISE_STD,
    output: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    jit: bool = True,
    tol: float = DEFAULT_CG_TOL,
    max_iter: int | None = None,
) -> RoadResult:
    """ROAD MoRF and LeRF with noisy linear imputation (module doc). ``key``: one key or ``N`` keys;
    may be None iff ``noise_std == 0``. Larger ``morf`` and smaller ``lerf`` = more faithful."""
    images = _check_images(images)
    maps = _check_maps(maps, images)
    n, h, w, _ = images.shape
    hw = h * w
    if key is None:
        if noise_std != 0:
            raise ValueError("road needs a key when noise_std != 0")
        key = jax.random.key(0)  # unused: the noise is multiplied by 0
    keys = _per_image_keys(key, n)
    max_iter = 10 * (h + w) if max_iter is None else int(max_iter)
    pct = [float(p) for p in percentages]
    if not pct or any(p < 0 or p > 100 for p in pct):
        raise ValueError(f"percentages must lie in [0, 100], got {percentages}")
    counts_p = np.asarray([math.floor(p * hw / 100 + 1e-9) for p in pct], np.int32)
    n_p = len(pct)
    # Items per image: 0 = original (nothing removed), then MoRF p_0..p_{P-1}, then LeRF.
    per_counts = np.concatenate([[0], counts_p, counts_p]).astype(np.int32)
    per_lerf = np.concatenate([[False], np.zeros(n_p, bool), np.ones(n_p, bool)])
    per_codes = np.concatenate([[0], np.arange(n_p), np.arange(n_p)]).astype(np.int32)
    m = len(per_counts)
    img_idx = np.repeat(np.arange(n, dtype=np.int32), m)
    items = [img_idx, np.tile(per_counts, n), np.tile(per_lerf, n), np.tile(per_codes, n)]
    ranks = pixel_ranks(maps)
    noise_std = jnp.asarray(noise_std, jnp.float32)
    tol_a = jnp.asarray(tol, jnp.float32)
    parts, rels = [], []
    for ii, cc, ll, jj in _chunks(items, chunk_size):
        im, rk, ky = _take([images, ranks, keys], ii)
        if jit:
            sc, rel = _road_predict(predict_fn, im, rk, ky, cc, ll, jj, noise_std, tol_a, max_iter)
        else:
            x, rel = _road_images_jit(im, rk, ky, cc, ll, jj, noise_std, tol_a, max_iter)
            sc = jnp.asarray(predict_fn(x), jnp.float32)
        parts.append(sc)
        rels.append(rel)
    scores = _select(_concat(parts, n * m), output)
    scores = scores.reshape((n, m) + scores.shape[1:])
    rel = _concat(rels, n * m).reshape(n, m)
    original = scores[:, 0]
    morf_scores, lerf_scores = scores[:, 1:1 + n_p], scores[:, 1 + n_p:]
    morf_change = morf_scores - original[:, None]
    lerf_change = lerf_scores - original[:, None]
    return RoadResult(
        percentages=jnp.asarray(pct, jnp.float32),
        original=original,
        morf_scores=morf_scores,
        lerf_scores=lerf_scores,
        morf_change=morf_change,
        lerf_change=lerf_change,
        morf=jnp.mean(jnp.abs(morf_change), axis=1),
        lerf=jnp.mean(jnp.abs(lerf_change), axis=1),
        residual=jnp.stack([rel[:, 1:1 + n_p], rel[:, 1 + n_p:]], axis=1),
    )


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def _metrics(deletion: CurveResult, insertion: CurveResult, road_res: RoadResult):
    return {
        "deletion_auc": deletion.auc,
        "insertion_auc": insertion.auc,
        "road_morf": road_res.morf,
        "road_lerf": road_res.lerf,
        "road_gap": road_res.morf - road_res.lerf,
    }


def faithfulness_summary(
    predict_fn: PredictFn,
    images: jax.Array,
    maps: jax.Array,
    key,
    *,
    output: int | None = None,
    output_names: Sequence[str] | None = None,
    num_steps: int = DEFAULT_NUM_STEPS,
    deletion_baseline: str | float | Sequence[float] = "zeros",
    blur_sigma: float = DEFAULT_BLUR_SIGMA,
    road_percentages: Sequence[float] = DEFAULT_ROAD_PERCENTAGES,
    road_noise_std: float = DEFAULT_ROAD_NOISE_STD,
    num_random: int = 1,
    random_smooth_sigma: float = 0.0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    jit: bool = True,
) -> dict[str, float]:
    """Every faithfulness number for a batch, averaged over its images, as a flat dict of floats.

    Keys: ``deletion_auc``, ``insertion_auc`` (normalised-curve AUCs), ``road_morf``,
    ``road_lerf``, ``road_gap`` (mean absolute score change, score units), their chance levels
    ``random_<name>`` (the same protocols with ``num_random`` random maps per image, see
    :func:`random_maps`, averaged), ``deletion_degenerate_frac`` / ``insertion_degenerate_frac``
    (fraction of images whose normalised curve fell back to the straight line) and ``num_images``.
    With ``output=None`` and a K-head model every key except ``num_images`` is repeated per head
    as ``<name>_<head>``, the head named by ``output_names`` (default ``0..K-1``).

    Keys: image ``i``'s key (one key split per image, or ``N`` keys) is folded with 0 for the
    ROAD noise of the given maps, ``1 + 2r`` for the ``r``-th random map and ``2 + 2r`` for that
    map's ROAD noise, so adding images to a batch does not change another image's draws.
    """
    images = _check_images(images)
    maps = _check_maps(maps, images)
    n, h, w, _ = images.shape
    keys = _per_image_keys(key, n)

    def fold(j):
        return jax.vmap(lambda k: jax.random.fold_in(k, j))(keys)

    common = dict(output=output, chunk_size=chunk_size, jit=jit)
    curve_kw = dict(num_steps=num_steps, blur_sigma=blur_sigma, **common)
    road_kw = dict(percentages=road_percentages, noise_std=road_noise_std, **common)

    def run(m, road_key):
        dele = deletion_curve(predict_fn, images, m, baseline=deletion_baseline, **curve_kw)
        ins = insertion_curve(predict_fn, images, m, **curve_kw)
        rd = road(predict_fn, images, m, road_key, **road_kw)
        return dele, ins, rd

    dele, ins, rd = run(maps, fold(0))
    values = _metrics(dele, ins, rd)
    values["deletion_degenerate_frac"] = dele.degenerate.astype(jnp.float32)
    values["insertion_degenerate_frac"] = ins.degenerate.astype(jnp.float32)
    randoms = []
    for r in range(num_random):
        rmaps = random_maps(fold(1 + 2 * r), (n, h, w), smooth_sigma=random_smooth_sigma)
        randoms.append(_metrics(*run(rmaps, fold(2 + 2 * r))))
    for name in list(_metrics(dele, ins, rd)):
        if randoms:
            values["random_" + name] = jnp.mean(jnp.stack([d[name] for d in randoms]), axis=0)

    out: dict[str, float] = {}
    for name, per_image in values.items():
        mean = np.asarray(jnp.mean(per_image, axis=0), np.float64)
        if mean.ndim == 0:
            out[name] = float(mean)
        else:
            names = ([str(j) for j in range(len(mean))] if output_names is None
                     else list(output_names))
            if len(names) != len(mean):
                raise ValueError(f"{len(names)} output_names for {len(mean)} outputs")
            for head, val in zip(names, mean):
                out[f"{name}_{head}"] = float(val)
    out["num_images"] = float(n)
    return out
