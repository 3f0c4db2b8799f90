"""``aesthetics-jax explain``: per-output explanation maps of images, scored against human saliency.

    aesthetics-jax explain IMAGES... --model BUNDLE|WORKDIR --out DIR
        [--method gradcam[,hirescam,...]] [--outputs total,composition,...] [--layer PATH]
        [--saliency spectral|spectral:hou2007|msinet:DIR|maps:DIR|fixations:DIR]
        [--faithfulness] [--colormap jet|viridis] [--alpha 0.4] [--batch-size 8]

Images are prepared exactly as ``predict`` prepares them (the model's inference transform; the same
checks and skip reasons), explained at the model's input size, and written to ``--out``:

    <stem>/overlay_<method>_<output>.png   the map over what the model saw (alpha, colormap)
    <stem>/sheet.png                        contact sheet: a row per method -- image | human
                                            saliency | one overlay per output
    <stem>/maps.npz                         image (uint8), saliency, <method>/<output> (float32
                                            [S, S]), raw/<method>/<output> (the layer-resolution map)
    explanations.jsonl                      per image: predictions, flat-map flags, or the error
    agreement.csv                           image, reference, method, output, AUC-Judd, AUC-Borji,
                                            sAUC, NSS, CC, SIM, KLD -- the model's maps and, per
                                            image, the centre-bias and uniform baselines
    faithfulness.csv                        (--faithfulness) image, method, output, deletion and
                                            insertion AUC (normalised, RISE), deletion_change /
                                            insertion_gap (score units), ROAD MoRF / LeRF, and the
                                            random-map chance levels (explain/pipeline.py)
    summary.md                              mean +- sd per method and output (and baselines),
                                            printed at the end

Human saliency (``--saliency``): ``spectral`` (training-free, ``spectral:hou2007`` for the other
variant) or ``msinet:DIR`` (converted MSI-Net weights) computed on the model's input pixels;
``maps:DIR`` a folder of density maps ``<stem>.png`` (8 or 16 bit, e.g. ``aesthetics-jax maps
compute``) and ``fixations:DIR`` a folder of binary fixation maps ``<stem>.png`` (eye-tracking
data), each of the *original* image, put through the same inference transform as the image. sAUC
draws its negatives from the other images' fixations in the run (NaN with one image).

A bad image (or a missing reference map) gives an ``error`` line in explanations.jsonl and the
run goes on; the exit status is 1 if any item failed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from typing import Iterator, Sequence

import numpy as np

__all__ = ["explain", "iter_explain", "main"]


def _load_model(model, step):
    from aesthetics_jax.export import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.predict import resolve_model  # pylint: disable=g-import-not-at-top

    loaded = bundle_lib.load_model(resolve_model(model), step=step)
    return loaded, loaded.create_model(), loaded.variables


def iter_explain(images, model, *, method: str | Sequence[str] = "gradcam", outputs: Sequence[str] | None = None,
                 layer: str | None = None, saliency: str | None = None, faithfulness: bool = False,
                 faithfulness_steps: int = 16, batch_size: int = 8, recursive: bool = False, step="latest",
                 max_pixels: int | None = None, lenient: bool = False, seed: int = 0) -> Iterator[dict]:
    """Yields one dict per image (see ``explain``), a batch at a time."""
    import jax  # pylint: disable=g-import-not-at-top

    from aesthetics_jax import predict as predict_lib  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.data.image_io import DEFAULT_MAX_PIXELS  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.explain import cam, pipeline  # pylint: disable=g-import-not-at-top

    methods = [m.strip() for m in method.split(",") if m.strip()] if isinstance(method, str) else list(method)
    loaded, net, variables = _load_model(model, step)
    explainer = cam.Explainer(net, variables, methods=methods, outputs=outputs, layer=layer, seed=seed)
    reference = pipeline.Reference(saliency, loaded.transform)
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    predict_fn = None
    if faithfulness:
        predict_fn = jax.jit(lambda x: cam.gather_outputs(net.apply(variables, x, train=False), explainer.outputs))

    items = predict_lib._expand(images, recursive)  # pylint: disable=protected-access
    for start in range(0, len(items), batch_size):
        part = items[start:start + batch_size]
        prepared, errors = [], {}
        for k, (image_id, source) in enumerate(part):
            try:
                pixels = predict_lib._prepare(source, loaded.transform, max_pixels=limit, lenient=lenient)  # pylint: disable=protected-access
                human = None
                if reference.from_files:
                    if not isinstance(source, str):
                        raise ValueError(f"missing_map: {reference.spec[0]}:DIR needs image files, not arrays")
                    human = reference.read(os.path.splitext(os.path.basename(source))[0])
                prepared.append((k, pixels, human))
            except (OSError, ValueError) as e:
                errors[k] = str(e) or type(e).__name__
        results = {}
        if prepared:
            found = pipeline.explain_batch(
                explainer, np.stack([p for _, p, _ in prepared]),
                humans=[h for _, _, h in prepared] if reference.from_files else None, reference=reference,
                faithfulness_fn=predict_fn, faithfulness_steps=faithfulness_steps, seed=seed + start,
                pad_to=min(batch_size, 1 << (len(prepared) - 1).bit_length()))
            results = {k: r for (k, _, _), r in zip(prepared, found)}
        for k, (image_id, _) in enumerate(part):
            yield {"image": image_id, "error": errors[k]} if k in errors else {"image": image_id, **results[k]}


def explain(images, model, **kwargs) -> list[dict]:
    """Explains ``images`` (paths, a directory, arrays -- as ``predict``) with ``model`` (bundle,
    registry name or training workdir).

    Keyword arguments: ``method`` ('gradcam' or 'gradcam,hirescam' or a list; ``cam.METHODS``),
    ``outputs`` (names, default all), ``layer``, ``saliency`` (module docstring), ``faithfulness``,
    ``faithfulness_steps``, ``batch_size``, ``recursive``, ``step`` (workdir checkpoint: 'latest',
    'best', number), ``max_pixels``, ``lenient``, ``seed``.

    Returns one dict per image: ``image``, ``pixels`` (uint8, what the model saw), ``predictions``
    {output: value}, ``maps`` {method: {output: [S, S] in [0, 1]}}, ``raw`` / ``flat`` (CAMs),
    ``saliency`` (the reference map or None), ``agreement`` {method: {output: {metric: value}}} and
    ``baselines`` {'center_bias' | 'uniform': {metric: value}} with a saliency reference,
    ``faithfulness`` with ``faithfulness=True``; or ``image`` and ``error``.
    """
    return list(iter_explain(images, model, **kwargs))


# ----------------------------------------------------------------------------- CLI

def _stem(image_id, used: set) -> str:
    base = os.path.splitext(os.path.basename(str(image_id)))[0] or "image"
    base = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in base)
    stem, n = base, 1
    while stem in used:
        n += 1
        stem = f"{base}_{n}"
    used.add(stem)
    return stem


def _write_item(item: dict, out: str, stem: str, args) -> None:
    from aesthetics_jax.explain import render  # pylint: disable=g-import-not-at-top

    folder = os.path.join(out, stem)
    os.makedirs(folder, exist_ok=True)
    arrays = {"image": item["pixels"]}
    if item["saliency"] is not None:
        arrays["saliency"] = item["saliency"].astype(np.float32)
    for method, maps in item["maps"].items():
        for name, heat in maps.items():
            arrays[f"{method}/{name}"] = heat.astype(np.float32)
            render.write_png(os.path.join(folder, f"overlay_{method}_{name}.png"),
                             render.overlay(item["pixels"], heat, alpha=args.alpha, colormap=args.colormap))
    for method, maps in item["raw"].items():
        for name, heat in maps.items():
            arrays[f"raw/{method}/{name}"] = heat.astype(np.float32)
    np.savez_compressed(os.path.join(folder, "maps.npz"), **arrays)
    rows = [(method, list(maps.items())) for method, maps in item["maps"].items()]
    render.write_png(os.path.join(folder, "sheet.png"),
                     render.contact_sheet(item["pixels"], rows, saliency=item["saliency"], alpha=args.alpha,
                                          colormap=args.colormap))


def _summary(rows: list[dict], key_columns: Sequence[str], value_columns: Sequence[str], title: str) -> str:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[c] for c in key_columns), []).append(row)
    lines = [f"### {title}", "", "| " + " | ".join([*key_columns, "n", *value_columns]) + " |",
             "|" + "---|" * len(key_columns) + "---:|" + "---:|" * len(value_columns)]
    for key, members in groups.items():
        cells = []
        for column in value_columns:
            values = np.array([m[column] for m in members], np.float64)
            values = values[np.isfinite(values)]
            cells.append(f"{values.mean():.3f} ± {values.std():.3f}" if len(values) else "–")
        lines.append("| " + " | ".join([*map(str, key), str(len(members)), *cells]) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aesthetics-jax explain", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="image files and/or directories")
    parser.add_argument("--model", required=True, help="bundle directory/.tar.gz, registry name or training workdir")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--method", default="gradcam", help="comma-separated: gradcam, gradcam++, xgradcam, hirescam, "
                        "layercam, eigencam, gradient, smoothgrad, integrated_gradients, integrated_gradients_blur")
    parser.add_argument("--outputs", default="", help="comma-separated output names (default: all)")
    parser.add_argument("--layer", default=None, help="Flax module path (default: the backbone feature map)")
    parser.add_argument("--saliency", default="spectral",
                        help="human reference: spectral[:hou2007] | msinet:DIR | maps:DIR | fixations:DIR | none")
    parser.add_argument("--faithfulness", action="store_true", help="also deletion / insertion / ROAD (slow)")
    parser.add_argument("--faithfulness-steps", type=int, default=16)
    parser.add_argument("--colormap", default="jet", help="matplotlib colormap name (jet, viridis, ...)")
    parser.add_argument("--alpha", type=float, default=0.4, help="overlay opacity of the heat map")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--step", default="latest", help="workdir checkpoint: latest, best or a number")
    parser.add_argument("--recursive", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--max-pixels", type=int, default=None)
    parser.add_argument("--lenient", action="store_true")
    args = parser.parse_args(argv)

    from aesthetics_jax import predict as predict_lib  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.explain import pipeline  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.export.bundle import BundleError  # pylint: disable=g-import-not-at-top

    try:
        pipeline.parse_saliency(args.saliency)
        import matplotlib  # pylint: disable=g-import-not-at-top

        if args.colormap not in matplotlib.colormaps:
            raise ValueError(f"unknown colormap {args.colormap!r}")
        if not 0.0 <= args.alpha <= 1.0:
            raise ValueError(f"--alpha must be in [0, 1], got {args.alpha}")
        items_in = predict_lib._expand(args.paths, args.recursive)  # pylint: disable=protected-access
        stream = iter_explain([p for _, p in items_in], args.model, method=args.method,
                              outputs=[o for o in args.outputs.split(",") if o] or None, layer=args.layer,
                              saliency=args.saliency, faithfulness=args.faithfulness,
                              faithfulness_steps=args.faithfulness_steps, batch_size=args.batch_size,
                              step=int(args.step) if args.step.isdigit() else args.step, max_pixels=args.max_pixels,
                              lenient=args.lenient)
        os.makedirs(args.out, exist_ok=True)
        progress = predict_lib._Progress(len(items_in), not args.quiet, label="explain")  # pylint: disable=protected-access
        used: set = set()
        agreement_rows, faith_rows = [], []
        done = failed = 0
        start = time.time()
        with open(os.path.join(args.out, "explanations.jsonl"), "w") as log:
            for item in stream:
                done += 1
                if "error" in item:
                    failed += 1
                    log.write(json.dumps({"image": item["image"], "error": item["error"]}) + "\n")
                    progress.update(done, failed)
                    continue
                stem = _stem(item["image"], used)
                _write_item(item, args.out, stem, args)
                extra = {"agreement_error": item["agreement_error"]} if "agreement_error" in item else {}
                log.write(json.dumps({"image": item["image"], "dir": stem, "predictions": item["predictions"],
                                      "flat": item["flat"], **extra}) + "\n")
                for method, per_output in item.get("agreement", {}).items():
                    for name, metrics in per_output.items():
                        agreement_rows.append({"image": item["image"], "reference": args.saliency, "method": method,
                                               "output": name, **metrics})
                for baseline, metrics in (item.get("baselines") or {}).items():
                    agreement_rows.append({"image": item["image"], "reference": args.saliency, "method": baseline,
                                           "output": "", **metrics})
                for method, per_output in item.get("faithfulness", {}).items():
                    for name, metrics in per_output.items():
                        faith_rows.append({"image": item["image"], "method": method, "output": name, **metrics})
                progress.update(done, failed)
        progress.update(done, failed, final=True)
    except (BundleError, FileNotFoundError, ValueError) as e:
        print(f"aesthetics-jax explain: {e}", file=sys.stderr)
        return 2
    summary = [f"# Explanations of {args.model}", "",
               f"{done - failed} images explained, {failed} failed, {time.time() - start:.1f} s; "
               f"reference: {args.saliency}", ""]
    for rows, name, columns, title in ((agreement_rows, "agreement.csv", pipeline.AGREEMENT_COLUMNS,
                                        "Agreement with human saliency (mean ± sd over images)"),
                                       (faith_rows, "faithfulness.csv", pipeline.FAITH_COLUMNS,
                                        "Faithfulness (mean ± sd over images; random_* = chance level)")):
        if not rows:
            continue
        with open(os.path.join(args.out, name), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        summary += [_summary(rows, ("method", "output"), columns, title), ""]
    text = "\n".join(summary)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    return 1 if failed else 0
