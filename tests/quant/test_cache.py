"""Calibration caches in TensorRT's text format: exact bytes, round trip, hand-written TensorRT caches, bad files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from edge.errors import CalibrationError
from edge.quant import CalibrationCache, read_cache, write_cache


def test_exact_text_format(tmp_path: Path) -> None:
    path = tmp_path / "m.calib"
    write_cache(path, CalibrationCache("EntropyCalibration2", {"images": 1 / 127, "out:0": 2.0078740157}, version=8602))
    assert path.read_bytes() == b"TRT-8602-EntropyCalibration2\nimages: 3c010204\nout:0: 40008102\n"


def test_round_trip_is_bit_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scales = {f"t{i}": float(np.float32(s)) for i, s in enumerate(rng.uniform(1e-4, 10, 50))}
    scales["(Unnamed Layer* 4) [Fully Connected]_output"] = 0.5
    path = tmp_path / "x.calib"
    write_cache(path, CalibrationCache("MinMaxCalibration", scales, version=100300))
    cache = read_cache(path)
    assert (cache.algorithm, cache.version, cache.calibrator) == ("MinMaxCalibration", 100300, "minmax")
    assert cache.scales == scales
    for name, scale in scales.items():
        bits = struct.unpack(">I", struct.pack(">f", scale))[0]
        assert f"{name}: {bits:08x}\n" in path.read_text()


def test_reads_a_tensorrt_cache(tmp_path: Path) -> None:
    path = tmp_path / "trt.calib"
    path.write_text(
        "TRT-8502-EntropyCalibration2\n"
        "images: 3c00f9f4\n"
        "/backbone/conv1/Conv_output_0: 3d418306\n"
        "(Unnamed Layer* 12) [Shuffle]_output: 3ca14285\n"
        "input_1:0: 3c010204\n"
        "\n"
    )
    cache = read_cache(path)
    assert cache.calibrator == "entropy2" and cache.version == 8502
    assert cache.scales["/backbone/conv1/Conv_output_0"] * 127 == pytest.approx(6.0, rel=1e-6)
    assert cache.scales["(Unnamed Layer* 12) [Shuffle]_output"] * 127 == pytest.approx(2.5, rel=1e-6)
    assert cache.scales["input_1:0"] == np.float32(1 / 127)
    assert cache.scales["images"] == pytest.approx(0.00787, rel=1e-3)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "line 1"),
        ("EntropyCalibration2\nx: 3c010204\n", "line 1"),
        ("TRT-8602-EntropyCalibration2\nx 3c010204\n", "line 2"),
        ("TRT-8602-EntropyCalibration2\nx: 3c0102\n", "line 2"),
        ("TRT-8602-EntropyCalibration2\nx: 3c010204\ny: bf800000\n", "line 3"),
        ("TRT-8602-EntropyCalibration2\nx: 7fc00000\n", "line 2"),
    ],
)
def test_bad_caches_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.calib"
    path.write_text(text)
    with pytest.raises(CalibrationError, match=message):
        read_cache(path)


def test_writing_a_bad_scale_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "keep.calib"
    write_cache(path, CalibrationCache("MinMaxCalibration", {"a": 1.0}))
    before = path.read_bytes()
    with pytest.raises(CalibrationError, match="'b'"):
        write_cache(path, CalibrationCache("MinMaxCalibration", {"a": 1.0, "b": 0.0}))
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["keep.calib"]
