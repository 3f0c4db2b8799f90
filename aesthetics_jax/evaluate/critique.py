"""Critique evaluator: what a trained ClipCap expert writes about held-out images.

Used by caption runs (``config.task = "caption"``, ``configs/clipcap_attr.py``; ``config.evals.<name>
.type = "critique"``). The trainer's predictions give every image's CLIP feature
(``caption.feature``); ``inputs`` reads the split's captions of the expert's attribute group and
returns decoders bound to the trained parameters.

Metrics
    ``nll``, ``perplexity``   teacher-forced token cross-entropy (nats) of the split's captions of the
                              group (every caption, tokenised as in training), and exp(nll)
    ``mean_tokens``           mean length of the generated critiques; ``distinct``: share of distinct
                              critique texts (a collapsed expert writes one sentence for everything)
    with ``ev.labels`` (``""``: the ``labels.csv`` beside the build's captions, which the demo's
    critique writer produces; ``None``: no labels):
    ``keyword_acc``           share of images whose critique's first sentence names their class of
                              the group by its keyword (`demo_captions.critique_class`)
    ``majority_acc``, ``uniform_acc``   always answering the split's most frequent class / 1 / classes
    ``balanced_acc``          mean over the classes of the share of their images named correctly (any
                              constant answer scores 1 / classes present, however imbalanced)
    ``named_share``           share of critiques naming exactly one class
Decoding: ``ev.method`` 'beam' (default; ``ev.beam`` 5) or 'greedy', ``ev.max_tokens`` (67).

Files (``write_files``): ``<prefix>_critiques.csv`` (id, critique, label, named class).
"""

from __future__ import annotations

import collections
import csv
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["inputs", "run"]


def inputs(ev, *, source, predict, data_config, heads, final: bool, model=None, variables=None) -> dict:
    del predict, heads, final
    from aesthetics_jax.critique import decoding  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.data import datasets  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.models import gpt2_tokenizer  # pylint: disable=g-import-not-at-top

    if not hasattr(source, "captions"):
        raise ValueError(f"the critique evaluator needs a caption split (config.data.name 'captions'), got {type(source)}")
    if model is None or not hasattr(model, "clipcap_config"):
        raise ValueError("the critique evaluator needs a ClipCap captioner (config.task 'caption')")
    groups = list((data_config.get("captions") or {}).get("groups") or [])
    if len(groups) != 1:
        raise ValueError(f"the critique evaluator scores one attribute group's expert; data.captions.groups = {groups}")
    group = groups[0]
    encoder = datasets.GPT2CaptionTokens(datasets.gpt2_tokenizer_dir(data_config),
                                         int((data_config.get("captions") or {}).get("max_tokens", 40)))
    tokenizer = gpt2_tokenizer.GPT2Tokenizer.from_dir(encoder.tokenizer_dir)
    records = source.captions()
    from aesthetics_jax.models import clipcap  # pylint: disable=g-import-not-at-top

    captioner = clipcap.ClipCap(model.clipcap_config, model.dtype)  # the `captioner` submodule, unbound
    params = {"params": variables["params"]["captioner"]}
    stop = tokenizer.encode(".")[0]
    method, beam, max_tokens = ev.get("method", "beam"), int(ev.get("beam", 5)), int(ev.get("max_tokens", 67))
    if method not in ("beam", "greedy"):
        raise ValueError(f"critique evaluator: method must be 'beam' or 'greedy', got {method!r}")

    @jax.jit
    def generate(features):
        prefix = captioner.apply(params, features, method="prefix")
        if method == "beam":
            tokens, lengths, _ = decoding.beam_search(captioner, params, prefix, stop_token=stop, beam=beam,
                                                      max_tokens=max_tokens)
            return tokens[:, 0], lengths[:, 0]
        return decoding.sample(captioner, params, prefix, stop_token=stop, max_tokens=max_tokens)

    @jax.jit
    def token_nll(features, tokens):
        logits = captioner.apply(params, features, tokens)
        logp = jax.nn.log_softmax(logits, axis=-1)
        nll = -jnp.take_along_axis(logp, jnp.maximum(tokens, 0)[..., None], axis=-1)[..., 0]
        valid = tokens >= 0
        return jnp.sum(jnp.where(valid, nll, 0.0)), jnp.sum(valid)

    def critiques(features, chunk: int = 64) -> list[str]:
        out = []
        for i in range(0, len(features), chunk):
            part = np.asarray(features[i:i + chunk], np.float32)
            n = len(part)
            if n < chunk and len(features) > chunk:  # one compiled shape
                part = np.concatenate([part, np.zeros((chunk - n, part.shape[1]), np.float32)])
            tokens, lengths = jax.device_get(generate(part))
            out.extend(tokenizer.decode([int(t) for t in tokens[j, :lengths[j]]]).rstrip() for j in range(n))
        return out

    def caption_nll(features) -> tuple[float, int]:
        total, count = 0.0, 0
        rows = [(i, c) for i, r in enumerate(records) for c, g in zip(r["captions"], r["caption_groups"]) if g == group]
        for start in range(0, len(rows), 64):
            part = rows[start:start + 64]
            tokens = np.stack([encoder.encode(c) for _, c in part])
            s, n = jax.device_get(token_nll(np.asarray(features)[[i for i, _ in part]], tokens))
            total, count = total + float(s), count + int(n)
        return total, count

    out = {"group": group, "critiques": critiques, "caption_nll": caption_nll, "caption_ids": [r["id"] for r in records]}
    labels_path = ev.get("labels", "")
    if labels_path is not None:
        from aesthetics_jax.evaluate import retrieval  # pylint: disable=g-import-not-at-top
        from aesthetics_jax.data.builders import demo_captions  # pylint: disable=g-import-not-at-top

        classes = {group: demo_captions.CLASS_KEYWORDS[group]}
        out["labels"] = retrieval._read_labels(labels_path, source, classes)[group]
    return out


