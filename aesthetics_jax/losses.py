"""Training losses (JAX): jittable, differentiable, with per-example weights / masks.

Conventions
    * Argument order is ``(target, prediction)`` -- ``(y_true, y_pred)`` / ``(p_true, p_pred)`` --
      like :mod:`aesthetics_jax.metrics` (note: ``optax.losses`` uses the opposite order).
    * Axis 0 is the batch. Each loss first reduces to one value per example (mean over all other
      axes), then, with ``reduce=True``, to a scalar: the plain mean, or with ``weights`` the
      weighted mean ``sum_b w_b l_b / sum_b w_b``. A 0/1 ``weights`` vector is a mask for padded
      evaluation batches: rows with weight 0 are excluded (even if their loss is NaN/inf), and an
      all-zero mask gives 0. ``reduce=False`` returns the unweighted per-example losses ``[B]``.
    * Computation is in at least float32 (bfloat16/float16 model outputs are upcast).

Losses
    * ``emd_loss``: NIMA earth mover's distance between score distributions (bins on the last axis)
      ``((1/N) sum_k |CDF_true(k) - CDF_pred(k)|^r)^(1/r)`` per example. For ``r != 1`` a tiny
      ``eps`` (default 1e-12) is added inside the root: ``(mean|d|^r + eps)^(1/r)``, which keeps the
      gradient finite where the two CDFs coincide (d/ds s^(1/r) is infinite at s = 0). The bias is
      at most ``eps^(1/r)`` (1e-6 for r = 2). ``r >= 1`` is required (``|d|^r`` has an infinite
      derivative at 0 for r < 1).
    * ``distribution_aware``: ``emd_r + mean_weight * (mu_pred - mu_true)^2 +
      sd_weight * (sd_pred - sd_true)^2`` per example (Lisaius & Wehrwein's "extra loss terms for
      distribution-aware prediction"; their weights are not published -- see
      :func:`distribution_aware` for our defaults and why). ``mu``/``sd`` are the mean and standard
      deviation of the score distribution over scores 1..N, as ``metrics.distribution_mean/sd``.
    * ``clip_infonce``: CLIP's symmetric contrastive loss on ``[B, B]`` image-caption logits (row i =
      image i, column j = caption j, matching pairs on the diagonal): the mean of the image->text
      and text->image cross-entropies with the diagonal as labels (Radford et al. 2021). Its
      ``target`` is optional: ``'tokens'`` makes images with identical captions positives of each
      other; without one, the term names only ``output`` (``'clip.logits'``,
      ``models.clip.ContrastiveCLIP``).
    * ``caption_xent``: token cross-entropy of a captioner (``'caption.logits'`` vs ``'tokens'``,
      padding ids < 0 left out), the mean over the batch's real tokens (ClipCap's training loss).
    * ``mse``: squared error; ``mae``: absolute error; ``huber``: ``0.5 x^2`` for ``|x| <= delta``,
      ``delta (|x| - delta/2)`` beyond (same as ``optax.losses.huber_loss``).

Multi-head objective
    :func:`total_loss` sums weighted terms described by a config::

        loss_config = {
            'emd':    {'type': 'emd', 'output': 'emd.distribution', 'target': 'distribution',
                       'weight': 1.0, 'r': 2},
            'scores': {'type': 'huber', 'output': 'scores.scores', 'target': 'scores',
                       'weight': 0.5, 'delta': 1.0},
        }

    Any EMD head can use the distribution-aware loss instead of (not on top of) plain ``emd``::

        'dist': {'type': 'distribution_aware', 'output': 'emd.distribution',
                 'target': 'distribution', 'r': 2, 'mean_weight': 0.1, 'sd_weight': 0.1},

    ``output`` is ``'<head>.<key>'`` into the model outputs ``{head: {key: array}}``; ``target`` is
    a key of the batch; ``weight`` defaults to 1.0; every other entry is passed to the loss as a
    keyword argument. Loss types are looked up in the explicit :data:`LOSSES` registry.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

__all__ = ["emd_loss", "distribution_aware", "clip_infonce", "caption_xent", "mse", "mae", "huber", "total_loss", "LOSSES",
           "TARGETLESS", "weighted_mean"]


def _float(x) -> jnp.ndarray:
    """As a JAX array of at least float32 precision."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _check_pair(y_true, y_pred, name: str) -> tuple[jnp.ndarray, jnp.ndarray]:
    y_true, y_pred = _float(y_true), _float(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{name}: target and prediction shapes differ: {y_true.shape} vs {y_pred.shape}")
    if y_true.ndim < 1:
        raise ValueError(f"{name}: expected a leading batch axis, got a scalar")
    dtype = jnp.promote_types(y_true.dtype, y_pred.dtype)
    return y_true.astype(dtype), y_pred.astype(dtype)


def _per_example_mean(x: jnp.ndarray) -> jnp.ndarray:
    """Mean over every axis but the batch axis 0 (identity for ``[B]``)."""
    return x if x.ndim == 1 else jnp.mean(x.reshape(x.shape[0], -1), axis=1)


def weighted_mean(per_example: jnp.ndarray, weights=None) -> jnp.ndarray:
    """Scalar mean of ``per_example [B]``; with ``weights [B]`` the weighted (masked) mean.

    Rows with weight 0 are excluded even when their value is NaN/inf; all-zero weights give 0.
    """
    if weights is None:
        return jnp.mean(per_example)
    w = jnp.asarray(weights).astype(per_example.dtype)
    if w.shape != per_example.shape:
        raise ValueError(f"weights must have shape {per_example.shape} (one per example), got {w.shape}")
    keep = w != 0
    num = jnp.sum(w * jnp.where(keep, per_example, 0.0))
    den = jnp.sum(w)
    return jnp.where(den != 0, num / jnp.where(den != 0, den, 1.0), 0.0)


def _reduce(per_example: jnp.ndarray, weights, reduce: bool) -> jnp.ndarray:
    return weighted_mean(per_example, weights) if reduce else per_example


def emd_loss(p_true, p_pred, r: float = 2, reduce: bool = True, *, weights=None, eps: float = 1e-12):
    """NIMA EMD loss between distributions ``[B, N]`` (see module docstring for the formula/eps)."""
    p_true, p_pred = _check_pair(p_true, p_pred, "emd_loss")
    if p_true.ndim < 2:
        raise ValueError(f"emd_loss: expected [B, N] distributions, got shape {p_true.shape}")
    if not r >= 1:
        raise ValueError(f"emd_loss: r must be >= 1, got {r}")
    d = jnp.cumsum(p_true, axis=-1) - jnp.cumsum(p_pred, axis=-1)
    if r == 1:
        per = jnp.mean(jnp.abs(d), axis=-1)
    elif r == 2:
        per = jnp.sqrt(jnp.mean(jnp.square(d), axis=-1) + eps)
    else:
        per = (jnp.mean(jnp.abs(d) ** r, axis=-1) + eps) ** (1.0 / r)
    return _reduce(_per_example_mean(per), weights, reduce)


def _mean_sd(p: jnp.ndarray, eps: float) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Mean ``sum_i i p_i`` and sd ``sqrt(sum_i (i - mu)^2 p_i + eps)`` over the last axis.

    The centred form of the variance is a sum of non-negative terms for non-negative ``p`` (no
    cancellation as in ``E[x^2] - mu^2``); ``eps`` keeps d sd / d var finite at var = 0.
    """
    scores = jnp.arange(1, p.shape[-1] + 1, dtype=p.dtype)
    mu = jnp.sum(p * scores, axis=-1)
    var = jnp.sum(jnp.square(scores - mu[..., None]) * p, axis=-1)
    return mu, jnp.sqrt(var + eps)


def _check_weight(name: str, value) -> None:
    if isinstance(value, (int, float)) and not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"distribution_aware: {name} must be finite and >= 0, got {value}")


def distribution_aware(
    p_true,
    p_pred,
    r: float = 2,
    mean_weight: float = 0.1,
    sd_weight: float = 0.1,
    reduce: bool = True,
    *,
    weights=None,
    eps: float = 1e-12,
):
    """Distribution-aware loss: EMD plus squared errors of the distributions' mean and sd.

    Per example (distributions ``[B, N]``, bins on the last axis, bin ``i`` = score ``i``)::

        emd_r(p_true, p_pred) + mean_weight * (mu_pred - mu_true)^2 + sd_weight * (sd_pred - sd_true)^2

    with ``mu = sum_i i p_i`` and ``sd = sqrt(sum_i (i - mu)^2 p_i + eps)`` computed from the
    distributions as given (not renormalised), the same for target and prediction, and ``emd_r``
    exactly :func:`emd_loss` (same ``r >= 1``, same ``eps`` inside its root). With
    ``mean_weight = sd_weight = 0`` the loss equals ``emd_loss``. Extra non-batch axes
    ``[B, ..., N]`` are averaged per example as in the other losses.

    ``eps`` in the sd: d sqrt(v) / dv is infinite at v = 0, i.e. for a one-hot (zero-variance)
    distribution; with ``eps`` it is finite: d sd / d v <= ``1 / (2 sqrt(eps))`` (5e5 for the
    default 1e-12). Bias: each sd is overestimated by ``sqrt(v + eps) - sqrt(v) <= sqrt(eps)``
    (1e-6 for the default, attained only at v = 0), so ``sd_pred - sd_true`` is off by at most
    ``sqrt(eps)`` and is exactly 0 for identical distributions.

    Default weights (Lisaius & Wehrwein do not publish theirs; ``mean_weight = sd_weight = 0.1``):
    chosen so that neither auxiliary term outweighs the EMD at any stage of training, with
    magnitudes on AVA (10 bins, r = 2) of roughly
      * converged model: EMD r2 ~0.05-0.1 (NIMA reports 0.050-0.081), MSE of the mean ~0.3
        (RMSE ~0.55), MSE of the sd ~0.03-0.1. With weight 0.1 the mean term is ~0.03 (about a
        third of the EMD) and the sd term ~0.003-0.01 (about a tenth): auxiliary, EMD-led.
      * initialisation (softmax of ~zero logits = uniform, sd = sqrt(8.25) = 2.87, against AVA
        vote sds of ~1.2-1.6): EMD r2 ~0.16-0.2 and a squared sd error of ~1.7-2.8, so the sd term
        is ~0.17-0.28 -- comparable to the EMD. A weight of 1 would make it ~10x the EMD and
        dominate early training; 0.1 lets it speed up fitting the spread without swamping the EMD.
    The mean weight matches our NIMA demo config (EMD + 0.1 * MSE(mean)). These are starting
    points, not tuned values: they are config options (``mean_weight`` / ``sd_weight`` of a
    ``'distribution_aware'`` term) meant to be swept.
    """
    p_true, p_pred = _check_pair(p_true, p_pred, "distribution_aware")
    if p_true.ndim < 2:
        raise ValueError(f"distribution_aware: expected [B, N] distributions, got shape {p_true.shape}")
    _check_weight("mean_weight", mean_weight)
    _check_weight("sd_weight", sd_weight)
    if not r >= 1:
        raise ValueError(f"distribution_aware: r must be >= 1, got {r}")
    per = emd_loss(p_true, p_pred, r=r, reduce=False, eps=eps)
    mu_t, sd_t = _mean_sd(p_true, eps)
    mu_p, sd_p = _mean_sd(p_pred, eps)
    moments = mean_weight * jnp.square(mu_p - mu_t) + sd_weight * jnp.square(sd_p - sd_t)
    per = per + _per_example_mean(moments)
    return _reduce(per, weights, reduce)


def clip_infonce(logits, reduce: bool = True, *, weights=None, caption_ids=None):
    """Symmetric InfoNCE: ``(CE(logits, diag) + CE(logits.T, diag)) / 2`` per pair, on ``[B, B]``.

    ``caption_ids`` (``[B, T]`` token ids of each image's caption, the term's optional ``target``):
    images whose captions are *identical* are positives of each other -- the cross-entropy target
    of row i is uniform over the columns j with the same caption (and likewise per column). On
    captions that are all distinct (real comments) this is exactly the plain loss; on templated
    captions (the demo's critiques, where "the subject is sharp" describes many images of a batch)
    it stops the loss from pushing apart images that truly share a description.

    ``weights`` (``[B]``, 0 = a padding pair) removes a pair both as an example and as a negative
    for the others (its row and column are masked out of the softmaxes). With ``reduce=False`` the
    ``[B]`` per-pair losses (mean of the two directions) are returned.
    """
    logits = _float(logits)
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"clip_infonce needs square [B, B] logits (one caption per image), got {logits.shape}")
    keep = jnp.ones(logits.shape[0], bool) if weights is None else _float(weights) > 0
    pair = keep[None, :] & keep[:, None]
    logits = jnp.where(pair, logits, -1e9)
    if caption_ids is None:
        positive = jnp.eye(logits.shape[0], dtype=bool)
    else:
        ids = jnp.asarray(caption_ids)
        positive = jnp.all(ids[:, None, :] == ids[None, :, :], axis=-1)
    positive = positive & pair | jnp.eye(logits.shape[0], dtype=bool)
    target = positive / jnp.sum(positive, axis=1, keepdims=True)  # symmetric: rows and columns alike
    image_to_text = -jnp.sum(target * jax.nn.log_softmax(logits, axis=1), axis=1)
    text_to_image = -jnp.sum(target.T * jax.nn.log_softmax(logits, axis=0).T, axis=1)
    return _reduce(0.5 * (image_to_text + text_to_image), weights, reduce)


def caption_xent(tokens, logits, reduce: bool = True, *, weights=None):
    """Token cross-entropy of a captioner (ClipCap): ``logits [B, T, V]`` predict ``tokens [B, T]``;
    ids < 0 are padding and left out. Reduced, the loss is the mean over every real token of the
    batch (rows with ``weights`` 0 excluded), as the released ClipCap training's
    ``cross_entropy(..., ignore_index)`` over the flattened batch; ``reduce=False`` gives each
    example's mean over its tokens ``[B]``."""
    tokens = jnp.asarray(tokens)
    logits = _float(logits)
    if logits.ndim != 3 or tokens.shape != logits.shape[:2]:
        raise ValueError(f"caption_xent: expected tokens [B, T] and logits [B, T, V], got {tokens.shape} and {logits.shape}")
    valid = tokens >= 0
    if weights is not None:
        valid = valid & (_float(weights) > 0)[:, None]
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, jnp.maximum(tokens, 0)[..., None], axis=-1)[..., 0]
    nll = jnp.where(valid, nll, 0.0)
    if not reduce:
        return jnp.sum(nll, axis=1) / jnp.maximum(jnp.sum(valid, axis=1), 1)
    return jnp.sum(nll) / jnp.maximum(jnp.sum(valid), 1)


def mse(y_true, y_pred, reduce: bool = True, *, weights=None):
    """Mean squared error; per example the mean over non-batch axes."""
    y_true, y_pred = _check_pair(y_true, y_pred, "mse")
    return _reduce(_per_example_mean(jnp.square(y_pred - y_true)), weights, reduce)


def mae(y_true, y_pred, reduce: bool = True, *, weights=None):
    """Mean absolute error; per example the mean over non-batch axes."""
    y_true, y_pred = _check_pair(y_true, y_pred, "mae")
    return _reduce(_per_example_mean(jnp.abs(y_pred - y_true)), weights, reduce)


def huber(y_true, y_pred, delta: float = 1.0, reduce: bool = True, *, weights=None):
    """Huber loss (quadratic within ``delta``, linear beyond); per example mean over non-batch axes."""
    y_true, y_pred = _check_pair(y_true, y_pred, "huber")
    abs_err = jnp.abs(y_pred - y_true)
    quadratic = jnp.minimum(abs_err, delta)
    linear = abs_err - quadratic
    elementwise = 0.5 * jnp.square(quadratic) + delta * linear
    return _reduce(_per_example_mean(elementwise), weights, reduce)


#: Loss types usable in a ``loss_config`` (``type`` field) -> function.
LOSSES: dict[str, Callable[..., jnp.ndarray]] = {
    "emd": emd_loss,
    "distribution_aware": distribution_aware,
    "mse": mse,
    "mae": mae,
    "huber": huber,
    "clip_infonce": clip_infonce,
    "caption_xent": caption_xent,
}
#: Loss types with no batch target: their terms name only ``output``.
TARGETLESS = ("clip_infonce",)

_RESERVED = ("type", "output", "target", "weight")
_NOT_CONFIGURABLE = ("reduce", "weights")


def _entries(mapping) -> dict[str, Any]:
    """A plain dict view of a dict / ml_collections ConfigDict / FrozenConfigDict."""
    return {k: mapping[k] for k in mapping.keys()}


def _lookup_output(outputs: Mapping, path: str, term: str) -> jnp.ndarray:
    head, sep, key = path.partition(".")
    if not sep or not head or not key:
        raise ValueError(f"loss term {term!r}: output must be '<head>.<key>', got {path!r}")
    if head not in outputs:
        raise KeyError(f"loss term {term!r}: model has no head {head!r} (heads: {sorted(outputs)})")
    if key not in outputs[head]:
        raise KeyError(f"loss term {term!r}: head {head!r} has no output {key!r} (keys: {sorted(outputs[head])})")
    return outputs[head][key]


def total_loss(outputs: Mapping, batch: Mapping, loss_config: Mapping, mask=None):
    """Weighted sum of the configured loss terms.

    Args:
      outputs: model outputs ``{head_name: {key: array}}``.
      batch: batch dict; each term's ``target`` names one of its keys.
      loss_config: ``{term_name: {'type', 'output', 'target', 'weight'=1.0, **loss_kwargs}}``.
      mask: optional per-example weights ``[B]`` (1 = real, 0 = padding) used by every term.

    Returns:
      ``(total, terms)``: the scalar total and ``{term_name: weight * loss}`` (already weighted, so
      they sum to ``total``). Pure and jittable (the config is static Python data).
    """
    terms: dict[str, jnp.ndarray] = {}
    config = _entries(loss_config)
    if not config:
        raise ValueError("loss_config is empty: configure at least one loss term")
    for name, raw_spec in config.items():
        spec = _entries(raw_spec)
        required = ("type", "output") if spec.get("type") in TARGETLESS else ("type", "output", "target")
        missing = [k for k in required if k not in spec]
        if missing:
            raise ValueError(f"loss term {name!r} lacks required field(s) {missing}")
        loss_type = spec["type"]
        if loss_type not in LOSSES:
            raise ValueError(f"loss term {name!r}: unknown loss type {loss_type!r}; known: {sorted(LOSSES)}")
        fn = LOSSES[loss_type]
        kwargs = {k: v for k, v in spec.items() if k not in _RESERVED}
        allowed = set(inspect.signature(fn).parameters) - {"y_true", "y_pred", "p_true", "p_pred", "logits", "caption_ids", "tokens"}
        allowed -= set(_NOT_CONFIGURABLE)
        unknown = sorted(set(kwargs) - allowed)
        if unknown:
            raise ValueError(
                f"loss term {name!r}: {loss_type!r} loss takes no option(s) {unknown}; allowed: {sorted(allowed)}"
            )
        prediction = _lookup_output(outputs, spec["output"], name)
        if loss_type in TARGETLESS:  # an optional target: the caption ids that mark shared positives
            if "target" in spec:
                if spec["target"] not in batch:
                    raise KeyError(f"loss term {name!r}: batch has no target {spec['target']!r} (keys: {sorted(batch)})")
                kwargs["caption_ids"] = batch[spec["target"]]
            terms[name] = spec.get("weight", 1.0) * fn(prediction, weights=mask, **kwargs)
            continue
        target_key = spec["target"]
        if target_key not in batch:
            raise KeyError(f"loss term {name!r}: batch has no target {target_key!r} (keys: {sorted(batch)})")
        value = fn(batch[target_key], prediction, weights=mask, **kwargs)
        terms[name] = spec.get("weight", 1.0) * value
    total = sum(terms.values())
    return total, terms
