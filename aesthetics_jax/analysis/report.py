"""Files of a modality analysis (``modalities.ModalityAnalysis``): CSVs, PNG figures, report.md, summary.json.

``write_all(result, out)`` writes, into ``out``:

    metrics.csv           one row per (group, modality): group, modality, n, ranked, best, srcc,
                          srcc_lo, srcc_hi, plcc, plcc_lo, plcc_hi, mae, mae_lo, mae_hi, ols_r2 (+ CI),
                          ols_r2_gain (+ CI; with a base run), srcc_minus_best (+ CI), bootstrap_valid
    prediction_cov.csv    modalities x modalities covariance of the predictions (all analysed images)
    prediction_corr.csv   ... their correlation
    residual_cov.csv      covariance of the residuals pred - truth
    residual_corr.csv     ... their correlation
    group_truth_cov.csv   per (group, modality): n, cov_pred_truth, corr_pred_truth, var_truth, var_pred
    srcc_heatmap.png      group x modality SRCC (unranked groups marked)
    prediction_corr.png   modality x modality correlation of the predictions
    residual_corr.png     ... of the residuals
    srcc_bars.png         per group, a bar per modality with its CI (ranked groups and ``all``)
    report.md             settings, one sentence per group (which modality explains most, the lead
                          over the runner-up with its paired CI), a table per statistic, the matrices
    summary.json          the same numbers, strict JSON (non-finite values as null)

CSV floats keep full precision; the report rounds to 3 decimals. Figures use matplotlib's object
API on an Agg canvas (no pyplot, the global backend untouched), imported only when plotting.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from aesthetics_jax.analysis.modalities import STATISTICS, ModalityAnalysis, fmt as _f

__all__ = ["write_all", "markdown", "summary", "format_table", "MATRICES"]

MATRICES = ("prediction_cov", "prediction_corr", "residual_cov", "residual_corr")
_LABELS = {"srcc": "SRCC", "plcc": "PLCC", "mae": "MAE", "ols_r2": "OLS R² (truth ~ modality)",
           "ols_r2_gain": "R² gain over the base run"}
_MATRIX_TITLES = {"prediction_cov": "Covariance of the predictions", "prediction_corr": "Correlation of the predictions",
                  "residual_cov": "Covariance of the residuals (pred − truth)",
                  "residual_corr": "Correlation of the residuals (pred − truth)"}




def _json(v):
    if isinstance(v, dict):
        return {str(k): _json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json(x) for x in v]
    if isinstance(v, np.ndarray):
        return _json(v.tolist())
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    return v


# ----------------------------------------------------------------------------------------------
# Text


def _stats_present(result: ModalityAnalysis) -> list[str]:
    return [s for s in STATISTICS if result.groups and s in result.groups[0].point]


def _table(result: ModalityAnalysis, stat: str, bold_best: bool) -> list[str]:
    mods = result.modalities
    with_ci = result.settings["bootstrap"] > 0
    lines = ["| group | n | " + " | ".join(mods) + " |", "|---|---:|" + "---:|" * len(mods)]
    for g in result.groups:
        cells = []
        for j in range(len(mods)):
            cell = _f(g.point[stat][j])
            if with_ci:
                cell += f" [{_f(g.low[stat][j])}, {_f(g.high[stat][j])}]"
            if bold_best and g.best == j:
                cell = f"**{cell}**"
            cells.append(cell)
        name = g.name if g.ranked else f"{g.name} †"
        lines.append(f"| {name} | {g.n} | " + " | ".join(cells) + " |")
    return lines


def _minus_best_table(result: ModalityAnalysis) -> list[str]:
    mods = result.modalities
    lines = ["| group | best | " + " | ".join(mods) + " |", "|---|---|" + "---:|" * len(mods)]
    for g in result.groups:
        if not g.ranked:
            continue
        cells = []
        for j in range(len(mods)):
            if j == g.best:
                cells.append("—")
                continue
            lo, hi = g.minus_best_low[j], g.minus_best_high[j]
            mark = " *" if math.isfinite(hi) and hi < 0 else ""
            cells.append(f"{_f(g.minus_best[j])} [{_f(lo)}, {_f(hi)}]{mark}")
        lines.append(f"| {g.name} | {mods[g.best]} | " + " | ".join(cells) + " |")
    return lines


def _matrix_table(result: ModalityAnalysis, which: str) -> list[str]:
    mods = result.modalities
    m = result.matrices[which]
    lines = ["| | " + " | ".join(mods) + " |", "|---|" + "---:|" * len(mods)]
    for i, name in enumerate(mods):
        lines.append(f"| {name} | " + " | ".join(_f(m[i, j], 4) for j in range(len(mods))) + " |")
    return lines


def _truth_cov_table(result: ModalityAnalysis) -> list[str]:
    mods = result.modalities
    lines = ["| group | n | var(truth) | " + " | ".join(f"{m}: cov [corr]" for m in mods) + " |",
             "|---|---:|---:|" + "---:|" * len(mods)]
    for g in result.groups:
        cells = [f"{_f(g.truth_cov[j], 4)} [{_f(g.point['plcc'][j])}]" for j in range(len(mods))]
        name = g.name if g.ranked else f"{g.name} †"
        lines.append(f"| {name} | {g.n} | {_f(g.truth_var, 4)} | " + " | ".join(cells) + " |")
    return lines


def markdown(result: ModalityAnalysis, figures: bool = True) -> str:
    """The report (module docstring)."""
    s = result.settings
    conf = f"{100 * s['confidence']:g} %"
    by = s.get("by") or "group"
    lines = [f"# What each modality explains — by {by}", ""]
    lines += ["| run (modality) | predictions | score | truth | rows | not analysed |", "|---|---|---|---|---:|---:|"]
    for r in result.runs:
        lines.append(f"| {r['name']} | `{r['source']}` | `{r['pred_column']}` | `{r['true_column']}` | {r['rows']} "
                     f"| {r['dropped']} |")
    lines.append("")
    facts = [f"{s['num_images']} images analysed (runs joined on id"
             + ("; ids missing from some run left out, --intersect" if s["intersect"] else "") + ")."]
    if s.get("categories"):
        facts.append(f"Categories: {s['categories']}.")
    if s.get("images_without_group"):
        facts.append(f"{s['images_without_group']} images belong to no {by} group (only to `all`).")
    if s.get("empty_groups"):
        facts.append(f"Groups without analysed images: {', '.join(s['empty_groups'])}.")
    if s["bootstrap"]:
        facts.append(f"Intervals: {conf} percentile bootstrap, {s['bootstrap']} resamples of the images within each "
                     f"group (seed {s['seed']}), the same resamples for every modality (paired).")
    else:
        facts.append("No bootstrap (intervals are nan).")
    facts.append(f"Groups with fewer than {s['min_count']} images are not ranked (marked †).")
    if result.base:
        facts.append(f"R² gain: increase in the OLS R² of the truth when a modality's prediction is added to the "
                     f"base run `{result.base}`'s (what it explains beyond {result.base}).")
    lines += [" ".join(facts), "", "## Which modality explains most", "",
              "Most explained = highest SRCC; the lead over the runner-up is the paired bootstrap difference "
              "(significant when its interval excludes 0).", ""]
    lines += [f"- {text}" for text in result.statements().values()]
    lines.append("")
    for stat in _stats_present(result):
        lines += [f"## {_LABELS[stat]}" + (f" ({conf} CI)" if s["bootstrap"] else ""), ""]
        if stat == "ols_r2_gain":
            lines += [f"R²(truth ~ {result.base} + modality) − R²(truth ~ {result.base}); 0 for {result.base} itself.",
                      ""]
        lines += _table(result, stat, bold_best=stat == "srcc") + [""]
    lines += ["## SRCC minus the group's best (paired bootstrap)", "",
              "`*`: the interval lies below 0 — the best modality explains significantly more.", ""]
    lines += _minus_best_table(result) + [""]
    lines += ["## Covariance of each modality's prediction with the truth, per group", "",
              "cov(pred, truth) (ddof 1) and, in brackets, the correlation.", ""]
    lines += _truth_cov_table(result) + [""]
    for which in MATRICES:
        lines += [f"## {_MATRIX_TITLES[which]} (all {s['num_images']} images)", ""]
        lines += _matrix_table(result, which) + [""]
    if figures:
        lines += ["## Figures", "", "![SRCC per group and modality](srcc_heatmap.png)", "",
                  "![SRCC with CIs](srcc_bars.png)", "",
                  "![Correlation of the predictions](prediction_corr.png) "
                  "![Correlation of the residuals](residual_corr.png)", ""]
    return "\n".join(lines)


def summary(result: ModalityAnalysis) -> dict:
    """Everything in ``summary.json`` (strict-JSON-ready: non-finite floats become None)."""
    statements = result.statements()
    groups = []
    for g in result.groups:
        lead = g.lead
        entry = {"name": g.name, "n": g.n, "ranked": g.ranked,
                 "best": result.modalities[g.best] if g.best is not None else None,
                 "runner_up": result.modalities[g.runner_up] if g.runner_up is not None else None,
                 "lead": None if lead is None else {"srcc_difference": lead[0], "low": lead[1], "high": lead[2],
                                                    "significant": bool(math.isfinite(lead[1]) and lead[1] > 0)},
                 "statement": statements[g.name], "truth_var": g.truth_var, "modalities": {}}
        for j, m in enumerate(result.modalities):
            values = {stat: [g.point[stat][j], g.low[stat][j], g.high[stat][j]] for stat in g.point}
            values["srcc_minus_best"] = [g.minus_best[j], g.minus_best_low[j], g.minus_best_high[j]]
            values["cov_pred_truth"] = g.truth_cov[j]
            values["var_pred"] = g.pred_var[j]
            entry["modalities"][m] = values
        groups.append(entry)
    return _json({"settings": result.settings, "modalities": result.modalities, "runs": result.runs,
                  "groups": groups,
                  "matrices": {w: {"labels": result.modalities, "values": result.matrices[w]} for w in MATRICES}})


def format_table(result: ModalityAnalysis, max_rows: int = 20) -> str:
    """A short text table for the terminal: per group n, each modality's SRCC, the best one."""
    mods = result.modalities
    header = ["group", "n", *mods, "most explained by"]
    rows = []
    for g in result.groups[:max_rows]:
        best = "(not ranked)" if not g.ranked else mods[g.best]
        lead = g.lead
        if lead is not None and g.ranked:
            best += " *" if math.isfinite(lead[1]) and lead[1] > 0 else ""
        rows.append([g.name, str(g.n), *[_f(v) for v in g.point["srcc"]], best])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i in (0, len(header) - 1) else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))) for r in [header, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    if len(result.groups) > max_rows:
        lines.append(f"... {len(result.groups) - max_rows} more groups in report.md")
    lines.append("SRCC; * = lead over the runner-up significant (paired bootstrap)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Figures


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

    fig = Figure(figsize=(min(width, 40.0), min(height, 60.0)), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _heatmap(path: str, values: np.ndarray, rows: list[str], cols: list[str], title: str, *, vmin, vmax,
             cmap: str, label: str) -> None:
    fig = _figure(2.0 + 1.1 * len(cols) + 0.08 * max(len(r) for r in rows), 1.6 + 0.38 * len(rows))
    ax = fig.subplots()
    shown = np.ma.masked_invalid(values)
    image = ax.imshow(shown, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), labels=cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), labels=rows)
    span = (vmax - vmin) or 1.0
    diverging = vmin < 0 < vmax and cmap.endswith("_r")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            # White text where the colour is dark: the low end of viridis, both ends of RdBu.
            dark = math.isfinite(v) and (abs(v) > 0.6 * max(abs(vmin), abs(vmax)) if diverging
                                         else (v - vmin) / span < 0.35)
            ax.text(j, i, _f(v, 2), ha="center", va="center", fontsize=8, color="white" if dark else "black")
    fig.colorbar(image, ax=ax, label=label)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")


def _bars(path: str, result: ModalityAnalysis) -> None:
    groups = [g for g in result.groups if g.ranked or g.name == "all"]
    mods = result.modalities
    k = len(mods)
    fig = _figure(9.0, 1.2 + 0.16 * k * len(groups) + 0.15 * len(groups))
    ax = fig.subplots()
    height = 0.8 / k
    for j, m in enumerate(mods):
        y = np.arange(len(groups)) + (j - (k - 1) / 2) * height
        v = np.array([g.point["srcc"][j] for g in groups])
        lo = np.array([g.low["srcc"][j] for g in groups])
        hi = np.array([g.high["srcc"][j] for g in groups])
        err = np.vstack([np.nan_to_num(v - lo), np.nan_to_num(hi - v)])
        ax.barh(y, np.nan_to_num(v), height=height, xerr=err if result.settings["bootstrap"] else None,
                capsize=2, label=m, error_kw={"elinewidth": 0.8})
    ax.set_yticks(range(len(groups)), labels=[g.name for g in groups])
    ax.invert_yaxis()
    ax.axvline(0.0, color="black", linewidth=0.8)
    conf = f"{100 * result.settings['confidence']:g} %"
    ax.set_xlabel("SRCC" + (f" ({conf} bootstrap CI)" if result.settings["bootstrap"] else ""))
    ax.set_title(f"SRCC per {result.settings.get('by') or 'group'} and modality", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, format="png")


def plot(result: ModalityAnalysis, out: str) -> list[str]:
    """The four figures; returns their paths."""
    names = [g.name if g.ranked else f"{g.name} †" for g in result.groups]
    srcc = np.array([g.point["srcc"] for g in result.groups], np.float64)
    paths = [os.path.join(out, f) for f in ("srcc_heatmap.png", "prediction_corr.png", "residual_corr.png",
                                            "srcc_bars.png")]
    by = result.settings.get("by") or "group"
    _heatmap(paths[0], srcc, names, result.modalities, f"SRCC per {by} and modality († not ranked)",
             vmin=min(0.0, float(np.nanmin(srcc)) if np.isfinite(srcc).any() else 0.0), vmax=1.0,
             cmap="viridis", label="SRCC")
    for path, which in zip(paths[1:3], ("prediction_corr", "residual_corr")):
        _heatmap(path, result.matrices[which], result.modalities, result.modalities,
                 f"{_MATRIX_TITLES[which]}\n({result.settings['num_images']} images)", vmin=-1.0, vmax=1.0,
                 cmap="RdBu_r", label="correlation")
    _bars(paths[3], result)
    return paths


# ----------------------------------------------------------------------------------------------
# All files


def write_all(result: ModalityAnalysis, out: str, plots: bool = True) -> dict[str, str]:
    """Writes every file of the module docstring into ``out``; returns ``{file name: path}``."""
    os.makedirs(out, exist_ok=True)
    paths = {}

    def path(name: str) -> str:
        paths[name] = os.path.join(out, name)
        return paths[name]

    result.metrics_frame().to_csv(path("metrics.csv"), index=False)
    for which in MATRICES:
        result.matrix_frame(which).to_csv(path(f"{which}.csv"))
    result.group_truth_frame().to_csv(path("group_truth_cov.csv"), index=False)
    if plots:
        for p in plot(result, out):
            paths[os.path.basename(p)] = p
    with open(path("report.md"), "w") as f:
        f.write(markdown(result, figures=plots) + "\n")
    with open(path("summary.json"), "w") as f:
        json.dump(summary(result), f, indent=2, allow_nan=False)
        f.write("\n")
    return paths
