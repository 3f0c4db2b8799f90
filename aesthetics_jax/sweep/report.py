"""``sweep report``: a sweep's members' final metrics as one table, mean ± sd and a bootstrap CI.

Each member workdir under the root (``sweep_member.json`` from ``sweep run``; any training
workdir with ``eval/final_metrics.json`` also counts, named by its directory) contributes its
``eval/final_metrics.json``. Members are grouped by variant (the member without its seed), or by
the value of a config field (``--group-by losses.emd.r``, read from each workdir's
``config.json``). Per group and metric:

    mean, sd     over the group's members (sd with ddof = 1; a single member has no sd)
    95 % CI      percentile bootstrap of the mean over the members (seeds): 10,000 resamples
                 with replacement from a generator seeded by the group and metric, so the same
                 members always give the same interval

The best group by the selection metric (default: the run's ``config.best_metric``, a validation
metric, in its ``best_mode``) is marked: the test columns of that row are the honest numbers.
Members whose data fingerprints (``provenance.json``) differ are refused — their metrics are not
comparable — unless ``allow_mixed_data``. Files: ``report.md``, ``report.csv`` (one row per group
and metric, values at full precision), ``report.tex`` (booktabs) and ``report.png`` (each metric
per group with CI bars and the seeds as dots). Nothing in them depends on paths or time, so the
same metrics give byte-identical tables.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import os
from typing import Any, Sequence

import numpy as np

from aesthetics_jax import provenance
from aesthetics_jax.sweep import runner

BOOTSTRAP_SAMPLES = 10_000
DEFAULT_SUFFIXES = ("srcc", "plcc")


@dataclasses.dataclass
class MemberResult:
    name: str
    variant: str
    seed: Any
    index: int
    metrics: dict
    config: dict
    fingerprint: str | None


@dataclasses.dataclass
class GroupStats:
    group: str
    members: list[str]
    values: dict[str, list[float]]  # metric -> member values (member order)
    mean: dict[str, float]
    sd: dict[str, float]
    ci: dict[str, tuple[float, float]]


@dataclasses.dataclass
class Table:
    metrics: list[str]
    groups: list[GroupStats]
    select: str | None
    best: str | None
    missing: list[str]  # members without final metrics
    fingerprints: dict[str, str | None]  # member -> data fingerprint
    group_by: str | None


def collect(root: str) -> tuple[list[MemberResult], list[str]]:
    """Finished members under ``root`` (sweep order, then name) and the names of unfinished ones."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"sweep root {root} does not exist")
    found, missing = [], []
    for entry in sorted(os.listdir(root)):
        workdir = os.path.join(root, entry)
        record_path = os.path.join(workdir, runner.MEMBER_FILE)
        final_path = os.path.join(workdir, "eval", "final_metrics.json")
        if not os.path.isdir(workdir) or entry.startswith("."):
            continue
        record = _read(record_path) if os.path.exists(record_path) else None
        if record is None and not os.path.exists(os.path.join(workdir, "config.json")):
            continue  # not a training workdir (e.g. jobs/)
        if not os.path.exists(final_path):
            missing.append(entry)
            continue
        metrics = _read(final_path)
        metrics.pop("step", None)
        prov = provenance.read(workdir) or {}
        record = record or {"name": entry, "variant": entry, "seed": None, "index": 10**9}
        found.append(MemberResult(name=record["name"], variant=record["variant"], seed=record.get("seed"),
                                  index=int(record.get("index", 10**9)), metrics=metrics,
                                  config=_read(os.path.join(workdir, "config.json")),
                                  fingerprint=(prov.get("data") or {}).get("fingerprint")))
    found.sort(key=lambda m: (m.index, m.name))
    return found, missing


