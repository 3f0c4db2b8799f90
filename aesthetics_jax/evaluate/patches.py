r"""Full-image vs patch-aggregated evaluation of a multi-score model, on the same held-out images.

The Aesthetics-XAI comparison (SCIENCE.md §1) done without its leaks: both protocols score exactly
the same held-out parent images (the EVA build's test split and the patches of those images, which
``eva_patches`` puts in the same split), and the difference between them comes with a paired
bootstrap confidence interval.

Inputs (``run``)
    * ``predictions`` / ``targets``: one row per *patch* -- the trainer's predictions on the patch
      build's split: ``predictions['<head>.scores'] [M, K]``, ``targets['scores'] [M, K]`` (the
      parent's targets), ``targets['parent_id'] [M]`` and, for saliency weighting,
      ``targets['coverage'] [M]`` (share of the parent's salient pixels inside the patch).
    * ``full``: one row per *image* -- ``{'ids': [N], 'true': [N, K], 'pred': [N, K]}``: a
      full-image model's predictions on the parent build's same split. ``inputs`` makes it for the
      trainer (below).
    * ``<head>``: the model's one head of type ``scores`` (or ``head=``); its ``names`` name the
      outputs (``total, difficulty, visual, composition, quality, semantic`` for EVA).

Checks (a ``ValueError`` names what is wrong; nothing is silently dropped)
    * the set of parent ids of the patches equals the set of full-image ids, and no full-image id
      is repeated (``on_mismatch='intersect'`` evaluates the common ids instead and records how
      many of each side were left out: for a patch build that skipped a parent);
    * every patch of a parent carries the same targets, and they equal the full-image targets of
      that image (``atol`` 1e-5): the two sides are the same images, in the same units.

Aggregation of a parent's patch predictions (``aggregate``), per output column:
    ``mean`` (default), ``median``, ``max``, or ``saliency``: the coverage-weighted mean
    ``sum_k c_k p_k / sum_k c_k`` (a parent whose patches all have coverage 0 gets the plain mean).

Metrics (``aesthetics_jax.metrics``; per output and ``avg`` = mean over the outputs):
    ``mae``, ``rmse``, ``r2``, ``srcc``, ``plcc``, for each protocol, and the difference
    ``patches - full``. With ``to_raw`` (unit-scaled EVA targets), predictions and targets are first
    mapped back to EVA's raw scales (``lo + u * (hi - lo)``, 0..10 for the total and 1..4 for the
    others) so MAE/RMSE read in the dataset's units; R², SRCC and PLCC do not change.

Paired bootstrap (``num_bootstrap`` resamples, default 1000; 0 = none; ``seed``; ``confidence``)
    The images are resampled with replacement, *the same* resample for both protocols (paired by
    image): ``idx = numpy.random.default_rng(seed).integers(0, N, size=(num_bootstrap, N))``, one
    matrix drawn at once; row b gives ``d_b = metric(true[idx_b], patches[idx_b]) -
    metric(true[idx_b], full[idx_b])`` per output (``avg``: the mean of the outputs' d_b). The
    interval is the percentile interval of the d_b: ``numpy.nanpercentile(d, [50 (1 - c),
    50 (1 + c)])`` (linear interpolation); resamples where a metric is undefined (e.g. a constant
    resample for R²) are left out and counted (``num_valid``). Periodic evaluations during training
    (``write_files=False``) skip the bootstrap.

Returned metrics (``{name: float}``; the trainer prefixes the eval name):
    ``full/<output>/<metric>``, ``patches/<output>/<metric>``, ``diff/<output>/<metric>``, and with
    a bootstrap ``diff_ci_low/...``, ``diff_ci_high/...``; ``num_images``, ``num_patches``.

Files written to ``outdir``
    * ``<prefix>_table.md``: one Markdown table, a row per (output, metric): full, patches,
      patches - full and its CI; the settings above it.
    * ``<prefix>_table.json``: the same rows and settings (strict JSON, non-finite values ``null``).
    * ``<prefix>_metrics.json``: the flat metrics dict (as the aesthetic evaluator writes).
    * ``<prefix>_predictions.csv``: one row per image (sorted by id): ``id, num_patches,
      true_<output>..., full_<output>..., patches_<output>...`` (units as reported).
    * ``<prefix>_patch_predictions.csv``: one row per patch: ``parent_id, patch_index, coverage,
      pred_<output>...`` (for re-aggregating offline).
    * ``<prefix>_scatter.png``: a panel per output, predicted vs true for both protocols, y = x.

Trainer hook ``inputs(ev, source, predict, data_config, heads, final)``: builds ``full`` and the
options of ``run`` from the eval config ``ev``:
    ``full_from``  "" (default): this model's predictions on the parent EVA build's same split
                   (``datasets.parent_source``; full images through the config's eval transform);
                   a training workdir of a full-image run: its ``eval/<full_prefix>_predictions.csv``
                   (``full_prefix`` default "test"; the aesthetic evaluator's CSV, columns
                   ``id, true_scores_<output>, <head>_pred_<output>``); or such a CSV's path.
                   Both runs must use the same target units (the target check fails otherwise).
    ``aggregate``, ``num_bootstrap``, ``seed``, ``confidence``, ``on_mismatch``, ``head``:
                   as above; ``scale``: "raw" (default; needs EVA's six outputs) or "trained".
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any, Callable, Mapping

import numpy as np

from aesthetics_jax import metrics as M

__all__ = ["run", "inputs", "aggregate_per_parent", "paired_bootstrap", "read_full_predictions", "AGGREGATES",
           "METRICS"]

AGGREGATES = ("mean", "median", "max", "saliency")
#: Metric name -> paired metric of ``aesthetics_jax.metrics`` (``[N, K]`` -> ``[K]``).
METRICS: dict[str, Callable] = {"mae": M.mae, "rmse": M.rmse, "r2": M.r2, "srcc": M.srcc, "plcc": M.plcc}
_LABELS = {"mae": "MAE", "rmse": "RMSE", "r2": "R²", "srcc": "SRCC", "plcc": "PLCC"}
_ATOL = 1e-5


# ----------------------------------------------------------------------------------------------
# Building blocks


def aggregate_per_parent(parent_ids, values, how: str = "mean",
                         coverage=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-parent aggregate of patch rows: ``(ids [P] sorted, aggregated [P, K], patches per id [P])``.

    ``values`` is ``[M, K]`` (or ``[M]``, then ``[P]`` comes back); ``how`` one of ``AGGREGATES``;
    ``coverage [M]`` is required for ``saliency``.
    """
    if how not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {how!r}")
    values = np.asarray(values, np.float64)
    squeeze = values.ndim == 1
    values = values[:, None] if squeeze else values
    parent_ids = np.asarray(parent_ids)
    if parent_ids.ndim != 1 or len(parent_ids) != len(values):
        raise ValueError(f"parent_ids must be [M] with M = {len(values)}, got shape {parent_ids.shape}")
    ids, inverse, counts = np.unique(parent_ids, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    out = np.empty((len(ids), values.shape[1]), np.float64)
    if how in ("mean", "saliency"):
        if how == "saliency":
            if coverage is None:
                raise ValueError("aggregate='saliency' needs the patches' coverage")
            w = np.asarray(coverage, np.float64).reshape(-1)
            if w.shape != (len(values),) or (w < 0).any() or not np.isfinite(w).all():
                raise ValueError(f"coverage must be [M] finite and >= 0, got shape {w.shape}")
            total = np.bincount(inverse, weights=w, minlength=len(ids))
            w = np.where(total[inverse] > 0, w, 1.0)  # all-zero coverage: plain mean
        else:
            w = np.ones(len(values))
        den = np.bincount(inverse, weights=w, minlength=len(ids))
        for k in range(values.shape[1]):
            out[:, k] = np.bincount(inverse, weights=w * values[:, k], minlength=len(ids)) / den
    else:
        order = np.argsort(inverse, kind="stable")
        groups = np.split(values[order], np.cumsum(counts)[:-1])
        reduce = np.median if how == "median" else np.max
        for g, rows in enumerate(groups):
            out[g] = reduce(rows, axis=0)
    return ids, (out[:, 0] if squeeze else out), counts


def paired_bootstrap(true, pred_full, pred_patches, metric: Callable, *, num: int = 1000, seed: int = 0,
                     confidence: float = 0.95) -> dict[str, np.ndarray]:
    """Paired percentile bootstrap of ``metric(true, patches) - metric(true, full)`` (module docstring).

    Inputs ``[N, K]``; returns ``{'diffs': [num, K + 1], 'low': [K + 1], 'high': [K + 1],
    'num_valid': [K + 1]}`` -- the last column is the mean over the K outputs (``avg``).
    """
    true, pred_full, pred_patches = (np.asarray(x, np.float64) for x in (true, pred_full, pred_patches))
    if not true.shape == pred_full.shape == pred_patches.shape or true.ndim != 2:
        raise ValueError(f"need three [N, K] arrays, got {true.shape}, {pred_full.shape}, {pred_patches.shape}")
    if not 0 < confidence < 1 or num < 1:
        raise ValueError(f"need 0 < confidence < 1 and num >= 1, got {confidence}, {num}")
    n, k = true.shape
    idx = np.random.default_rng(seed).integers(0, n, size=(num, n))
    diffs = np.empty((num, k + 1), np.float64)
    for b in range(num):
        rows = idx[b]
        d = np.asarray(metric(true[rows], pred_patches[rows])) - np.asarray(metric(true[rows], pred_full[rows]))
        diffs[b, :k] = d
        diffs[b, k] = np.mean(d)
    finite = np.isfinite(diffs)
    low, high = np.full(k + 1, np.nan), np.full(k + 1, np.nan)
    q = [50.0 * (1.0 - confidence), 50.0 * (1.0 + confidence)]
    for j in range(k + 1):
        if finite[:, j].any():
            low[j], high[j] = np.percentile(diffs[finite[:, j], j], q)
    return {"diffs": diffs, "low": low, "high": high, "num_valid": finite.sum(axis=0)}


def _scores_head(heads: Mapping, head: str | None) -> tuple[str, list[str] | None]:
    cfgs = {name: dict(cfg.items()) for name, cfg in heads.items()}
    if head is None:
        candidates = [name for name, cfg in cfgs.items() if cfg.get("type") == "scores"]
        if len(candidates) != 1:
            raise ValueError(f"the patches evaluator needs exactly one head of type 'scores' (or head=...), "
                             f"got {candidates}")
        head = candidates[0]
    if head not in cfgs:
        raise ValueError(f"head {head!r} not among the model's heads {sorted(cfgs)}")
    names = cfgs[head].get("names")
    return head, None if names is None else [str(n) for n in names]


def _to_raw(x: np.ndarray) -> np.ndarray:
    from aesthetics_jax.data.builders import eva  # pylint: disable=g-import-not-at-top

    if x.shape[1] != len(eva.SCORE_NAMES):
        raise ValueError(f"to_raw maps EVA's {len(eva.SCORE_NAMES)} scores; got {x.shape[1]} outputs")
    lo = np.array([eva.SCORE_RANGES[n][0] for n in eva.SCORE_NAMES], np.float64)
    hi = np.array([eva.SCORE_RANGES[n][1] for n in eva.SCORE_NAMES], np.float64)
    return lo + x * (hi - lo)


def read_full_predictions(path: str, head: str, names: list[str]) -> dict[str, np.ndarray]:
    """``{'ids', 'true', 'pred'}`` from an aesthetic evaluator's predictions CSV (a full-image run)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no predictions")
    true_cols, pred_cols = [f"true_scores_{n}" for n in names], [f"{head}_pred_{n}" for n in names]
    missing = [c for c in ["id", *true_cols, *pred_cols] if c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: columns {missing} missing (a full-image run's predictions with head {head!r}?)")
    return {"ids": np.array([int(r["id"]) for r in rows], np.int64),
            "true": np.array([[float(r[c]) for c in true_cols] for r in rows], np.float64),
            "pred": np.array([[float(r[c]) for c in pred_cols] for r in rows], np.float64)}


# ----------------------------------------------------------------------------------------------
# Trainer hook


def inputs(ev, *, source, predict, data_config, heads, final: bool, model=None, variables=None) -> dict[str, Any]:
    """The ``full`` predictions and ``run`` options for eval config ``ev`` (module docstring)."""
    del final, model, variables
    head, names = _scores_head(heads, ev.get("head"))
    full_from = ev.get("full_from", "") or ""
    if not full_from:
        from aesthetics_jax.data import datasets  # pylint: disable=g-import-not-at-top

        preds, labels = predict(datasets.parent_source(source))
        full = {"ids": labels["id"], "true": labels["scores"], "pred": preds[f"{head}.scores"]}
    else:
        path = full_from
        if os.path.isdir(path):
            path = os.path.join(path, "eval", f"{ev.get('full_prefix', 'test')}_predictions.csv")
        if names is None:
            raise ValueError(f"full_from needs the head's output names (heads.{head}.names)")
        full = read_full_predictions(path, head, names)
    scale = ev.get("scale", "raw")
    if scale not in ("raw", "trained"):
        raise ValueError(f"scale must be 'raw' or 'trained', got {scale!r}")
    unit = data_config.get("name") in ("eva", "eva_patches") and bool(data_config.get("unit", True))
    options = {k: ev[k] for k in ("aggregate", "num_bootstrap", "seed", "confidence", "on_mismatch") if k in ev}
    split = getattr(getattr(source, "source", None), "split", None) or ev.get("split", "")
    return dict(full=full, head=head, to_raw=unit and scale == "raw", split=str(split), **options)


# ----------------------------------------------------------------------------------------------
# The evaluator


def _check_targets(parent_ids, patch_true, ids, true) -> None:
    """Patch targets constant per parent and equal to the full-image targets of the same id."""
    pos = np.searchsorted(ids, parent_ids)
    bad = ~np.isclose(patch_true, true[pos], atol=_ATOL, rtol=0).all(axis=1)
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise ValueError(f"{int(bad.sum())} patches carry targets that differ from their image's full-image targets "
                         f"(first: parent {parent_ids[i]}: {patch_true[i].tolist()} vs {true[pos[i]].tolist()}); "
                         "different builds or target units (data.unit) on the two sides?")


def _fmt(x: float, digits: int = 4) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _json_value(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    return v


def run(
    *,
    predictions: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    ids,
    outdir: str,
    prefix: str,
    heads: Mapping,
    plots: bool = True,
    write_files: bool = True,
    full: Mapping[str, np.ndarray] | None = None,
    head: str | None = None,
    aggregate: str = "mean",
    num_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    on_mismatch: str = "error",
    to_raw: bool = False,
    split: str = "",
) -> dict[str, float]:
    """Both protocols' metrics, their differences and CIs; writes the files (module docstring)."""
    del ids  # patch rows: their ids are the parents' (targets['parent_id'])
    if full is None:
        raise ValueError("the patches evaluator needs the full-image predictions (full=...; the trainer supplies "
                         "them through inputs())")
    if on_mismatch not in ("error", "intersect"):
        raise ValueError(f"on_mismatch must be 'error' or 'intersect', got {on_mismatch!r}")
    head, names = _scores_head(heads, head)
    patch_pred = np.asarray(predictions[f"{head}.scores"], np.float64)
    patch_true = np.asarray(targets["scores"], np.float64)
    parent_ids = np.asarray(targets["parent_id"]).astype(np.int64)
    coverage = np.asarray(targets["coverage"], np.float64) if "coverage" in targets else None
    patch_index = np.asarray(targets["patch_index"]).astype(np.int64) if "patch_index" in targets else None
    if patch_pred.ndim != 2 or patch_pred.shape != patch_true.shape or len(parent_ids) != len(patch_pred):
        raise ValueError(f"patch predictions {patch_pred.shape}, targets {patch_true.shape}, parent ids "
                         f"{parent_ids.shape} do not match")
    k = patch_pred.shape[1]
    names = names or [f"output_{i}" for i in range(k)]
    if len(names) != k:
        raise ValueError(f"head {head!r}: {len(names)} names for {k} outputs")

    full_ids = np.asarray(full["ids"]).astype(np.int64)
    full_true = np.asarray(full["true"], np.float64)
    full_pred = np.asarray(full["pred"], np.float64)
    if full_true.shape != (len(full_ids), k) or full_pred.shape != full_true.shape:
        raise ValueError(f"full: ids {full_ids.shape}, true {full_true.shape}, pred {full_pred.shape}; need [N], "
                         f"[N, {k}], [N, {k}]")
    uniq, counts = np.unique(full_ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"full-image ids repeated: {uniq[counts > 1][:10].tolist()}")

    # Same parent images on both sides.
    patch_set, full_set = set(parent_ids.tolist()), set(full_ids.tolist())
    only_full, only_patches = sorted(full_set - patch_set), sorted(patch_set - full_set)
    if only_full or only_patches:
        if on_mismatch == "error":
            raise ValueError(f"full and patch protocols are not on the same images: {len(only_full)} ids only in the "
                             f"full-image predictions {only_full[:5]}, {len(only_patches)} only among the patches' "
                             f"parents {only_patches[:5]} (on_mismatch='intersect' evaluates the common ids)")
        keep_full = np.isin(full_ids, parent_ids)
        full_ids, full_true, full_pred = full_ids[keep_full], full_true[keep_full], full_pred[keep_full]
        keep = np.isin(parent_ids, full_ids)
        parent_ids, patch_true, patch_pred = parent_ids[keep], patch_true[keep], patch_pred[keep]
        coverage = None if coverage is None else coverage[keep]
        patch_index = None if patch_index is None else patch_index[keep]
    if len(full_ids) == 0:
        raise ValueError("no images to evaluate")
    order = np.argsort(full_ids)
    full_ids, full_true, full_pred = full_ids[order], full_true[order], full_pred[order]
    _check_targets(parent_ids, patch_true, full_ids, full_true)

    agg_ids, agg_pred, num_patches = aggregate_per_parent(parent_ids, patch_pred, aggregate, coverage)
    assert np.array_equal(agg_ids, full_ids)  # guaranteed by the id checks above
    true = full_true
    if to_raw:
        true, full_pred, agg_pred = _to_raw(true), _to_raw(full_pred), _to_raw(agg_pred)

    values: dict[str, dict[str, np.ndarray]] = {"full": {}, "patches": {}}
    for metric, fn in METRICS.items():
        values["full"][metric] = np.atleast_1d(fn(true, full_pred))
        values["patches"][metric] = np.atleast_1d(fn(true, agg_pred))
    boot = {}
    if write_files and num_bootstrap:
        boot = {metric: paired_bootstrap(true, full_pred, agg_pred, fn, num=int(num_bootstrap), seed=int(seed),
                                         confidence=float(confidence)) for metric, fn in METRICS.items()}

    out: dict[str, float] = {}
    rows = []
    for j, name in enumerate([*names, "avg"]):
        for metric in METRICS:
            f_v = float(values["full"][metric][j]) if j < k else float(np.mean(values["full"][metric]))
            p_v = float(values["patches"][metric][j]) if j < k else float(np.mean(values["patches"][metric]))
            row = dict(output=name, metric=metric, full=f_v, patches=p_v, diff=p_v - f_v)
            out[f"full/{name}/{metric}"], out[f"patches/{name}/{metric}"] = f_v, p_v
            out[f"diff/{name}/{metric}"] = p_v - f_v
            if boot:
                b = boot[metric]
                row.update(ci_low=float(b["low"][j]), ci_high=float(b["high"][j]), num_valid=int(b["num_valid"][j]))
                out[f"diff_ci_low/{name}/{metric}"] = row["ci_low"]
                out[f"diff_ci_high/{name}/{metric}"] = row["ci_high"]
            rows.append(row)
    out["num_images"], out["num_patches"] = float(len(full_ids)), float(len(parent_ids))
    if not write_files:
        return out

    per_image, how_many = np.unique(num_patches, return_counts=True)
    settings = dict(split=split, head=head, outputs=names, aggregate=aggregate, units="raw" if to_raw else "trained",
                    num_images=int(len(full_ids)), num_patches=int(len(parent_ids)),
                    images_by_num_patches={str(a): int(b) for a, b in zip(per_image.tolist(), how_many.tolist())},
                    bootstrap=dict(num=int(num_bootstrap) if boot else 0, seed=int(seed), confidence=float(confidence),
                                   method="paired percentile, images resampled with replacement"),
                    left_out=dict(only_full=len(only_full), only_patches=len(only_patches)))
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, f"{prefix}_table.json"), "w") as f:
        json.dump({"settings": settings, "rows": [{k2: _json_value(v) for k2, v in r.items()} for r in rows]}, f,
                  indent=2, allow_nan=False)
        f.write("\n")
    with open(os.path.join(outdir, f"{prefix}_metrics.json"), "w") as f:
        json.dump({k2: _json_value(v) for k2, v in out.items()}, f, indent=2, allow_nan=False)
        f.write("\n")
    with open(os.path.join(outdir, f"{prefix}_table.md"), "w") as f:
        f.write(_markdown(rows, settings, bool(boot)))
    _write_csvs(outdir, prefix, names, full_ids, num_patches, true, full_pred, agg_pred, parent_ids, patch_index,
                coverage, patch_pred, to_raw)
    if plots:
        _plot(os.path.join(outdir, f"{prefix}_scatter.png"), names, true, full_pred, agg_pred, aggregate)
    return out


