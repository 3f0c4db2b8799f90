"""Optimiser, learning-rate schedules and regex freezing (big_vision style).

``config.schedule`` is a list of ``(regex, schedule)`` pairs matched against parameter paths
(``/``-joined keys, e.g. ``backbone/conv_pw_13/kernel`` or ``emd/dense/bias``). The first pattern
that matches (``re.search``) decides the parameter's group; ``schedule=None`` freezes the group
(its updates are exactly zero and it keeps no optimiser state). Every parameter must match some
pattern — an unmatched parameter is an error, never a silent default. A single dict instead of a
list means "one schedule for all parameters".

Example, "stage 1: head only":   ``[("^emd/", dict(decay_type="cosine")), (".*", None)]``
         "stage 2: top 2 blocks": ``[("^backbone/conv_(dw|pw)_1[23]", sched), ("^emd/", sched),
                                    (".*", None)]``

A schedule dict: ``warmup_steps`` (linear from 0), ``decay_type`` in {"cosine", "linear",
"constant"}, ``lr_mult`` (multiplies ``config.lr``), ``min_lr_mult`` (cosine/linear floor).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import jax
import optax
from flax import traverse_util

FROZEN = "frozen"


def param_paths(params: Any) -> list[str]:
    return ["/".join(k) for k in traverse_util.flatten_dict(params)]


def make_schedule(
    sched: dict[str, Any] | None, *, base_lr: float, total_steps: int
) -> Callable[[jax.Array], jax.Array]:
    sched = dict(sched or {})
    lr = base_lr * sched.pop("lr_mult", 1.0)
    warmup = int(sched.pop("warmup_steps", 0))
    decay_type = sched.pop("decay_type", "cosine")
    floor = lr * sched.pop("min_lr_mult", 0.0)
    if sched:
        raise ValueError(f"unknown schedule fields {sorted(sched)}")
    decay_steps = max(total_steps - warmup, 1)
    if decay_type == "cosine":
        decay = optax.cosine_decay_schedule(lr, decay_steps, alpha=floor / lr if lr else 0.0)
    elif decay_type == "linear":
        decay = optax.linear_schedule(lr, floor, decay_steps)
    elif decay_type == "constant":
        decay = optax.constant_schedule(lr)
    else:
        raise ValueError(f"decay_type must be cosine, linear or constant, got {decay_type!r}")
    if warmup:
        return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])
    return decay


def group_labels(params: Any, patterns: Sequence[str]) -> Any:
    """Pytree like ``params`` whose leaves are the index (as str) of the first matching pattern."""
    flat = traverse_util.flatten_dict(params)
    compiled = [re.compile(p) for p in patterns]
    labels, unmatched = {}, []
    for key in flat:
        path = "/".join(key)
        idx = next((i for i, c in enumerate(compiled) if c.search(path)), None)
        if idx is None:
            unmatched.append(path)
        labels[key] = str(idx)
    if unmatched:
        raise ValueError(
            f"{len(unmatched)} parameters match no pattern of config.schedule "
            f"{list(patterns)}: {unmatched[:10]}{' ...' if len(unmatched) > 10 else ''}"
        )
    return traverse_util.unflatten_dict(labels)


def _base_transform(name: str, kwargs: dict[str, Any]) -> optax.GradientTransformation:
    """The optimiser's update rule without its learning rate (the schedule scales it)."""
    kwargs = dict(kwargs)
    if name == "adam":
        return optax.scale_by_adam(**kwargs)
    if name == "adamw":
        wd = kwargs.pop("weight_decay", 1e-4)
        return optax.chain(optax.scale_by_adam(**kwargs), optax.add_decayed_weights(wd))
    if name == "sgd":
        momentum = kwargs.pop("momentum", 0.9)
        nesterov = kwargs.pop("nesterov", False)
        if kwargs:
            raise ValueError(f"unknown sgd fields {sorted(kwargs)}")
        return optax.trace(decay=momentum, nesterov=nesterov)
    raise ValueError(f"optimizer must be adam, adamw or sgd, got {name!r}")


def make_optimizer(config, params: Any, total_steps: int):
    """Returns ``(tx, schedules)`` for ``config.optimizer``/``config.lr``/``config.schedule``.

    ``schedules`` maps group name -> lr schedule (for logging); frozen groups are absent.
    """
    schedule = config.get("schedule", None)
    if schedule is None or isinstance(schedule, dict) or hasattr(schedule, "to_dict"):
        schedule = [(".*", dict(schedule) if schedule is not None else {})]
    patterns = [p for p, _ in schedule]
    labels = group_labels(params, patterns)

    opt_kwargs = dict(config.get("optimizer_kwargs", {}) or {})
    transforms, schedules = {}, {}
    for i, (_, sched) in enumerate(schedule):
        if sched is None:
            transforms[str(i)] = optax.set_to_zero()
            continue
        fn = make_schedule(dict(sched), base_lr=config.lr, total_steps=total_steps)
        schedules[str(i)] = fn
        transforms[str(i)] = optax.chain(
            _base_transform(config.optimizer, opt_kwargs),
            optax.scale_by_learning_rate(fn),
        )
    tx = optax.multi_transform(transforms, labels)
    clip = config.get("grad_clip_norm", None)
    if clip:
        # Zero frozen gradients first so the norm counts trainable ones only (and XLA can drop
        # the frozen weight-gradient computations entirely).
        zero_frozen = optax.multi_transform(
            {k: optax.set_to_zero() if k not in schedules else optax.identity() for k in transforms},
            labels,
        )
        tx = optax.chain(zero_frozen, optax.clip_by_global_norm(clip), tx)
    return tx, schedules


def frozen_paths(params: Any, schedule) -> list[str]:
    """Parameter paths that the schedule freezes (for logging and tests)."""
    if schedule is None or isinstance(schedule, dict) or hasattr(schedule, "to_dict"):
        return []
    labels = traverse_util.flatten_dict(group_labels(params, [p for p, _ in schedule]))
    return ["/".join(k) for k, v in labels.items() if schedule[int(v)][1] is None]
