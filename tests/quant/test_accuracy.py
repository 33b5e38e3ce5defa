"""Top-1 agreement of a calibrated INT8 engine with FP32, checked against the engines' outputs compared by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edge
from edge.cli import main
from edge.errors import CalibrationError
from edge.quant.accuracy import deviation, top1_agreement
from tests.models import resnet_block_cnn


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("eval")
    np.save(folder / "x.npy", np.random.default_rng(3).standard_normal((24, 3, 16, 16)).astype(np.float32))
    return folder


def test_agreement_is_the_share_of_matching_argmax(data: Path) -> None:
    model = resnet_block_cnn().SerializeToString()
    fp32 = edge.build(model)
    int8 = edge.build(model, edge.BuilderConfig(precision="int8", calib_data=data, calibrator="minmax"))
    samples = np.load(data / "x.npy")
    batches = [[samples[i : i + 1]] for i in range(len(samples))]
    found = top1_agreement(fp32.create_context(), int8.create_context(), batches)
    expected = np.concatenate([fp32.create_context().run({"image": b[0]})["probs"] for b in batches])
    actual = np.concatenate([int8.create_context().run({"image": b[0]})["probs"] for b in batches])
    assert found.samples == 24 and found.output == "probs"
    assert found.top1 == np.mean(expected.argmax(1) == actual.argmax(1))
    expected, actual = expected.astype(np.float64), actual.astype(np.float64)
    cosine = np.sum(expected * actual) / np.linalg.norm(expected) / np.linalg.norm(actual)
    assert found.cosine == pytest.approx(cosine, rel=1e-9) and found.cosine < 1
    same = top1_agreement(fp32.create_context(), fp32.create_context(), batches[:3])
    assert (same.top1, same.cosine) == (1.0, pytest.approx(1.0))
    with pytest.raises(CalibrationError, match="'logits' is not one of the model's outputs"):
        top1_agreement(fp32.create_context(), int8.create_context(), batches, "logits")


def test_cli_reports_agreement(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "cnn.onnx"
    model.write_bytes(resnet_block_cnn().SerializeToString())
    assert main(["calibrate", str(model), "--calib-data", str(data), "--eval-data", str(data)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps at the terminal width
    assert "INT8 vs FP32" in out and "of 24 rows of 'probs'" in out and "top-1 agreement" in out


def test_deviation_takes_the_worst_output_of_every_batch() -> None:
    rng = np.random.default_rng(5)
    expected = [[rng.standard_normal((2, 4)), rng.standard_normal(3)] for _ in range(3)]
    actual = [[a + 0.01 * rng.standard_normal(a.shape), b + 0.1 * rng.standard_normal(b.shape)] for a, b in expected]

    def relative(i: int) -> float:
        wanted = np.concatenate([run[i].ravel() for run in expected])
        return float(np.linalg.norm(np.concatenate([run[i].ravel() for run in actual]) - wanted) / np.linalg.norm(wanted))

    found = deviation(expected, actual)
    assert found.relative == pytest.approx(max(relative(0), relative(1)), rel=1e-12) and relative(1) > relative(0)
    assert found.max_error == max(np.abs(a - e).max() for ra, re in zip(actual, expected) for a, e in zip(ra, re))
    broken = [[a, np.full_like(b, np.nan)] for a, b in actual]
    assert deviation(expected, broken).relative == float("inf")
    assert deviation(expected, expected).relative == 0.0
