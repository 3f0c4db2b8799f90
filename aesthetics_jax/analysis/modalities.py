r"""What each modality model explains: per-category metrics with bootstrap CIs and covariance analyses.

Lisaius & Wehrwein ("Explaining Automatic Image Assessment", SCIENCE.md §5) train one NIMA model per
*modality* version of a dataset (RGB, depth, saliency, blur) and compare what each explains through
covariance analyses with the dataset's established categories. Their categories, statistics and
numbers are not public; this module is our version, every choice stated here.

    result = analyze({"rgb": "workdirs/rgb", "depth": "workdirs/depth", "saliency": df},
                     groups={"953619": ["Landscape", "Nature"], ...}, by="tags")
    report.write_all(result, "analysis/tags")        # aesthetics_jax.analysis.report

Inputs: one run per modality (``runs``: ``{name: source}``, the name is the modality's label)
    A source is a training workdir (its ``eval/<eval_name>_predictions.csv``, ``eval_name``
    default ``test`` = the trainer's final eval of that name), a directory written by
    ``aesthetics-jax evaluate --out DIR`` (``DIR/<eval_name>_predictions.csv``), a predictions CSV
    itself, or a DataFrame-like table (a pandas DataFrame or a ``{column: values}`` mapping) with the
    columns of ``aesthetics_jax.evaluate.aesthetic``'s CSV. Run names are labels in tables, CSV
    cells and file names: letters, digits, ``_ . + -``.

Which score is analysed (``output``, the same for every run; each run's head is found by name)
    ``auto`` (default)  the one ``<head>_pred_mean`` column (an ``emd`` head: the mean of the
                        predicted distribution) against ``true_mean``; if the table has none, the
                        one ``<head>_pred_overall`` (an ``attributes`` head's overall score)
                        against ``true_mean``; anything else (several heads, score heads) must be
                        chosen explicitly.
    ``HEAD:NAME``       ``<HEAD>_pred_<NAME>`` against its target: ``mean`` / ``overall`` ->
                        ``true_mean``, ``sd`` -> ``true_sd`` (the distribution's spread, NIMA's
                        "distribution-aware" output), any other NAME -> ``true_scores_<NAME>``
                        (``scores`` heads, e.g. ``scores:score`` for EVA's total) or
                        ``true_attributes_<NAME>`` (``attributes`` heads).
    ``NAME``            the same, for whichever single head has an output NAME (runs whose heads
                        are named differently).
    Distribution bins (``_pred_p1`` ...) are not outputs here. An unknown or ambiguous choice is a
    ``ValueError`` listing the table's choices.

Joining runs
    Rows are matched on ``id`` (as text: AVA/EVA integer ids, AADB image names). An id repeated
    within a run, a non-numeric or non-finite score, or ids that some run lacks are errors naming a
    few of them; ``intersect=True`` analyses the ids common to all runs instead, and the number
    each run lost is recorded. The runs must have been scored against the same truth: a truth
    value differing by more than ``atol`` (1e-5, the CSVs are written with full precision) between
    two runs is an error (different splits, builds or target units, e.g. EVA ``data.unit``).
    Images are analysed in id order (numeric when every id is an integer), so results do not
    depend on the row order or on which run is listed first.

Groups (``groups``: ``{id: [group names]}``, e.g. ``analysis.groups.read_groups`` of a build)
    An image belongs to every group listed for it (AVA images have up to two tags; EVA factor and
    AADB attribute groups overlap by design) and always to ``all``. With a mapping, an analysed id
    missing from it is an error (``missing_groups='none'`` puts such images in ``all`` only).
    Groups with no analysed image are left out and listed (``empty_groups``). Groups with fewer
    than ``min_count`` images (default 10) get every statistic but are not *ranked*: no "explained
    most" statement, and they are marked so in every table. Order: ``group_order`` if given (groups
    it omits follow), else ``all`` first, then by size (largest first), then name.

Statistics per group and modality (``aesthetics_jax.metrics``; float64)
    ``n``; ``srcc`` (Spearman, average ranks), ``plcc`` (Pearson), ``mae`` (mean |pred - truth|);
    ``ols_r2``: the share of the truth's variance explained by an OLS of truth on the modality's
    prediction with an intercept (= plcc², a linear recalibration of the prediction is allowed;
    ``aesthetics_jax.metrics.r2`` of the raw predictions is not this); ``ols_r2_gain``: the
    increase in R² when the modality is added to the ``base`` run in that OLS,
    ``R²(truth ~ base + m) - R²(truth ~ base)`` (0 for the base itself; 0 when m is collinear with
    the base), from the two-predictor closed form
    ``R² = (r_yb² + r_ym² - 2 r_yb r_ym r_bm) / (1 - r_bm²)`` (the OLS R² with intercept; the
    tests check it against ``numpy.linalg.lstsq``). This is how modality papers ask what a modality
    adds beyond RGB: ``base`` defaults to the run named ``rgb`` if there is one (no gain columns
    otherwise). ``srcc_minus_best``: the modality's SRCC minus the group's best SRCC.

Bootstrap (``num_bootstrap`` resamples, default 1000, 0 = none; ``seed``; ``confidence`` 0.95)
    Percentile intervals. Images are resampled with replacement *within each group*, and one
    resample serves every modality of the group, so differences between modalities are paired.
    The resamples of a group of n images are
    ``numpy.random.default_rng(seed).integers(0, n, size=(num_bootstrap, n))`` (drawn in row
    chunks, which gives the same numbers): the convention of
    ``aesthetics_jax.evaluate.patches.paired_bootstrap``, so a group's intervals depend only on the
    seed and the group, not on which other groups are analysed, and a difference interval here
    equals that function's on the same two modalities. Interval = ``numpy.percentile(values,
    [50 (1 - c), 50 (1 + c)])`` over the resamples where the statistic is defined (a resample with a
    constant column has no correlation); the count is kept (``num_valid``). In-sample R² gains are
    >= 0 and biased upward (a modality that adds nothing still gains a little by chance, in every
    resample), so a gain interval above 0 is *not* evidence that the modality adds anything:
    compare gains between modalities, and use the paired SRCC differences for significance.
    Cost: a resample's Spearman ranks come from counts of each distinct value (``_Ranker``, exact
    average ranks without a sort), and BLAS runs single-threaded inside the loop (threads cost far
    more than they give on vectors of this size); ~6 ms per resample of 20k images x 4 modalities
    on a busy 2-core box, so AVA's test split (the ``all`` group and 66 tags) takes well under a
    minute per 1000 resamples.

"Explains most" (per ranked group)
    The modality with the highest point SRCC (ties: the first listed run). The paired difference
    ``best - runner-up`` and its interval say whether the lead is significant: it is when the
    interval's lower end is above 0. The CI of each modality's ``srcc_minus_best`` is that of
    ``srcc(m) - srcc(best)`` over the same resamples.

Covariance analyses
    Over all analysed images: the modalities x modalities covariance (``numpy.cov``, ddof = 1) and
    correlation (``numpy.corrcoef``) matrices of the predictions, and of the residuals
    ``pred - truth``. Per group: the covariance of each modality's prediction with the truth (ddof
    = 1), its correlation (= plcc), and both variances.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from aesthetics_jax import metrics as M

__all__ = ["analyze", "read_predictions", "resolve_predictions_path", "output_choices", "select_output",
           "join_runs", "group_stats", "bootstrap_indices", "ols_r2_gain", "parse_run", "RunPredictions",
           "Joined", "GroupStats", "ModalityAnalysis", "fmt", "ALL", "RUN_NAME", "STATISTICS"]

#: The group every image belongs to.
ALL = "all"
#: What a run name may look like (it becomes a CSV cell, a table header and part of file names).
RUN_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
_TRUTH_ATOL = 1e-5
_BOOT_CHUNK_ELEMENTS = 2_000_000  # resample indices drawn at once (rows x n)


# ----------------------------------------------------------------------------------------------
# Reading one run


@dataclasses.dataclass(frozen=True)
class RunPredictions:
    """One run's scores: ``ids [N]`` (str), ``true`` and ``pred`` ``[N]`` float64, and where from."""

    name: str
    ids: np.ndarray
    true: np.ndarray
    pred: np.ndarray
    source: str
    pred_column: str
    true_column: str


