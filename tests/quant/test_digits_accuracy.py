"""Done-when of issue 21 on the CPU: a trained CNN (scikit-learn's digits) keeps its top-1
accuracy within 1 point of FP32 after entropy calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

import edge
from tests.digits import BATCH, digits_cnn, top1


def test_entropy_int8_keeps_digits_accuracy(tmp_path: Path) -> None:
    digits = digits_cnn()
    model = tmp_path / "digits.onnx"
    model.write_bytes(digits.model.SerializeToString())
    (tmp_path / "calib").mkdir()
    np.save(tmp_path / "calib" / "image.npy", digits.train[: 4 * BATCH])
    reference = ort.InferenceSession(model.read_bytes(), providers=["CPUExecutionProvider"])
    accuracy = top1(lambda batch: reference.run(None, {"image": batch})[0], digits.test, digits.test_labels)
    assert accuracy > 0.9  # the model really learned the task
    fp32 = edge.build(model).create_context()
    int8_engine = edge.build(model, edge.BuilderConfig(precision="int8", calib_data=tmp_path / "calib", calibrator="entropy2"))
    assert {n.meta["precision"] for n in int8_engine.graph.nodes if n.op_type in ("FusedConv", "Conv", "Gemm")} == {"int8"}
    int8 = int8_engine.create_context()
    assert top1(lambda batch: fp32.run({"image": batch})["logits"], digits.test, digits.test_labels) == accuracy
    assert abs(top1(lambda batch: int8.run({"image": batch})["logits"], digits.test, digits.test_labels) - accuracy) <= 0.01
