"""Calibration data as users have it: image folders (preprocessed from flags or YAML) and Python callables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.cli import main
from edge.errors import CalibrationError
from edge.frontend import load_onnx
from edge.ir import Value
from edge.quant import Preprocess, calibration_for, load_calibration_data, read_cache
from tests.models import resnet_block_cnn

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def _pixels(seed: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def images(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    """Three lossless PNGs whose shorter side is already 16 pixels (no resampling), 16x24 wide or 24x16 tall."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    shapes = [(16, 24), (24, 16), (16, 16)]
    pixels = [_pixels(i, h, w) for i, (h, w) in enumerate(shapes)]
    for index, array in enumerate(pixels):
        Image.fromarray(array).save(folder / f"img{index}.png")
    return folder, pixels


def _expected(pixels: np.ndarray, bgr: bool = False, nhwc: bool = False) -> np.ndarray:
    """Center 16x16 crop, [0, 1] pixels (channels reordered for BGR), normalized per input channel, written out by hand."""
    h, w = pixels.shape[:2]
    top, left = (h - 16) // 2, (w - 16) // 2
    crop = pixels[top : top + 16, left : left + 16].astype(np.float32) / 255
    if bgr:
        crop = crop[:, :, [2, 1, 0]]
    sample = (crop - MEAN) / STD
    return sample if nhwc else np.moveaxis(sample, 2, 0)


def test_image_folder_becomes_normalized_nchw_batches(images: tuple[Path, list[np.ndarray]]) -> None:
    folder, pixels = images
    inputs = load_onnx(resnet_block_cnn()).inputs
    settings = Preprocess.from_mapping({"mean": MEAN.tolist(), "std": "0.229,0.224,0.225"}, "test")
    batches = list(load_calibration_data(folder, inputs, preprocess=settings))
    assert len(batches) == 3 and batches[0][0].shape == (1, 3, 16, 16) and batches[0][0].dtype == np.float32
    for batch, original in zip(batches, pixels):
        np.testing.assert_allclose(batch[0][0], _expected(original), rtol=1e-6, atol=1e-6)


