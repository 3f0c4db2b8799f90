"""Keras weights -> Flax variables, matched by layer name.

The Flax backbones name every module after the Keras applications layer it mirrors (`conv_dw_3`,
`block_5_expand_BN`, ...), so a Keras model's weights, given as `{layer_name: [arrays in Keras
order]}`, load by name. The dict comes from a live Keras model (:func:`keras_model_weights`) or
from an .h5 file (one list per layer, in the order of the layer's `weight_names` attribute).

Per Flax module kind, the Keras weight order is:

  Conv / Dense       [kernel, bias?]                          kernel layouts are identical
                                                              (HWIO for convs, [in, out] for Dense),
  DepthwiseConv2D    [kernel [kh, kw, C, m], bias?]           reshaped to Flax's grouped-conv
                                                              kernel [kh, kw, 1, C*m] (C order:
                                                              output channel c*m + j, as Keras),
  BatchNormalization [gamma?, beta?, moving_mean, moving_variance]
                                                              -> params scale?, bias?;
                                                              batch_stats mean, var.

Loading is strict (DESIGN.md: an unexplained missing or extra key is an error): every Flax module
under `prefix` must receive weights, every Keras layer that has weights must be used (unless
listed in `skip`), and every shape must match. Nothing is modified in place.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from flax import traverse_util


def keras_model_weights(model) -> dict[str, list[np.ndarray]]:
    """`{layer.name: [weights as numpy, Keras order]}` for every layer of a live Keras model that
    has weights. Takes the model object, so this module itself never imports Keras."""
    return {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


def _modules(tree: Mapping | None, prefix: tuple[str, ...]) -> dict[tuple[str, ...], dict[str, np.ndarray]]:
    """Groups the leaves of `tree` below `prefix` by their module path (the path minus the leaf)."""
    modules: dict[tuple[str, ...], dict[str, np.ndarray]] = {}
    for path, value in traverse_util.flatten_dict(dict(tree or {})).items():
        if path[: len(prefix)] == prefix:
            modules.setdefault(path[len(prefix) : -1], {})[path[-1]] = value
    return modules


def _fit(keras_value: np.ndarray, flax_value, what: str):
    value = np.asarray(keras_value)
    shape = tuple(flax_value.shape)
    if value.shape != shape:
        depthwise = value.ndim == 4 and len(shape) == 4 and shape[2] == 1 and value.shape[:2] == shape[:2]
        if depthwise and value.shape[2] * value.shape[3] == shape[3]:
            value = value.reshape(shape)
        else:
            raise ValueError(f"{what}: Keras shape {value.shape} does not fit Flax shape {shape}")
    return jnp.asarray(value, dtype=flax_value.dtype)


def keras_layers_to_params(
    named_weights: Mapping[str, Sequence[np.ndarray]],
    params,
    batch_stats=None,
    *,
    prefix: str = "backbone",
    rename: Mapping[str, str] | Callable[[str], str] | None = None,
    skip: Iterable[str] = (),
):
    """Copies Keras layer weights into Flax `params` / `batch_stats` by layer name.

    Args:
      named_weights: `{keras_layer_name: [arrays in Keras order]}` (see module docstring).
      params: the Flax params tree (e.g. `variables['params']`); not modified.
      batch_stats: the Flax batch_stats tree, or None if the modules have no BatchNorm.
      prefix: '/'-joined path of the subtree to fill (e.g. 'backbone'; '' = whole tree). Modules
        outside it are returned unchanged.
      rename: Flax module path relative to `prefix` ('/'-joined, e.g. 'emd/dense') -> Keras
        layer name, as a dict (unlisted paths keep their name) or a function. Default: identity.
      skip: regexes (full match) of Keras layer names to ignore, e.g. a classifier top.

    Returns:
      `(params, batch_stats)` with every module under `prefix` replaced by the Keras weights.

    Raises:
      ValueError: on a Flax module with no Keras layer, a Keras layer left unused, a wrong number
        of weights or a shape mismatch.
    """
    prefix_tuple = tuple(p for p in prefix.split("/") if p)
    param_modules = _modules(params, prefix_tuple)
    stat_modules = _modules(batch_stats, prefix_tuple)
    if not param_modules:
        raise ValueError(f"no parameters under prefix {prefix!r}")
    if rename is None:
        to_keras = lambda path: path  # noqa: E731
    elif callable(rename):
        to_keras = rename
    else:
        to_keras = lambda path: rename.get(path, path)  # noqa: E731

    flat_params = traverse_util.flatten_dict(dict(params))
    flat_stats = traverse_util.flatten_dict(dict(batch_stats or {}))
    used, errors = set(), []
    for module in sorted(set(param_modules) | set(stat_modules)):
        flax_name = "/".join(module)
        keras_name = to_keras(flax_name)
        if keras_name not in named_weights:
            errors.append(f"Flax module {flax_name!r}: no Keras layer {keras_name!r}")
            continue
        used.add(keras_name)
        p, s = param_modules.get(module, {}), stat_modules.get(module, {})
        if "mean" in s or "var" in s:  # BatchNorm: [gamma?, beta?, moving_mean, moving_variance]
            targets = [(flat_params, "params", k) for k in ("scale", "bias") if k in p]
            targets += [(flat_stats, "batch_stats", k) for k in ("mean", "var")]
        else:  # Conv / Dense: [kernel, bias?]
            targets = [(flat_params, "params", k) for k in ("kernel", "bias") if k in p]
        known = {k for _, coll, k in targets if coll == "params"}
        extra = sorted(set(p) - known) + sorted(set(s) - {"mean", "var"})
        weights = named_weights[keras_name]
        if extra or len(weights) != len(targets):
            errors.append(
                f"Flax module {flax_name!r} ({sorted(p)} + stats {sorted(s)}) does not fit Keras layer "
                f"{keras_name!r} with {len(weights)} weights"
            )
            continue
        for (flat, coll, key), value in zip(targets, weights):
            path = prefix_tuple + module + (key,)
            try:
                flat[path] = _fit(value, flat[path], f"{coll} {'/'.join(path)}")
            except ValueError as e:
                errors.append(str(e))
    skip_res = [re.compile(pattern) for pattern in skip]
    unused = sorted(
        name
        for name, weights in named_weights.items()
        if len(weights) and name not in used and not any(r.fullmatch(name) for r in skip_res)
    )
    if unused:
        errors.append(f"Keras layers with weights left unused: {unused}")
    if errors:
        raise ValueError("Keras -> Flax weight mapping failed:\n  " + "\n  ".join(errors))
    new_params = traverse_util.unflatten_dict(flat_params)
    new_stats = traverse_util.unflatten_dict(flat_stats) if batch_stats is not None else None
    return new_params, new_stats
