"""Evaluator ``explain``: explanation metrics of a run's model on a split, in ``final_metrics.json``.

    config.evals.explain = dict(type="explain", split="test", num_images=64, methods=["gradcam"],
                                outputs=[], saliency="spectral", faithfulness=False,
                                faithfulness_steps=16, batch_size=8, sheets=8, seed=0, every_eval=False)

The first ``num_images`` records of the split (its stored order, so every run explains the same
images) are decoded with the evaluation transform, explained with ``explain.cam.Explainer`` (all
``outputs``, default every output of the model, in one call per batch) and scored against the
human reference ``saliency`` (``spectral`` / ``msinet:DIR`` on the pixels, or ``maps:DIR`` /
``fixations:DIR`` holding ``<id>.png`` maps of the stored images, as ``aesthetics-jax maps
compute`` writes them for a build). Only at the final evaluation unless ``every_eval``.

Metrics (means over the images): ``<method>/<output>/<metric>`` for the agreement metrics
(``explain.pipeline.AGREEMENT_COLUMNS``), ``baseline/center_bias/<metric>`` and
``baseline/uniform/<metric>``, ``<method>/flat_fraction``, and with ``faithfulness`` the
``<method>/<output>/<deletion_auc|insertion_auc|deletion_change|insertion_gap|road_morf|road_lerf>``
and their ``random_`` chance levels (``explain.pipeline``). Files (final): ``eval/<prefix>_agreement.csv`` (one row per image, method, output),
``eval/<prefix>_faithfulness.csv``, and contact sheets of the first ``sheets`` images in
``eval/<prefix>_sheets/<id>.png``.
"""

from __future__ import annotations

import csv
import os
from typing import Any, Mapping

import numpy as np

__all__ = ["inputs", "run"]

_DEFAULTS = dict(num_images=64, methods=("gradcam",), outputs=(), saliency="spectral", faithfulness=False,
                 faithfulness_steps=16, batch_size=8, sheets=8, seed=0, every_eval=False, layer=None)


def _option(ev, name):
    value = ev.get(name, _DEFAULTS[name])
    return list(value) if isinstance(value, (list, tuple)) else value


def inputs(ev, *, source, predict, data_config, heads, final: bool, model=None, variables=None) -> dict[str, Any]:
    """Explains the split's first images with the current parameters (module docstring)."""
    del predict, heads
    if not (final or _option(ev, "every_eval")):
        return {"explained": None}
    if model is None or variables is None:
        raise ValueError("the explain evaluator needs the model and its variables (the trainer passes them)")
    import jax  # pylint: disable=g-import-not-at-top

    from aesthetics_jax.data import preprocessing  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.explain import cam, pipeline  # pylint: disable=g-import-not-at-top

    from aesthetics_jax.export.bundle import default_transform  # pylint: disable=g-import-not-at-top

    transform = dict(data_config.get("eval_transform") or {}) or default_transform(
        data_config.image_size, data_config.get("resize_size"), data_config.get("resize_shorter", 0))
    explainer = cam.Explainer(model, variables, methods=_option(ev, "methods"), outputs=_option(ev, "outputs") or None,
                              layer=_option(ev, "layer"), seed=int(_option(ev, "seed")))
    reference = pipeline.Reference(_option(ev, "saliency"), transform)
    faith_fn = None
    if _option(ev, "faithfulness"):
        faith_fn = jax.jit(lambda x: cam.gather_outputs(model.apply(variables, x, train=False), explainer.outputs))
    count = min(int(_option(ev, "num_images")), len(source))
    batch_size = int(_option(ev, "batch_size"))
    ids, results = [], []
    for start in range(0, count, batch_size):
        records = [source[i] for i in range(start, min(count, start + batch_size))]
        pixels = np.stack([preprocessing.apply_transform(preprocessing.decode_jpeg(r["image"]), transform)
                           for r in records]).astype(np.float32)
        batch_ids = [int(r["id"]) for r in records]
        humans = [reference.read(str(i)) for i in batch_ids] if reference.from_files else None
        results += pipeline.explain_batch(explainer, pixels, humans=humans, reference=reference,
                                          faithfulness_fn=faith_fn, faithfulness_steps=int(_option(ev, "faithfulness_steps")),
                                          seed=int(_option(ev, "seed")) + start, pad_to=batch_size)
        ids += batch_ids
    return {"explained": {"ids": ids, "results": results, "sheets": int(_option(ev, "sheets"))}}


def _mean(values) -> float:
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
    return float(values.mean()) if len(values) else float("nan")


def run(*, predictions: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray], ids, outdir: str, prefix: str,
        heads: Mapping, plots: bool = True, write_files: bool = True, explained: dict | None = None) -> dict[str, float]:
    """Means of the explanation metrics; files when ``write_files`` (module docstring)."""
    del predictions, targets, ids, heads
    if not explained:
        return {}
    from aesthetics_jax.explain import pipeline, render  # pylint: disable=g-import-not-at-top

    results, image_ids = explained["results"], explained["ids"]
    metrics: dict[str, float] = {"num_images": float(len(results))}
    agreement_rows, faith_rows = [], []
    for image_id, r in zip(image_ids, results):
        for method, per_output in r.get("agreement", {}).items():
            agreement_rows += [{"id": image_id, "method": method, "output": name, **m} for name, m in per_output.items()]
        for baseline, m in (r.get("baselines") or {}).items():
            agreement_rows.append({"id": image_id, "method": baseline, "output": "", **m})
        for method, per_output in r.get("faithfulness", {}).items():
            faith_rows += [{"id": image_id, "method": method, "output": name, **m} for name, m in per_output.items()]
    for rows, columns in ((agreement_rows, pipeline.AGREEMENT_COLUMNS), (faith_rows, pipeline.FAITH_COLUMNS)):
        groups: dict[tuple[str, str], list[dict]] = {}
        for row in rows:
            groups.setdefault((row["method"], row["output"]), []).append(row)
        for (method, output), members in groups.items():
            key = f"baseline/{method}" if not output else f"{method}/{output}"
            for column in columns:
                if column in members[0]:
                    metrics[f"{key}/{column}"] = _mean(m[column] for m in members)
    if results:
        for method in results[0]["flat"]:
            metrics[f"{method}/flat_fraction"] = _mean(float(np.mean(list(r["flat"][method].values()))) for r in results)
    if write_files:
        os.makedirs(outdir, exist_ok=True)
        for rows, name in ((agreement_rows, "agreement"), (faith_rows, "faithfulness")):
            if rows:
                with open(os.path.join(outdir, f"{prefix}_{name}.csv"), "w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                    writer.writeheader()
                    writer.writerows(rows)
        if plots:
            for image_id, r in list(zip(image_ids, results))[: explained["sheets"]]:
                sheet = render.contact_sheet(r["pixels"], [(m, list(maps.items())) for m, maps in r["maps"].items()],
                                             saliency=r["saliency"])
                render.write_png(os.path.join(outdir, f"{prefix}_sheets", f"{image_id}.png"), sheet)
    return metrics
