"""Calibration within a memory budget: batches stream, the peak is measured, ``--calib-batch auto`` fits it; progress."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.cli import main
from edge.errors import CalibrationError
from edge.frontend import load_onnx
from edge.quant import calibrate, calibration_for, calibration_progress, load_calibration_data
from tests.models import resnet_block_cnn


@pytest.fixture(scope="module")
def dynamic_cnn() -> bytes:
    return resnet_block_cnn(batch="N").SerializeToString()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("samples")
    np.save(folder / "x.npy", np.random.default_rng(1).standard_normal((48, 3, 16, 16)).astype(np.float32))
    return folder


def test_peak_does_not_grow_with_the_number_of_batches(dynamic_cnn: bytes, samples: Path) -> None:
    """Histograms stream: 12 batches peak like 2 do, far below what holding them would take."""
    graph = load_onnx(dynamic_cnn)
    data = load_calibration_data(samples, graph.inputs, batch=4)
    few = calibrate(graph, load_calibration_data(samples, graph.inputs, max_batches=2, batch=4))
    many = calibrate(graph, data)
    assert many.batches == 12 and many.batch == 4
    assert 0 < many.peak_memory < 1.5 * few.peak_memory
    per_batch_activations = sum(  # every float tensor of one batch of 4, had they all been kept
        4 * int(np.prod([d for d in v.shape[1:]])) * 4 for node in graph.nodes for v in node.outputs if v.shape
    )
    assert many.peak_memory < 12 * per_batch_activations


def test_auto_batch_fits_the_budget(dynamic_cnn: bytes, samples: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graph = load_onnx(dynamic_cnn)
    probe = calibration_for(graph, samples, batch="auto", max_batches=1)
    sizing = probe.sizing
    assert probe.batch == 48 and sizing["per_sample"] > 0  # this machine fits every sample
    monkeypatch.setattr("edge.quant.calibration.resident_bytes", lambda: 0)
    budget = 12.5 * sizing["per_sample"]
    tight = calibration_for(graph, samples, batch="auto", memory_bytes=2 * budget, max_batches=2)
    assert 4 <= tight.batch <= 16  # about 10 per the probe (with headroom), measured again here
    assert tight.peak_memory <= tight.sizing["budget"]  # what the batch really took fits
    with pytest.raises(CalibrationError, match=r"fixed batch of 1"):
        calibration_for(load_onnx(resnet_block_cnn()), samples, batch=4)


def test_auto_batch_with_no_memory_left_is_an_error(dynamic_cnn: bytes, samples: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process already holding the whole calibration share gets a one-line error naming the
    figures, not a negative budget and a silent batch of 1."""
    monkeypatch.setattr("edge.quant.calibration.resident_bytes", lambda: 1200 << 20)
    with pytest.raises(CalibrationError, match=r"already holds 1200 MiB, the whole 1024 MiB calibration share \(50%\) of the profile's 2048 MiB; give --calib-batch N"):
        calibration_for(load_onnx(dynamic_cnn), samples, batch="auto", memory_bytes=2048 << 20)


def test_progress_reports_every_batch_of_every_pass(dynamic_cnn: bytes, samples: Path) -> None:
    graph = load_onnx(dynamic_cnn)
    seen: list[tuple[int, int | None]] = []
    with calibration_progress(lambda done, total: seen.append((done, total))):
        calibrate(graph, load_calibration_data(samples, graph.inputs, max_batches=3, batch=2))
        calibrate(graph, load_calibration_data(samples, graph.inputs, max_batches=3, batch=2), "minmax")
    assert seen == [(i, 6) for i in range(1, 7)] + [(i, 3) for i in range(1, 4)]


def test_cli_auto_batch_for_an_orin_nano(
    dynamic_cnn: bytes, samples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("edge.quant.calibration.resident_bytes", lambda: 0)  # a fresh `edgetrt calibrate`, not this test process (GBs on CI)
    model = tmp_path / "cnn.onnx"
    model.write_bytes(dynamic_cnn)
    args = ["calibrate", str(model), "--calib-data", str(samples), "--calib-batch", "auto", "--profile", "orin-nano-4gb", "--batches", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "peak memory" in out and "batch 48" in out and "MiB per sample" in out
    assert main([*args[:-4], "--calib-batch", "0"]) != 0
    assert "--calib-batch must be a positive number or 'auto'" in capsys.readouterr().err
