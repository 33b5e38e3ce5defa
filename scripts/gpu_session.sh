#!/usr/bin/env bash
# One GPU-machine session: install, run the CUDA tests (kernels and whole models against the
# CPU reference), then the GPU benchmark against PyTorch; logs and JSON under $OUT.
# Usage: OUT=/tmp/out bash scripts/gpu_session.sh [benchmark args...]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
export OUT EDGE_CACHE_DIR="$OUT/cache" NUMBA_CACHE_DIR="$OUT/numba" PYTHONUNBUFFERED=1
bash scripts/gpu_check.sh 2>&1 | tee "$OUT/gpu_check.txt" | tail -60
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  timeout "${BENCH_TIMEOUT:-240}" python3 benchmarks/gpu_vs_pytorch.py --json "$OUT/gpu_bench.json" "$@" 2>&1 | tee "$OUT/gpu_bench.txt" | tail -25
fi
