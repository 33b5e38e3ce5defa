"""Dynamic engines: ``run --shapes``, and random inputs at the optimization profile's opt shape
in ``run`` and ``compare`` (not 1 for every dynamic dim)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edge
from edge.cli import main
from edge.compare import compare

WEIGHT = np.arange(12, dtype=np.float32).reshape(4, 3) / 10


def dynamic_model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")],
        "dynamic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(WEIGHT, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "dynamic.onnx"
    onnx.save(dynamic_model(), path)
    return path


PROFILE = ["--min-shapes", "x:1x4", "--opt-shapes", "x:5x4", "--max-shapes", "x:8x4"]


@pytest.fixture()
def engine_file(model_file: Path, tmp_path: Path) -> Path:
    path = tmp_path / "dynamic.engine"
    assert main(["build", str(model_file), "-o", str(path), *PROFILE]) == 0
    return path


def test_run_takes_opt_shape_then_shapes(engine_file: Path, tmp_path: Path) -> None:
    assert main(["run", str(engine_file), "-o", str(tmp_path / "opt.npz"), "--save-inputs", str(tmp_path / "in.npz")]) == 0
    x = np.load(tmp_path / "in.npz")["x"]
    assert x.shape == (5, 4)
    np.testing.assert_allclose(np.load(tmp_path / "opt.npz")["y"], x @ WEIGHT, rtol=1e-5, atol=1e-6)
    assert main(["run", str(engine_file), "--shapes", "x:7x4", "-o", str(tmp_path / "seven.npz")]) == 0
    assert np.load(tmp_path / "seven.npz")["y"].shape == (7, 3)


def test_run_shapes_outside_the_profile_is_refused(engine_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(engine_file), "--shapes", "x:9x4"]) == 1
    assert "outside optimization profile 0" in capsys.readouterr().err


def test_compare_uses_the_opt_shape(model_file: Path, engine_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert compare(model_file, engine=engine_file).inputs == {"x": [5, 4]}
    capsys.readouterr()
    assert main(["compare", str(model_file), *PROFILE, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["inputs"] == {"x": [5, 4]}
    assert compare(model_file, engine=engine_file, shapes={"x": (3, 4)}).inputs == {"x": [3, 4]}


def test_dynamic_input_without_profile_is_noted(model_file: Path) -> None:
    result = compare(model_file)
    assert result.inputs == {"x": [1, 4]}
    assert result.notes == ["input 'x' has dynamic dims and no shape was given: random data of shape 1x4; give --shapes x:DIMS"]


def test_inspect_prints_each_optimization_profile(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """trtexec's --dumpOptimizationProfile: every profile's min/opt/max per input, as built."""
    path = tmp_path / "two.engine"
    second = ["--min-shapes", "x:9x4", "--opt-shapes", "x:12x4", "--max-shapes", "x:16x4"]
    assert main(["build", str(model_file), "-o", str(path), *PROFILE, *second]) == 0
    capsys.readouterr()
    assert main(["inspect", str(path)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["│", "0", "│", "x", "│", "1x4", "│", "5x4", "│", "8x4", "│"] in rows
    assert ["│", "1", "│", "x", "│", "9x4", "│", "12x4", "│", "16x4", "│"] in rows
    assert main(["inspect", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["build"]["optimization_profiles"][1] == {"x": {"min": [9, 4], "opt": [12, 4], "max": [16, 4]}}