def parse_run(text: str) -> tuple[str, str]:
    """``'NAME=PATH'`` -> ``(NAME, PATH)``; ``ValueError`` for a malformed entry."""
    name, sep, path = text.partition("=")
    name, path = name.strip(), path.strip()
    if not sep or not name or not path:
        raise ValueError(f"--run {text!r}: expected NAME=PATH (e.g. rgb=workdirs/rgb)")
    if not RUN_NAME.match(name):
        raise ValueError(f"--run {text!r}: run name {name!r} may only hold letters, digits and _ . + -")
    return name, path


def resolve_predictions_path(path: str, eval_name: str = "test") -> str:
    """The predictions CSV of a run given as a workdir, an ``evaluate --out`` directory or a CSV."""
    path = os.path.expanduser(os.fspath(path))
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        candidates = [os.path.join(path, "eval", f"{eval_name}_predictions.csv"),
                      os.path.join(path, f"{eval_name}_predictions.csv")]
        for candidate in candidates:
            if os.path.isfile(candidate):
                return candidate
        raise FileNotFoundError(
            f"no predictions file for eval {eval_name!r} in {path}: looked for {candidates[0]} (a training workdir; "
            f"written by the final evaluation) and {candidates[1]} (aesthetics-jax evaluate --out); --eval names "
            "the eval")
    raise FileNotFoundError(f"predictions file {path} does not exist")


