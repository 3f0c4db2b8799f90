"""Test set-up: 8 simulated CPU devices (must be set before jax is imported)."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("EPATH_USE_TF", "false")  # etils.epath probes for TensorFlow's gfile otherwise

import importlib.abc
import sys

import pytest


class _TensorFlowBlocker(importlib.abc.MetaPathFinder):
    """Records and refuses every import of tensorflow (or a submodule)."""

    def __init__(self):
        self.attempts = []

    def find_spec(self, name, path, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            self.attempts.append(name)
            raise ImportError(f"importing {name} is forbidden in this test")
        return None


@pytest.fixture
def tensorflow_imports():
    """The list of TensorFlow imports attempted during the test (each one refused).

    Works whether or not an earlier test in the same process imported TensorFlow (Keras parity
    and SavedModel tests may): TensorFlow's modules are hidden from sys.modules for the test and
    restored afterwards, so code that needs TensorFlow fails here instead of passing silently.
    """
    hidden = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "tensorflow" or k.startswith("tensorflow.")}
    blocker = _TensorFlowBlocker()
    sys.meta_path.insert(0, blocker)
    try:
        yield blocker.attempts
    finally:
        sys.meta_path.remove(blocker)
        sys.modules.update(hidden)
