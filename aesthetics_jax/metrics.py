"""Evaluation metrics for aesthetic assessment, as plain NumPy functions.

Everything here works on host arrays (anything ``np.asarray`` accepts), computes in float64 and
needs neither JAX nor SciPy. The definitions follow ``DATA_FORMATS.md`` exactly; the tests check
each one against ``scipy.stats`` / ``sklearn.metrics``.

Shapes
    Paired metrics (``srcc``, ``plcc``, ``krcc``, ``mae``, ``rmse``, ``r2``) take two arrays of the
    same shape, either ``[N]`` (returns a Python ``float``) or ``[N, K]`` (returns a float64 array
    of ``K`` values, one per column/output). Any other shape, or differing shapes, raise
    ``ValueError``. :func:`per_output` turns the ``[N, K]`` form into a ``{name: float}`` dict.

Correlations
    * ``plcc``: Pearson's linear correlation coefficient.
    * ``srcc``: Spearman's rho = Pearson correlation of the ranks, ties given their *average* rank
      (``scipy.stats.spearmanr`` / ``rankdata(method='average')``).
    * ``krcc``: Kendall's **tau-b** (``scipy.stats.kendalltau`` default, ``variant='b'``), which
      corrects for ties in either variable:
      ``tau_b = (C - D) / sqrt((n0 - n1) * (n0 - n2))`` with ``n0 = n(n-1)/2`` and ``n1``, ``n2``
      the numbers of pairs tied in x and in y. Computed in O(n log² n) (merge counting of
      discordant pairs), so the full AVA test split (~20k images) takes milliseconds.
    * Degenerate input -- a constant array, fewer than 2 samples, or any NaN -- gives ``nan``
      (SciPy's result for constant input, its ``nan_policy='propagate'`` for NaN), without warnings
      or exceptions.

Score distributions
    A distribution ``p`` has its bins on the last axis; bin ``i`` (1-based) is score ``i``, so for
    AVA ``N = 10`` and scores are 1..10. Inputs are used as given (not renormalised).
    * ``distribution_mean(p) = sum_i i * p_i``; ``distribution_sd(p) = sqrt(sum_i (i - mu)^2 p_i)``.
    * ``emd(p, q, r) = ((1/N) sum_{k=1..N} |CDF_p(k) - CDF_q(k)|^r)^(1/r)`` per image (NIMA),
      averaged over images. For normalised ``p, q`` with unit bin spacing,
      ``emd(p, q, r=1) == scipy.stats.wasserstein_distance(bins, bins, p, q) / N`` and
      ``emd(p, q, r=2) == scipy.stats.energy_distance(bins, bins, p, q) / sqrt(2 N)``.
    * ``js_divergence(p, q) = (1/2) sum_i p_i log(p_i / m_i) + (1/2) sum_i q_i log(q_i / m_i)`` with
      ``m = (p + q) / 2``, per image, in **bits** by default (``base=2``), so that it lies in
      ``[0, 1]`` for normalised inputs (0 iff ``p == q``, 1 iff their supports are disjoint);
      ``base=math.e`` gives nats (range ``[0, ln 2]``). Zero bins contribute nothing
      (``0 log 0 = 0``). For normalised ``p, q`` it equals
      ``scipy.spatial.distance.jensenshannon(p, q, base=2) ** 2`` (SciPy returns the JS *distance*,
      the square root, and renormalises its inputs; here unnormalised rows are used as given).
      Negative entries raise ``ValueError``; rounding below 0 is clipped to 0.
    * ``histogram_intersection(p, q) = sum_i min(p_i, q_i)`` per image: in ``[0, 1]`` for normalised
      inputs, 1 iff ``p == q``; equals ``1 - (1/2) sum_i |p_i - q_i|`` (one minus the total variation
      distance) when both sum to 1.
    * ``mode_accuracy``: fraction of images whose predicted mode bin is a mode of the true
      distribution. Predicted mode = ``np.argmax`` (on a predicted tie, the lowest-score maximal
      bin). Ties in the *true* distribution (e.g. two bins with the same vote count) are all modes:
      the prediction counts as correct when its argmax is **any** of the true maximal bins
      (exact float equality, so bins of equal vote count tie exactly after normalisation).
    * ``emd``, ``js_divergence`` and ``histogram_intersection`` average the per-image values over
      images (``reduce=True``; empty input -> ``nan``) or return them (``reduce=False``, shape =
      leading axes). A NaN in an image's bins makes that image's value NaN (and so the mean).
      Differing shapes or a 0-d input raise ``ValueError``, as do zero bins for ``js_divergence``,
      ``histogram_intersection`` and ``mode_accuracy``.

Binary accuracy
    An image is "high quality" when its mean score is ``>= threshold`` (default 5.0). This is the
    AVA convention of Murray et al. (CVPR 2012) with delta = 0: mean < 5 is low, mean >= 5 is high.
    ``inclusive=False`` switches to the strict ``> threshold`` used by some public code; the two
    differ only for mean scores exactly equal to the threshold. Accuracy is the fraction of images
    whose predicted class equals the true class.

Regression
    ``mae = mean|y - yhat|``, ``rmse = sqrt(mean (y - yhat)^2)``,
    ``r2 = 1 - SS_res / SS_tot`` with ``SS_tot = sum (y - mean y)^2``. For constant ``y``
    (``SS_tot == 0``) ``r2`` is ``nan`` -- sklearn's ``r2_score`` instead returns 1.0/0.0 by default
    (``force_finite=True``). Empty input gives ``nan`` for every metric.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

__all__ = [
    "srcc",
    "plcc",
    "krcc",
    "binary_accuracy",
    "emd",
    "js_divergence",
    "histogram_intersection",
    "mode_accuracy",
    "mae",
    "rmse",
    "r2",
    "distribution_mean",
    "distribution_sd",
    "per_output",
    "rankdata",
]


# ----------------------------------------------------------------------------------------------
# Input handling


def _same_shape(x, y, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as float64 arrays; ValueError naming them if their shapes differ."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {a.shape} and {b.shape}")
    return a, b


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as float64 arrays of one shape, ``[N]`` or ``[N, K]``."""
    a, b = _same_shape(y_true, y_pred, ("y_true", "y_pred"))
    if a.ndim not in (1, 2):
        raise ValueError(f"expected arrays of shape [N] or [N, K], got shape {a.shape}")
    return a, b


