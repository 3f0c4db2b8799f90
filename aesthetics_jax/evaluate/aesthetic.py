"""Aesthetic evaluator: metric suite, per-image prediction table and plots for one split.

Inputs (gathered over the whole split, unpadded, N rows each)
    * ``predictions``: flat ``{'<head>.<key>': array}``, e.g. ``'emd.distribution' [N, 10]``,
      ``'emd.mean' [N]``, ``'emd.sd' [N]``, ``'scores.scores' [N, K]``,
      ``'attr.attributes' [N, A]``, ``'attr.overall' [N]`` -- the output keys of the heads in
      :mod:`aesthetics_jax.models.heads`.
    * ``targets``: batch keys, e.g. ``'distribution' [N, 10]``, ``'mean_score' [N]``,
      ``'scores' [N, K]``, ``'attributes' [N, A]``.
    * ``ids``: ``[N]`` image ids (str, int or bytes -- bytes are decoded as UTF-8).
    * ``heads``: the model's head config ``{name: {'type': ..., 'names': [...] (optional)}}``
      (dict or ml_collections ConfigDict; other fields are ignored).

Metrics per head type (all names are flat, ``/``-separated)
    * ``emd`` -- predictions ``<h>.distribution`` and/or ``<h>.mean`` (+ optional ``<h>.sd``;
      mean and sd are derived from the distribution when absent); targets ``distribution`` and/or
      ``mean_score`` (the mean is derived from the distribution when absent).
      ``<h>/srcc, plcc, krcc, accuracy, mae, rmse`` on mean scores; when both distributions exist
      the distribution-aware metrics ``<h>/emd_r1, emd_r2`` (NIMA EMD), ``<h>/js`` (Jensen-Shannon
      divergence in bits, in [0, 1]), ``<h>/hist_intersection`` (``sum_i min(p_i, q_i)``, in
      [0, 1]) and ``<h>/mode_acc`` (fraction of images whose predicted argmax bin is one of the
      true distribution's maximal bins -- ties in the true distribution all count);
      ``<h>/sd_srcc, sd_plcc`` (predicted vs true sd of the score distribution) when the true
      distribution and a predicted sd exist.
    * ``scores`` -- prediction ``<h>.scores [N, K]`` vs target ``scores [N, K]`` (a one-output head
      on a dataset without ``scores`` -- the LAION predictor on AVA -- is compared with ``mean_score``):
      ``<h>/<output>/{srcc, plcc, mae, rmse, r2}`` for each output (names from ``heads[h].names``,
      default ``output_<i>``), and ``<h>/avg/<metric>``, the plain mean over outputs.
    * ``attributes`` -- prediction ``<h>.attributes [N, A]`` vs target ``attributes [N, A]``, per
      attribute and ``avg`` as for ``scores``; plus, when the model predicts ``<h>.overall``,
      the overall score vs target ``mean_score``: ``<h>/overall/{srcc, plcc, krcc, mae, rmse, r2}``.

    Definitions and conventions are those of :mod:`aesthetics_jax.metrics` (Spearman with average
    ranks, Kendall tau-b, accuracy with "high quality" = mean >= 5, EMD over scores 1..N,
    ``r2 = nan`` for constant targets, ``nan`` for undefined correlations).

Files written to ``outdir``
    * ``<prefix>_metrics.json``: ``{metric: value}`` in the order computed. Strict JSON: ``nan`` /
      ``inf`` values are written as ``null`` (the returned dict keeps them as float ``nan``/``inf``).
    * ``<prefix>_predictions.csv``: one row per image, in input order. Columns: ``id``; targets
      ``true_mean``, ``true_sd``, ``true_p1..true_pN``, ``true_scores_<output>`` /
      ``true_attributes_<output>`` for score/attribute outputs (heads sharing a target share its
      columns); predictions ``<h>_pred_mean``, ``<h>_pred_sd``, ``<h>_pred_p1..``,
      ``<h>_pred_<output>``, ``<h>_pred_overall`` (a duplicate column name is a ValueError). Floats are written with full
      precision (``repr``).
    * ``<prefix>_scatter.png`` (predicted vs true, with y = x and SRCC/PLCC in each title) and
      ``<prefix>_hist.png`` (true vs predicted histograms): one panel per mean score (emd heads,
      attribute-head overall score) and per score/attribute output. Drawn on an Agg canvas through
      matplotlib's object API, imported only when plotting: no pyplot, no global backend change.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from aesthetics_jax import metrics as M

__all__ = ["run", "format_table", "HEAD_TYPES"]

_PER_OUTPUT_METRICS: dict[str, Callable] = {
    "srcc": M.srcc,
    "plcc": M.plcc,
    "mae": M.mae,
    "rmse": M.rmse,
    "r2": M.r2,
}


@dataclass
class _Results:
    """What the head evaluators accumulate."""

    n: int
    metrics: dict[str, float] = field(default_factory=dict)
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # CSV column -> [N] values
    panels: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)  # title, true, pred

    def add_true(self, name: str, values: np.ndarray) -> None:
        """A target column; heads sharing a target share it (it must then hold the same values)."""
        if name in self.columns and not np.array_equal(self.columns[name], values, equal_nan=True):
            raise ValueError(f"CSV column {name!r} would hold two different targets")
        self.columns.setdefault(name, values)

    def add_pred(self, name: str, values: np.ndarray) -> None:
        """A prediction column; names must be unique."""
        if name in self.columns:
            raise ValueError(f"duplicate CSV column {name!r}: rename a head or an output")
        self.columns[name] = values


def _entries(mapping) -> dict[str, Any]:
    """A plain dict view of a dict / ml_collections ConfigDict."""
    return {k: mapping[k] for k in mapping.keys()}


def _array(source: Mapping[str, np.ndarray], key: str, what: str, n: int, ndim: int) -> np.ndarray:
    if key not in source:
        raise KeyError(f"{what} has no {key!r} (available: {sorted(source)})")
    arr = np.asarray(source[key], dtype=np.float64)
    if arr.ndim != ndim or arr.shape[0] != n:
        want = "[N]" if ndim == 1 else "[N, K]"
        raise ValueError(f"{what}[{key!r}] must have shape {want} with N = {n} (len(ids)), got {arr.shape}")
    return arr


def _output_names(head: str, cfg: Mapping, k: int) -> list[str]:
    names = cfg.get("names")
    if names is None:
        return [f"output_{i}" for i in range(k)]
    names = [str(x) for x in names]
    if len(names) != k:
        raise ValueError(f"head {head!r}: {len(names)} names configured but {k} outputs predicted")
    return names


# ----------------------------------------------------------------------------------------------
# Head evaluators


def _emd_head(head: str, cfg: Mapping, preds: Mapping, targets: Mapping, res: _Results) -> None:
    n = res.n
    p_dist = _array(preds, f"{head}.distribution", "predictions", n, 2) if f"{head}.distribution" in preds else None
    t_dist = _array(targets, "distribution", "targets", n, 2) if "distribution" in targets else None
    if p_dist is None and f"{head}.mean" not in preds:
        raise KeyError(f"emd head {head!r}: predictions need {head}.distribution or {head}.mean")
    if t_dist is None and "mean_score" not in targets:
        raise KeyError(f"emd head {head!r}: targets need 'distribution' or 'mean_score'")

    if f"{head}.mean" in preds:
        p_mean = _array(preds, f"{head}.mean", "predictions", n, 1)
    else:
        p_mean = M.distribution_mean(p_dist)
    if f"{head}.sd" in preds:
        p_sd = _array(preds, f"{head}.sd", "predictions", n, 1)
    else:
        p_sd = M.distribution_sd(p_dist) if p_dist is not None else None
    if "mean_score" in targets:
        t_mean = _array(targets, "mean_score", "targets", n, 1)
    else:
        t_mean = M.distribution_mean(t_dist)
    t_sd = M.distribution_sd(t_dist) if t_dist is not None else None

    m = res.metrics
    m[f"{head}/srcc"] = M.srcc(t_mean, p_mean)
    m[f"{head}/plcc"] = M.plcc(t_mean, p_mean)
    m[f"{head}/krcc"] = M.krcc(t_mean, p_mean)
    m[f"{head}/accuracy"] = M.binary_accuracy(t_mean, p_mean)
    if p_dist is not None and t_dist is not None:
        if p_dist.shape != t_dist.shape:
            raise ValueError(f"emd head {head!r}: predicted distribution {p_dist.shape} vs target {t_dist.shape}")
        m[f"{head}/emd_r1"] = M.emd(t_dist, p_dist, r=1)
        m[f"{head}/emd_r2"] = M.emd(t_dist, p_dist, r=2)
        m[f"{head}/js"] = M.js_divergence(t_dist, p_dist, base=2)
        m[f"{head}/hist_intersection"] = M.histogram_intersection(t_dist, p_dist)
        m[f"{head}/mode_acc"] = M.mode_accuracy(t_dist, p_dist)
    m[f"{head}/mae"] = M.mae(t_mean, p_mean)
    m[f"{head}/rmse"] = M.rmse(t_mean, p_mean)
    if t_sd is not None and p_sd is not None:
        m[f"{head}/sd_srcc"] = M.srcc(t_sd, p_sd)
        m[f"{head}/sd_plcc"] = M.plcc(t_sd, p_sd)

    res.add_true("true_mean", t_mean)
    if t_sd is not None:
        res.add_true("true_sd", t_sd)
        for k in range(t_dist.shape[1]):
            res.add_true(f"true_p{k + 1}", t_dist[:, k])
    res.add_pred(f"{head}_pred_mean", p_mean)
    if p_sd is not None:
        res.add_pred(f"{head}_pred_sd", p_sd)
    if p_dist is not None:
        for k in range(p_dist.shape[1]):
            res.add_pred(f"{head}_pred_p{k + 1}", p_dist[:, k])
    res.panels.append((f"{head}: mean score", t_mean, p_mean))


def _per_output(head: str, cfg: Mapping, pred_key: str, target_key: str, preds, targets, res: _Results) -> None:
    """Per-output regression/correlation metrics, their averages, CSV columns and plot panels."""
    pred = _array(preds, f"{head}.{pred_key}", "predictions", res.n, 2)
    true = _array(targets, target_key, "targets", res.n, 2)
    if pred.shape != true.shape:
        raise ValueError(f"head {head!r}: predicted {pred_key} {pred.shape} vs target {target_key} {true.shape}")
    names = _output_names(head, cfg, pred.shape[1])
    values = {metric: fn(true, pred) for metric, fn in _PER_OUTPUT_METRICS.items()}
    for i, name in enumerate(names):
        for metric, per_col in values.items():
            res.metrics[f"{head}/{name}/{metric}"] = float(per_col[i])
    for metric, per_col in values.items():
        res.metrics[f"{head}/avg/{metric}"] = float(np.mean(per_col))
    for i, name in enumerate(names):
        res.add_true(f"true_{target_key}_{name}", true[:, i])
        res.add_pred(f"{head}_pred_{name}", pred[:, i])
        res.panels.append((f"{head}: {name}", true[:, i], pred[:, i]))


def _scores_head(head: str, cfg: Mapping, preds: Mapping, targets: Mapping, res: _Results) -> None:
    pred = preds.get(f"{head}.scores")
    if "scores" not in targets and "mean_score" in targets and pred is not None and np.shape(pred)[1:] == (1,):
        # A one-output score model (e.g. the LAION aesthetic predictor) on a dataset of mean votes (AVA).
        targets = dict(targets, scores=np.asarray(targets["mean_score"], np.float64)[:, None])
    _per_output(head, cfg, "scores", "scores", preds, targets, res)


def _attributes_head(head: str, cfg: Mapping, preds: Mapping, targets: Mapping, res: _Results) -> None:
    _per_output(head, cfg, "attributes", "attributes", preds, targets, res)
    if f"{head}.overall" not in preds:
        return
    p_mean = _array(preds, f"{head}.overall", "predictions", res.n, 1)
    t_mean = _array(targets, "mean_score", "targets", res.n, 1)
    m = res.metrics
    m[f"{head}/overall/srcc"] = M.srcc(t_mean, p_mean)
    m[f"{head}/overall/plcc"] = M.plcc(t_mean, p_mean)
    m[f"{head}/overall/krcc"] = M.krcc(t_mean, p_mean)
    m[f"{head}/overall/mae"] = M.mae(t_mean, p_mean)
    m[f"{head}/overall/rmse"] = M.rmse(t_mean, p_mean)
    m[f"{head}/overall/r2"] = M.r2(t_mean, p_mean)
    res.add_true("true_mean", t_mean)
    res.add_pred(f"{head}_pred_overall", p_mean)
    res.panels.append((f"{head}: overall", t_mean, p_mean))


#: Head type (``heads[name]['type']``) -> evaluator of that head.
HEAD_TYPES: dict[str, Callable[..., None]] = {
    "emd": _emd_head,
    "scores": _scores_head,
    "attributes": _attributes_head,
}


# ----------------------------------------------------------------------------------------------
# Outputs


def _ids_as_str(ids) -> list[str]:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {arr.shape}")
    return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in arr.tolist()]


def _json_value(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _write_json(path: str, metrics: dict[str, float]) -> None:
    with open(path, "w") as f:
        json.dump({k: _json_value(v) for k, v in metrics.items()}, f, indent=2, allow_nan=False)
        f.write("\n")


def _write_csv(path: str, ids: list[str], columns: dict[str, np.ndarray]) -> None:
    names = list(columns)
    values = [np.asarray(columns[c], np.float64).tolist() for c in names]  # Python floats: repr round-trips
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", *names])
        for image_id, row in zip(ids, zip(*values) if values else ([] for _ in ids)):
            writer.writerow([image_id, *map(repr, row)])


def _finite_pair(t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(t) & np.isfinite(p)
    return t[keep], p[keep]


def _value_range(*arrays: np.ndarray) -> tuple[float, float]:
    values = np.concatenate([a.ravel() for a in arrays])
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.02 * (hi - lo)
    return lo - pad, hi + pad


def _plot(panels: list[tuple[str, np.ndarray, np.ndarray]], outdir: str, prefix: str) -> list[str]:
    """Write the scatter and histogram figures; returns their paths."""
    # Imported here so that importing the evaluator costs no matplotlib. The object API on an Agg
    # canvas needs no pyplot and leaves the global backend (e.g. a notebook's) untouched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = min(3, max(1, len(panels)))
    nrows = max(1, math.ceil(len(panels) / ncols))
    paths = []
    for kind in ("scatter", "hist"):
        fig = Figure(figsize=(4.2 * ncols, 3.8 * nrows), dpi=100)
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        for ax, (title, t, p) in zip(axes, panels):
            t, p = _finite_pair(t, p)
            lo, hi = _value_range(t, p)
            if kind == "scatter":
                ax.scatter(t, p, s=5, alpha=0.4, edgecolors="none", rasterized=True)
                ax.plot([lo, hi], [lo, hi], color="black", linestyle="--", linewidth=1, label="y = x")
                ax.set_xlim(lo, hi)
                ax.set_ylim(lo, hi)
                ax.set_xlabel("true")
                ax.set_ylabel("predicted")
                ax.set_title(f"{title}\nSRCC {M.srcc(t, p):.4f}   PLCC {M.plcc(t, p):.4f}", fontsize=10)
            else:
                bins = np.linspace(lo, hi, 41)
                ax.hist(t, bins=bins, alpha=0.5, label="true")
                ax.hist(p, bins=bins, alpha=0.5, label="predicted")
                ax.set_xlabel("score")
                ax.set_ylabel("images")
                ax.set_title(title, fontsize=10)
                ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(outdir, f"{prefix}_{kind}.png")
        fig.savefig(path, format="png")
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------------
# Public API


def run(
    *,
    predictions: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    ids: np.ndarray,
    outdir: str,
    prefix: str,
    heads: dict,
    plots: bool = True,
    write_files: bool = True,
) -> dict[str, float]:
    """Compute the metric suite for every head, write JSON/CSV/PNGs, return ``{metric: float}``.

    ``write_files=False`` only computes the metrics (periodic evaluations during training).
    """
    id_list = _ids_as_str(ids)
    head_cfgs = _entries(heads)
    if not head_cfgs:
        raise ValueError("heads is empty: nothing to evaluate")
    res = _Results(n=len(id_list))
    for head, raw_cfg in head_cfgs.items():
        cfg = _entries(raw_cfg)
        head_type = cfg.get("type")
        if head_type not in HEAD_TYPES:
            raise ValueError(f"head {head!r}: unknown head type {head_type!r}; known: {sorted(HEAD_TYPES)}")
        HEAD_TYPES[head_type](head, cfg, predictions, targets, res)

    metrics = {k: float(v) for k, v in res.metrics.items()}
    if not write_files:
        return metrics
    os.makedirs(outdir, exist_ok=True)
    _write_json(os.path.join(outdir, f"{prefix}_metrics.json"), metrics)
    _write_csv(os.path.join(outdir, f"{prefix}_predictions.csv"), id_list, res.columns)
    if plots and res.panels:
        _plot(res.panels, outdir, prefix)
    return metrics


def _format_value(v: Any, digits: int) -> str:
    if v is None:
        return "nan"
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "nan" if math.isnan(x) else f"{x:.{digits}f}"


def format_table(metrics: Mapping[str, Any], digits: int = 4) -> str:
    """Two-column text table of ``{metric: value}`` (None / nan shown as ``nan``)."""
    if not metrics:
        return "(no metrics)"
    width = max(len("metric"), *(len(k) for k in metrics))
    values = [_format_value(v, digits) for v in metrics.values()]
    vwidth = max(len("value"), *(len(v) for v in values))
    lines = [f"{'metric':<{width}}  {'value':>{vwidth}}", "-" * (width + 2 + vwidth)]
    lines += [f"{k:<{width}}  {v:>{vwidth}}" for k, v in zip(metrics, values)]
    return "\n".join(lines)
