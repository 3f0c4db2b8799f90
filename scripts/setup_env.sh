#!/usr/bin/env bash
# Creates ./.venv and installs aesthetics_jax with its [dev] extras. Idempotent: it reinstalls only
# when setup.py changed since the last successful install. Source it or run it; it prints the python.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${AESTHETICS_JAX_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating virtual environment $venv" >&2
  "$python" -m venv "$venv"
fi
stamp="$venv/.aesthetics_jax_installed"
want="$(sha256sum "$root/setup.py" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing aesthetics_jax[dev] into $venv (first time: a few minutes)" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q -e "$root[dev]" >&2
  echo "$want" > "$stamp"
fi
echo "$venv/bin/python"
