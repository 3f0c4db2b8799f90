"""Retrieval evaluator: zero-shot image <-> caption retrieval on a held-out caption split.

Used by contrastive (VLAP) runs (``config.task = "contrastive"``, ``config.evals.<name>.type =
"retrieval"``). The trainer's predictions give every image's L2-normalised embedding
(``clip.image_embed``); ``inputs`` reads the split's captions (``datasets.CaptionSource``) and embeds
every *distinct* caption text once with the model's text tower (``ContrastiveCLIP.embed_text``).

Caption pool and positives
    The pool is the set of distinct caption texts of the split (exact string equality). An image's
    positives are the texts among its own captions; a text's positives are the images having it.
    On real caption data almost every text is unique, and this is the usual protocol (5 captions
    per image -> a pool of 5 N texts); on templated captions (the demo's critiques) many images
    share a text, and counting any image having it as a hit is what "retrieval" means there.

Metrics (ranks by cosine similarity; a positive's rank = 1 + the number of *negatives* scoring
strictly higher than the best-scoring positive, so ties favour no one)
    ``i2t/r1, r5, r10``   share of images whose best positive caption ranks <= k among the pool
    ``t2i/r1, r5, r10``   share of texts whose best positive image ranks <= k among the images
    ``i2t/median_rank``, ``t2i/median_rank``
    ``i2t/chance_r1 ...`` the same shares for a uniformly random ranking: with m positives among
                          M candidates, P(hit@k) = 1 - C(M - m, k) / C(M, k), averaged
    ``rsum``              r1 + r5 + r10 of both directions (the usual single number)
    ``<group>/i2t_r1``, ``<group>/chance_r1``, ``<group>/n``
                          per attribute group (color, composition, dof, general): image -> text
                          retrieval among that group's texts only, over the images that have a
                          caption of the group: zero-shot attribute retrieval.

Zero-shot attribute classification (optional: ``ev.classes = {group: {class: prompt}}``)
    Each image is assigned the class whose prompt's text embedding is most similar to its image
    embedding, and compared with its label from ``ev.labels``: a CSV with an ``id`` column and one
    column per group (``""``: ``labels.csv`` in the build's caption directory, which the demo's
    critique writer produces). ``<group>/zeroshot_acc`` (top-1 accuracy), ``<group>/majority_acc``
    (always answering the split's most frequent class) and ``<group>/uniform_acc`` (1 / classes);
    ``<group>/zeroshot_balanced_acc`` is the mean per-class recall over the classes present
    (sklearn's ``balanced_accuracy_score``): any guess that ignores the image -- always the
    majority class included -- scores 1 / classes on it, so chance is ``uniform_acc`` whatever the
    class balance (the demo's depth & focus labels are 78 % "sharp").

Files (``write_files``): ``<prefix>_metrics.json`` and ``<prefix>_retrieval.csv`` (per image: id,
rank of its best positive caption, the top-1 caption text, whether it is a positive).
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
from typing import Any

import jax
import numpy as np

__all__ = ["inputs", "run", "recall_at_k", "chance_recall"]

KS = (1, 5, 10)


def _distinct(records: list[dict]) -> tuple[list[str], list[str], list[list[int]]]:
    """Distinct texts (first-seen order), each text's group, and each record's text indices."""
    index: dict[str, int] = {}
    texts, groups, owned = [], [], []
    for record in records:
        mine = []
        for text, group in zip(record["captions"], record["caption_groups"]):
            if text not in index:
                index[text] = len(texts)
                texts.append(text)
                groups.append(group)
            mine.append(index[text])
        owned.append(sorted(set(mine)))
    return texts, groups, owned


def inputs(ev, *, source, predict, data_config, heads, final: bool, model=None, variables=None) -> dict[str, Any]:
    """The split's captions and their text embeddings (``run``'s keyword arguments)."""
    del predict, heads, final
    if not hasattr(source, "captions"):
        raise ValueError(f"the retrieval evaluator needs a caption split (config.data.name 'captions'), got {type(source)}")
    if model is None or not hasattr(model, "embed_text"):
        raise ValueError("the retrieval evaluator needs a contrastive CLIP model (config.task 'contrastive')")
    from aesthetics_jax.models import clip_tokenizer  # pylint: disable=g-import-not-at-top

    records = source.captions()
    texts, groups, owned = _distinct(records)
    context = int((data_config.get("captions") or {}).get("context_length", 77))
    tokens = clip_tokenizer.tokenize(texts, context_length=context, truncate=True)
    embed = jax.jit(functools.partial(model.apply, method="embed_text"))
    chunk = int(ev.get("text_batch_size", 256))
    text_embeds = np.concatenate([np.asarray(jax.device_get(embed(variables, tokens[i:i + chunk])))
                                  for i in range(0, len(texts), chunk)]) if texts else np.zeros((0, 1), np.float32)
    out = {"texts": texts, "text_groups": groups, "text_embeds": text_embeds, "owned": owned,
           "caption_ids": [r["id"] for r in records]}
    classes = ev.get("classes")
    if classes:
        classes = {g: dict(c) for g, c in (classes.to_dict() if hasattr(classes, "to_dict") else dict(classes)).items()}
        labels = _read_labels(ev.get("labels", ""), source, classes)
        out["classes"] = {}
        for group, prompts in classes.items():
            names = list(prompts)
            tokens = clip_tokenizer.tokenize([prompts[n] for n in names], context_length=context, truncate=True)
            out["classes"][group] = (names, np.asarray(jax.device_get(embed(variables, tokens))), labels[group])
    return out


def _read_labels(path: str, source, classes: dict) -> dict[str, dict[int, str]]:
    """``{group: {id: class}}`` from the labels CSV (``""``: ``labels.csv`` beside the captions)."""
    if not path:
        metadata = getattr(getattr(source, "source", None), "dataset_info", None)
        captions_path = ((metadata.metadata or {}) if metadata is not None else {}).get("captions_path")
        if not captions_path:
            raise ValueError("retrieval evaluator: ev.classes needs ev.labels (a CSV of id + one column per group)")
        path = os.path.join(captions_path if os.path.isdir(captions_path) else os.path.dirname(captions_path),
                            "labels.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    labels = {}
    for group, prompts in classes.items():
        if rows and group not in rows[0]:
            raise ValueError(f"{path}: no column {group!r} (columns {list(rows[0])})")
        unknown = sorted({r[group] for r in rows} - set(prompts))
        if unknown:
            raise ValueError(f"{path}: {group} labels {unknown} have no prompt in ev.classes.{group}")
        labels[group] = {int(r["id"]): r[group] for r in rows}
    return labels


def _positives_rank(scores: np.ndarray, positive: np.ndarray) -> int:
    """1 + #negatives scoring strictly above the best positive (``positive`` a bool mask)."""
    best = scores[positive].max()
    return 1 + int(np.sum(scores[~positive] > best))


