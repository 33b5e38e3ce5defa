"""Trained models shipped in PyPI wheels, through edgetrt's CPU engine against onnxruntime.

rapidocr-onnxruntime ships PaddleOCR's PP-OCRv4 text detector and recognizer and the mobile
v2 direction classifier (dynamic batch stored as -1); silero-vad ships its voice-activity detector in
several exports. A test skips when its wheel is not installed (silero-vad depends on torch,
so it is not in the dev extra: scripts/test.sh runs ``pip install --no-deps silero-vad``, which
brings just the models); on CI (``CI`` set) a missing wheel fails instead of skipping.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

import edge
from edge.cli import main

ort = pytest.importorskip("onnxruntime")


def shipped(dist: str, relative: str) -> Path:
    try:
        path = Path(str(distribution(dist).locate_file(relative)))
    except PackageNotFoundError:
        if os.environ.get("CI"):
            pytest.fail(f"wheel {dist} is not installed; scripts/test.sh installs it for CI")
        pytest.skip(f"wheel {dist} is not installed")
    if not path.is_file():
        pytest.skip(f"{dist} does not ship {relative}")
    return path


def text_image(height: int, width: int) -> np.ndarray:
    """A white page with dark text-like strokes, normalised as PaddleOCR does (ImageNet mean/std)."""
    rng = np.random.default_rng(0)
    page = np.ones((height, width, 3), np.float32)
    for _ in range(5):
        y, x = rng.integers(0, height - 16), rng.integers(0, width - 60)
        page[y : y + 12, x : x + 50] = 0.85
        for k in range(0, 48, 6):
            page[y + 2 : y + 10, x + k : x + k + 3] = 0.05
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    return ((page - mean) / std).transpose(2, 0, 1)[None].copy()


def _with_logits_output(model: onnx.ModelProto) -> bytes:
    """The model plus the final Sigmoid's input as a second output."""
    sigmoid = next(n for n in reversed(model.graph.node) if n.op_type == "Sigmoid")
    model.graph.output.append(helper.make_tensor_value_info(sigmoid.input[0], onnx.TensorProto.FLOAT, None))
    return model.SerializeToString()


def test_ppocr_v4_detection_matches_onnxruntime() -> None:
    """Logits agree with onnxruntime to fp32 accumulation noise; probabilities agree with
    the exact (float64) logistic of onnxruntime's logits. onnxruntime's own Sigmoid uses an
    approximation whose relative error reaches several percent below logit -13, which is why
    comparing probabilities relative to a near-zero maximum (random input) looked like a
    0.12 difference."""
    data = _with_logits_output(onnx.load(shipped("rapidocr-onnxruntime", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx")))
    x = text_image(96, 160)
    engine = edge.build(data, edge.BuilderConfig(input_shapes={"x": (1, 3, 96, 160)}))
    probs, logits = engine.create_context().run({"x": x}).values()
    ref_probs, ref_logits = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    scale = np.abs(ref_logits).max()
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=1e-4 * scale)
    exact = 1 / (1 + np.exp(-ref_logits.astype(np.float64)))
    np.testing.assert_allclose(probs, exact, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(probs, ref_probs, rtol=0, atol=1e-4)
    assert probs.max() > 0.5, "the synthetic page should hold detected text"


def test_ppocr_direction_classifier_with_batch_stored_as_minus_one(tmp_path: Path, capsys) -> None:
    model = shipped("rapidocr-onnxruntime", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx")
    assert onnx.load(str(model)).graph.input[0].type.tensor_type.shape.dim[0].dim_value == -1
    engine_path = tmp_path / "cls.engine"
    assert main(["build", str(model), "--shapes", "x:1x3x48x192", "-o", str(engine_path)]) == 0, capsys.readouterr().err
    x = text_image(48, 192)
    (got,) = edge.load(engine_path).create_context().run({"x": x}).values()
    (want,) = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_ppocr_v4_recognition_matches_onnxruntime() -> None:
    """The SVTR text recognizer (attention blocks over a conv stem): per-step character
    probabilities agree with onnxruntime and so does the decoded best path."""
    model = shipped("rapidocr-onnxruntime", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx")
    x = text_image(48, 160)
    engine = edge.build(str(model), edge.BuilderConfig(input_shapes={"x": (1, 3, 48, 160)}))
    (got,) = engine.create_context().run({"x": x}).values()
    (want,) = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))


@pytest.mark.parametrize("name", ["silero_vad.onnx", "silero_vad_16k_op15.onnx", "silero_vad_op18_ifless.onnx", "silero_vad_half.onnx"])
def test_silero_vad_matches_onnxruntime(name: str) -> None:
    model = shipped("silero-vad", f"silero_vad/data/{name}")
    proto = onnx.load(str(model))
    rng = np.random.default_rng(1)
    t = np.arange(512) / 16000
    speech = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(512))
    feeds = {"input": speech[None].astype(np.float32), "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(16000, np.int64)}
    feeds = {i.name: feeds[i.name] for i in proto.graph.input}
    engine = edge.build(str(model), edge.BuilderConfig(input_shapes={"input": (1, 512)}))
    got = engine.create_context().run(feeds)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    want = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-4, atol=1e-5, err_msg=f"{name} output {key}")


def test_ppocr_v4_detection_builds_as_shipped_with_dynamic_height_and_width() -> None:
    """Built without --shapes (its input is dynamic in batch, height and width), the detector
    runs pages of two sizes like onnxruntime; the build used to end in a TypeError traceback."""
    data = _with_logits_output(onnx.load(shipped("rapidocr-onnxruntime", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx")))
    context = edge.build(data).create_context()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for height, width in ((64, 96), (96, 128)):
        x = text_image(height, width)
        _, logits = context.run({"x": x}).values()
        _, ref_logits = session.run(None, {"x": x})
        np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=1e-4 * np.abs(ref_logits).max())
