"""Saliency agreement: how well a predicted map (Grad-CAM, a saliency model) matches human saliency.

    s = agreement.score(cam, human_density, kind="density")             # {"auc_judd": ..., "cc": ...}
    s = agreement.score(cam, fixation_points, kind="fixations", other_fixations=shuffled_points)
    table = agreement.score_with_baselines(cam, human_density)          # model | center_bias | uniform

Plain NumPy (float64 throughout), pure functions: the only state is the explicit ``rng``. The
metrics are those of the MIT saliency benchmark (Bylinskii et al., ``cvzoya/saliency``,
``code_forMetrics/*.m``), transcribed from the MATLAB code; the places where pysaliency 0.2.22
(Kümmerer) computes something else are listed under *MIT vs pysaliency* below.

Inputs
    ``saliency``: the predicted map, real ``[H, W]`` (``[H, W, 1]`` accepted), any scale; NaN or
    inf is an error. Higher = more salient.
    Human reference, one of two kinds:
      * fixations -- a fixation map (``[H, W]``, a pixel is fixated where its value is > 0, as
        MATLAB's ``F > 0``; negative values are an error) or fixation points: a ``list``/``tuple``
        of ``(row, col)`` pairs or a non-bool ndarray of shape ``[N, 2]``. Points are taken in the
        saliency map's pixel grid (fractional coordinates are floored: pixel ``(r, c)`` covers
        ``[r, r+1) x [c, c+1)``); rasterise points recorded on another grid with
        :func:`fixation_map` first. An ndarray is read as a map when it is bool, is not ``[N, 2]``,
        or has exactly the saliency map's shape (for ``other_fixations``: the fixation map's);
        pass a bool map to be unambiguous.
        A pixel fixated several times counts once in the location metrics (MIT binarises the
        map); repeated fixations weigh more in the blurred density (see below).
      * density -- a continuous human saliency map (e.g. MSI-Net's, in [0, 1]), any scale.
    Size: a saliency map whose ``[H, W]`` differs from the reference's is resized to the reference
    size with bilinear interpolation (``cv2.resize(..., INTER_LINEAR)``: pixel-centre aligned, edge
    pixels replicated, no anti-aliasing). MIT calls MATLAB's ``imresize`` (bicubic, anti-aliased
    when shrinking), so scores of resized maps differ slightly from MIT's; resize maps yourself if
    that matters. With fixation *points* the reference grid is the saliency map's own.

Location metrics (need fixations): AUC-Judd, AUC-Borji, sAUC, NSS
    S = the saliency map min-max normalised to [0, 1]; F = the set of fixated pixels,
    Nf = |F|, Np = H * W; S_F = the values of S at F. Curves start at (0, 0), end at (1, 1) and
    are integrated with the trapezoid rule (MATLAB ``trapz``).
    * ``auc_judd``: thresholds t_i = S_F sorted descending (i = 1..Nf);
      TP_i = i / Nf, FP_i = (#{p : S_p >= t_i} - i) / (Np - Nf). With ``jitter`` (default, as
      MIT) U[0, 1e-7) noise is added before thresholding to break ties. Because the curve only
      has points at fixated values, AUC-Judd is *not* the ROC AUC of fixated vs non-fixated
      pixels: for distinct values AUC_Judd = AUC_ROC + FP_Nf / (2 Nf) (each step of the curve is
      a trapezoid, not a staircase).
    * ``auc_borji``: for each of ``num_splits`` splits draw Nf pixels uniformly *with*
      replacement from all Np pixels (negatives N_s); thresholds ``0:step:max(S_F ∪ N_s)``
      (MATLAB colon, swept descending); TP = #{S_F >= t} / Nf, FP = #{N_s >= t} / Nf;
      the score is the mean AUC over splits.
    * ``auc_shuffled`` (sAUC): as Borji, but the negatives are the saliency values at fixations of
      *other* images (``other_fixations``: the union of their fixation maps / points on this
      image's grid; Borji uses 10 other images): each split takes min(Nf, No) of the No other
      fixated pixels at random *without* replacement (all of them, hence a deterministic score,
      when No <= Nf); FP = #{N_s >= t} / min(Nf, No). Discounts centre bias.
    * ``nss``: Z = (saliency - mean) / std(ddof) over the whole map; NSS = mean_{p in F} Z_p.
      (NSS needs no min-max; it is invariant to affine rescaling anyway.)
    The thresholds ``0:step:m`` reproduce MATLAB's colon operator to the last bit (first half
    k * step, second half counted down from the end point, which is snapped to ``m`` when within
    2 eps max(|0|, |m|)), so maps quantised to 1/255 cross the same thresholds as in MATLAB.

Distribution metrics (need a density): CC, SIM, KLD. P = prediction, Q = human reference.
    * ``cc``: Pearson correlation of the two maps (MIT: z-score both, ``corr2``).
    * ``sim``: each map min-max normalised, then divided by its sum; SIM = sum_p min(P_p, Q_p)
      (histogram intersection; 1 = identical distributions).
    * ``kld``: P and Q divided by their sums; KLD = sum_p Q_p log(eps + Q_p / (P_p + eps)),
      eps = 2.2204e-16 (the value pysaliency hard-codes; MATLAB's ``eps`` is 2.220446e-16).
      0 for a perfect prediction, larger is worse; Q is the human map.

Human reference of each kind, and the conversions (both deterministic)
    * kind="fixations": location metrics use the fixations as given. Distribution metrics use
      :func:`density_from_fixations`: the fixation counts blurred by a Gaussian of
      ``sigma = blur * max(H, W)`` pixels (default ``blur = 0.03``; ``cv2.GaussianBlur``, zero
      padding outside the image, kernel +-4 sigma), divided by its sum. MIT's benchmark compares
      CC / SIM / KLD with such continuous fixation maps too (blurred by about one degree of visual
      angle, ``run_antonioGaussian.m``); a degree is a property of the viewing set-up, so here sigma
      is a fraction of the image size. ``blur=0`` uses the raw fixation counts (not recommended:
      CC / SIM / KLD against a sparse map mostly measure the blur of the prediction).
    * kind="density": distribution metrics use the density directly. Location metrics use
      :func:`fixations_from_density`: the pixels whose density is >= the k-th largest value,
      k = ceil(top * H * W), default ``top = 0.1`` (the densest 10% of the image); ties at the
      threshold are all included, so slightly more than k pixels may be selected. The AUCs then
      ask whether the prediction ranks the human-salient tenth of the image above the rest; report
      ``top`` with the numbers, they depend on it.
    * sAUC needs fixations of other images (for densities: their :func:`fixations_from_density`
      maps on this grid, combined with ``np.logical_or``); without ``other_fixations``,
      :func:`score` reports it as NaN.

Degenerate input (rule here; MIT / pysaliency behaviour in brackets)
    * No fixated pixel (all-zero map, empty point list): ``ValueError`` naming the problem [MIT
      returns NaN and prints 'no fixationMap']. Every pixel fixated: ``auc_judd`` raises
      ``ValueError`` (no negatives) [MIT divides by zero].
    * A constant saliency map (e.g. an all-zero Grad-CAM: no positive evidence) carries no spatial
      information and is scored as the uniform map: AUC-Judd / Borji / sAUC = 0.5 exactly,
      NSS = 0, CC = 0, and SIM / KLD use the uniform distribution. [MIT: the min-max division
      is 0 / 0, so the AUCs see a NaN map (AUC-Judd with jitter: a random value near 0.5), NSS and
      CC are 0 / 0 = NaN, SIM is NaN (0 for an all-zero map, which stays zero), KLD of an all-zero
      map is sum Q log(eps + Q / eps) ~ 36 - H(Q) nats. pysaliency: NSS 0, CC 0, SIM / KLD
      uniform.]
    * A constant human density: CC = NaN (nothing to correlate with); SIM / KLD use the uniform
      distribution; :func:`fixations_from_density` raises ``ValueError`` (it would select every
      pixel).
    * Negative values: SIM (MIT mode) removes them with its min-max; KLD shifts a map by its
      minimum when the minimum is < 0 (pysaliency's rule) [MIT takes the log of a negative ratio].
    * sAUC with no other fixated pixel: ``ValueError``.

MIT vs pysaliency 0.2.22 (default here: MIT; the option for the other where it is cheap)
    * NSS std: MATLAB ``std`` uses N - 1 (``ddof=1``, default); pysaliency ``np.std`` uses N
      (``nss(..., ddof=0)``). pysaliency also averages over fixations, so a pixel fixated twice
      counts twice; MIT (and this module) averages over fixated pixels. For a map of N pixels the
      two std conventions differ by the factor sqrt(N / (N - 1)).
    * SIM: MIT min-max normalises each map before dividing by its sum (removing any floor);
      pysaliency only shifts a map when its minimum is < 0 and then divides by the sum
      (``sim(..., normalization="pysaliency")``). They differ for every map whose minimum is > 0
      (e.g. a centre-bias map or a blurred density with a floor).
    * KLD: the formula is identical (pysaliency names it ``MIT_KLDiv(saliency_map_1,
      saliency_map_2)`` with ``saliency_map_2`` the human map, i.e. the argument order of
      :func:`kld`); pysaliency's ``KLDiv`` / ``image_based_kl_divergence`` defaults are different
      (minimum_value 1e-20, no regularisation). Negative maps and all-zero maps: see above (here
      pysaliency's rules).
    * CC: the same Pearson r; pysaliency returns 0 for a constant first map and NaN for a constant
      second map, as here.
    * AUC-Judd: MIT adds U[0, 1)/1e7 to the raw map and then min-max normalises; here the map is
      min-max normalised first, then U[0, 1e-7) is added and the map normalised again, so the
      jitter is relative to the map's range (identical to MIT for maps already in [0, 1]).
      pysaliency adds N(0, 1) * 1e-7 with ``RandomState(42)`` and puts all fixations with tied
      values at one threshold; MIT steps through tied fixations one at a time and meanwhile counts
      the tied ones not yet stepped through as false positives (the curve goes right, then back
      left), which lowers the score. ``auc_judd(..., ties="grouped")`` gives pysaliency's handling
      of ties (its negatives, the non-fixated pixels, are MIT's too). For distinct values the two
      are identical. pysaliency counts a pixel fixated twice as two positives; MIT (here) once.
    * AUC-Borji: not in pysaliency. sAUC: pysaliency's ``sAUC`` is the exact ROC AUC of the
      fixations against *all* fixations of the other images (every value a threshold, no
      subsampling); MIT (here) subsamples min(Nf, No) per split and thresholds at multiples of
      ``step``, so values between the same two consecutive thresholds count as ties.
    * MIT resizes with ``imresize`` (bicubic); here bilinear (see Size above). pysaliency refuses
      maps of another size. pysaliency truncates fractional fixation coordinates (``astype(int)``),
      which equals the floor used here for coordinates inside the image.

Baselines: :func:`center_bias_map` (a Gaussian at the image centre with standard deviations
``sigma * H`` and ``sigma * W``, default ``sigma = 0.25``) and :func:`uniform_map`; both sum to 1.
:func:`score_with_baselines` scores them with the same random draws as the model (paired).

Randomness: ``rng`` is a ``numpy.random.Generator``, an int seed, or None (= seed 0); calls with
the same seed (or a Generator in the same state) give the same result. Only AUC-Judd (jitter), AUC-Borji and sAUC draw.
:func:`score` draws one seed from ``rng`` and gives each random metric its own stream derived from
it, so choosing a subset of ``metrics`` does not change the other metrics' values; its values
therefore differ (within sampling noise) from calling ``auc_borji(..., rng=rng)`` directly.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

__all__ = [
    "ALL",
    "METRICS",
    "DEFAULT_TOP",
    "DEFAULT_BLUR",
    "DEFAULT_CENTER_SIGMA",
    "KLD_EPS",
    "auc_judd",
    "auc_borji",
    "auc_shuffled",
    "nss",
    "cc",
    "sim",
    "kld",
    "fixation_map",
    "fixations_from_density",
    "density_from_fixations",
    "center_bias_map",
    "uniform_map",
    "score",
    "score_with_baselines",
]

METRICS = ("auc_judd", "auc_borji", "auc_shuffled", "nss", "cc", "sim", "kld")
ALL = METRICS
LOCATION_METRICS = ("auc_judd", "auc_borji", "auc_shuffled", "nss")
DISTRIBUTION_METRICS = ("cc", "sim", "kld")

DEFAULT_TOP = 0.1  # fixations_from_density: the densest 10% of the pixels
DEFAULT_BLUR = 0.03  # density_from_fixations: Gaussian sigma as a fraction of max(H, W)
DEFAULT_CENTER_SIGMA = 0.25  # center_bias_map: Gaussian sigma as a fraction of H (rows) and W (cols)
KLD_EPS = 2.2204e-16  # MIT / pysaliency regulariser of KLD
JITTER = 1e-7  # AUC-Judd tie-breaking noise, relative to the map's range (MIT: rand / 10000000)
_MATLAB_EPS = float(np.finfo(np.float64).eps)


# ----------------------------------------------------------------------------------------- inputs


def _generator(rng) -> np.random.Generator:
    """``rng`` as a Generator: None -> seed 0, an int -> that seed, a Generator -> itself."""
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator, got {type(rng).__name__}")


def _as_map(x, what: str) -> np.ndarray:
    """A finite float64 [H, W] copy of ``x`` ([H, W, 1] squeezed)."""
    a = np.array(x, dtype=np.float64)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"{what} must be a non-empty [H, W] map, got shape {np.shape(x)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contains NaN or inf")
    return a


def _resize_to(saliency: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (cv2 INTER_LINEAR, pixel-centre aligned) of a float64 map to ``shape``."""
    if saliency.shape == tuple(shape):
        return saliency
    h, w = shape
    return cv2.resize(saliency, (int(w), int(h)), interpolation=cv2.INTER_LINEAR).astype(np.float64)


