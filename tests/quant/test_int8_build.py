"""INT8 builds: calibrated engines really quantize and stay close to FP32; explicit Q/DQ is honoured; DLA INT8."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import edge
from edge.cli import main
from edge.compare import TOLERANCES, default_tolerances
from edge.errors import CalibrationError, EdgeError
from edge.quant import NO_SCALES, read_cache
from tests.models import qdq_cnn, random_feeds, resnet_block_cnn

INT8_RTOL, INT8_ATOL = TOLERANCES["int8"]


@pytest.fixture(scope="module")
def cnn() -> bytes:
    return resnet_block_cnn().SerializeToString()


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(11)
    np.save(folder / "batch.npy", rng.standard_normal((4, 3, 16, 16)).astype(np.float32))
    return folder


def test_calibrated_int8_is_close_but_quantized(cnn: bytes, calib_dir: Path, tmp_path: Path) -> None:
    feeds = random_feeds(resnet_block_cnn(), seed=5)
    fp32 = edge.build(cnn).create_context().run(feeds)["probs"]
    cache = tmp_path / "cnn.calib"
    engine = edge.build(cnn, edge.BuilderConfig(precision="int8", calib_data=calib_dir, calib_cache=cache))
    int8 = engine.create_context().run(feeds)["probs"]
    assert not np.array_equal(int8, fp32)
    np.testing.assert_allclose(int8, fp32, rtol=INT8_RTOL, atol=INT8_ATOL)
    assert {n.meta["precision"] for n in engine.graph.nodes if n.op_type in ("FusedConv", "Gemm")} == {"int8"}
    # the weights of INT8 layers sit on a per-channel INT8 grid: at most 255 levels per output channel
    conv = next(n for n in engine.graph.nodes if n.op_type == "FusedConv")
    weight = conv.inputs[1].const
    assert all(len(np.unique(channel)) <= 255 for channel in weight)
    scale = np.abs(weight).reshape(len(weight), -1).max(axis=1) / 127
    np.testing.assert_allclose(weight / scale[:, None, None, None], np.rint(weight / scale[:, None, None, None]), atol=1e-3)
    # the cache was written in TensorRT's format and a second build reuses it without data
    assert cache.read_text().startswith("TRT-8602-EntropyCalibration2\nimage: ")
    again = edge.build(cnn, edge.BuilderConfig(precision="int8", calib_cache=cache))
    assert again.build["calibration"]["source"] == "cache"
    np.testing.assert_array_equal(again.create_context().run(feeds)["probs"], int8)
    assert set(read_cache(cache).scales) >= {"image", "relu_12_out0", "probs"}


def test_int8_engine_file_keeps_the_quantization(cnn: bytes, calib_dir: Path, tmp_path: Path) -> None:
    feeds = random_feeds(resnet_block_cnn(), seed=6)
    engine = edge.build(cnn, edge.BuilderConfig(precision="int8", calib_data=calib_dir, calibrator="minmax"))
    engine.save(tmp_path / "m.engine")
    loaded = edge.load(tmp_path / "m.engine")
    np.testing.assert_array_equal(loaded.create_context().run(feeds)["probs"], engine.create_context().run(feeds)["probs"])


def test_int8_without_scales_runs_fp16_and_says_so(cnn: bytes) -> None:
    engine = edge.build(cnn, edge.BuilderConfig(precision="int8"))
    floats = engine.graph.nodes
    assert {n.meta["precision"] for n in floats} == {"fp16"}
    assert {n.meta.get("precision_note") for n in floats} == {NO_SCALES}
    feeds = random_feeds(resnet_block_cnn(), seed=1)
    fp16 = edge.build(cnn, edge.BuilderConfig(precision="fp16")).create_context().run(feeds)
    np.testing.assert_array_equal(engine.create_context().run(feeds)["probs"], fp16["probs"])


def test_qdq_model_fp32_matches_onnxruntime() -> None:
    model = qdq_cnn()
    feeds = random_feeds(model, seed=7)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    engine = edge.build(model.SerializeToString())
    np.testing.assert_allclose(engine.create_context().run(feeds)["logits"], expected, rtol=1e-5, atol=1e-5)
    assert default_tolerances(engine)[0] == "fp32"


def test_dla_int8_with_calibration(cnn: bytes, calib_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cnn.onnx"
    path.write_bytes(cnn)
    engine_path = tmp_path / "dla.engine"
    args = ["build", str(path), "-o", str(engine_path), "--profile", "agx-orin-64gb", "--dla", "0", "--gpu-fallback"]
    assert main([*args, "--int8", "--calib-data", str(calib_dir), "--calib", str(tmp_path / "c.calib"), "-v"]) == 0
    assert "calibration: entropy2 scales" in capsys.readouterr().out
    assert main(["inspect", str(engine_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["layers"]
    dla_int8 = [r for r in rows if r["device"] == "dla" and r["precision"] == "int8"]
    assert len(dla_int8) >= 5 and not any(r["precision_note"] for r in dla_int8)
    feeds = random_feeds(resnet_block_cnn(), seed=8)
    fp32 = edge.build(cnn).create_context().run(feeds)["probs"]
    np.testing.assert_allclose(edge.load(engine_path).create_context().run(feeds)["probs"], fp32, rtol=INT8_RTOL, atol=INT8_ATOL)


def test_cli_calibrate_then_build_and_inspect(cnn: bytes, calib_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cnn.onnx"
    path.write_bytes(cnn)
    cache = tmp_path / "cnn.calib"
    assert main(["calibrate", str(path), "--calib-data", str(calib_dir), "-o", str(cache), "--calibrator", "minmax"]) == 0
    out = capsys.readouterr().out
    assert "relu_12_out0" in out and f"wrote {cache}" in out.replace("\n", "")
    assert cache.read_text().splitlines()[0] == "TRT-8602-MinMaxCalibration"
    assert main(["build", str(path), "--int8", "--calib", str(cache), "-o", str(tmp_path / "a.engine")]) == 0
    assert main(["build", str(path), "--int8", "-o", str(tmp_path / "b.engine"), "-v"]) == 0
    assert f"cpu/{NO_SCALES}: fp16" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "a.engine")]) == 0
    table = capsys.readouterr().out
    assert "int8" in table and "no scales" not in table


@pytest.mark.parametrize(
    "args, message",
    [
        (["--calib-data", "MISSING"], "calibration data folder"),
        (["--calib", "MISSING.calib"], "does not exist; give calibration data"),
        (["--calibrator", "kl", "--calib-data", "MISSING"], "calibrator 'kl'"),
    ],
)
def test_cli_bad_calibration(cnn: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    path = tmp_path / "cnn.onnx"
    path.write_bytes(cnn)
    args = [a.replace("MISSING", str(tmp_path / "missing")) for a in args]
    assert main(["build", str(path), "--int8", "-o", str(tmp_path / "x.engine"), *args]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.engine").exists()


def test_config_checks(tmp_path: Path) -> None:
    with pytest.raises(EdgeError, match="not INT8"):
        edge.BuilderConfig(precision="fp16", calib_data=tmp_path)
    cache = tmp_path / "other.calib"
    cache.write_text("TRT-8602-MinMaxCalibration\nsomething_else: 3c010204\n")
    with pytest.raises(CalibrationError, match=r"lacks \d+ of the model's \d+ calibrated tensors \('image', "):
        edge.build(resnet_block_cnn().SerializeToString(), edge.BuilderConfig(precision="int8", calib_cache=cache))
    with pytest.raises(CalibrationError, match="written by MinMaxCalibration, not EntropyCalibration2"):
        edge.build(resnet_block_cnn().SerializeToString(), edge.BuilderConfig(precision="int8", calib_cache=cache, calibrator="entropy2"))
