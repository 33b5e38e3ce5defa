"""``edge.compare`` / ``edgetrt compare``: engines checked against onnxruntime, wrong engines caught and located."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import edge
from edge.cli import main
from edge.compare import TOLERANCES, compare, compare_arrays
from tests.models import mobile_cnn, resnet_block_cnn


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return resnet_block_cnn()


@pytest.fixture()
def model_file(tmp_path: Path, model: onnx.ModelProto) -> Path:
    path = tmp_path / "resnet.onnx"
    onnx.save(model, path)
    return path


def _break_layer(engine: edge.Engine, origin_node: str) -> edge.ir.Node:
    """Perturb the weight of the engine layer fused from ``origin_node``; returns that layer."""
    layer = next(n for n in engine.graph.nodes if origin_node in n.origin)
    weight = next(v for v in layer.inputs if v is not None and v.is_const and v.const.ndim >= 2)
    wrong = weight.const.copy()
    wrong[0] += 0.5  # the first output channel (conv) / row (gemm) is now wrong
    weight.const = wrong
    return layer


@pytest.fixture()
def broken_engine(tmp_path: Path, model_file: Path) -> tuple[Path, edge.ir.Node]:
    engine = edge.build(model_file)
    layer = _break_layer(engine, "conv_15")  # the identity block's first conv
    path = tmp_path / "broken.engine"
    engine.save(path)
    return path, layer


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# -- the numbers -----------------------------------------------------------------------------
def test_compare_arrays_errors_and_worst_element() -> None:
    expected = np.array([[1.0, -2.0], [4.0, 0.0]], np.float32)
    actual = np.array([[1.0, -2.1], [4.0, 0.05]], np.float32)
    row = compare_arrays("y", actual, expected, rtol=0.01, atol=0.01)
    diff = np.abs(actual.astype(np.float64) - expected)
    assert row.max_abs == pytest.approx(diff.max())
    assert row.mean_abs == pytest.approx(diff.mean())
    assert row.max_rel == np.inf  # 0.05 where the reference is 0
    assert compare_arrays("y", actual[:1], expected[:1], 0.0, 0.2).max_rel == pytest.approx(0.05, rel=1e-5)
    # tolerance at [0,1]: 0.01 + 0.02 = 0.03 -> 0.1 is 3.3x over; at [1,1]: 0.01 -> 0.05 is 5x over
    assert row.worst_index == (1, 1)
    assert row.mismatches == 2 and not row.passed
    assert compare_arrays("y", actual, expected, rtol=0.0, atol=0.2).passed


def test_compare_arrays_nan_and_shape() -> None:
    nan = np.float32("nan")
    assert compare_arrays("y", np.array([nan, 1.0], np.float32), np.array([nan, 1.0], np.float32), 0, 0).passed
    row = compare_arrays("y", np.array([1.0, nan], np.float32), np.array([1.0, 1.0], np.float32), 1.0, 1.0)
    assert not row.passed and row.worst_index == (1,)
    row = compare_arrays("y", np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32), 1.0, 1.0)
    assert not row.passed and "2x3" in row.note and "3x2" in row.note


# -- the API ---------------------------------------------------------------------------------
def test_fp32_build_passes_with_fp32_tolerances(model: onnx.ModelProto) -> None:
    result = compare(model, seed=3)
    assert result.passed and result.numerics == "fp32"
    assert (result.rtol, result.atol) == TOLERANCES["fp32"] == (1e-4, 1e-5)
    assert result.reference.startswith("onnxruntime")
    assert result.outputs[0].name == "probs" and result.outputs[0].shape == (1, 10)


def test_fp16_build_passes_with_fp16_tolerances_only(model: onnx.ModelProto) -> None:
    config = edge.BuilderConfig(precision="fp16")
    result = compare(model, config=config)
    assert result.passed and result.numerics == "fp16"
    assert (result.rtol, result.atol) == TOLERANCES["fp16"]
    # the same engine is visibly not an fp32 engine: fp32 tolerances reject it
    strict = compare(model, config=edge.BuilderConfig(precision="fp16"), rtol=1e-4, atol=1e-5)
    assert not strict.passed and strict.failed == ["probs"]


def test_dla_build_uses_dla_tolerances(model: onnx.ModelProto) -> None:
    config = edge.BuilderConfig(precision="fp16", profile="agx-orin-64gb", dla_core=0, gpu_fallback=True)
    result = compare(model, config=config)
    assert result.numerics == "dla" and (result.rtol, result.atol) == TOLERANCES["dla"]
    assert result.passed


def test_wrong_engine_fails_and_layerwise_names_the_first_wrong_layer(model: onnx.ModelProto, broken_engine) -> None:
    path, layer = broken_engine
    result = compare(model, engine=path, layerwise=True)
    assert not result.passed and result.failed == ["probs"]
    first = result.layerwise.first_divergence
    assert first is not None
    assert first.layer == layer.name
    assert first.origin == ["conv_15", "batchnormalization_20", "relu_21"]
    assert first.reference_tensor == "relu_21_out0"
    assert (first.device, first.precision) == ("cpu", "fp32")
    assert result.layerwise.compared >= 5  # normalize, stem, pool layers matched and passed before it


def test_layerwise_finds_a_late_wrong_layer(model_file: Path) -> None:
    engine = edge.build(model_file)
    layer = _break_layer(engine, "gemm_59")
    result = compare(model_file, engine=engine, layerwise=True)
    assert result.layerwise.first_divergence.layer == layer.name
    assert result.layerwise.first_divergence.op_type == "Gemm"


def test_edgetrt_reference_without_onnxruntime(model: onnx.ModelProto, broken_engine, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert compare(model).reference.startswith("edgetrt reference backend")
    path, layer = broken_engine
    result = compare(model, engine=path, layerwise=True)
    assert "onnxruntime is not installed" in result.reference
    assert not result.passed and result.layerwise.first_divergence.layer == layer.name


def test_given_inputs_are_used(model: onnx.ModelProto) -> None:
    image = np.full((1, 3, 16, 16), 0.25, np.float32)
    a = compare(model, inputs={"image": image}, seed=1)
    b = compare(model, inputs={"image": image}, seed=2)
    assert a.passed and b.passed
    for result in (a, b):
        np.testing.assert_array_equal(result.feeds[0]["image"], image)
    # the reference ran on the given image both times, whatever the seed; the worst element
    # itself may move with the tactics each build times fastest
    np.testing.assert_array_equal(a.runs["reference"][0]["probs"], b.runs["reference"][0]["probs"])


# -- the command -----------------------------------------------------------------------------
def test_cli_passes_and_prints_the_table(model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(model_file)]) == 0
    out = capsys.readouterr().out
    assert "probs" in out and "PASS" in out and "onnxruntime" in out


def test_cli_fails_naming_the_output_and_layer(model_file: Path, broken_engine, capsys: pytest.CaptureFixture[str]) -> None:
    path, layer = broken_engine
    assert main(["compare", str(model_file), "--engine", str(path), "--layerwise"]) == 1
    captured = capsys.readouterr()
    assert "outputs outside tolerance: probs" in _one_error_line(captured.err)
    assert "first divergence" in captured.out and layer.name in captured.out.replace("\n", " ")


def test_cli_json_parses(model_file: Path, broken_engine, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    image = tmp_path / "image.npy"
    np.save(image, np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32))
    assert main(["compare", str(model_file), "--fp16", "--input", f"image={image}", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] is True and data["numerics"] == "fp16" and data["inputs"] == {"image": [1, 3, 16, 16]}
    path, layer = broken_engine
    assert main(["compare", str(model_file), "--engine", str(path), "--layerwise", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] is False and data["layerwise"]["first_divergence"]["layer"] == layer.name


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.onnx"], "does not exist"),
        (["{model}", "--engine", "missing.engine"], "engine 'missing.engine' does not exist"),
        (["{model}", "--engine", "{engine}", "--fp16"], "--fp16 only apply when building"),
        (["{model}", "--input", "image=nothing.npy"], "file 'nothing.npy' does not exist"),
        (["{model}", "--input", "pixels={npy}"], "unknown input 'pixels'"),
        (["{model}", "--shapes", "image:1x3x16"], "rank 3"),
        (["{model}", "--atol", "-1"], "non-negative"),
        (["{model}", "--profile", "no-such-board"], "unknown profile 'no-such-board'"),
        (["{other}", "--engine", "{engine}"], "was it built from this model?"),
    ],
)
def test_cli_bad_input_is_one_line(
    args: list[str], message: str, model_file: Path, broken_engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.onnx"
    onnx.save(mobile_cnn(), other)
    npy = tmp_path / "x.npy"
    np.save(npy, np.zeros((1, 3, 16, 16), np.float32))
    values = {"model": model_file, "engine": broken_engine[0], "other": other, "npy": npy}
    assert main(["compare", *(a.format(**values) for a in args)]) != 0
    assert message in _one_error_line(capsys.readouterr().err)