def _is_points(fixations, grid_shape: tuple[int, int] | None = None) -> bool:
    """Points unless a map: a list/tuple is points; an ndarray is a map when it is bool, not
    ``[N, 2]``, or exactly the shape of the grid it is used on (``grid_shape``)."""
    if isinstance(fixations, (list, tuple)):
        return True
    a = np.asarray(fixations)
    if grid_shape is not None and a.shape == tuple(grid_shape):
        return False
    return a.ndim == 2 and a.shape[1] == 2 and a.dtype != np.bool_


def fixation_map(points, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise fixation points into a count map.

    Args:
      points: ``(row, col)`` pairs (a sequence, or an array ``[N, 2]``); fractional coordinates
        are floored (pixel ``(r, c)`` covers ``[r, r+1) x [c, c+1)``).
      shape: ``(H, W)`` of the map.

    Returns:
      int64 ``[H, W]``: how many points fall in each pixel.

    Raises:
      ValueError: a point outside the map, or ``points`` not of shape ``[N, 2]``.
    """
    h, w = (int(s) for s in shape)
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        return np.zeros((h, w), np.int64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"fixation points must be (row, col) pairs of shape [N, 2], got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("fixation points contain NaN or inf")
    idx = np.floor(pts).astype(np.int64)
    bad = (idx[:, 0] < 0) | (idx[:, 0] >= h) | (idx[:, 1] < 0) | (idx[:, 1] >= w)
    if np.any(bad):
        raise ValueError(f"fixation point {pts[np.argmax(bad)].tolist()} lies outside the {h}x{w} map")
    counts = np.zeros((h, w), np.int64)
    np.add.at(counts, (idx[:, 0], idx[:, 1]), 1)
    return counts


def _fixation_weights(fixations, default_shape: tuple[int, int], what: str = "fixations") -> np.ndarray:
    """Fixations (map or points) as a non-negative float64 [H, W] weight map (counts for points)."""
    if _is_points(fixations, default_shape):
        weights = fixation_map(fixations, default_shape).astype(np.float64)
    else:
        weights = _as_map(fixations, what)
        if np.any(weights < 0):
            raise ValueError(f"{what} map has negative values; expected a binary or count map")
    return weights


def _fixation_mask(fixations, default_shape: tuple[int, int], what: str = "fixations") -> np.ndarray:
    """Bool [H, W] fixated pixels (> 0); ValueError when there is none."""
    mask = _fixation_weights(fixations, default_shape, what) > 0
    if not mask.any():
        raise ValueError(
            f"{what} has no fixations (empty point list or all-zero fixation map): "
            "the metric is undefined without fixated pixels"
        )
    return mask


def _minmax(s: np.ndarray) -> np.ndarray:
    """(s - min) / (max - min); callers handle constant maps before calling this."""
    lo, hi = s.min(), s.max()
    return (s - lo) / (hi - lo)


def _is_constant(s: np.ndarray) -> bool:
    return bool(s.max() == s.min())


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    """MATLAB ``trapz(x, y)``: sum of (x[i+1] - x[i]) * (y[i+1] + y[i]) / 2 (x need not be monotone)."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def _matlab_colon(a: float, d: float, b: float) -> np.ndarray:
    """MATLAB's ``a:d:b`` for ``d > 0`` (empty when ``b < a``), reproduced element for element.

    MATLAB counts n = round((b - a) / d) steps (one fewer when a + n d overshoots b by more than
    tol = 2 eps max(|a|, |b|)), snaps the end point c = a + n d to b when within tol, and fills
    the first half as a + k d and the second half as c - (n - k) d (the middle of an odd-length
    vector as (a + c) / 2), so the vector is symmetric and both ends are exact.
    """
    if not d > 0:
        raise ValueError(f"step must be > 0, got {d}")
    if b < a:
        return np.empty(0)
    tol = 2.0 * _MATLAB_EPS * max(abs(a), abs(b))
    n = int(math.floor((b - a) / d + 0.5))  # MATLAB round(): half away from zero (argument >= 0)
    if a + n * d - b > tol:
        n -= 1
    c = a + n * d
    if c - b > -tol:
        c = b
    k = np.arange(n + 1, dtype=np.float64)
    out = np.where(k < n / 2.0, a + k * d, c - (n - k) * d)
    if n % 2 == 0:
        out[n // 2] = (a + c) / 2.0
    return out


# -------------------------------------------------------------------------------- human references


def fixations_from_density(density, top: float = DEFAULT_TOP) -> np.ndarray:
    """Deterministic fixations of a continuous human saliency map: its densest ``top`` fraction.

    Fixated = ``density >= t`` with t the k-th largest value, ``k = ceil(top * H * W)``. Ties at t
    are all included (so a few more than k pixels may be fixated); no randomness.

    Args:
      density: real ``[H, W]`` map (e.g. MSI-Net's, in [0, 1]); only the order of values matters.
      top: fraction of the pixels to treat as fixated, in (0, 1); default 0.1.

    Returns:
      bool ``[H, W]``.

    Raises:
      ValueError: ``top`` outside (0, 1), or a map so flat that every pixel would be selected
        (e.g. a constant map: the location metrics would have no negatives).
    """
    d = _as_map(density, "density")
    if not 0.0 < top < 1.0:
        raise ValueError(f"top must be in (0, 1), got {top}")
    flat = d.ravel()
    k = min(flat.size, max(1, math.ceil(top * flat.size - 1e-9)))
    t = np.partition(flat, flat.size - k)[flat.size - k]
    if t <= flat.min():
        raise ValueError(
            f"density map is too flat for top={top}: its top-{k} threshold equals its minimum, "
            "so every pixel would count as fixated (is the map constant?)"
        )
    return d >= t


def density_from_fixations(fixations, shape: tuple[int, int] | None = None, blur: float = DEFAULT_BLUR) -> np.ndarray:
    """Continuous fixation density: fixation counts blurred by a Gaussian, summing to 1.

    sigma = ``blur * max(H, W)`` pixels; ``cv2.GaussianBlur`` with a +-4 sigma kernel and zero
    padding (mass falling outside the image is dropped before renormalising). ``blur=0`` keeps the
    raw counts.

    Args:
      fixations: a binary / count map ``[H, W]`` or ``(row, col)`` points (then ``shape`` is
        required).
      shape: ``(H, W)`` for points; ignored for maps.
      blur: Gaussian sigma as a fraction of the larger image side; default 0.03.

    Returns:
      float64 ``[H, W]``, non-negative, sums to 1.

    Raises:
      ValueError: no fixations, negative ``blur``, or points without ``shape``.
    """
    if blur < 0:
        raise ValueError(f"blur must be >= 0, got {blur}")
    if _is_points(fixations) and shape is None:
        raise ValueError("density_from_fixations needs shape=(H, W) for fixation points")
    weights = _fixation_weights(fixations, shape if shape is not None else (0, 0))
    if not np.any(weights > 0):
        raise ValueError("fixations has no fixations (empty point list or all-zero fixation map)")
    if blur > 0:
        sigma = blur * max(weights.shape)
        weights = cv2.GaussianBlur(weights, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)
        weights = np.maximum(weights, 0.0)  # the separable filter can leave -1e-20 round-off
    return weights / weights.sum()


def center_bias_map(shape: tuple[int, int], sigma: float = DEFAULT_CENTER_SIGMA) -> np.ndarray:
    """Centre-bias baseline: an axis-aligned Gaussian at the image centre, summing to 1.

    ``G[r, c] ∝ exp(-((r - (H-1)/2)^2 / (2 (sigma H)^2) + (c - (W-1)/2)^2 / (2 (sigma W)^2)))``:
    sigma is a fraction of each side (so the blob follows the aspect ratio); default 0.25.
    """
    h, w = (int(s) for s in shape)
    if h < 1 or w < 1 or not sigma > 0:
        raise ValueError(f"need a positive shape and sigma, got shape={shape}, sigma={sigma}")
    r = (np.arange(h, dtype=np.float64) - (h - 1) / 2.0) / (sigma * h)
    c = (np.arange(w, dtype=np.float64) - (w - 1) / 2.0) / (sigma * w)
    g = np.exp(-0.5 * (r[:, None] ** 2 + c[None, :] ** 2))
    return g / g.sum()


def uniform_map(shape: tuple[int, int]) -> np.ndarray:
    """Uniform baseline: every pixel ``1 / (H W)`` (a constant map: chance level for every metric)."""
    h, w = (int(s) for s in shape)
    if h < 1 or w < 1:
        raise ValueError(f"need a positive shape, got {shape}")
    return np.full((h, w), 1.0 / (h * w))


# ------------------------------------------------------------------------------- location metrics


def _prepare_location(saliency, fixations, what: str = "fixations") -> tuple[np.ndarray, np.ndarray]:
    """(saliency at the fixations' grid, bool fixated mask)."""
    s = _as_map(saliency, "saliency")
    mask = _fixation_mask(fixations, s.shape, what)
    return _resize_to(s, mask.shape), mask


def auc_judd(saliency, fixations, jitter: bool = True, rng=None, *, ties: str = "mit") -> float:
    """AUC-Judd (MIT ``AUC_Judd.m``): ROC area with one threshold per fixated pixel.

    S = min-max normalised map (+ U[0, 1e-7) jitter, renormalised, when ``jitter``); thresholds
    t_1 >= ... >= t_Nf = the values at the Nf fixated pixels; with Np pixels in all,
    ``TP_i = i / Nf``, ``FP_i = (#{S >= t_i} - i) / (Np - Nf)``; points (0, 0), (FP_i, TP_i),
    (1, 1); trapezoid rule.

    Args:
      saliency: predicted map ``[h, w]``; resized (bilinear) to the fixation map's size.
      fixations: fixation map ``[H, W]`` (> 0 = fixated) or ``(row, col)`` points.
      jitter: add tie-breaking noise (MIT default). Without it, tied fixated values are handled as
        ``ties`` says.
      rng: Generator / int seed / None (seed 0); used only for the jitter.
      ties: "mit" (default): tied fixated values are stepped through one at a time, as MIT's loop
        does; "grouped": one threshold per distinct fixated value, TP = #{S_F >= t} / Nf and
        FP = #{unfixated >= t} / (Np - Nf) (pysaliency's ``thresholds='fixations'``). Equal for
        distinct values.

    Returns:
      AUC in [0, 1]; exactly 0.5 for a constant map.

    Raises:
      ValueError: no fixations, or every pixel fixated (no negatives).
    """
    if ties not in ("mit", "grouped"):
        raise ValueError(f"ties must be 'mit' or 'grouped', got {ties!r}")
    s, mask = _prepare_location(saliency, fixations)
    n_pix, n_fix = mask.size, int(mask.sum())
    if n_fix == n_pix:
        raise ValueError("every pixel is fixated: AUC-Judd has no non-fixated pixels to compare with")
    if _is_constant(s):
        return 0.5
    s = _minmax(s)
    if jitter:
        s = _minmax(s + _generator(rng).random(s.shape) * JITTER)
    values = np.sort(s.ravel())
    sth = np.sort(s[mask])[::-1]
    if ties == "mit":
        above = n_pix - np.searchsorted(values, sth, side="left")
        steps = np.arange(1, n_fix + 1)
        tp = steps / n_fix
        fp = (above - steps) / (n_pix - n_fix)
    else:
        thresholds = np.unique(sth)[::-1]
        neg = np.sort(s[~mask])
        tp = (n_fix - np.searchsorted(sth[::-1], thresholds, side="left")) / n_fix
        fp = (neg.size - np.searchsorted(neg, thresholds, side="left")) / neg.size
    tp = np.concatenate([[0.0], tp, [1.0]])
    fp = np.concatenate([[0.0], fp, [1.0]])
    return _trapezoid(fp, tp)


def _thresholded_aucs(sth: np.ndarray, negatives: np.ndarray, step: float) -> np.ndarray:
    """MIT's Borji/shuffled inner loop: one AUC per row of ``negatives`` ([splits, n])."""
    pos = np.sort(sth)
    neg = np.sort(negatives, axis=1)
    n_pos, n_neg = pos.size, neg.shape[1]
    aucs = np.empty(neg.shape[0])
    for i, row in enumerate(neg):
        thresholds = _matlab_colon(0.0, step, float(max(pos[-1], row[-1])))[::-1]
        tp = (n_pos - np.searchsorted(pos, thresholds, side="left")) / n_pos
        fp = (n_neg - np.searchsorted(row, thresholds, side="left")) / n_neg
        aucs[i] = _trapezoid(np.concatenate([[0.0], fp, [1.0]]), np.concatenate([[0.0], tp, [1.0]]))
    return aucs


def _check_splits(num_splits: int, step: float) -> None:
    if int(num_splits) < 1:
        raise ValueError(f"num_splits must be >= 1, got {num_splits}")
    if not step > 0:
        raise ValueError(f"step must be > 0, got {step}")


def auc_borji(saliency, fixations, num_splits: int = 100, step: float = 0.1, rng=None) -> float:
    """AUC-Borji (MIT ``AUC_Borji.m``): fixated pixels vs uniformly sampled pixels.

    S = min-max normalised map; per split, Nf negatives are drawn uniformly *with replacement* from
    all pixels; thresholds ``0:step:max(S_F ∪ N_s)`` (MATLAB colon), descending;
    ``TP = #{S_F >= t} / Nf``, ``FP = #{N_s >= t} / Nf``; points (0, 0) ... (1, 1); trapezoid;
    mean over ``num_splits`` splits. Its expectation over the draws is the AUC (ties counted 1/2)
    of the fixated values against all pixels' values, evaluated at the thresholds only.

    Args:
      saliency: predicted map; resized (bilinear) to the fixation map's size.
      fixations: fixation map (> 0 = fixated) or ``(row, col)`` points.
      num_splits: random splits (MIT: 100). step: threshold spacing on [0, 1] (MIT: 0.1).
      rng: Generator / int seed / None (seed 0).

    Returns:
      mean AUC; exactly 0.5 for a constant map.
    """
    _check_splits(num_splits, step)
    s, mask = _prepare_location(saliency, fixations)
    if _is_constant(s):
        return 0.5
    s = _minmax(s).ravel()
    sth = s[mask.ravel()]
    draws = _generator(rng).integers(0, s.size, size=(int(num_splits), sth.size))
    return float(np.mean(_thresholded_aucs(sth, s[draws], step)))


def auc_shuffled(saliency, fixations, other_fixations, num_splits: int = 100, step: float = 0.1, rng=None) -> float:
    """Shuffled AUC (MIT ``AUC_shuffled.m``): fixated pixels vs fixations of other images.

    Like :func:`auc_borji`, but each split's negatives are min(Nf, No) of the No pixels fixated in
    ``other_fixations``, drawn *without* replacement (MATLAB ``randperm``);
    ``FP = #{N_s >= t} / min(Nf, No)``. When No <= Nf every split uses all of them and the score
    is deterministic. A centre-biased map gains nothing here because the other images' fixations
    share the centre bias.

    Args:
      saliency: predicted map; resized (bilinear) to the fixation map's size.
      fixations: fixation map (> 0 = fixated) or ``(row, col)`` points.
      other_fixations: the union of other images' fixations on this grid: a map of the same
        ``[H, W]`` as the fixation map (> 0 = fixated) or ``(row, col)`` points.
      num_splits, step, rng: as :func:`auc_borji`.

    Returns:
      mean AUC; exactly 0.5 for a constant map.

    Raises:
      ValueError: no fixations, no other fixations, or an other-fixation map of another size.
    """
    _check_splits(num_splits, step)
    s, mask = _prepare_location(saliency, fixations)
    other = _fixation_mask(other_fixations, mask.shape, "other_fixations")
    if other.shape != mask.shape:
        raise ValueError(f"other_fixations map has shape {other.shape}, the fixation map {mask.shape}")
    if _is_constant(s):
        return 0.5
    s = _minmax(s).ravel()
    sth = s[mask.ravel()]
    ind = np.flatnonzero(other.ravel())
    n_oth = min(sth.size, ind.size)
    gen = _generator(rng)
    picks = np.stack([gen.permutation(ind)[:n_oth] for _ in range(int(num_splits))])
    return float(np.mean(_thresholded_aucs(sth, s[picks], step)))


def nss(saliency, fixations, ddof: int = 1) -> float:
    """Normalized Scanpath Saliency (MIT ``NSS.m``): mean z-scored saliency at fixated pixels.

    ``Z = (S - mean(S)) / std(S, ddof)`` over all pixels of the (resized) map;
    ``NSS = mean_{p fixated} Z_p``, each fixated pixel once.

    Args:
      saliency: predicted map; resized (bilinear) to the fixation map's size.
      fixations: fixation map (> 0 = fixated) or ``(row, col)`` points.
      ddof: 1 = MATLAB ``std`` (MIT, default); 0 = ``np.std`` (pysaliency).

    Returns:
      NSS (0 = chance); exactly 0.0 for a constant map.
    """
    s, mask = _prepare_location(saliency, fixations)
    if _is_constant(s):
        return 0.0
    if s.size - ddof <= 0:
        raise ValueError(f"ddof={ddof} leaves no degrees of freedom for a map of {s.size} pixels")
    z = (s - s.mean()) / s.std(ddof=ddof)
    return float(z[mask].mean())


# --------------------------------------------------------------------------- distribution metrics


def _prepare_pair(saliency, reference) -> tuple[np.ndarray, np.ndarray]:
    q = _as_map(reference, "reference")
    p = _resize_to(_as_map(saliency, "saliency"), q.shape)
    return p, q


def cc(saliency, reference) -> float:
    """Linear correlation coefficient (MIT ``CC.m``): Pearson r of the two maps.

    ``CC = sum((P - mean P)(Q - mean Q)) / sqrt(sum (P - mean P)^2 * sum (Q - mean Q)^2)``.

    Args:
      saliency: predicted map; resized (bilinear) to the reference's size.
      reference: human density map ``[H, W]``.

    Returns:
      r in [-1, 1]; NaN when the reference is constant; else 0.0 when the prediction is constant.
    """
    p, q = _prepare_pair(saliency, reference)
    if _is_constant(q):
        return float("nan")
    if _is_constant(p):
        return 0.0
    p = p - p.mean()
    q = q - q.mean()
    r = float(np.sum(p * q) / math.sqrt(float(np.sum(p * p)) * float(np.sum(q * q))))
    return max(-1.0, min(1.0, r))


def _distribution(m: np.ndarray, *, minmax: bool) -> np.ndarray:
    """A map as a distribution: min-max (MIT SIM) or shift-if-negative (pysaliency), then / sum.

    Constant maps (and maps with a zero sum after the shift) become the uniform distribution.
    """
    if _is_constant(m):
        return np.full(m.shape, 1.0 / m.size)
    if minmax:
        m = _minmax(m)
    elif m.min() < 0:
        m = m - m.min()
    total = m.sum()
    if not total > 0:
        return np.full(m.shape, 1.0 / m.size)
    return m / total


def sim(saliency, reference, *, normalization: str = "mit") -> float:
    """Similarity / histogram intersection (MIT ``similarity.m``).

    ``P = minmax(P) / sum(minmax(P))``, same for Q; ``SIM = sum_p min(P_p, Q_p)``.

    Args:
      saliency: predicted map; resized (bilinear) to the reference's size.
      reference: human density map ``[H, W]``.
      normalization: "mit" (default, min-max then sum) or "pysaliency" (subtract the minimum only
        when it is < 0, then divide by the sum).

    Returns:
      SIM in [0, 1] (1 = identical). Constant maps count as uniform.
    """
    if normalization not in ("mit", "pysaliency"):
        raise ValueError(f"normalization must be 'mit' or 'pysaliency', got {normalization!r}")
    p, q = _prepare_pair(saliency, reference)
    minmax = normalization == "mit"
    return float(np.minimum(_distribution(p, minmax=minmax), _distribution(q, minmax=minmax)).sum())


def kld(saliency, reference, eps: float = KLD_EPS) -> float:
    """KL divergence of the prediction from the human map (MIT ``KLdiv.m``, pysaliency ``MIT_KLDiv``).

    ``P = P / sum P``, ``Q = Q / sum Q``; ``KLD = sum_p Q_p log(eps + Q_p / (P_p + eps))``.
    A map with negative values is first shifted by its minimum; a constant (or all-zero) map is
    the uniform distribution.

    Args:
      saliency: predicted map P; resized (bilinear) to the reference's size.
      reference: human density Q ``[H, W]``.
      eps: regulariser (MIT / pysaliency: 2.2204e-16).

    Returns:
      KLD >= ~0 (0 = perfect prediction; lower is better).
    """
    p, q = _prepare_pair(saliency, reference)
    p = _distribution(p, minmax=False)
    q = _distribution(q, minmax=False)
    return float(np.sum(q * np.log(eps + q / (p + eps))))


# ------------------------------------------------------------------------------------ all at once


def _reference_pair(saliency, reference, kind: str, top: float, blur: float):
    """(saliency map, fixations for the location metrics, density for the distribution metrics).

    Each of the two references is built lazily by the caller: returned as zero-argument callables.
    """
    s = _as_map(saliency, "saliency")
    if kind == "density":
        density = _as_map(reference, "reference density")
        return s, (lambda: fixations_from_density(density, top)), (lambda: density)
    if kind == "fixations":
        weights = _fixation_weights(reference, s.shape, "reference fixations")
        if not np.any(weights > 0):
            raise ValueError(
                "reference fixations has no fixations (empty point list or all-zero fixation map): "
                "the metrics are undefined without fixated pixels"
            )
        return s, (lambda: weights > 0), (lambda: density_from_fixations(weights, blur=blur))
    raise ValueError(f"kind must be 'density' or 'fixations', got {kind!r}")


def _reference_shape(saliency, reference, kind: str) -> tuple[int, int]:
    if kind == "fixations" and _is_points(reference, _as_map(saliency, "saliency").shape):
        return _as_map(saliency, "saliency").shape
    return _as_map(reference, "reference").shape


def score(
    saliency,
    reference,
    *,
    kind: str = "density",
    metrics: Sequence[str] = ALL,
    other_fixations=None,
    rng=None,
    top: float = DEFAULT_TOP,
    blur: float = DEFAULT_BLUR,
    jitter: bool = True,
    ddof: int = 1,
    num_splits: int = 100,
    step: float = 0.1,
) -> dict[str, float]:
    """All agreement metrics of one predicted map against one human reference.

    Args:
      saliency: predicted map ``[h, w]``; resized (bilinear) to the reference's size.
      reference: ``kind="density"``: human saliency map ``[H, W]`` (location metrics use
        ``fixations_from_density(reference, top)``); ``kind="fixations"``: a fixation map or
        ``(row, col)`` points (distribution metrics use ``density_from_fixations(reference,
        blur=blur)``).
      metrics: names from :data:`METRICS` (default all), in the order wanted.
      other_fixations: fixations of other images on this grid (map or points) for sAUC; without
        them ``auc_shuffled`` is NaN.
      rng: Generator / int seed / None (seed 0). One seed is drawn from it; AUC-Judd's jitter,
        AUC-Borji and sAUC each get their own stream derived from that seed.
      top, blur: the reference conversions (see the module docstring).
      jitter: AUC-Judd jitter. ddof: NSS std. num_splits, step: AUC-Borji and sAUC.

    Returns:
      ``{metric: float}`` in the order of ``metrics``.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {list(METRICS)}")
    s, fixations_of, density_of = _reference_pair(saliency, reference, kind, top, blur)
    seed = int(_generator(rng).integers(0, 2**63 - 1))
    streams = {name: np.random.default_rng([seed, i]) for i, name in enumerate(METRICS)}
    cache: dict[str, np.ndarray] = {}

    def fix() -> np.ndarray:
        if "fix" not in cache:
            cache["fix"] = fixations_of()
        return cache["fix"]

    def dens() -> np.ndarray:
        if "dens" not in cache:
            cache["dens"] = density_of()
        return cache["dens"]

    out: dict[str, float] = {}
    for name in metrics:
        if name == "auc_judd":
            out[name] = auc_judd(s, fix(), jitter=jitter, rng=streams[name])
        elif name == "auc_borji":
            out[name] = auc_borji(s, fix(), num_splits=num_splits, step=step, rng=streams[name])
        elif name == "auc_shuffled":
            out[name] = (
                float("nan")
                if other_fixations is None
                else auc_shuffled(s, fix(), other_fixations, num_splits=num_splits, step=step, rng=streams[name])
            )
        elif name == "nss":
            out[name] = nss(s, fix(), ddof=ddof)
        elif name == "cc":
            out[name] = cc(s, dens())
        elif name == "sim":
            out[name] = sim(s, dens())
        else:
            out[name] = kld(s, dens())
    return out


def score_with_baselines(
    saliency,
    reference,
    *,
    kind: str = "density",
    metrics: Sequence[str] = ALL,
    other_fixations=None,
    rng=None,
    center_sigma: float = DEFAULT_CENTER_SIGMA,
    **score_kwargs,
) -> dict[str, dict[str, float]]:
    """:func:`score` for the model and for the centre-bias and uniform baselines, side by side.

    The baselines are built at the reference's size (``center_bias_map(shape, center_sigma)``,
    ``uniform_map(shape)``). All three maps are scored with the same seed (drawn once from
    ``rng``), so the random negatives of AUC-Borji / sAUC are the same pixels for each (paired).

    Args:
      saliency, reference, kind, metrics, other_fixations, rng: as :func:`score`.
      center_sigma: the centre-bias Gaussian's sigma as a fraction of each side (default 0.25).
      **score_kwargs: ``top``, ``blur``, ``jitter``, ``ddof``, ``num_splits``, ``step``.

    Returns:
      ``{"model": {...}, "center_bias": {...}, "uniform": {...}}``.
    """
    shape = _reference_shape(saliency, reference, kind)
    seed = int(_generator(rng).integers(0, 2**63 - 1))
    maps = {"model": saliency, "center_bias": center_bias_map(shape, center_sigma), "uniform": uniform_map(shape)}
    return {
        name: score(
            m, reference, kind=kind, metrics=metrics, other_fixations=other_fixations, rng=seed, **score_kwargs
        )
        for name, m in maps.items()
    }
