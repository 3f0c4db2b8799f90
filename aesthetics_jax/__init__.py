"""aesthetics_jax: image aesthetic assessment in JAX/Flax.

Importing the package is cheap: it imports nothing but this file. ``aesthetics_jax.predict``,
``aesthetics_jax.explain`` and ``aesthetics_jax.critique`` are loaded on first access (module-level ``__getattr__``) and are
callable, so both spellings work::

    import aesthetics_jax
    results = aesthetics_jax.predict("photos/", model="nima.bundle")   # the one-line API
    from aesthetics_jax.predict import predict, Predictor               # the module's contents
    items = aesthetics_jax.explain("photos/", model="nima.bundle", method="gradcam")
    critiques = aesthetics_jax.critique("photos/", model="cgiaa_critic")   # CG-IAA's experts

Nothing here (or in predict) imports TensorFlow.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY_SUBMODULES = ("predict", "explain", "critique")


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        # Importing the submodule also binds it as this package's attribute, so this runs once.
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY_SUBMODULES))
