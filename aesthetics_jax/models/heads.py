"""Prediction heads on the pooled backbone features.

A model carries one or more heads, configured as `{head_name: {'type': <type>, **kwargs}}` and
built with :func:`build_head`. Each head is a Flax module named `head_name`, so its parameters live
at `params[head_name]` (paths `'<head_name>/...'`, e.g. `emd/dense/kernel`). Heads compute in the
model's compute dtype with float32 params, and return a dict of float32 arrays.

Types (`HEAD_TYPES`):

  emd         NIMA score distribution. kwargs: `num_bins=10`.
              Params: `dense` (Dense num_bins).
              Returns `logits` [B, K], `distribution` [B, K] (softmax, float32),
              `mean` [B] = sum_i i p_i and `sd` [B] = sqrt(sum_i (i - mean)^2 p_i), i = 1..K.
  scores      Linear regression, or an MLP regressor. kwargs: `num_outputs`, optional `names`
              (len == num_outputs; `num_outputs` defaults to len(names)); optional
              `hidden=()` (widths of hidden Dense layers), `activation='none'` ('none' | 'relu',
              applied after each hidden layer), `l2_normalize=False` (divide the input
              features by their L2 norm first; a zero vector is left as it is, as LAION's
              `normalized()` does). Params: `hidden_0`, `hidden_1`, ... (one Dense per
              `hidden` entry, in order) then `dense` (Dense num_outputs); with the defaults
              this is just `dense`, the layout of every earlier scores head. Returns `scores`
              [B, N]. `names` are metadata (column order) for losses/evaluators: `head.names`.
              The LAION aesthetic predictors are scores heads on the projected CLIP image
              embedding with `l2_normalize=True`: v1 `hidden=()`, v2
              `hidden=(1024, 128, 64, 16)` with `activation='none'` (the released
              `sac+logos+ava1-l14-linearMSE.pth`) or `'relu'`; their Dropout layers act only in
              training and have no counterpart here (see `convert/laion.py`).
  attributes  Aesthetics-XAI / AADB style. kwargs: `names` (attribute names), `hidden=64`.
              One small expert per attribute, `expert_{name}`: Dense(hidden) named `hidden`
              -> ReLU -> Dense(1) named `out` (paths `attributes/expert_Light/hidden/kernel`).
              `fusion`: Dense(1) over concat(attribute outputs, pooled features) gives the
              overall score, an explicit learned combination of the attributes plus a residual
              path from the features.
              Returns `attributes` [B, A] (in `names` order) and `overall` [B].

All kernels use glorot_uniform with zero biases (the Keras Dense default; NIMA and the
Aesthetics-XAI originals are Keras models).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

KERNEL_INIT = nn.initializers.glorot_uniform()
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _dense(features: int, dtype, name: str) -> nn.Dense:
    return nn.Dense(features, kernel_init=KERNEL_INIT, dtype=dtype, param_dtype=jnp.float32, name=name)


class EmdHead(nn.Module):
    """NIMA head: softmax over `num_bins` score bins with its mean and standard deviation."""

    num_bins: int = 10
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        logits = _dense(self.num_bins, self.dtype, "dense")(x).astype(jnp.float32)
        distribution = jax.nn.softmax(logits, axis=-1)
        bins = jnp.arange(1, self.num_bins + 1, dtype=jnp.float32)
        mean = jnp.sum(distribution * bins, axis=-1)
        var = jnp.sum(distribution * jnp.square(bins - mean[:, None]), axis=-1)
        return {"logits": logits, "distribution": distribution, "mean": mean, "sd": jnp.sqrt(var)}


SCORES_ACTIVATIONS = {"none": lambda x: x, "relu": nn.relu}


class ScoresHead(nn.Module):
    """Linear regression (or an MLP, `hidden`) to `num_outputs` scores (e.g. AADB score, modality
    scores, the LAION aesthetic score); see the module docstring."""

    num_outputs: int | None = None
    names: Sequence[str] | None = None
    hidden: Sequence[int] = ()
    activation: str = "none"
    l2_normalize: bool = False
    dtype: Any = jnp.float32

    @property
    def size(self) -> int:
        if self.num_outputs is None and self.names is None:
            raise ValueError("scores head needs num_outputs or names")
        if self.num_outputs is not None and self.names is not None and len(self.names) != self.num_outputs:
            raise ValueError(f"scores head: {len(self.names)} names for num_outputs={self.num_outputs}")
        return self.num_outputs if self.num_outputs is not None else len(self.names)

    @nn.compact
    def __call__(self, x):
        if self.activation not in SCORES_ACTIVATIONS:
            raise ValueError(f"scores head: activation must be one of {sorted(SCORES_ACTIVATIONS)}, "
                             f"got {self.activation!r}")
        hidden = tuple(self.hidden or ())
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"scores head: hidden must be positive integers, got {list(hidden)}")
        size = self.size
        if self.l2_normalize:
            x32 = x.astype(jnp.float32)
            norm = jnp.linalg.norm(x32, axis=-1, keepdims=True)
            x = (x32 / jnp.where(norm == 0, 1.0, norm)).astype(self.dtype)
        act = SCORES_ACTIVATIONS[self.activation]
        for i, width in enumerate(hidden):
            x = act(_dense(width, self.dtype, f"hidden_{i}")(x))
        return {"scores": _dense(size, self.dtype, "dense")(x).astype(jnp.float32)}


class _Expert(nn.Module):
    """One attribute expert: Dense(hidden) -> ReLU -> Dense(1)."""

    hidden: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        h = nn.relu(_dense(self.hidden, self.dtype, "hidden")(x))
        return _dense(1, self.dtype, "out")(h)


class AttributesHead(nn.Module):
    """Per-attribute experts plus a fused overall score (see module docstring)."""

    names: Sequence[str] = ()
    hidden: int = 64
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        if not self.names:
            raise ValueError("attributes head needs a non-empty `names` list")
        for name in self.names:
            if not _NAME_RE.match(name):
                raise ValueError(f"attribute name {name!r} must match {_NAME_RE.pattern} (it names a parameter path)")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"duplicate attribute names in {list(self.names)}")
        outputs = [_Expert(self.hidden, self.dtype, name=f"expert_{name}")(x) for name in self.names]
        attributes = jnp.concatenate(outputs, axis=-1)
        fused_in = jnp.concatenate([attributes.astype(self.dtype), x.astype(self.dtype)], axis=-1)
        overall = _dense(1, self.dtype, "fusion")(fused_in)[:, 0]
        return {"attributes": attributes.astype(jnp.float32), "overall": overall.astype(jnp.float32)}


HEAD_TYPES = {
    "emd": EmdHead,
    "scores": ScoresHead,
    "attributes": AttributesHead,
}


def _freeze(value):
    """Config values (lists, ConfigDict lists) -> hashable tuples, so modules stay hashable."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def build_head(name: str, config, dtype=jnp.float32) -> nn.Module:
    """Builds head `name` from `{'type': ..., **kwargs}` (a dict or ConfigDict)."""
    config = dict(config.items())
    head_type = config.pop("type", None)
    if head_type not in HEAD_TYPES:
        raise ValueError(f"head {name!r}: unknown type {head_type!r}; known types: {', '.join(HEAD_TYPES)}")
    cls = HEAD_TYPES[head_type]
    allowed = {f for f in cls.__dataclass_fields__ if f not in ("parent", "name", "dtype")}
    unknown = set(config) - allowed
    if unknown:
        raise ValueError(f"head {name!r} ({head_type}): unknown options {sorted(unknown)}; allowed: {sorted(allowed)}")
    return cls(**{k: _freeze(v) for k, v in config.items()}, dtype=dtype, name=name)
