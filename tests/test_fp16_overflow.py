"""FP16 overflow: the build names the layer that leaves FP16's range, ``run`` warns on NaN/inf
outputs instead of printing them as a normal result with numpy's warning leaking."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edge
from edge.cli import main


def overflowing_model() -> onnx.ModelProto:
    """x * 4e4 fits FP16 for |x| < 1.6; the sum of squares of 8 such values is far beyond it,
    and sub(y, y) of the inf is NaN."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "k"], ["scaled"], name="scale"),
            helper.make_node("ReduceSumSquare", ["scaled"], ["energy"], name="energy", keepdims=1),
            helper.make_node("Sub", ["energy", "energy"], ["y"], name="zero"),
        ],
        "overflow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        [numpy_helper.from_array(np.array(4e4, np.float32), "k")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "overflow.onnx"
    onnx.save(overflowing_model(), path)
    return path


def _expected_peak() -> float:
    """sum((x * 4e4)^2) on the seed-0 inputs the build probes with, in numpy."""
    x = np.random.default_rng(0).standard_normal((1, 8)).astype(np.float32)
    return float(np.sum((x.astype(np.float64) * 4e4) ** 2))


def test_build_names_the_overflowing_layer(model_file: Path) -> None:
    engine = edge.build(model_file, edge.BuilderConfig(precision="fp16"))
    (warning,) = [w for w in engine.build["warnings"] if "FP16 overflow" in w]
    assert "'energy' (ReduceSumSquare" in warning and "seeded random inputs" in warning
    assert f"{_expected_peak():.3g}" in warning
    assert "'scale'" not in warning  # 4e4 * |x| stays inside FP16 on these inputs
    assert not [w for w in edge.build(model_file).build.get("warnings", []) if "FP16" in w]  # FP32 build


def test_run_warns_on_nan_without_numpy_warnings(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = tmp_path / "overflow.engine"
    assert main(["build", str(model_file), "--fp16", "-o", str(engine)]) == 0
    assert "FP16 overflow" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a leaked RuntimeWarning fails the run
        assert main(["run", str(engine)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "warning: output 'y' has 1 NaN and 0 inf of 1 values" in err