def _id_text(x: Any) -> str:
    if isinstance(x, bytes):
        return x.decode("utf-8")
    if isinstance(x, (float, np.floating)) and float(x).is_integer():
        return str(int(x))
    if isinstance(x, (np.integer,)):
        return str(int(x))
    return str(x)


def _as_table(source: Any, where: str):
    """A pandas DataFrame of strings (all columns as text) from a path or a DataFrame-like object."""
    import pandas as pd  # pylint: disable=g-import-not-at-top

    if isinstance(source, (str, os.PathLike)):
        try:
            return pd.read_csv(source, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise ValueError(f"{where}: the file is empty") from None
    if isinstance(source, pd.DataFrame):
        frame = source
    elif isinstance(source, Mapping):
        frame = pd.DataFrame({k: list(v) if not isinstance(v, np.ndarray) else v for k, v in source.items()})
    else:
        raise TypeError(f"{where}: a run is a path or a DataFrame-like table, got {type(source).__name__}")
    if "id" not in frame.columns:
        raise ValueError(f"{where}: no 'id' column (columns: {list(frame.columns)})")
    out = frame.copy()
    out["id"] = [_id_text(x) for x in frame["id"].tolist()]
    return out


def output_choices(columns: Iterable[str]) -> list[tuple[str, str, str]]:
    """Every ``(HEAD:NAME, pred column, truth column)`` a predictions table offers (module docstring)."""
    columns = list(columns)
    present = set(columns)
    choices = []
    for column in columns:
        head, sep, name = column.partition("_pred_")
        if not sep or not head or not name or re.fullmatch(r"p\d+", name):
            continue
        if name in ("mean", "overall"):
            truth = ["true_mean"]
        elif name == "sd":
            truth = ["true_sd"]
        else:
            truth = [f"true_scores_{name}", f"true_attributes_{name}"]
        found = [t for t in truth if t in present]
        if found:
            choices.append((f"{head}:{name}", column, found[0]))
    return choices


def select_output(columns: Iterable[str], output: str = "auto", where: str = "") -> tuple[str, str]:
    """``(pred column, truth column)`` for ``output`` (``auto``, ``HEAD:NAME`` or ``NAME``)."""
    columns = list(columns)
    choices = output_choices(columns)
    listed = ", ".join(spec for spec, _, _ in choices) or "none"
    prefix = f"{where}: " if where else ""
    if output == "auto":
        for kind in ("mean", "overall"):
            found = [c for c in choices if c[0].endswith(f":{kind}") and c[2] == "true_mean"]
            if len(found) == 1:
                return found[0][1], found[0][2]
            if len(found) > 1:
                raise ValueError(f"{prefix}several heads predict a {kind} score ({', '.join(c[0] for c in found)}): "
                                 "choose one with --output HEAD:NAME")
        raise ValueError(f"{prefix}no single <head>_pred_mean (emd head) or <head>_pred_overall column to analyse "
                         f"automatically; choose one with --output HEAD:NAME (choices: {listed})")
    if ":" in output:
        found = [c for c in choices if c[0] == output]
    else:
        found = [c for c in choices if c[0].split(":", 1)[1] == output]
    if len(found) == 1:
        return found[0][1], found[0][2]
    if not found:
        raise ValueError(f"{prefix}no output {output!r} (choices: {listed})")
    raise ValueError(f"{prefix}output {output!r} is ambiguous ({', '.join(c[0] for c in found)}): use HEAD:NAME")


def _numbers(frame, column: str, where: str) -> np.ndarray:
    import pandas as pd  # pylint: disable=g-import-not-at-top

    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        rows = np.nonzero(bad)[0][:5]
        shown = ", ".join(f"id {frame['id'].iloc[r]} ({raw.iloc[r]!r})" for r in rows)
        raise ValueError(f"{where}: {int(bad.sum())} non-numeric or non-finite values in column {column!r}: {shown}")
    return values


def read_predictions(name: str, source: Any, *, output: str = "auto", eval_name: str = "test") -> RunPredictions:
    """One run's ids, truth and predictions (module docstring: sources and ``output``)."""
    if isinstance(source, RunPredictions):
        return dataclasses.replace(source, name=name)
    if isinstance(source, (str, os.PathLike)):
        path = resolve_predictions_path(source, eval_name)
        where, label = f"run {name!r} ({path})", path
    else:
        where, label = f"run {name!r}", f"<{type(source).__name__}>"
    frame = _as_table(path if isinstance(source, (str, os.PathLike)) else source, where)
    if "id" not in frame.columns:
        raise ValueError(f"{where}: no 'id' column; is this an aesthetic evaluator's predictions CSV?")
    if len(frame) == 0:
        raise ValueError(f"{where}: no rows")
    pred_column, true_column = select_output(frame.columns, output, where)
    ids = np.asarray(frame["id"].tolist(), dtype=object)
    uniq, counts = np.unique(ids.astype(str), return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{where}: {int((counts > 1).sum())} repeated id(s): {_few(uniq[counts > 1].tolist())}")
    return RunPredictions(name=name, ids=ids, true=_numbers(frame, true_column, where),
                          pred=_numbers(frame, pred_column, where), source=label, pred_column=pred_column,
                          true_column=true_column)


# ----------------------------------------------------------------------------------------------
# Joining runs


@dataclasses.dataclass(frozen=True)
class Joined:
    """The runs on their common images: ``ids [N]``, ``true [N]``, ``pred [N, K]`` (K = runs)."""

    names: list[str]
    ids: np.ndarray
    true: np.ndarray
    pred: np.ndarray
    dropped: dict[str, int]


def _sorted_ids(ids: Iterable[str]) -> list[str]:
    ids = list(ids)
    if all(re.fullmatch(r"-?\d+", i) for i in ids):
        return sorted(ids, key=int)
    return sorted(ids)


def _few(items: Iterable[str], k: int = 5) -> str:
    items = list(items)
    return ", ".join(items[:k]) + (", ..." if len(items) > k else "")


def join_runs(runs: Sequence[RunPredictions], *, intersect: bool = False, atol: float = _TRUTH_ATOL) -> Joined:
    """Matches the runs on ``id`` and checks they share the truth (module docstring)."""
    if not runs:
        raise ValueError("no runs to analyse")
    names = [r.name for r in runs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"run name(s) given more than once: {', '.join(repeated)}")
    id_sets = [set(r.ids.tolist()) for r in runs]
    common = set.intersection(*id_sets)
    union = set.union(*id_sets)
    if common != union and not intersect:
        lines = []
        for run, ids in zip(runs, id_sets):
            lacking = _sorted_ids(union - ids)
            if lacking:
                lines.append(f"run {run.name!r} ({run.source}) lacks {len(lacking)} ids ({_few(lacking)})")
        raise ValueError("the runs were not scored on the same images: " + "; ".join(lines)
                         + f"; --intersect (intersect=True) analyses the {len(common)} common ids")
    if not common:
        raise ValueError("the runs have no image id in common")
    ids = _sorted_ids(common)
    true = None
    pred = np.empty((len(ids), len(runs)), np.float64)
    dropped = {}
    for k, run in enumerate(runs):
        pos = {image_id: i for i, image_id in enumerate(run.ids.tolist())}
        rows = np.fromiter((pos[i] for i in ids), np.int64, len(ids))
        pred[:, k] = run.pred[rows]
        t = run.true[rows]
        dropped[run.name] = len(run.ids) - len(ids)
        if true is None:
            true, first = t, run
            continue
        bad = ~np.isclose(t, true, rtol=0.0, atol=atol)
        if bad.any():
            i = int(np.nonzero(bad)[0][0])
            raise ValueError(f"runs {first.name!r} and {run.name!r} disagree on the truth of {int(bad.sum())} images "
                             f"(first: id {ids[i]}: {first.true_column} {true[i]!r} vs {run.true_column} {t[i]!r}); "
                             "were they evaluated on different splits, builds or target units?")
    return Joined(names=names, ids=np.asarray(ids, dtype=object), true=np.asarray(true), pred=pred, dropped=dropped)


# ----------------------------------------------------------------------------------------------
# Statistics


def bootstrap_indices(n: int, num: int, seed: int, chunk_elements: int = _BOOT_CHUNK_ELEMENTS) -> Iterator[np.ndarray]:
    """Row chunks of ``default_rng(seed).integers(0, n, size=(num, n))`` (the same numbers, less memory)."""
    rng = np.random.default_rng(seed)
    rows = max(1, chunk_elements // max(n, 1))
    done = 0
    while done < num:
        take = min(rows, num - done)
        yield rng.integers(0, n, size=(take, n))
        done += take


def _two_predictor_r2(r_yb, r_ym, r_bm):
    """OLS R² of y on (b, m) with an intercept, from the three correlations (arrays broadcast)."""
    den = 1.0 - r_bm**2
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = (r_yb**2 + r_ym**2 - 2.0 * r_yb * r_ym * r_bm) / den
    collinear = den < 1e-12
    return np.where(collinear, r_yb**2, r2)


def ols_r2_gain(true, pred, base: int) -> np.ndarray:
    """``[K]``: R² of truth ~ base + column k, minus R² of truth ~ base (0 for ``k == base``)."""
    true, pred = np.asarray(true, np.float64), np.asarray(pred, np.float64)
    cols = [np.ascontiguousarray(pred[:, j]) for j in range(pred.shape[1])]
    return _gain(np.array([M.plcc(true, c) for c in cols]), cols, base)


def _gain(r_y: np.ndarray, cols: list[np.ndarray], base: int) -> np.ndarray:
    """R² gains over column ``base`` from the truth correlations ``r_y [K]`` and the prediction columns."""
    r_b = np.array([M.plcc(cols[base], c) for c in cols])
    gain = np.asarray(_two_predictor_r2(r_y[base], r_y, r_b) - r_y[base] ** 2, np.float64)
    gain[base] = 0.0 if np.isfinite(r_y[base]) else np.nan
    return gain


class _Ranker:
    """Average ranks (ties averaged, as ``metrics.rankdata``) of resamples ``x[rows]`` in O(n).

    With ``u`` the sorted distinct values of ``x`` and ``inv`` each element's index into them, a
    resample holds ``c_v`` copies of value ``v`` (``bincount``); its copies occupy ranks
    ``C_{<v} + 1 .. C_{<v} + c_v``, whose average is ``C_{<v} + (c_v + 1) / 2`` -- exactly what
    sorting the resample would give (halves and integers, exact in float64), without a sort per
    resample.
    """

    def __init__(self, x: np.ndarray):
        _, inv = np.unique(x, return_inverse=True)
        self.inv = inv.reshape(-1)
        self.size = int(self.inv.max()) + 1 if self.inv.size else 0

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        codes = self.inv[rows]
        counts = np.bincount(codes, minlength=self.size)
        average = (np.cumsum(counts) - counts) + 0.5 * (counts + 1)
        return average[codes]


def _statistics(true: np.ndarray, cols: list[np.ndarray], base: int | None,
                ranks: tuple[np.ndarray, list[np.ndarray]] | None = None) -> dict[str, np.ndarray]:
    """``{'srcc', 'plcc', 'mae', 'ols_r2'[, 'ols_r2_gain']}`` -> ``[K]`` of one sample.

    ``cols``: the K prediction columns as contiguous 1-D arrays (strided columns make every dot
    product many times slower). ``ranks``: the sample's average ranks of truth and columns, when
    already known (bootstrap); otherwise ``metrics.srcc``.
    """
    if ranks is None:
        srcc = np.array([M.srcc(true, c) for c in cols])
    else:
        srcc = np.array([M.plcc(ranks[0], r) for r in ranks[1]])  # Spearman = Pearson of average ranks
    plcc = np.array([M.plcc(true, c) for c in cols])
    out = {"srcc": srcc, "plcc": plcc, "mae": np.array([M.mae(true, c) for c in cols]), "ols_r2": plcc**2}
    if base is not None:
        out["ols_r2_gain"] = _gain(plcc, cols, base)
    return out


#: Statistics with bootstrap intervals, in table order.
STATISTICS = ("srcc", "plcc", "mae", "ols_r2", "ols_r2_gain")


@dataclasses.dataclass
class GroupStats:
    """One group's statistics; arrays are ``[K]`` in run order (module docstring)."""

    name: str
    n: int
    ranked: bool
    point: dict[str, np.ndarray]
    low: dict[str, np.ndarray]
    high: dict[str, np.ndarray]
    num_valid: dict[str, np.ndarray]
    best: int | None
    runner_up: int | None
    minus_best: np.ndarray  # srcc(m) - srcc(best), point
    minus_best_low: np.ndarray
    minus_best_high: np.ndarray
    truth_cov: np.ndarray  # cov(pred_m, truth), ddof 1
    truth_var: float
    pred_var: np.ndarray

    @property
    def lead(self) -> tuple[float, float, float] | None:
        """``(best - runner-up SRCC, low, high)``, or None without two ranked modalities."""
        if self.best is None or self.runner_up is None:
            return None
        j = self.runner_up
        return float(-self.minus_best[j]), float(-self.minus_best_high[j]), float(-self.minus_best_low[j])


def _one_blas_thread():
    """BLAS limited to one thread: the bootstrap's many short dot products (one vector of n per
    call) gain nothing from threads, and waking them costs 10-100x the product itself on a busy
    machine (measured: ``metrics.plcc`` of 20k values 10 ms with OpenBLAS threads, 0.05 ms without)."""
    try:
        from threadpoolctl import threadpool_limits  # pylint: disable=g-import-not-at-top  (via scikit-learn)
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _percentiles(values: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column percentile interval over the finite rows of ``values [B, K]``; and the counts."""
    q = [50.0 * (1.0 - confidence), 50.0 * (1.0 + confidence)]
    k = values.shape[1]
    low, high = np.full(k, np.nan), np.full(k, np.nan)
    finite = np.isfinite(values)
    for j in range(k):
        if finite[:, j].any():
            low[j], high[j] = np.percentile(values[finite[:, j], j], q)
    return low, high, finite.sum(axis=0)


def group_stats(name: str, true, pred, *, base: int | None = None, num_bootstrap: int = 1000, seed: int = 0,
                confidence: float = 0.95, min_count: int = 10) -> GroupStats:
    """Every statistic of one group (``true [n]``, ``pred [n, K]``), with bootstrap intervals."""
    true, pred = np.ascontiguousarray(true, np.float64), np.asarray(pred, np.float64)
    n, k = pred.shape
    cols = [np.ascontiguousarray(pred[:, j]) for j in range(k)]
    point = _statistics(true, cols, base)
    nan = np.full(k, np.nan)
    low = {s: nan.copy() for s in point}
    high = {s: nan.copy() for s in point}
    valid = {s: np.zeros(k, np.int64) for s in point}
    ranked = n >= max(min_count, 2)
    order = [j for j in np.argsort(-np.nan_to_num(point["srcc"], nan=-np.inf), kind="stable")
             if np.isfinite(point["srcc"][j])]
    best = int(order[0]) if ranked and order else None
    runner_up = int(order[1]) if best is not None and len(order) > 1 else None
    ref = best if best is not None else (int(order[0]) if order else None)
    minus_best = point["srcc"] - point["srcc"][ref] if ref is not None else nan.copy()
    mb_low, mb_high = nan.copy(), nan.copy()

    if num_bootstrap and n >= 2:
        rank_true, rank_cols = _Ranker(true), [_Ranker(c) for c in cols]
        samples = {s: np.empty((num_bootstrap, k)) for s in point}
        b = 0
        with _one_blas_thread():
            for chunk in bootstrap_indices(n, num_bootstrap, seed):
                for rows in chunk:
                    stats = _statistics(true[rows], [c[rows] for c in cols], base,
                                        ranks=(rank_true(rows), [r(rows) for r in rank_cols]))
                    for s, v in stats.items():
                        samples[s][b] = v
                    b += 1
        for s, values in samples.items():
            low[s], high[s], valid[s] = _percentiles(values, confidence)
        if ref is not None:
            mb_low, mb_high, _ = _percentiles(samples["srcc"] - samples["srcc"][:, [ref]], confidence)
            mb_low[ref] = mb_high[ref] = 0.0

    if n >= 2:
        centred_t = true - true.mean()
        centred_p = pred - pred.mean(axis=0)
        truth_cov = centred_p.T @ centred_t / (n - 1)
        truth_var = float(centred_t @ centred_t / (n - 1))
        pred_var = np.sum(centred_p**2, axis=0) / (n - 1)
    else:
        truth_cov, truth_var, pred_var = nan.copy(), float("nan"), nan.copy()
    return GroupStats(name=name, n=n, ranked=best is not None, point=point, low=low, high=high, num_valid=valid,
                      best=best, runner_up=runner_up, minus_best=minus_best, minus_best_low=mb_low,
                      minus_best_high=mb_high, truth_cov=truth_cov, truth_var=truth_var, pred_var=pred_var)


def _matrix(x: np.ndarray, kind: str) -> np.ndarray:
    k = x.shape[1]
    if x.shape[0] < 2:
        return np.full((k, k), np.nan)
    if kind == "cov":
        return np.atleast_2d(np.cov(x, rowvar=False))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.atleast_2d(np.corrcoef(x, rowvar=False))


# ----------------------------------------------------------------------------------------------
# The analysis


@dataclasses.dataclass
class ModalityAnalysis:
    """What :func:`analyze` returns; ``aesthetics_jax.analysis.report`` writes it to files."""

    modalities: list[str]
    runs: list[dict]  # per run: name, source, pred_column, true_column, rows, dropped
    ids: np.ndarray
    true: np.ndarray
    pred: np.ndarray
    groups: list[GroupStats]
    matrices: dict[str, np.ndarray]  # prediction_cov, prediction_corr, residual_cov, residual_corr
    settings: dict

    @property
    def base(self) -> str | None:
        return self.settings.get("base")

    def group(self, name: str) -> GroupStats:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no group {name!r} (groups: {[g.name for g in self.groups]})")

    def metrics_frame(self):
        """One row per (group, modality): n, ranked, each statistic with its interval, srcc - best."""
        import pandas as pd  # pylint: disable=g-import-not-at-top

        rows = []
        for g in self.groups:
            for j, modality in enumerate(self.modalities):
                row = {"group": g.name, "modality": modality, "n": g.n, "ranked": g.ranked,
                       "best": g.best == j}
                for s in STATISTICS:
                    if s not in g.point:
                        continue
                    row[s], row[f"{s}_lo"], row[f"{s}_hi"] = g.point[s][j], g.low[s][j], g.high[s][j]
                row["srcc_minus_best"] = g.minus_best[j]
                row["srcc_minus_best_lo"], row["srcc_minus_best_hi"] = g.minus_best_low[j], g.minus_best_high[j]
                row["bootstrap_valid"] = int(g.num_valid["srcc"][j])
                rows.append(row)
        return pd.DataFrame(rows)

    def matrix_frame(self, which: str):
        """``prediction_cov`` / ``prediction_corr`` / ``residual_cov`` / ``residual_corr`` as a labelled frame."""
        import pandas as pd  # pylint: disable=g-import-not-at-top

        frame = pd.DataFrame(self.matrices[which], index=self.modalities, columns=self.modalities)
        frame.index.name = "modality"
        return frame

    def group_truth_frame(self):
        """Per (group, modality): n, cov(pred, truth), corr(pred, truth), var(truth), var(pred)."""
        import pandas as pd  # pylint: disable=g-import-not-at-top

        rows = []
        for g in self.groups:
            for j, modality in enumerate(self.modalities):
                rows.append({"group": g.name, "modality": modality, "n": g.n, "cov_pred_truth": g.truth_cov[j],
                             "corr_pred_truth": g.point["plcc"][j], "var_truth": g.truth_var,
                             "var_pred": g.pred_var[j]})
        return pd.DataFrame(rows)

    def statements(self) -> dict[str, str]:
        """Per group one sentence: which modality explains most (or why none is named)."""
        out = {}
        conf = f"{100 * self.settings['confidence']:g} %"
        for g in self.groups:
            if not g.ranked:
                reason = (f"too few images to rank (n = {g.n} < {self.settings['min_count']})"
                          if g.n < max(self.settings["min_count"], 2) else "no modality has a defined SRCC")
                out[g.name] = f"{g.name} (n = {g.n}): {reason}."
                continue
            b = g.best
            text = (f"{g.name} (n = {g.n}): most explained by {self.modalities[b]} "
                    f"(SRCC {fmt(g.point['srcc'][b])} [{fmt(g.low['srcc'][b])}, {fmt(g.high['srcc'][b])}])")
            lead = g.lead
            if lead is None:
                text += "; no runner-up to compare with."
            else:
                d, lo, hi = lead
                verdict = ("significant" if lo > 0 else "not significant: the interval includes 0") \
                    if math.isfinite(lo) else "no interval"
                text += (f"; difference to the runner-up {self.modalities[g.runner_up]} {fmt(d)} "
                         f"[{fmt(lo)}, {fmt(hi)}] ({verdict}, {conf} paired bootstrap).")
            out[g.name] = text
        return out


def fmt(x: float | None, digits: int = 3) -> str:
    """A number for reports: fixed decimals, ``nan`` for None / non-finite, no ``-0.000``."""
    if x is None or not math.isfinite(float(x)):
        return "nan"
    return f"{round(float(x), digits) + 0.0:.{digits}f}"


def _group_members(ids: np.ndarray, groups: Mapping | None, missing_groups: str) -> dict[str, list[int]]:
    members: dict[str, list[int]] = {ALL: list(range(len(ids)))}
    if groups is None:
        return members
    table = {_id_text(k): v for k, v in groups.items()}
    lacking = [i for i in ids.tolist() if i not in table]
    if lacking and missing_groups == "error":
        raise ValueError(f"{len(lacking)} analysed ids have no entry in the groups mapping ({_few(lacking)}): "
                         "predictions from another split or build than the categories? "
                         "(missing_groups='none' puts them in 'all' only)")
    for row, image_id in enumerate(ids.tolist()):
        names = table.get(image_id) or ()
        if isinstance(names, (str, bytes)):
            names = [names]
        for name in dict.fromkeys(_id_text(x) for x in names):  # de-duplicated, order kept
            if name == ALL:
                raise ValueError(f"group name {ALL!r} is reserved for the group of all images (id {image_id})")
            members.setdefault(name, []).append(row)
    return members


def _without_group(n: int, members: Mapping[str, list[int]]) -> int:
    grouped = set()
    for name, rows in members.items():
        if name != ALL:
            grouped.update(rows)
    return n - len(grouped)


def analyze(runs: Mapping[str, Any], groups: Mapping[Any, Sequence[str]] | None = None, *, output: str = "auto",
            eval_name: str = "test", intersect: bool = False, group_order: Sequence[str] | None = None,
            known_groups: Sequence[str] | None = None, missing_groups: str = "error", min_count: int = 10,
            num_bootstrap: int = 1000, seed: int = 0, confidence: float = 0.95, base: str | None = "auto",
            by: str = "", progress=None) -> ModalityAnalysis:
    """Per group x modality statistics, CIs and covariance analyses of ``runs`` (module docstring).

    ``runs``: ``{name: workdir | evaluate dir | CSV path | DataFrame-like | RunPredictions}`` (insertion
    order = table order). ``groups``: ``{image id: [group names]}`` or None (only ``all``).
    ``known_groups``: every group the categories define (those without analysed images are listed
    as empty). ``base``: the run R² gains are measured over -- ``'auto'`` = ``'rgb'`` if present,
    a run name, or None (no gains). ``by``: the grouping's name, for the report. ``progress``: an
    optional ``callable(str)`` told which group is being bootstrapped.
    """
    if missing_groups not in ("error", "none"):
        raise ValueError(f"missing_groups must be 'error' or 'none', got {missing_groups!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if num_bootstrap < 0 or min_count < 0:
        raise ValueError(f"num_bootstrap and min_count must be >= 0, got {num_bootstrap}, {min_count}")
    if not runs:
        raise ValueError("no runs to analyse")
    for name in runs:
        if not RUN_NAME.match(str(name)):
            raise ValueError(f"run name {name!r} may only hold letters, digits and _ . + -")
    loaded = [read_predictions(str(name), source, output=output, eval_name=eval_name) for name, source in runs.items()]
    joined = join_runs(loaded, intersect=intersect)
    names = joined.names
    if base == "auto":
        base = "rgb" if "rgb" in names else None
    if base is not None and base not in names:
        raise ValueError(f"base run {base!r} is not among the runs {names}")
    base_index = names.index(base) if base is not None else None

    members = _group_members(joined.ids, groups, missing_groups)
    known = list(dict.fromkeys(list(known_groups or []) + list(group_order or [])))
    empty = [g for g in known if g not in members and g != ALL]
    if group_order is not None:
        head = [ALL] + [g for g in group_order if g in members and g != ALL]
    else:
        head = [ALL]
    rest = sorted((g for g in members if g not in head), key=lambda g: (-len(members[g]), g))
    ordered = head + rest

    results = []
    for i, name in enumerate(ordered):
        rows = np.asarray(members[name], np.int64)
        if progress is not None:
            progress(f"group {i + 1}/{len(ordered)} {name!r}: {len(rows)} images")
        results.append(group_stats(name, joined.true[rows], joined.pred[rows], base=base_index,
                                   num_bootstrap=num_bootstrap, seed=seed, confidence=confidence,
                                   min_count=min_count))
    residuals = joined.pred - joined.true[:, None]
    matrices = {"prediction_cov": _matrix(joined.pred, "cov"), "prediction_corr": _matrix(joined.pred, "corr"),
                "residual_cov": _matrix(residuals, "cov"), "residual_corr": _matrix(residuals, "corr")}
    run_info = [{"name": r.name, "source": r.source, "pred_column": r.pred_column, "true_column": r.true_column,
                 "rows": int(len(r.ids)), "dropped": int(joined.dropped[r.name])} for r in loaded]
    settings = {"by": by, "output": output, "eval": eval_name, "intersect": bool(intersect),
                "num_images": int(len(joined.ids)), "min_count": int(min_count),
                "bootstrap": int(num_bootstrap), "seed": int(seed), "confidence": float(confidence), "base": base,
                "empty_groups": empty, "images_without_group": _without_group(len(joined.ids), members)}
    return ModalityAnalysis(modalities=names, runs=run_info, ids=joined.ids, true=joined.true, pred=joined.pred,
                            groups=results, matrices=matrices, settings=settings)
