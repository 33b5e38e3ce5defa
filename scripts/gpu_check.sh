#!/usr/bin/env bash
# GPU check for the CUDA backend, on a machine with an NVIDIA GPU and no network: installs
# edgetrt from this checkout without dependencies (cuda-bindings, numpy, onnx preinstalled),
# runs the CUDA tests (GPU tests against the CPU kernels, and the GPU-free ones) and prints
# a summary table last. Usage: bash scripts/gpu_check.sh   (finishes in a few minutes)
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
export EDGE_CACHE_DIR="$OUT/cache"

"$PYTHON" -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1 \
    || { echo "install failed:"; tail -5 "$OUT/install.log"; exit 1; }

missing=$("$PYTHON" - <<'PY'
import importlib.util
need = ["numpy", "onnx", "scipy", "ml_dtypes", "yaml", "typer", "rich", "threadpoolctl", "pytest", "cuda.bindings"]
print(" ".join(n for n in need if importlib.util.find_spec(n.split(".")[0]) is None or importlib.util.find_spec(n) is None))
PY
)
if [ -n "$missing" ]; then echo "missing Python packages (no network here): $missing"; exit 1; fi

timeout "${TEST_TIMEOUT:-450}" "$PYTHON" -m pytest -q -p no:cacheprovider -o addopts="" ${TESTS:-tests/cuda} \
    --junitxml="$OUT/cuda.xml" >"$OUT/pytest.log" 2>&1
status=$?
tail -40 "$OUT/pytest.log"

"$PYTHON" - "$OUT/cuda.xml" <<'PY'
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict

try:
    from edge.kernels.cuda import create_backend
    sig = create_backend().device_signature()
    print(f"\nGPU: {sig['gpu']} (sm {sig['compute_capability']}, {sig['sm_count']} SMs), driver {sig['driver']}, "
          f"cuda-bindings {sig['cuda_bindings']}, NVRTC {sig['nvrtc']}")
except Exception as exc:
    print(f"\nGPU: unavailable ({exc})")
try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError) as exc:
    print(f"no test report ({exc})")
    sys.exit(0)
rows = defaultdict(lambda: [0, 0, 0])
failed = []
for case in root.iter("testcase"):
    group = case.get("classname", "").rsplit(".", 1)[-1]
    if case.find("failure") is not None or case.find("error") is not None:
        rows[group][1] += 1
        failed.append(case.get("name"))
    elif case.find("skipped") is not None:
        rows[group][2] += 1
    else:
        rows[group][0] += 1
print(f"\n{'tests/cuda file':28s} {'pass':>5s} {'fail':>5s} {'skip':>5s}")
for group, (ok, bad, skip) in sorted(rows.items()):
    print(f"{group:28s} {ok:5d} {bad:5d} {skip:5d}")
total = [sum(r[i] for r in rows.values()) for i in range(3)]
print(f"{'total':28s} {total[0]:5d} {total[1]:5d} {total[2]:5d}")
if failed:
    print("failed: " + ", ".join(failed[:40]) + (" ..." if len(failed) > 40 else ""))
PY
exit $status
