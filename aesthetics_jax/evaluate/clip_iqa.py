"""``clip_iqa`` evaluator: zero-shot CLIP-IQA over a dataset split, through the aesthetic metric suite.

Two ways in::

    aesthetics-jax evaluate clip-iqa --clip DIR --manual_dir /data/AVA --split test --out OUT   (commands.py)

    config.evals.clip_iqa = dict(type="clip_iqa", split="test", clip="/models/clip_b16",
                                 prompts="default",     # a clip_iqa.PROMPT_SETS name or a prompt file
                                 pos_embed="none",      # or "interpolate"
                                 image_size=None,       # interpolate: N, or None/0 = native size
                                 kernel="bicubic", batch_size=32, num_threads=4, plots=True)

The trained model's predictions are ignored: ``inputs(ev, source=...)`` scores every image of the
split with CLIP-IQA (`zeroshot.scoring.ClipIQAScorer`: the record's stored image bytes decoded as
the training pipeline decodes them, `preprocessing.decode_jpeg`, then CLIP's own preprocessing),
once per split and options in a process (the scores do not change while a model trains), and
``run`` evaluates those scores with `evaluate.aesthetic.run` -- the same metrics, predictions CSV
and plots as a bundle's evaluation, nothing recomputed here.

What is compared, per build:

  ava, demo   the score vs the image's mean vote (``mean_score``), as an ``emd`` head with a mean
              only: ``<head>/srcc, plcc, krcc, accuracy, mae, rmse``.
  eva         the score vs EVA's total score (``scores[:, 0]``, ``eva.SCORE_NAMES[0]``), as a
              one-output ``scores`` head named ``total``: ``<head>/total/{srcc, plcc, mae, rmse, r2}``
              (and the suite's ``avg``, equal to it).

Heads: ``clip_iqa`` (the mean over prompt pairs) and, with more than one pair,
``clip_iqa_pair<k>`` (k = 1..P in prompt order) per pair.

Score scale: CLIP-IQA's probability s in [0, 1] is reported on the target's rating range (lo, hi) by
the fixed affine map lo + (hi - lo) * s -- AVA/demo (1, 10) (the vote bins), EVA's total (0, 1) with
``data.unit`` (the default) or (0, 10) raw. Nothing is fitted: SRCC, PLCC and KRCC are those of s
itself; accuracy (AVA: mapped score >= 5, i.e. s >= 4/9), MAE, RMSE and R2 are those of this
uncalibrated map, to be read as such. Files (only with ``write_files``): the aesthetic evaluator's
``<prefix>_metrics.json``, ``<prefix>_predictions.csv`` (predicted columns on the mapped scale),
``<prefix>_scatter.png`` / ``_hist.png``, and ``<prefix>_clip_iqa.json`` (scorer options, the
prompt pair of each head, the scale, the number of images).

Modality builds (map inputs) are refused: CLIP-IQA scores photographs.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
from typing import Any, Callable

import numpy as np

__all__ = ["inputs", "run", "score_source", "evaluate_scores", "make_scorer", "HEAD"]

HEAD = "clip_iqa"
_CACHE: dict[tuple, tuple[Any, dict]] = {}  # (id(source), len, options) -> (source kept alive, scored)


def make_scorer(ev):
    """A `zeroshot.scoring.ClipIQAScorer` from an eval config's options (module docstring)."""
    from aesthetics_jax.zeroshot import scoring  # pylint: disable=g-import-not-at-top

    clip_dir = ev.get("clip")
    if not clip_dir:
        raise ValueError("the clip_iqa evaluator needs `clip`: a CLIP conversion directory (aesthetics-jax convert "
                         "--from openai-clip|open-clip|hf-clip FILE --arch clip --out DIR)")
    prompts = ev.get("prompts", "default") or "default"
    if not isinstance(prompts, str):
        prompts = [tuple(pair) for pair in prompts]
    image_size = ev.get("image_size")
    return scoring.ClipIQAScorer.from_dir(clip_dir, prompts, pos_embed=ev.get("pos_embed", "none") or "none",
                                          image_size=None if image_size is None else int(image_size),
                                          kernel=ev.get("kernel", "bicubic") or "bicubic",
                                          batch_size=int(ev.get("batch_size", 32) or 32))


def _target_kind(source) -> tuple[str, tuple[float, float]]:
    """("ava" | "eva", score range) of a `datasets.source`; refuses map inputs."""
    from aesthetics_jax.data import datasets  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.data.builders import eva  # pylint: disable=g-import-not-at-top

    inner = source.source if isinstance(source, datasets.ScoresSource) else source
    if isinstance(inner, datasets.ModalitySource):
        raise ValueError("CLIP-IQA scores photographs; this split is a modality build (map inputs). Evaluate it on "
                         "the plain build (config.data.modality.input = 'rgb')")
    if isinstance(source, datasets.ScoresSource):
        total = eva.SCORE_NAMES[0]
        return "eva", ((0.0, 1.0) if source.unit else tuple(float(x) for x in eva.SCORE_RANGES[total]))
    return "ava", (1.0, 10.0)


