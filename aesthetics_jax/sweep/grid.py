"""Sweep members: lists of override dicts, built from axes (big_vision / XManager style).

A config file may define ``get_sweep(arg)`` beside ``get_config(arg)``; it returns a list of
members. A member is a dict of config overrides, ``{"lr": 1e-3, "losses.emd.r": 1}`` (dotted field
paths, as ``--config.lr=...`` on ``launch.py``; a leading ``config.`` is allowed), plus two reserved
keys:

    ":arg"    the config argument of this member (``get_config(arg)``; default: the sweep's own),
              for variants that change a config's structure rather than a field
    ":name"   the member's readable name (default: built from ``:arg`` and the overrides)

A plain string member is a config argument (``{":arg": s}``). Seeds are an axis like any other
(``sweep("seed", [0, 1, 2])``, or ``aesthetics-jax sweep run --seeds 0,1,2``); a member's
*variant* is the member without its seed, and ``sweep report`` pools the seeds of each variant.

    from aesthetics_jax.sweep import grid
    def get_sweep(arg):
        return grid.product(grid.sweep("lr", [1e-3, 3e-4]), grid.sweep("losses.emd.r", [1, 2]))
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Iterable, Sequence

ARG = ":arg"
NAME = ":name"
SEED = "seed"
RESERVED = (ARG, NAME)


def sweep(key: str, values: Iterable[Any]) -> list[dict]:
    """One axis: ``[{key: v} for v in values]``."""
    return [{field(key): v} for v in values]


def product(*axes: Sequence[dict]) -> list[dict]:
    """Every combination of the axes' members (the first axis varies slowest)."""
    return [_merge(combo) for combo in itertools.product(*[[normalize(m) for m in axis] for axis in axes])]


def zipped(*axes: Sequence[dict]) -> list[dict]:
    """The axes' members side by side (the axes must be equally long)."""
    lengths = {len(axis) for axis in axes}
    if len(lengths) > 1:
        raise ValueError(f"zipped axes must have the same length, got {[len(a) for a in axes]}")
    return [_merge(combo) for combo in zip(*[[normalize(m) for m in axis] for axis in axes])]


def with_seeds(members: Sequence[Any], seeds: Iterable[int]) -> list[dict]:
    """Each member once per seed (the seed varies fastest); a member that sets ``seed`` already
    is an error (the seeds would silently not apply)."""
    members = [normalize(m) for m in members]
    for m in members:
        if SEED in m:
            raise ValueError(f"sweep member {name(m)!r} sets seed itself; drop --seeds or the member's seed")
    return product(members, sweep(SEED, [int(s) for s in seeds]))


def normalize(member: Any) -> dict:
    """A member as a dict: a string is a config argument; ``config.``-prefixed keys lose the prefix."""
    if isinstance(member, str):
        return {ARG: member}
    if not isinstance(member, dict):
        raise TypeError(f"a sweep member is a dict of overrides or a config-argument string, got {member!r}")
    out = {}
    for key, value in member.items():
        out[key if key in RESERVED else field(key)] = value
    return out


def overrides(member: dict) -> dict:
    """The config field overrides of a member (without the reserved keys)."""
    return {k: v for k, v in member.items() if k not in RESERVED}


def variant(member: dict) -> str:
    """The member's name without its seed: what ``sweep report`` pools seeds over."""
    member = normalize(member)
    if member.get(NAME):
        return _sanitize(str(member[NAME]))
    parts = [str(member[ARG])] if member.get(ARG) else []
    parts += [f"{k}={_short(v)}" for k, v in overrides(member).items() if k != SEED]
    return _sanitize("-".join(parts)) or "base"


def name(member: dict) -> str:
    """A readable, filesystem-safe, unique-per-member directory name: variant + ``-seed=N``."""
    member = normalize(member)
    out = variant(member)
    if SEED in member:
        out += f"-seed={member[SEED]}"
    return out


def field(key: str) -> str:
    """A dotted config field path as members store it (``config.`` prefix dropped), or ValueError."""
    key = key[len("config."):] if key.startswith("config.") else key
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", key):
        raise ValueError(f"sweep key {key!r} is not a dotted config field path (e.g. 'lr', 'losses.emd.r')")
    return key


def _merge(parts: Sequence[dict]) -> dict:
    out: dict = {}
    for part in parts:
        clash = sorted(set(out) & set(part) - {NAME})
        if clash:
            raise ValueError(f"sweep axes set {clash} twice ({out} and {part})")
        if NAME in part and NAME in out:
            part = {**part, NAME: f"{out[NAME]}-{part[NAME]}"}
        out.update(part)
    return out


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _sanitize(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_")
