"""Sweeps: a config's ``get_sweep`` run member by member (``runner``), pooled over seeds into an
ablation table (``report``); ``grid`` builds the member lists. CLI: ``aesthetics-jax sweep``."""
