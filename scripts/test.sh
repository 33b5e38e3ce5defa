#!/usr/bin/env bash
# Set up edgetrt with its test dependencies in a virtualenv and run the whole test suite.
# GPU tests are marked `gpu` and skip themselves on machines without an NVIDIA GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${EDGE_VENV:-.venv}"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v systemd-analyze >/dev/null; then
  # systemd-analyze verifies the generated service units (tests skip without it).
  (apt-get update -qq && apt-get install -y -qq --no-install-recommends systemd >/dev/null) || echo "note: systemd not installed"
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
# Two pytest workers on two cores: one BLAS thread each, or OpenBLAS threads oversubscribe.
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$VENV/bin/python" -m pytest -n "${EDGE_TEST_WORKERS:-2}" -q "$@"