def run(*, predictions, targets, ids, outdir, prefix, heads, write_files=True, plots=True, group, critiques,
        caption_nll, caption_ids, labels=None, **unused) -> dict[str, float]:
    del targets, heads, plots, unused
    from aesthetics_jax.data.builders import demo_captions  # pylint: disable=g-import-not-at-top

    ids = [int(i) for i in np.asarray(ids)]
    if ids != [int(i) for i in caption_ids]:
        raise ValueError("critique: the predicted images and the split's caption records are not in the same order")
    features = np.asarray(predictions["caption.feature"], np.float32)
    texts = critiques(features)
    total, count = caption_nll(features)
    metrics = {"nll": total / max(count, 1), "mean_tokens": float(np.mean([len(t.split()) for t in texts])) if texts else 0.0,
               "distinct": len(set(texts)) / max(len(texts), 1)}
    metrics["perplexity"] = math.exp(min(metrics["nll"], 50.0))
    named = [None] * len(texts)
    if labels is not None:
        truth = [labels.get(i) for i in ids]
        named = [demo_captions.critique_class(group, t) for t in texts]
        scored = [(n, t) for n, t in zip(named, truth) if t is not None]
        counts = collections.Counter(t for _, t in scored)
        metrics["keyword_acc"] = float(np.mean([n == t for n, t in scored])) if scored else float("nan")
        metrics["majority_acc"] = max(counts.values()) / len(scored) if scored else float("nan")
        metrics["uniform_acc"] = 1.0 / len(demo_captions.CLASS_KEYWORDS[group])
        # Mean recall over the classes present: 1 / classes for any constant answer, whatever the imbalance.
        metrics["balanced_acc"] = (float(np.mean([np.mean([n == c for n, t in scored if t == c]) for c in counts]))
                                   if scored else float("nan"))
        metrics["named_share"] = float(np.mean([n is not None for n in named]))
    if write_files:
        os.makedirs(outdir, exist_ok=True)
        with open(os.path.join(outdir, f"{prefix}_critiques.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "critique", "label", "named_class"])
            for i, text, name in zip(ids, texts, named):
                writer.writerow([i, text, (labels or {}).get(i, ""), name or ""])
        with open(os.path.join(outdir, f"{prefix}_metrics.json"), "w") as f:
            json.dump({"group": group, **metrics}, f, indent=2)
    return metrics