def score_source(scorer, source, *, num_threads: int = 4,
                 progress: Callable[[int, int], None] | None = None) -> dict:
    """CLIP-IQA pair scores of every record of ``source`` (a `datasets.source`), in source order.

    Returns ``{"pairs": [N, P], "ids": [N], "targets": {label: [N, ...]}, "kind", "scale", "names",
    "options"}``; ``progress(done, total)`` is called after each batch.
    """
    from aesthetics_jax.data import datasets, preprocessing  # pylint: disable=g-import-not-at-top

    kind, scale = _target_kind(source)
    keys = datasets.label_keys(source)
    n = len(source)
    if n == 0:
        raise ValueError("the split is empty: nothing to score")

    def load(index):
        record = source[index]
        try:
            pixels = scorer.prepare(preprocessing.decode_jpeg(record["image"]))
        except ValueError as e:
            raise ValueError(f"record {index} (id {record.get('id', '?')}): {e}") from None
        return pixels, {k: np.asarray(record[k]) for k in keys}

    chunk = scorer.batch_size
    starts = list(range(0, n, chunk))
    pairs, labels = [], []
    with concurrent.futures.ThreadPoolExecutor(max(1, int(num_threads))) as pool:
        pending = pool.map(load, range(0, min(chunk, n)))
        for k, start in enumerate(starts):
            loaded = list(pending)
            if k + 1 < len(starts):  # decode the next batch while this one is scored
                pending = pool.map(load, range(starts[k + 1], min(starts[k + 1] + chunk, n)))
            pairs.append(scorer.pair_scores([pixels for pixels, _ in loaded]))
            labels.extend(lab for _, lab in loaded)
            if progress is not None:
                progress(start + len(loaded), n)
    targets = {k: np.stack([lab[k] for lab in labels]) for k in keys}
    return {"pairs": np.concatenate(pairs), "ids": targets.pop("id"), "targets": targets, "kind": kind,
            "scale": scale, "names": list(scorer.names), "options": dict(scorer.options)}


def _suite_inputs(scored: dict) -> tuple[dict, dict, dict, dict]:
    """(predictions, targets, heads, head -> pair label) for `aesthetic.run` (module docstring)."""
    pairs = np.asarray(scored["pairs"], np.float64)
    lo, hi = scored["scale"]
    columns = {HEAD: (pairs.mean(axis=1), "mean over pairs")}
    if pairs.shape[1] > 1:
        columns.update({f"{HEAD}_pair{k + 1}": (pairs[:, k], name) for k, name in enumerate(scored["names"])})
    labels = {head: label for head, (_, label) in columns.items()}
    if scored["kind"] == "eva":
        heads = {head: {"type": "scores", "names": ["total"]} for head in columns}
        predictions = {f"{head}.scores": (lo + (hi - lo) * s)[:, None] for head, (s, _) in columns.items()}
        targets = {"scores": np.asarray(scored["targets"]["scores"], np.float64)[:, :1]}
    else:
        heads = {head: {"type": "emd"} for head in columns}
        predictions = {f"{head}.mean": lo + (hi - lo) * s for head, (s, _) in columns.items()}
        targets = {k: scored["targets"][k] for k in ("distribution", "mean_score") if k in scored["targets"]}
    return predictions, targets, heads, labels


def evaluate_scores(scored: dict, *, outdir: str, prefix: str, write_files: bool = True,
                    plots: bool = True) -> dict[str, float]:
    """The aesthetic metric suite of ``score_source``'s result; writes the files (module docstring)."""
    from aesthetics_jax.evaluate import aesthetic  # pylint: disable=g-import-not-at-top

    predictions, targets, heads, labels = _suite_inputs(scored)
    metrics = aesthetic.run(predictions=predictions, targets=targets, ids=scored["ids"], outdir=outdir, prefix=prefix,
                            heads=heads, plots=plots, write_files=write_files)
    if write_files:
        info = {"options": scored["options"], "heads": labels, "score_scale": list(scored["scale"]),
                "target": "scores[:, 0] (EVA total)" if scored["kind"] == "eva" else "mean_score",
                "num_images": int(len(scored["ids"]))}
        with open(os.path.join(outdir, f"{prefix}_clip_iqa.json"), "w") as f:
            json.dump(info, f, indent=2)
            f.write("\n")
    return metrics


def inputs(ev, *, source, **unused) -> dict:
    """The evaluator protocol's extra inputs (`evaluate/__init__.py`): CLIP-IQA's scores of ``source``,
    computed once per source and options in this process."""
    del unused
    options = {k: ev.get(k) for k in ("clip", "prompts", "pos_embed", "image_size", "kernel")}
    key = (id(source), len(source), json.dumps(options, sort_keys=True, default=str))
    if key not in _CACHE:
        scored = score_source(make_scorer(ev), source, num_threads=int(ev.get("num_threads", 4) or 4))
        _CACHE[key] = (source, scored)
    return {"clip_iqa": _CACHE[key][1]}


def run(*, predictions, targets, ids, outdir: str, prefix: str, heads, plots: bool = True, write_files: bool = True,
        clip_iqa: dict | None = None) -> dict[str, float]:
    """Metrics of CLIP-IQA on the split ``inputs`` scored; the trained model's predictions are ignored."""
    del predictions, targets, ids, heads
    if clip_iqa is None:
        raise ValueError("the clip_iqa evaluator scores its own pass over the split: pass run(..., "
                         "**inputs(ev, source=...)) (the trainer and `aesthetics-jax evaluate` do)")
    return evaluate_scores(clip_iqa, outdir=outdir, prefix=prefix, write_files=write_files, plots=plots)