def _markdown(rows, settings, with_ci: bool) -> str:
    agg = settings["aggregate"]
    lines = [
        f"# Full image vs patches ({agg} of each image's patches)" + (f" -- {settings['split']}" if settings["split"]
                                                                       else ""),
        "",
        f"{settings['num_images']} held-out images (the same ids on both sides), {settings['num_patches']} patches; "
        f"units: {settings['units']}.",
    ]
    if with_ci:
        b = settings["bootstrap"]
        lines.append(f"CI: {100 * b['confidence']:g} % paired percentile bootstrap of patches - full, {b['num']} "
                     f"resamples of images, seed {b['seed']}.")
    lines += ["", f"| output | metric | full | patches ({agg}) | patches - full |" + (" CI |" if with_ci else ""),
              "|---|---|---:|---:|---:|" + ("---|" if with_ci else "")]
    for r in rows:
        line = (f"| {r['output']} | {_LABELS[r['metric']]} | {_fmt(r['full'])} | {_fmt(r['patches'])} | "
                f"{_fmt(r['diff'])} |")
        if with_ci:
            line += f" [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _write_csvs(outdir, prefix, names, ids, num_patches, true, full_pred, agg_pred, parent_ids, patch_index, coverage,
                patch_pred, to_raw) -> None:
    with open(os.path.join(outdir, f"{prefix}_predictions.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "num_patches", *[f"true_{n}" for n in names], *[f"full_{n}" for n in names],
                    *[f"patches_{n}" for n in names]])
        for i in range(len(ids)):
            w.writerow([int(ids[i]), int(num_patches[i]), *map(repr, true[i].tolist()),
                        *map(repr, full_pred[i].tolist()), *map(repr, agg_pred[i].tolist())])
    pred = _to_raw(patch_pred) if to_raw else patch_pred
    with open(os.path.join(outdir, f"{prefix}_patch_predictions.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["parent_id", "patch_index", "coverage", *[f"pred_{n}" for n in names]])
        for i in range(len(parent_ids)):
            w.writerow([int(parent_ids[i]), "" if patch_index is None else int(patch_index[i]),
                        "" if coverage is None else repr(float(coverage[i])), *map(repr, pred[i].tolist())])


def _plot(path, names, true, full_pred, agg_pred, agg: str) -> None:
    # Object API on an Agg canvas: no pyplot, no global backend change (as evaluate/aesthetic.py).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.9 * nrows), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(names):]:
        ax.set_visible(False)
    for j, (ax, name) in enumerate(zip(axes, names)):
        t, f_, p = true[:, j], full_pred[:, j], agg_pred[:, j]
        values = np.concatenate([t, f_, p])
        values = values[np.isfinite(values)]
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        ax.scatter(t, f_, s=6, alpha=0.5, edgecolors="none", label=f"full (MAE {_fmt(M.mae(t, f_), 3)})")
        ax.scatter(t, p, s=6, alpha=0.5, edgecolors="none", label=f"patches, {agg} (MAE {_fmt(M.mae(t, p), 3)})")
        ax.plot([lo, hi], [lo, hi], color="black", linestyle="--", linewidth=1)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
        ax.set_title(f"{name}\nSRCC full {_fmt(M.srcc(t, f_), 3)}  patches {_fmt(M.srcc(t, p), 3)}", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, format="png")
