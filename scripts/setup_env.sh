#!/usr/bin/env bash
# Creates ./.venv and installs aesthetics_jax with the extras named in $1 (comma-separated, e.g.
# "dev,tf"; empty = the core package, what the demo needs). Idempotent: it reinstalls only when
# setup.py changed since the last successful install of those extras (an install of more extras
# counts for fewer). Run it; it prints the venv's python on stdout, progress on stderr.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${AESTHETICS_JAX_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
extras="${1:-}"
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating virtual environment $venv" >&2
  "$python" -m venv "$venv"
fi
hash="$(sha256sum "$root/setup.py" | cut -d' ' -f1)"
stamp="$venv/.aesthetics_jax_installed"   # lines: "<setup.py sha256> <extra>" per installed extra
satisfied=1
grep -qx "$hash core" "$stamp" 2>/dev/null || satisfied=0
for extra in ${extras//,/ }; do
  grep -qx "$hash $extra" "$stamp" 2>/dev/null || satisfied=0
done
if [ "$satisfied" = 0 ]; then
  spec="$root"; [ -n "$extras" ] && spec="$root[$extras]"
  echo "[setup] installing aesthetics_jax${extras:+[$extras]} into $venv (first time: a few minutes)" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q -e "$spec" >&2
  { grep "^$hash " "$stamp" 2>/dev/null || true  # extras installed earlier from this setup.py
    echo "$hash core"; for extra in ${extras//,/ }; do echo "$hash $extra"; done
  } | sort -u > "$stamp.new"
  mv "$stamp.new" "$stamp"
fi
echo "$venv/bin/python"