def _columnwise(fn: Callable[[np.ndarray, np.ndarray], float], a: np.ndarray, b: np.ndarray):
    """Apply a 1-D metric to ``[N]`` inputs (-> float) or to each column of ``[N, K]`` (-> array)."""
    if a.ndim == 1:
        return float(fn(a, b))
    return np.array([fn(a[:, k], b[:, k]) for k in range(a.shape[1])], dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# Correlations


def rankdata(a) -> np.ndarray:
    """1-based ranks of a 1-D array, ties receiving the average of their ranks (SciPy 'average')."""
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"rankdata expects a 1-D array, got shape {a.shape}")
    n = a.size
    sorter = np.argsort(a, kind="mergesort")
    inv = np.empty(n, dtype=np.intp)
    inv[sorter] = np.arange(n, dtype=np.intp)
    a_sorted = a[sorter]
    new_value = np.r_[True, a_sorted[1:] != a_sorted[:-1]]
    dense = np.cumsum(new_value)[inv]  # 1-based dense rank of each element
    bounds = np.r_[np.nonzero(new_value)[0], n]  # start index of each tie group, then n
    # Average of positions start+1 .. end (1-based) of the element's tie group.
    return 0.5 * (bounds[dense] + bounds[dense - 1] + 1).astype(np.float64)


def _degenerate(x: np.ndarray, y: np.ndarray) -> bool:
    return (
        x.size < 2
        or np.isnan(x).any()
        or np.isnan(y).any()
        or bool(np.all(x == x[0]))
        or bool(np.all(y == y[0]))
    )


def _pearson_1d(x: np.ndarray, y: np.ndarray) -> float:
    if _degenerate(x, y):
        return float("nan")
    xm = x - x.mean()
    ym = y - y.mean()
    # Normalise first (as SciPy does) to avoid overflow/underflow in the products.
    nx, ny = np.linalg.norm(xm), np.linalg.norm(ym)
    if nx == 0.0 or ny == 0.0:
        return float("nan")
    r = float(np.dot(xm / nx, ym / ny))
    return max(-1.0, min(1.0, r))


