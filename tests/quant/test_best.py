"""``build --best`` with calibration data: each layer's precision chosen among int8/fp16/fp32 so
the outputs stay within ``--best-tolerance`` (relative L2 vs FP32) on the calibration samples,
checked against onnxruntime running the original model and against the plain --int8 build."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import edge
from edge.cli import main
from edge.precision import PINNED
from edge.quant.best import CHOSEN
from tests.models import resnet_block_cnn

SAMPLES = 8


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CNN, its calibration samples (data/x.npy) and a cache calibrated on them (cnn.calib)."""
    folder = tmp_path_factory.mktemp("best")
    path = folder / "cnn.onnx"
    path.write_bytes(resnet_block_cnn().SerializeToString())
    (folder / "data").mkdir()
    np.save(folder / "data" / "x.npy", np.random.default_rng(2).standard_normal((SAMPLES, 3, 16, 16)).astype(np.float32))
    assert main(["calibrate", str(path), "--calib-data", str(folder / "data"), "-o", str(folder / "cnn.calib")]) == 0
    return path


def _best(model: Path, tolerance: float, pins: dict[str, str] | None = None) -> edge.Engine:
    config = edge.BuilderConfig(
        precision="int8", best=True, best_tolerance=tolerance, calib_data=model.parent / "data",
        calib_cache=model.with_suffix(".calib"), layer_precisions=pins,
    )
    return edge.build(model, config)


def _relative_error(engine: edge.Engine, model: Path) -> float:
    """||y - y_ort|| / ||y_ort|| of the engine's probs over the calibration samples, onnxruntime's
    FP32 run of the original model as the reference."""
    samples = np.load(model.parent / "data" / "x.npy")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    context = engine.create_context()
    expected = np.concatenate([session.run(None, {"image": s[None]})[0] for s in samples]).astype(np.float64)
    actual = np.concatenate([context.run({"image": s[None]})["probs"] for s in samples]).astype(np.float64)
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def _int8_layers(engine: edge.Engine) -> set[str]:
    return {n.name for n in engine.graph.nodes if n.meta["precision"] == "int8"}


def _plain_int8(model: Path) -> edge.Engine:
    return edge.build(model, edge.BuilderConfig(precision="int8", calib_cache=model.with_suffix(".calib")))


def test_a_loose_tolerance_puts_every_layer_with_scales_in_int8(model: Path) -> None:
    engine = _best(model, 10.0)
    expected = _int8_layers(_plain_int8(model))
    assert expected and _int8_layers(engine) == expected
    assert engine.build["best"]["trials"] == 2  # the FP32 reference and every INT8 layer at once
    assert engine.build["best"]["error"] == pytest.approx(_relative_error(engine, model), abs=1e-6)


def test_a_tight_tolerance_puts_no_layer_in_int8(model: Path) -> None:
    engine = _best(model, 1e-9)
    assert not _int8_layers(engine)
    assert {n.meta["precision"] for n in engine.graph.nodes} == {"fp32"}  # FP16 moves the outputs too
    assert _relative_error(engine, model) < 1e-6


def test_a_middle_tolerance_mixes_precisions_within_it(model: Path) -> None:
    tolerance = 0.02
    plain = _plain_int8(model)
    assert _relative_error(plain, model) > tolerance  # all-INT8 does not fit: the search has work to do
    engine = _best(model, tolerance)
    int8 = _int8_layers(engine)
    assert int8 and int8 < _int8_layers(plain)
    measured = _relative_error(engine, model)
    assert measured <= tolerance + 1e-6  # onnxruntime's FP32 and edgetrt's differ by ~4e-7
    record = engine.build["best"]
    assert record["error"] == pytest.approx(measured, abs=1e-6) and record["samples"] == SAMPLES
    decided = {layer["layer"]: layer for layer in record["layers"]}
    for node in engine.graph.nodes:
        if node.name in decided:
            assert node.meta["precision"] == decided[node.name]["precision"] and node.meta["precision_note"] == CHOSEN
    kept_out = [layer for layer in record["layers"] if layer["precision"] != "int8" and layer["int8_alone"] is not None]
    assert kept_out and all(
        layer["int8_alone"] > tolerance or layer["int8"] > tolerance for layer in kept_out
    )  # every INT8-capable layer left out raised the error past the tolerance, alone or on top


def test_layer_precision_pins_win_over_the_choice(model: Path) -> None:
    conv = next(node.name for node in resnet_block_cnn().graph.node if node.op_type == "Conv")
    loose = _best(model, 10.0, {conv: "fp16"})
    layer = next(n for n in loose.graph.nodes if conv in n.origin)
    assert (layer.meta["precision"], layer.meta["precision_note"]) == ("fp16", PINNED)
    assert _int8_layers(loose) == _int8_layers(_plain_int8(model)) - {layer.name}
    assert layer.name not in {entry["layer"] for entry in loose.build["best"]["layers"]}
    tight = _best(model, 1e-9, {conv: "int8"})
    assert _int8_layers(tight) == {layer.name}


def test_cli_build_and_inspect_show_the_choice(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = tmp_path / "best.engine"
    calib = ["--calib-data", str(model.parent / "data"), "--calib", str(model.with_suffix(".calib"))]
    assert main(["build", str(model), "--best", *calib, "--best-tolerance", "0.02", "-o", str(engine)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--best:" in out and "within the tolerance 0.02" in out and f"on {SAMPLES} calibration samples" in out
    assert main(["inspect", str(engine)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--best decisions" in out and "within the tolerance 0.02" in out
    assert main(["inspect", str(engine), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    reasons = {layer["layer"]: layer["reason"] for layer in info["build"]["best"]["layers"]}
    assert info["build"]["best"]["tolerance"] == 0.02 and all(reasons.values())
    assert all(row["precision_note"] == CHOSEN for row in info["layers"] if row["name"] in reasons)
    for reason in reasons.values():  # the decisions table shows every reason (rich may wrap it)
        assert " ".join(reason.split()[:2]) in out


def test_without_calibration_data_best_allows_every_precision_and_says_so(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = tmp_path / "cache-only.engine"
    assert main(["build", str(model), "--best", "--calib", str(model.with_suffix(".calib")), "-o", str(engine)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "note: --best without --calib-data" in out
    assert _int8_layers(edge.load(engine)) == _int8_layers(_plain_int8(model))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--best", "--best-tolerance", "0"], "--best-tolerance must be a positive number"),
        (["--best", "--best-tolerance", "-0.5"], "--best-tolerance must be a positive number"),
        (["--best", "--best-tolerance", "abc"], "got 'abc'"),
        (["--best", "--best-tolerance", "nan"], "--best-tolerance must be a positive number"),
        (["--best", "--best-tolerance", "inf"], "--best-tolerance must be a positive number"),
        (["--int8", "--best-tolerance", "0.01"], "--best-tolerance applies to --best"),
    ],
)
def test_bad_tolerance_is_a_one_line_error(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str) -> None:
    engine = tmp_path / "x.engine"
    assert main(["build", str(model), *flags, "--calib-data", str(model.parent / "data"), "-o", str(engine)]) != 0
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err and not engine.exists()


def test_the_python_api_refuses_a_bad_tolerance_or_a_precision_without_int8() -> None:
    with pytest.raises(edge.EdgeError, match="best tolerance must be a positive number"):
        edge.BuilderConfig(precision="int8", best=True, best_tolerance=0.0)
    with pytest.raises(edge.EdgeError, match="needs precision 'int8'"):
        edge.BuilderConfig(precision="fp16", best=True)
