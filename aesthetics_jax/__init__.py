"""aesthetics_jax: image aesthetic assessment in JAX/Flax."""

__version__ = "0.1.0"