def _read(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _field(config: dict, path: str):
    node = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(path)
        node = node[part]
    return node


def bootstrap_ci(values: Sequence[float], key: str, level: float = 0.95,
                 samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values``; the generator is seeded from ``key``."""
    x = np.asarray(values, np.float64)
    if x.size == 0:
        return (math.nan, math.nan)
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(samples, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def summarize(members: Sequence[MemberResult], *, metrics: Sequence[str] | None = None, group_by: str | None = None,
              select: str | None = None, select_mode: str | None = None, allow_mixed_data: bool = False,
              missing: Sequence[str] = ()) -> Table:
    if not members:
        raise ValueError("no finished sweep members (eval/final_metrics.json) to report"
                         + (f"; unfinished: {', '.join(missing)}" if missing else ""))
    fingerprints = {m.name: m.fingerprint for m in members}
    distinct = sorted({str(f) for f in fingerprints.values()})
    if len(distinct) > 1 and not allow_mixed_data:
        by = {f: [n for n, g in fingerprints.items() if str(g) == f] for f in distinct}
        raise ValueError("sweep members were trained on different data (provenance.json data fingerprints): "
                         + "; ".join(f"{f}: {', '.join(names)}" for f, names in by.items())
                         + " -- their metrics are not comparable; pass --allow_mixed_data to pool them anyway")
    first = members[0]
    if select is None:
        best_metric = first.config.get("best_metric")
        select = best_metric if best_metric in first.metrics else None
        select_mode = select_mode or first.config.get("best_mode", "max")
    if metrics is None:
        metrics = [k for k in first.metrics if k.rsplit("/", 1)[-1] in DEFAULT_SUFFIXES] or sorted(first.metrics)
    metrics = list(metrics)
    if select and select not in metrics:
        metrics.append(select)
    for m in members:
        absent = [k for k in metrics if k not in m.metrics]
        if absent:
            raise ValueError(f"member {m.name} has no metric(s) {absent}; it has {sorted(m.metrics)}")
    groups: dict[str, list[MemberResult]] = {}
    for m in members:
        if group_by:
            try:
                key = f"{group_by}={json.dumps(_field(m.config, group_by))}"
            except KeyError:
                raise ValueError(f"--group-by {group_by}: member {m.name}'s config.json has no such field") from None
        else:
            key = m.variant
        groups.setdefault(key, []).append(m)
    stats = []
    for key, ms in groups.items():
        values = {k: [_float(m.metrics[k]) for m in ms] for k in metrics}
        stats.append(GroupStats(
            group=key, members=[m.name for m in ms], values=values,
            mean={k: _mean(v) for k, v in values.items()},
            sd={k: float(np.std(v, ddof=1)) if len(v) > 1 else math.nan for k, v in values.items()},
            ci={k: bootstrap_ci(v, f"{key}|{k}") for k, v in values.items()},
        ))
    best = None
    if select:
        mode = select_mode or "max"
        if mode not in ("max", "min"):
            raise ValueError(f"select mode must be max or min, got {mode!r}")
        scored = [g for g in stats if not math.isnan(g.mean[select])]
        if scored:
            best = (max if mode == "max" else min)(scored, key=lambda g: g.mean[select]).group
    return Table(metrics=metrics, groups=stats, select=select, best=best, missing=list(missing),
                 fingerprints=fingerprints, group_by=group_by)


def _float(value) -> float:
    return math.nan if value is None else float(value)


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _cell(g: GroupStats, metric: str, digits: int = 3) -> str:
    mean, sd, (lo, hi) = g.mean[metric], g.sd[metric], g.ci[metric]
    if math.isnan(mean):
        return "nan"
    text = f"{mean:.{digits}f}"
    if not math.isnan(sd):
        text += f" ± {sd:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
    return text


def markdown(table: Table) -> str:
    head = "group" if table.group_by else "variant"
    lines = [f"| {head} | n | " + " | ".join(table.metrics) + " |",
             "|---|---:|" + "---:|" * len(table.metrics)]
    for g in table.groups:
        name = f"**{g.group}** (best)" if g.group == table.best else g.group
        lines.append(f"| {name} | {len(g.members)} | " + " | ".join(_cell(g, k) for k in table.metrics) + " |")
    notes = ["", "mean ± sd [95 % bootstrap CI of the mean over seeds]"]
    if table.select:
        notes.append(f"best by {table.select}: {table.best}")
    if table.missing:
        notes.append(f"unfinished members (not in the table): {', '.join(table.missing)}")
    fps = sorted({str(f) for f in table.fingerprints.values()})
    notes.append(f"data fingerprint(s): {', '.join(fps)}")
    return "\n".join(lines + notes) + "\n"


def to_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["group", "n", "metric", "mean", "sd", "ci_low", "ci_high", "best", "members", "values"])
    for g in table.groups:
        for k in table.metrics:
            writer.writerow([g.group, len(g.members), k, repr(g.mean[k]), repr(g.sd[k]), repr(g.ci[k][0]),
                             repr(g.ci[k][1]), int(g.group == table.best), ";".join(g.members),
                             ";".join(repr(v) for v in g.values[k])])
    return out.getvalue()


def latex(table: Table) -> str:
    esc = lambda s: s.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")  # noqa: E731
    cols = "l r " + " ".join("c" for _ in table.metrics)
    lines = [r"\begin{tabular}{" + cols + "}", r"\toprule",
             ("group" if table.group_by else "variant") + " & $n$ & " + " & ".join(esc(k) for k in table.metrics)
             + r" \\", r"\midrule"]
    for g in table.groups:
        cells = []
        for k in table.metrics:
            mean, sd = g.mean[k], g.sd[k]
            cells.append("--" if math.isnan(mean) else
                         f"${mean:.3f}$" if math.isnan(sd) else f"${mean:.3f} \\pm {sd:.3f}$")
        name = esc(g.group)
        lines.append((r"\textbf{" + name + "}" if g.group == table.best else name)
                     + f" & {len(g.members)} & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def plot(table: Table, path: str) -> str:
    import matplotlib  # pylint: disable=g-import-not-at-top

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    n = len(table.metrics)
    fig, axes = plt.subplots(1, n, figsize=(max(3.2, 0.9 * len(table.groups) + 1.5) * n, 3.6), squeeze=False)
    for ax, k in zip(axes[0], table.metrics):
        x = np.arange(len(table.groups))
        means = np.array([g.mean[k] for g in table.groups])
        lo = np.array([g.ci[k][0] for g in table.groups])
        hi = np.array([g.ci[k][1] for g in table.groups])
        ax.errorbar(x, means, yerr=[means - lo, hi - means], fmt="o", capsize=4, color="C0", label="mean, 95% CI")
        for i, g in enumerate(table.groups):
            ax.scatter(np.full(len(g.values[k]), i + 0.12), g.values[k], s=10, color="C1", zorder=3,
                       label="seeds" if i == 0 else None)
        ax.set_xticks(x, [g.group + (" *" if g.group == table.best else "") for g in table.groups],
                      rotation=30, ha="right", fontsize=8)
        ax.set_title(k, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def write(table: Table, outdir: str) -> dict[str, str]:
    os.makedirs(outdir, exist_ok=True)
    paths = {}
    for kind, text in (("md", markdown(table)), ("csv", to_csv(table)), ("tex", latex(table))):
        paths[kind] = os.path.join(outdir, f"report.{kind}")
        with open(paths[kind], "w") as f:
            f.write(text)
    paths["png"] = plot(table, os.path.join(outdir, "report.png"))
    return paths
