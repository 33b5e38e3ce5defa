"""Calibration data folders: batching of .npy/.npz files and one-line errors for bad data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.errors import CalibrationError
from edge.frontend import load_onnx
from edge.quant import load_calibration_data
from tests.models import resnet_block_cnn, transformer_encoder


@pytest.fixture(scope="module")
def cnn_inputs() -> list:
    return load_onnx(resnet_block_cnn(batch=2)).inputs


def test_npy_files_are_stacked_and_batched(tmp_path: Path, cnn_inputs: list) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    b = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    (tmp_path / "notes.txt").write_text("ignored")
    batches = load_calibration_data(tmp_path, cnn_inputs)
    joined = np.concatenate([a, b])
    assert len(batches) == 3  # 7 samples, batch 2: the odd one out is left over
    for index, batch in enumerate(batches):  # the middle batch straddles the two files
        np.testing.assert_array_equal(batch[0], joined[2 * index : 2 * index + 2])
    assert len(load_calibration_data(tmp_path, cnn_inputs, max_batches=2)) == 2


def test_npz_names_inputs(tmp_path: Path) -> None:
    graph = load_onnx(transformer_encoder())
    tokens = np.ones((4, 8, 16), np.float32)
    mask = np.zeros((4, 1, 1, 8), np.float32)
    np.savez(tmp_path / "set.npz", tokens=tokens, mask=mask)
    batches = list(load_calibration_data(tmp_path, graph.inputs))
    assert len(batches) == 2 and [a.shape for a in batches[0]] == [(2, 8, 16), (2, 1, 1, 8)]


@pytest.mark.parametrize(
    "files, message",
    [
        ({}, "is empty: it holds no .npy/.npz files"),
        ({"x.npy": np.zeros((2, 3, 16, 16), np.float64)}, "dtype float64, the model expects float32"),
        ({"x.npy": np.zeros((2, 3, 8, 8), np.float32)}, "shape 2x3x8x8, the model expects 2x3x16x16"),
        ({"x.npy": np.zeros((3, 16, 16), np.float32)}, "shape 3x16x16"),
        ({"x.npz": {"images": np.zeros((2, 3, 16, 16), np.float32)}}, "'images', which is not a model input"),
        ({"x.npy": np.zeros((1, 3, 16, 16), np.float32)}, "1 samples, fewer than one batch of 2"),
    ],
)
def test_bad_data(tmp_path: Path, cnn_inputs: list, files: dict, message: str) -> None:
    for name, content in files.items():
        if name.endswith(".npz"):
            np.savez(tmp_path / name, **content)
        else:
            np.save(tmp_path / name, content)
    with pytest.raises(CalibrationError, match=message.replace("(", r"\(")) as info:
        load_calibration_data(tmp_path, cnn_inputs)
    assert "\n" not in str(info.value)


def test_missing_folder_and_missing_input(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="does not exist"):
        load_calibration_data(tmp_path / "nope", [])
    graph = load_onnx(transformer_encoder())
    np.save(tmp_path / "tokens.npy", np.ones((2, 8, 16), np.float32))
    with pytest.raises(CalibrationError, match="no samples for input 'mask'"):
        load_calibration_data(tmp_path, graph.inputs)
    (tmp_path / "broken.npy").write_bytes(b"not numpy")
    with pytest.raises(CalibrationError, match="broken.npy"):
        load_calibration_data(tmp_path, graph.inputs)
