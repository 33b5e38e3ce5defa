#!/usr/bin/env bash
# Set up edgetrt in a virtualenv and build + run + inspect + benchmark a real model on the CPU.
# The model is ResNet-50 from the onnx wheel's own test data, so nothing is downloaded but packages.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${EDGE_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e .
EDGETRT="$VENV/bin/edgetrt"
OUT="${EDGE_OUT:-out/quickstart}"
mkdir -p "$OUT"
MODEL="$("$VENV/bin/python" -c 'import onnx, pathlib; print(pathlib.Path(onnx.__file__).parent / "backend/test/data/light/light_resnet50.onnx")')"
echo "== edgetrt $("$EDGETRT" --version)"
echo "== build $MODEL"
"$EDGETRT" build "$MODEL" -o "$OUT/resnet50.engine" --verbose
echo "== run (seeded random input)"
"$EDGETRT" run "$OUT/resnet50.engine" --seed 0 --output "$OUT/resnet50_outputs.npz"
echo "== inspect (first layers)"
"$EDGETRT" inspect "$OUT/resnet50.engine" | head -n 40
if "$EDGETRT" bench --help >/dev/null 2>&1; then
  echo "== bench"
  "$EDGETRT" bench "$OUT/resnet50.engine" --warmup-runs 2 --iterations 10
fi
if "$EDGETRT" partition --help >/dev/null 2>&1; then
  echo "== partition for Jetson AGX Orin, DLA core 0 with GPU fallback"
  "$EDGETRT" partition "$MODEL" --profile agx-orin-64gb --dla 0 --gpu-fallback
fi
echo "== done: engine and outputs in $OUT"
