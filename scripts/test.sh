#!/usr/bin/env bash
# Set up edgetrt with its test dependencies in a virtualenv and run the whole test suite.
# Changes nothing outside the virtualenv: system packages the tests use when present
# (systemd-analyze, from Debian/Ubuntu's systemd package) are installed by .ci/run on CI.
# GPU tests are marked `gpu` and skip themselves, naming what is missing, without an NVIDIA GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${EDGE_VENV:-.venv}"
if [ -e "$VENV" ]; then
  # Reuse an existing virtualenv only when it works; never paper over a broken one.
  if ! "$VENV/bin/python" -c "import pip" >/dev/null 2>&1; then
    echo "error: '$VENV' exists but is not a working virtualenv (its python or pip fails); remove it, or set EDGE_VENV to another folder" >&2
    exit 1
  fi
else
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
# silero-vad's wheel ships the trained VAD models the real-model tests run; its torch
# dependency is only for its own Python API, so the models come without it.
"$VENV/bin/python" -m pip install --quiet --no-deps "silero-vad>=5.1"
# Two pytest workers on two cores: one BLAS thread each, or OpenBLAS threads oversubscribe.
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$VENV/bin/python" -m pytest -n "${EDGE_TEST_WORKERS:-2}" -q "$@"
