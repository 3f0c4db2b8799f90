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

**Phases** (``config.phases``, optional): a run in consecutive stages, each with its own ``lr``
and ``schedule`` (defaults: ``config.lr`` / ``config.schedule``) over its ``steps`` or its
``fraction`` of the run's steps (the last phase: absent = the rest of the run). Each phase starts with a fresh optimiser state
and its schedule counts from the phase's first step, exactly as a new run initialised from the
previous phase's parameters would — idealo's NIMA "dense layer first, then everything" is one
resumable run (``configs/nima_demo.py:two_stage``)::

    config.phases = [dict(steps=500, lr=3e-3, schedule=[("^emd/", dict(decay_type="constant")), (".*", None)]),
                     dict(lr=3e-4, schedule=[(".*", dict(warmup_steps=50))])]

Every phase's optimiser state is kept (only the active phase's changes), so the optimiser memory
is the sum of the phases'; the frozen gradients XLA may skip (``frozen_for_run``) are those frozen
in every phase.
"""

from __future__ import annotations

import functools
import itertools
import re
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
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


def _schedule_list(schedule) -> list:
    if schedule is None or isinstance(schedule, dict) or hasattr(schedule, "to_dict"):
        return [(".*", dict(schedule) if schedule is not None else {})]
    return list(schedule)


def _single_optimizer(config, params: Any, schedule, lr: float, total_steps: int):
    """``(tx, schedules)`` of one phase: regex groups, each its schedule or frozen."""
    schedule = _schedule_list(schedule)
    labels = group_labels(params, [p for p, _ in schedule])
    opt_kwargs = dict(config.get("optimizer_kwargs", {}) or {})
    transforms, schedules = {}, {}
    for i, (_, sched) in enumerate(schedule):
        if sched is None:
            transforms[str(i)] = optax.set_to_zero()
            continue
        fn = make_schedule(dict(sched), base_lr=lr, total_steps=total_steps)
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


def phase_lengths(phases, total_steps: int) -> list[int]:
    """Steps of each of ``config.phases`` (``steps``, or ``fraction`` of ``total_steps``; the last
    phase's absent = the rest of the run)."""
    lengths = []
    for i, phase in enumerate(phases):
        unknown = sorted(set(phase) - {"steps", "fraction", "lr", "schedule"})
        if unknown:
            raise ValueError(f"config.phases[{i}]: unknown field(s) {unknown}; known: steps, fraction, lr, schedule")
        if phase.get("steps") and phase.get("fraction"):
            raise ValueError(f"config.phases[{i}]: give steps or fraction (of the run's steps), not both")
        steps = int(phase.get("steps") or round(float(phase.get("fraction") or 0) * total_steps))
        if steps <= 0:
            if i != len(phases) - 1:
                raise ValueError(f"config.phases[{i}]: steps must be > 0 (only the last phase may take the rest)")
            steps = total_steps - sum(lengths)
        lengths.append(steps)
    if sum(lengths) != total_steps or min(lengths) <= 0:
        raise ValueError(f"config.phases last {lengths} steps in all, the run {total_steps}: they must add up "
                         "(leave the last phase's steps out to take the rest)")
    return lengths


class PhasedState(NamedTuple):
    count: jax.Array  # optimiser steps taken (all phases)
    inner: tuple  # each phase's optimiser state; a phase's stays at its init until it starts


def phased(transforms: Sequence[optax.GradientTransformation], lengths: Sequence[int]) -> optax.GradientTransformation:
    """Phase ``i`` (``lengths[i]`` steps) applies ``transforms[i]`` from its own fresh state.

    One ``lax.switch`` per step runs the active phase only; the others' states pass through."""
    starts = jnp.asarray(list(itertools.accumulate(lengths))[:-1], jnp.int32)

    def init(params):
        return PhasedState(jnp.zeros([], jnp.int32), tuple(t.init(params) for t in transforms))

    def update(updates, state, params=None):
        index = jnp.sum(state.count >= starts).astype(jnp.int32)

        def branch(i):
            def run(operands):
                grads, inner = operands
                new_updates, new_state = transforms[i].update(grads, inner[i], params)
                return new_updates, inner[:i] + (new_state,) + inner[i + 1:]
            return run

        new_updates, inner = jax.lax.switch(index, [branch(i) for i in range(len(transforms))], (updates, state.inner))
        return new_updates, PhasedState(state.count + 1, inner)

    return optax.GradientTransformation(init, update)


def make_optimizer(config, params: Any, total_steps: int):
    """Returns ``(tx, schedules)`` for ``config.optimizer``/``config.lr``/``config.schedule`` (and
    ``config.phases``, module docstring).

    ``schedules`` maps group name -> lr schedule of the global step (for logging); frozen groups
    are absent; with phases a group is ``p<phase>/<group>`` and its lr is 0 outside its phase.
    """
    phases = [dict(p) for p in (config.get("phases") or [])]
    if not phases:
        return _single_optimizer(config, params, config.get("schedule", None), config.lr, total_steps)
    lengths = phase_lengths(phases, total_steps)
    transforms, schedules, start = [], {}, 0
    for i, (phase, length) in enumerate(zip(phases, lengths)):
        tx, groups = _single_optimizer(config, params, phase.get("schedule", config.get("schedule", None)),
                                       float(phase.get("lr", config.lr)), length)
        transforms.append(tx)
        for name, fn in groups.items():
            schedules[f"p{i}/{name}"] = functools.partial(_in_phase, fn, start, length)
        start += length
    return phased(transforms, lengths), schedules


def _in_phase(fn, start: int, length: int, step):
    """A phase's schedule at global optimiser count ``step`` (as the unphased schedules are
    read): its own count inside the phase, 0 outside."""
    inside = (step >= start) & (step < start + length)
    return jnp.where(inside, fn(jnp.maximum(step - start, 0)), 0.0)


def frozen_paths(params: Any, schedule) -> list[str]:
    """Parameter paths that the schedule freezes (for logging and tests)."""
    if schedule is None or isinstance(schedule, dict) or hasattr(schedule, "to_dict"):
        return []
    labels = traverse_util.flatten_dict(group_labels(params, [p for p, _ in schedule]))
    return ["/".join(k) for k, v in labels.items() if schedule[int(v)][1] is None]


def frozen_for_run(params: Any, config) -> list[str]:
    """The paths frozen for the whole run: by ``config.schedule``, or with ``config.phases`` by
    every phase's schedule (a path trained in any phase needs its gradient)."""
    phases = [dict(p) for p in (config.get("phases") or [])]
    if not phases:
        return frozen_paths(params, config.get("schedule"))
    sets = [set(frozen_paths(params, p.get("schedule", config.get("schedule")))) for p in phases]
    return sorted(set.intersection(*sets))