def _spearman_1d(x: np.ndarray, y: np.ndarray) -> float:
    if _degenerate(x, y):
        return float("nan")
    return _pearson_1d(rankdata(x), rankdata(y))


def _count_inversions(y: np.ndarray) -> int:
    """Number of pairs i < j with y[i] > y[j], for non-negative integer ``y`` (bottom-up merge).

    At merge width ``w`` each block of ``2w`` elements is a sorted left half and a sorted right
    half. Offsetting every value by ``block_index * m`` (``m > max(y)``) makes all left halves one
    globally sorted array, so a single ``searchsorted`` counts, for every right-half element, the
    left-half elements of its own block that are larger. Sorting the offset keys then merges all
    blocks at once. O(n log^2 n) time, O(n) memory, no Python loop over elements.
    """
    n = y.size
    if n < 2:
        return 0
    a = y.astype(np.int64)
    m = np.int64(a.max()) + 1
    pos = np.arange(n, dtype=np.int64)
    total = 0
    w = 1
    while w < n:
        block = pos // (2 * w)
        is_right = (pos % (2 * w)) >= w
        key = a + block * m
        left_keys = key[~is_right]
        right_keys = key[is_right]
        right_block = block[is_right]
        left_end = np.searchsorted(left_keys, (right_block + 1) * m, side="left")
        n_le = np.searchsorted(left_keys, right_keys, side="right")
        total += int(np.sum(left_end - n_le))
        a = np.sort(key, kind="stable") - block * m
        w *= 2
    return total