def recall_at_k(ranks, k: int) -> float:
    return float(np.mean(np.asarray(ranks) <= k)) if len(ranks) else float("nan")


def chance_recall(num_candidates: int, num_positives: int, k: int) -> float:
    """P(at least one of m positives in the top k of M under a uniformly random ranking)."""
    m, M = num_positives, num_candidates
    if k >= M - m + 1:
        return 1.0
    return 1.0 - math.comb(M - m, k) / math.comb(M, k)


def run(*, predictions, targets, ids, outdir, prefix, heads, write_files=True, plots=True, texts, text_groups,
        text_embeds, owned, caption_ids, classes=None, **unused) -> dict[str, float]:
    del heads, plots, unused
    image = np.asarray(predictions["clip.image_embed"], np.float64)
    ids = np.asarray(ids)
    if len(ids) != len(caption_ids) or any(int(a) != int(b) for a, b in zip(ids, caption_ids)):
        raise ValueError("retrieval: the predicted images and the split's caption records are not in the same order")
    text = np.asarray(text_embeds, np.float64)
    sims = image @ text.T  # [N images, P texts]
    n, p = sims.shape
    positive = np.zeros((n, p), bool)
    for i, mine in enumerate(owned):
        positive[i, mine] = True
    i2t = [_positives_rank(sims[i], positive[i]) for i in range(n)]
    t2i = [_positives_rank(sims[:, j], positive[:, j]) for j in range(p)]
    out: dict[str, float] = {}
    for k in KS:
        out[f"i2t/r{k}"] = recall_at_k(i2t, k)
    for k in KS:
        out[f"t2i/r{k}"] = recall_at_k(t2i, k)
    out["rsum"] = 100.0 * sum(out[f"{d}/r{k}"] for d in ("i2t", "t2i") for k in KS)
    out["i2t/median_rank"] = float(np.median(i2t))
    out["t2i/median_rank"] = float(np.median(t2i))
    for k in KS:
        out[f"i2t/chance_r{k}"] = float(np.mean([chance_recall(p, len(m), k) for m in owned]))
        out[f"t2i/chance_r{k}"] = float(np.mean([chance_recall(n, int(c), k) for c in positive.sum(0)]))
    groups = np.asarray(text_groups)
    for group in sorted(set(text_groups)):
        cols = np.flatnonzero(groups == group)
        rows = [i for i in range(n) if positive[i, cols].any()]
        ranks = [_positives_rank(sims[i, cols], positive[i, cols]) for i in rows]
        out[f"{group}/i2t_r1"] = recall_at_k(ranks, 1)
        out[f"{group}/chance_r1"] = float(np.mean([chance_recall(len(cols), int(positive[i, cols].sum()), 1)
                                                  for i in rows]))
        out[f"{group}/n"] = float(len(rows))
    for group, (names, class_embeds, labels) in (classes or {}).items():
        missing = [int(i) for i in ids if int(i) not in labels]
        if missing:
            raise ValueError(f"retrieval: no {group} label for images {missing[:5]}")
        truth = np.array([names.index(labels[int(i)]) for i in ids])
        guess = np.argmax(image @ np.asarray(class_embeds, np.float64).T, axis=1)
        out[f"{group}/zeroshot_acc"] = float(np.mean(guess == truth))
        present = np.unique(truth)
        out[f"{group}/zeroshot_balanced_acc"] = float(np.mean([np.mean(guess[truth == c] == c) for c in present]))
        out[f"{group}/majority_acc"] = float(np.max(np.bincount(truth, minlength=len(names))) / len(truth))
        out[f"{group}/uniform_acc"] = 1.0 / len(names)
    if write_files:
        os.makedirs(outdir, exist_ok=True)
        with open(os.path.join(outdir, f"{prefix}_metrics.json"), "w") as f:
            json.dump({k: v if np.isfinite(v) else None for k, v in out.items()}, f, indent=2)
        with open(os.path.join(outdir, f"{prefix}_retrieval.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "rank", "top1_caption", "top1_is_positive"])
            for i in range(n):
                top = int(np.argmax(sims[i]))
                writer.writerow([int(ids[i]), i2t[i], texts[top], bool(positive[i, top])])
    return out
