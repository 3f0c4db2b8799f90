#!/usr/bin/env bash
# The test suite: set up (idempotent), then run pytest with 8 simulated CPU devices.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$(bash "$root/scripts/setup_env.sh" dev,tf)"
cd "$root"
export XLA_FLAGS="--xla_force_host_platform_device_count=8"
exec "$py" -m pytest -q -ra "$@"