def _tie_pairs(sorted_values: np.ndarray) -> int:
    """Sum over tie groups of t(t-1)/2 for an already sorted 1-D array."""
    if sorted_values.size < 2:
        return 0
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    counts = np.diff(np.r_[np.nonzero(starts)[0], sorted_values.size]).astype(np.int64)
    return int(np.sum(counts * (counts - 1) // 2))


def _kendall_tau_b_1d(x: np.ndarray, y: np.ndarray) -> float:
    if _degenerate(x, y):
        return float("nan")
    n = x.size
    # Sort by x, then y: pairs tied in x are then never counted as inversions of y.
    order = np.lexsort((y, x))
    xs, ys = x[order], y[order]
    y_dense = np.unique(ys, return_inverse=True)[1].reshape(-1)
    discordant = _count_inversions(y_dense)

    x_ties = _tie_pairs(xs)
    y_ties = _tie_pairs(np.sort(y))
    # Pairs tied in both x and y: tie groups of consecutive equal (x, y) in the lexsorted order.
    same = np.r_[True, (xs[1:] != xs[:-1]) | (ys[1:] != ys[:-1])]
    counts = np.diff(np.r_[np.nonzero(same)[0], n]).astype(np.int64)
    xy_ties = int(np.sum(counts * (counts - 1) // 2))

    total = n * (n - 1) // 2
    con_minus_dis = total - x_ties - y_ties + xy_ties - 2 * discordant
    denom = np.sqrt(float(total - x_ties)) * np.sqrt(float(total - y_ties))
    if denom == 0.0:
        return float("nan")
    tau = con_minus_dis / denom
    return max(-1.0, min(1.0, float(tau)))


def plcc(y_true, y_pred):
    """Pearson linear correlation. ``[N]`` -> float, ``[N, K]`` -> per-column array."""
    return _columnwise(_pearson_1d, *_pair(y_true, y_pred))


def srcc(y_true, y_pred):
    """Spearman rank correlation (average ranks for ties). ``[N]`` -> float, ``[N, K]`` -> array."""
    return _columnwise(_spearman_1d, *_pair(y_true, y_pred))


def krcc(y_true, y_pred):
    """Kendall rank correlation, tau-b. ``[N]`` -> float, ``[N, K]`` -> per-column array."""
    return _columnwise(_kendall_tau_b_1d, *_pair(y_true, y_pred))


# ----------------------------------------------------------------------------------------------
# Classification


def binary_accuracy(y_true_mean, y_pred_mean, threshold: float = 5.0, inclusive: bool = True) -> float:
    """Fraction of images whose predicted high/low class matches the true one.

    High quality means ``mean >= threshold`` (``inclusive=True``, AVA convention) or
    ``mean > threshold`` (``inclusive=False``). Inputs must have the same shape; empty -> nan.
    """
    a, b = _same_shape(y_true_mean, y_pred_mean, ("y_true_mean", "y_pred_mean"))
    if a.size == 0:
        return float("nan")
    if inclusive:
        high_true, high_pred = a >= threshold, b >= threshold
    else:
        high_true, high_pred = a > threshold, b > threshold
    return float(np.mean(high_true == high_pred))


# ----------------------------------------------------------------------------------------------
# Score distributions


def _scores(n_bins: int) -> np.ndarray:
    return np.arange(1, n_bins + 1, dtype=np.float64)


def distribution_mean(p) -> np.ndarray | float:
    """Mean score ``sum_i i * p_i`` over the last axis (scores 1..N)."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 0:
        raise ValueError("distribution_mean expects an array with the bins on the last axis")
    mu = p @ _scores(p.shape[-1])
    return float(mu) if np.ndim(mu) == 0 else mu


def distribution_sd(p) -> np.ndarray | float:
    """Standard deviation ``sqrt(sum_i (i - mu)^2 p_i)`` over the last axis (scores 1..N)."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 0:
        raise ValueError("distribution_sd expects an array with the bins on the last axis")
    s = _scores(p.shape[-1])
    mu = p @ s
    var = np.sum((s - np.expand_dims(mu, -1)) ** 2 * p, axis=-1)
    sd = np.sqrt(np.maximum(var, 0.0))
    return float(sd) if np.ndim(sd) == 0 else sd


def emd(p_true, p_pred, r: float = 2, reduce: bool = True):
    """NIMA earth mover's distance between score distributions (bins on the last axis).

    Per image ``((1/N) sum_k |CDF_true(k) - CDF_pred(k)|^r)^(1/r)``. With ``reduce=True`` the mean
    over all images (a float); otherwise the per-image values (shape = leading axes).
    """
    a, b = _same_shape(p_true, p_pred, ("p_true", "p_pred"))
    if a.ndim == 0:
        raise ValueError("emd expects distributions with the bins on the last axis")
    if not r > 0:
        raise ValueError(f"r must be positive, got {r}")
    d = np.abs(np.cumsum(a, axis=-1) - np.cumsum(b, axis=-1))
    per_image = np.mean(d**r, axis=-1) ** (1.0 / r)
    if not reduce:
        return per_image
    if per_image.size == 0:
        return float("nan")
    return float(np.mean(per_image))


def _distribution_pair(p_true, p_pred, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Both distributions as float64 arrays of one shape, bins on the last axis (at least one bin)."""
    a, b = _same_shape(p_true, p_pred, ("p_true", "p_pred"))
    if a.ndim == 0:
        raise ValueError(f"{name} expects distributions with the bins on the last axis, got a scalar")
    if a.shape[-1] == 0:
        raise ValueError(f"{name} expects at least one bin on the last axis, got shape {a.shape}")
    return a, b


def _reduce_images(per_image: np.ndarray, reduce: bool):
    """Mean over images (float; ``nan`` for no images), or the per-image values as they are."""
    if not reduce:
        return per_image
    if per_image.size == 0:
        return float("nan")
    return float(np.mean(per_image))


def _x_log_x_over(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Elementwise ``x * log(x / m)`` with ``0 log 0 = 0`` (``m >= x / 2 > 0`` wherever ``x > 0``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = x * np.log(x / m)
    return np.where(x == 0, 0.0, t)


def js_divergence(p_true, p_pred, base: float = 2, reduce: bool = True):
    """Jensen-Shannon divergence between score distributions (bins on the last axis).

    Per image ``(1/2) KL(p || m) + (1/2) KL(q || m)`` with ``m = (p + q) / 2``, in units of
    ``log(base)``: bits for the default ``base=2`` (then in ``[0, 1]`` for normalised inputs),
    nats for ``base=math.e``. ``0 log 0 = 0``. Inputs are used as given (not renormalised, unlike
    ``scipy.spatial.distance.jensenshannon``, whose square this equals for normalised inputs).
    With ``reduce=True`` the mean over all images (a float); otherwise the per-image values.
    """
    a, b = _distribution_pair(p_true, p_pred, "js_divergence")
    base = float(base)
    if not (base > 0 and base != 1 and np.isfinite(base)):
        raise ValueError(f"base must be positive, finite and != 1, got {base}")
    if np.any(a < 0) or np.any(b < 0):
        raise ValueError("js_divergence: distributions must be non-negative")
    m = 0.5 * (a + b)
    per_image = 0.5 * np.sum(_x_log_x_over(a, m) + _x_log_x_over(b, m), axis=-1) / np.log(base)
    per_image = np.maximum(per_image, 0.0)  # rounding can give -1e-17 for p ~= q; NaN propagates
    return _reduce_images(per_image, reduce)


def histogram_intersection(p_true, p_pred, reduce: bool = True):
    """Histogram intersection ``sum_i min(p_i, q_i)`` per image (bins on the last axis).

    In ``[0, 1]`` for normalised inputs (1 = identical); inputs are used as given. With
    ``reduce=True`` the mean over all images (a float); otherwise the per-image values.
    """
    a, b = _distribution_pair(p_true, p_pred, "histogram_intersection")
    return _reduce_images(np.sum(np.minimum(a, b), axis=-1), reduce)


def mode_accuracy(p_true, p_pred, reduce: bool = True):
    """Fraction of images whose predicted mode is a mode of the true distribution.

    The predicted mode is ``argmax(p_pred)`` (lowest maximal bin on a predicted tie). Every bin
    holding the maximum of ``p_true`` (exact ties) is a true mode, and the prediction is correct
    when its argmax is any of them. An image with a NaN in either distribution gives ``nan``.
    With ``reduce=True`` the mean over images (a float; ``nan`` for none), otherwise per-image
    1.0 (correct) / 0.0 (wrong) / nan values.
    """
    a, b = _distribution_pair(p_true, p_pred, "mode_accuracy")
    pred_mode = np.argmax(b, axis=-1)
    is_true_mode = a == np.max(a, axis=-1, keepdims=True)
    correct = np.take_along_axis(is_true_mode, pred_mode[..., None], axis=-1)[..., 0]
    has_nan = np.isnan(a).any(axis=-1) | np.isnan(b).any(axis=-1)
    per_image = np.where(has_nan, np.nan, correct.astype(np.float64))
    return _reduce_images(per_image, reduce)


# ----------------------------------------------------------------------------------------------
# Regression


def _mae_1d(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a - b))) if a.size else float("nan")


def _rmse_1d(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2))) if a.size else float("nan")


def _r2_1d(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0:
        return float("nan")
    ss_res = float(np.sum((a - b) ** 2))
    ss_tot = float(np.sum((a - a.mean()) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - ss_res / ss_tot


def mae(y_true, y_pred):
    """Mean absolute error. ``[N]`` -> float, ``[N, K]`` -> per-column array."""
    return _columnwise(_mae_1d, *_pair(y_true, y_pred))


def rmse(y_true, y_pred):
    """Root mean squared error. ``[N]`` -> float, ``[N, K]`` -> per-column array."""
    return _columnwise(_rmse_1d, *_pair(y_true, y_pred))


def r2(y_true, y_pred):
    """Coefficient of determination ``1 - SS_res/SS_tot`` (nan for constant ``y_true``).

    ``[N]`` -> float, ``[N, K]`` -> per-column array (sklearn ``multioutput='raw_values'``).
    """
    return _columnwise(_r2_1d, *_pair(y_true, y_pred))


def per_output(metric: Callable, y_true, y_pred, names: Sequence[str] | None = None) -> dict[str, float]:
    """Evaluate a paired metric on each column of ``[N, K]`` inputs -> ``{name: float}``.

    ``names`` defaults to ``output_0 .. output_{K-1}``; a ``[N]`` input counts as one output.
    """
    a, b = _pair(y_true, y_pred)
    if a.ndim == 1:
        a, b = a[:, None], b[:, None]
    k = a.shape[1]
    if names is None:
        names = [f"output_{i}" for i in range(k)]
    names = list(names)
    if len(names) != k:
        raise ValueError(f"got {len(names)} names for {k} outputs")
    values = np.atleast_1d(metric(a, b))
    return {name: float(v) for name, v in zip(names, values)}
