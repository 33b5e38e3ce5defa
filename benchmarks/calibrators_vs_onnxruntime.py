"""edgetrt's calibrators vs onnxruntime's static quantization on one trained model and data.

The model is the digits CNN of ``tests/digits.py`` (trained here with numpy, ~2 s); both
calibrate on the same 480 training images and are scored on the same 360 held-out ones.
edgetrt: entropy2, minmax, percentile (99.99) and mse, then an INT8 engine on the CPU.
onnxruntime: ``quantize_static`` with MinMax, Entropy and Percentile (99.999, its default),
Q/DQ format, symmetric INT8 activations and per-channel INT8 weights (as TensorRT uses),
run with the CPU provider. Per row: top-1 accuracy, mean cosine of the logits vs FP32, the
calibration time, and its peak of Python/numpy allocations (tracemalloc, the same meter for
both; onnxruntime's own C++ buffers are not counted). One untimed edgetrt calibration runs
first, since edgetrt's first run compiles its kernels.

    python benchmarks/calibrators_vs_onnxruntime.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edge  # noqa: E402
from benchmarks.machine import describe  # noqa: E402
from edge.frontend import load_onnx  # noqa: E402
from edge.quant import CALIBRATORS, CalibrationCache, calibration_for, write_cache  # noqa: E402
from edge.quant.memory import measure_peak  # noqa: E402
from tests.digits import BATCH, digits_cnn, top1  # noqa: E402

CALIBRATION_BATCHES = 4
Run = Callable[[np.ndarray], np.ndarray]


class _Batches(CalibrationDataReader):
    def __init__(self, images: np.ndarray) -> None:
        self.batches = iter([{"image": images[i:i + BATCH]} for i in range(0, len(images), BATCH)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def _score(run: Run, reference: Run, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Top-1 accuracy and the mean per-row cosine of ``run``'s logits vs ``reference``'s."""
    cosines = []
    for i in range(0, len(images), BATCH):
        got, want = run(images[i:i + BATCH]), reference(images[i:i + BATCH])
        cosines.append((got * want).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)))
    return top1(run, images, labels), float(np.concatenate(cosines).mean())


def _session(model: bytes | str) -> Run:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return lambda batch: session.run(None, {"image": batch})[0]


def main() -> None:
    digits = digits_cnn()
    calib = digits.train[: CALIBRATION_BATCHES * BATCH]
    fp32 = _session(digits.model.SerializeToString())
    rows = [("FP32 (onnxruntime)", *_score(fp32, fp32, digits.test, digits.test_labels), None, None)]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        model = folder / "digits.onnx"
        model.write_bytes(digits.model.SerializeToString())
        (folder / "calib").mkdir()
        np.save(folder / "calib" / "image.npy", calib)
        calibration_for(load_onnx(model), folder / "calib", calibrator="minmax")  # untimed: first runs compile kernels
        for calibrator in CALIBRATORS:
            start = time.perf_counter()
            result = calibration_for(load_onnx(model), folder / "calib", calibrator=calibrator)
            seconds = time.perf_counter() - start
            cache = folder / f"{calibrator}.calib"
            write_cache(cache, CalibrationCache(CALIBRATORS[calibrator], result.scales))
            context = edge.build(model, edge.BuilderConfig(precision="int8", calib_cache=cache)).create_context()
            run = lambda batch, context=context: context.run({"image": batch})["logits"]  # noqa: E731
            rows.append((f"edgetrt {calibrator}", *_score(run, fp32, digits.test, digits.test_labels), seconds, result.peak_memory))
        for method in (CalibrationMethod.MinMax, CalibrationMethod.Entropy, CalibrationMethod.Percentile):
            quantized = folder / f"ort_{method.name}.onnx"
            start = time.perf_counter()
            with measure_peak() as memory:
                quantize_static(
                    str(model), str(quantized), _Batches(calib), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                    calibrate_method=method, extra_options={"ActivationSymmetric": True},
                )
            seconds = time.perf_counter() - start
            rows.append((f"onnxruntime {method.name}", *_score(_session(str(quantized)), fp32, digits.test, digits.test_labels), seconds, memory.peak))
    print(f"{time.strftime('%Y-%m-%d')}, {describe()}, onnxruntime {ort.__version__}")
    print(f"digits CNN, calibration {len(calib)} images ({CALIBRATION_BATCHES} batches of {BATCH}), test {len(digits.test)} images\n")
    print("| calibration | top-1 | logits cosine vs FP32 | calibration time | calibration peak (tracemalloc) |")
    print("|---|---|---|---|---|")
    for name, accuracy, cosine, seconds, peak in rows:
        timing = "-" if seconds is None else f"{seconds:.2f} s"
        memory = "-" if peak is None else f"{peak / 2**20:.1f} MiB"
        print(f"| {name} | {100 * accuracy:.2f} % | {cosine:.6f} | {timing} | {memory} |")


if __name__ == "__main__":
    main()
