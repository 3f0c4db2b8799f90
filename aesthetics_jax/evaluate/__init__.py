"""Evaluators, selected by type name (big_vision style).

``config.evals.<name>.type`` names an evaluator type; :data:`EVALUATORS` maps each type to the
module implementing it, imported only when asked for (no import-time registration). Every
evaluator module exposes ``run(*, predictions, targets, ids, outdir, prefix, heads, plots=True)
-> dict[str, float]``::

    evaluator = get_evaluator("aesthetic")
    metrics = evaluator.run(predictions=..., targets=..., ids=..., outdir=..., prefix="test", heads=...)

An evaluator that needs more than the predictions on its own split (``patches``: full-image
predictions beside the patch predictions) also exposes ``inputs(ev, *, source, predict,
data_config, heads, final, model, variables) -> dict``: the trainer calls it with the eval config,
the split's source, a ``predict(source) -> (predictions, labels)`` function of the current
parameters, the Flax model and its current variables (``explain``: the maps need gradients), and
passes the returned keyword arguments on to ``run``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EVALUATORS", "get_evaluator"]

#: Evaluator type name -> module path.
EVALUATORS: dict[str, str] = {
    "aesthetic": "aesthetics_jax.evaluate.aesthetic",
    "patches": "aesthetics_jax.evaluate.patches",
    "explain": "aesthetics_jax.evaluate.explain",
    "retrieval": "aesthetics_jax.evaluate.retrieval",
    "clip_iqa": "aesthetics_jax.evaluate.clip_iqa",
    "critique": "aesthetics_jax.evaluate.critique",
}


def get_evaluator(type_name: str) -> ModuleType:
    """The evaluator module registered under ``type_name`` (it has a ``run`` function)."""
    try:
        module_path = EVALUATORS[type_name]
    except KeyError:
        raise ValueError(f"unknown evaluator type {type_name!r}; known: {sorted(EVALUATORS)}") from None
    return importlib.import_module(module_path)
