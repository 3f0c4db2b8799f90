"""Attribute critiques (CG-IAA's ClipCap experts): `decoding` (beam / greedy / top-p with a KV
cache), `critic` (image tower + experts, one call per batch), `commands` (``aesthetics-jax
critique``). The package is callable: ``aesthetics_jax.critique(images, model=BUNDLE)`` is
``critique.commands.critique`` (imported on first call)."""

import sys
import types


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from aesthetics_jax.critique import commands  # pylint: disable=g-import-not-at-top

        return commands.critique(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
