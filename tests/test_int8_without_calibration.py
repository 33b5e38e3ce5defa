"""``--int8`` without calibration: a loud warning, the precisions really used, and compare's
tolerances taken from them (an INT8 request that ran FP16 is checked as FP16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import edge
from edge.cli import main
from edge.compare import TOLERANCES, compare
from tests.models import resnet_block_cnn


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "cnn.onnx"
    onnx.save(resnet_block_cnn(), path)
    return path


def test_build_warns_and_reports_the_precisions_used(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine_path = tmp_path / "cnn.engine"
    assert main(["build", str(model_file), "--int8", "-o", str(engine_path)]) == 0
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert "warning: INT8 requested without calibration data or cache" in err and "no layer runs INT8" in err
    engine = edge.load(engine_path)
    used = {}
    for node in engine.graph.nodes:
        used[node.meta["precision"]] = used.get(node.meta["precision"], 0) + 1
    assert "int8" not in used and used.get("fp16", 0) > 0
    assert engine.build["layer_precisions"] == used
    out = " ".join(captured.out.split())
    assert "precision int8 (layers: " + ", ".join(f"{n} {p}" for p, n in sorted(used.items())) + ")" in out


def test_build_with_calibration_does_not_warn(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "calib"
    data.mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        np.save(data / f"{index}.npy", rng.standard_normal((1, 3, 16, 16)).astype(np.float32))
    assert main(["build", str(model_file), "--int8", "--calib-data", str(data), "-o", str(tmp_path / "q.engine")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert edge.load(tmp_path / "q.engine").build["layer_precisions"].get("int8", 0) > 0


def test_compare_int8_without_scales_uses_fp16_tolerances(model_file: Path) -> None:
    result = compare(model_file, config=edge.BuilderConfig(precision="int8"))
    assert result.numerics == "fp16" and (result.rtol, result.atol) == TOLERANCES["fp16"]
    assert result.passed
