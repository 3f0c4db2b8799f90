"""Explanations of every model of this project: where it looks, whether people look there, and
whether the map is faithful to the model.

    import aesthetics_jax
    items = aesthetics_jax.explain(["a.jpg", "b.jpg"], model="W2", method="gradcam,hirescam",
                                   outputs=["total", "composition"], saliency="spectral")
    items[0]["maps"]["gradcam"]["total"]      # [S, S] float32 in [0, 1] at the model's input size
    items[0]["agreement"]["gradcam"]["total"] # {'auc_judd': ..., 'cc': ..., ...} vs human saliency

Modules (imports point one way: commands -> cam / agreement / faithfulness / render; nothing here
imports the trainer):
  cam.py           Grad-CAM family (gradcam, gradcam++, xgradcam, hirescam, layercam, eigencam)
                   and pixel attributions (gradient, smoothgrad, integrated gradients), all outputs
                   in one jitted call (`Explainer`)
  agreement.py     saliency-agreement metrics (AUC-Judd, AUC-Borji, sAUC, NSS, CC, SIM, KLD) with
                   centre-bias and uniform baselines
  faithfulness.py  deletion / insertion curves (RISE) and ROAD for regression outputs, with random-
                   map baselines
  render.py        overlays (jet / viridis, never inverted) and contact sheets
  commands.py      `aesthetics-jax explain ...` and the `explain()` function
Evaluator type `explain` (aesthetics_jax/evaluate/explain.py) adds the metrics to a training run.
"""

from __future__ import annotations

import sys
import types

__all__ = ["explain"]


def explain(images, model, **kwargs):
    """Explains ``images`` with ``model`` (see ``aesthetics_jax.explain.commands.explain``)."""
    from aesthetics_jax.explain import commands  # pylint: disable=g-import-not-at-top

    return commands.explain(images, model, **kwargs)


class _CallableModule(types.ModuleType):
    """``aesthetics_jax.explain(...)`` calls :func:`explain` (as ``aesthetics_jax.predict`` does)."""

    def __call__(self, *args, **kwargs):
        return explain(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