def test_image_yaml_bgr_nhwc_and_a_dynamic_batch(images: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    folder, pixels = images
    spec = tmp_path / "prep.yaml"
    spec.write_text("mean: [0.485, 0.456, 0.406]\nstd: [0.229, 0.224, 0.225]\nchannels: bgr\nlayout: nhwc\ncrop: 16\n")
    nhwc = Value("pixels", np.float32, ("N", "H", "W", 3))
    data = load_calibration_data(folder, [nhwc], batch=2, preprocess=Preprocess.from_yaml(spec))
    (batch,) = list(data)  # 3 images, batches of 2: the odd one is left over
    assert batch[0].shape == (2, 16, 16, 3)
    for sample, original in zip(batch[0], pixels):
        np.testing.assert_allclose(sample, _expected(original, bgr=True, nhwc=True), rtol=1e-6, atol=1e-6)


def test_image_resize_then_center_crop(tmp_path: Path) -> None:
    """A 32x48 image resized (shorter side 16, as PIL's bilinear resize gives) then cropped to 16x16."""
    pixels = _pixels(7, 32, 48)
    Image.fromarray(pixels).save(tmp_path / "big.png")
    (batch,) = list(load_calibration_data(tmp_path, load_onnx(resnet_block_cnn()).inputs))
    resized = np.asarray(Image.fromarray(pixels).resize((24, 16), Image.Resampling.BILINEAR))
    np.testing.assert_allclose(batch[0][0], np.moveaxis(resized[:, 4:20].astype(np.float32) / 255, 2, 0), atol=1e-6)


@pytest.mark.parametrize(
    "setup, settings, message",
    [
        (lambda f: (f / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg"), {}, "calibration image '{f}/bad.jpg' cannot be decoded"),
        (lambda f: Image.fromarray(_pixels(0, 16, 16)).save(f / "a.png"), {"resize": 8}, "'{f}/a.png' is 8x8 after resizing, smaller than the 16x16 crop"),
        (lambda f: (Image.fromarray(_pixels(0, 16, 16)).save(f / "a.png"), np.save(f / "b.npy", np.zeros(1))), {}, "mixes .npy/.npz files and images"),
        (lambda f: (f / "notes.txt").write_text("no data here"), {}, "is empty"),
        (lambda f: Image.fromarray(_pixels(0, 16, 16)).save(f / "a.png"), {"mean": [0.5, 0.5]}, "mean has 2 values; input 'image' has 3 channels"),
    ],
)
def test_bad_image_data_names_the_file(tmp_path: Path, setup, settings: dict, message: str) -> None:
    setup(tmp_path)
    with pytest.raises(CalibrationError) as info:
        list(load_calibration_data(tmp_path, load_onnx(resnet_block_cnn()).inputs, preprocess=Preprocess.from_mapping(settings, "test")))
    assert message.format(f=tmp_path) in str(info.value)


def test_bad_preprocessing_settings(tmp_path: Path) -> None:
    spec = tmp_path / "prep.yaml"
    spec.write_text("mean: [0.5]\nnormalise: true\n")
    with pytest.raises(CalibrationError, match=f"preprocessing file '{spec}': unknown preprocessing setting 'normalise'"):
        Preprocess.from_yaml(spec)
    with pytest.raises(CalibrationError, match="layout is 'chw', expected one of"):
        Preprocess.from_mapping({"layout": "chw"}, "flags")


def _batches_module(tmp_path: Path, shape: tuple[int, ...]) -> str:
    module = tmp_path / "calib_source.py"
    module.write_text(
        "import numpy as np\n\n"
        "def batches():\n"
        "    rng = np.random.default_rng(0)\n"
        f"    for _ in range(3):\n        yield {{'image': rng.standard_normal({shape}).astype(np.float32)}}\n"
    )
    return f"{module}:batches"


def test_callable_feeds_calibration_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "cnn.onnx"
    model.write_bytes(resnet_block_cnn().SerializeToString())
    cache = tmp_path / "cnn.calib"
    assert main(["calibrate", str(model), "--calib-data", _batches_module(tmp_path, (1, 3, 16, 16)), "-o", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "on 3 batches" in out and "peak memory" in out
    rng = np.random.default_rng(0)
    expected_max = max(float(np.abs(rng.standard_normal((1, 3, 16, 16)).astype(np.float32)).max()) for _ in range(3))
    assert read_cache(cache).scales["image"] * 127 <= expected_max * (1 + 1e-6)  # the callable's batches were calibrated on


def test_callable_batches_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    graph = load_onnx(resnet_block_cnn())
    with pytest.raises(CalibrationError, match=r"batch 1 of '.*calib_source.py:batches': input 'image' has shape 1x3x8x8, the model expects 1x3x16x16"):
        calibration_for(graph, _batches_module(tmp_path, (1, 3, 8, 8)))
    with pytest.raises(CalibrationError, match="has no function 'missing'"):
        calibration_for(graph, f"{tmp_path / 'calib_source.py'}:missing")

    def broken() -> list:
        raise RuntimeError("camera unplugged")

    with pytest.raises(CalibrationError, match="calibration callable 'broken' failed: RuntimeError: camera unplugged"):
        calibration_for(graph, broken)
    model = tmp_path / "cnn.onnx"
    model.write_bytes(resnet_block_cnn().SerializeToString())
    assert main(["calibrate", str(model), "--calib-data", str(tmp_path / "empty")]) != 0
    assert "does not exist" in capsys.readouterr().err


def test_cli_calibrates_an_image_folder(images: tuple[Path, list[np.ndarray]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, pixels = images
    model = tmp_path / "cnn.onnx"
    model.write_bytes(resnet_block_cnn().SerializeToString())
    args = ["calibrate", str(model), "--calib-data", str(folder), "--calibrator", "minmax", "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"]
    assert main([*args, "-o", str(tmp_path / "m.calib")]) == 0
    image_max = max(float(np.abs(_expected(p)).max()) for p in pixels)
    assert read_cache(tmp_path / "m.calib").scales["image"] == pytest.approx(image_max / 127, rel=1e-6)
    assert main([*args, "--layout", "nhwc"]) != 0
    assert "has 16 channels in NHWC" in capsys.readouterr().err
