"""Image folders as calibration data: decode (Pillow), resize, center crop, normalize, lay out.

Each image becomes one sample of a one-input image model: converted to RGB (or grayscale
for a one-channel input), its shorter side resized to ``resize`` pixels (bilinear; default
the crop's longer side), center-cropped to the model's height x width, multiplied by
``scale`` (1/255: pixels in [0, 1]), channels reordered for ``channels: bgr``, normalized
``(x - mean) / std`` per input channel (mean and std in the input's channel order), and laid out NCHW or NHWC (from ``layout``, else from the
input shape: channels of 1 or 3 at dim 1 or dim 3). A uint8 input gets the raw pixels.
The same settings come from command-line flags or a small YAML file::

    resize: 256
    crop: 224            # or [height, width]; the model's static size by default
    mean: [0.485, 0.456, 0.406]
    std: [0.229, 0.224, 0.225]
    channels: rgb        # or bgr
    layout: nchw         # or nhwc
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edge.errors import CalibrationError
from edge.ir import Value
from edge.quant.data import SampleData

__all__ = ["IMAGE_SUFFIXES", "Preprocess", "image_data"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_CHANNELS = ("rgb", "bgr")
_LAYOUTS = ("nchw", "nhwc")


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes an input sample (see the module docstring)."""

    resize: int | None = None
    crop: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    scale: float = 1 / 255
    channels: str = "rgb"
    layout: str | None = None

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any], where: str) -> Preprocess:
        """Settings by name (a YAML file's or the flags'), None values left at their defaults.

        Raises:
            CalibrationError: an unknown key or a bad value, naming ``where``.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise CalibrationError(f"{where}: unknown preprocessing setting '{unknown[0]}' (known: {sorted(known)})")
        given = {k: v for k, v in settings.items() if v is not None}
        try:
            values: dict[str, Any] = {}
            if "resize" in given:
                values["resize"] = _positive(given["resize"], "resize")
            if "crop" in given:
                crop = given["crop"]
                sizes = [crop, crop] if isinstance(crop, (int, str)) else list(crop)
                if len(sizes) != 2:
                    raise ValueError(f"crop is {crop!r}, expected a size or [height, width]")
                values["crop"] = (_positive(sizes[0], "crop"), _positive(sizes[1], "crop"))
            for key in ("mean", "std"):
                if key in given:
                    items = given[key] if isinstance(given[key], (list, tuple)) else str(given[key]).split(",")
                    values[key] = tuple(float(v) for v in items)
            if any(v == 0 for v in values.get("std", ())):
                raise ValueError("std has a zero")
            if "scale" in given:
                values["scale"] = float(given["scale"])
            for key, allowed in (("channels", _CHANNELS), ("layout", _LAYOUTS)):
                if key in given:
                    value = str(given[key]).lower()
                    if value not in allowed:
                        raise ValueError(f"{key} is '{given[key]}', expected one of {list(allowed)}")
                    values[key] = value
        except (TypeError, ValueError) as exc:
            raise CalibrationError(f"{where}: {exc}") from None
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> Preprocess:
        """The settings of a YAML file (a mapping of the keys above)."""
        source = Path(path)
        try:
            settings = yaml.safe_load(source.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise CalibrationError(f"preprocessing file '{source}' cannot be read: {str(exc).splitlines()[0]}") from None
        if not isinstance(settings, Mapping):
            raise CalibrationError(f"preprocessing file '{source}' is not a mapping of settings (resize, crop, mean, ...)")
        return cls.from_mapping(settings, f"preprocessing file '{source}'")


def _positive(value: Any, key: str) -> int:
    number = int(value)
    if number < 1 or number != float(value):
        raise ValueError(f"{key} is {value!r}, expected a positive whole number of pixels")
    return number


@dataclass(frozen=True)
class _Target:
    """The sample an image must become: (height, width), channels, layout, dtype."""

    height: int
    width: int
    channels: int
    layout: str
    dtype: np.dtype


def _target(value: Value, preprocess: Preprocess) -> _Target:
    shape = value.shape
    if shape is None or len(shape) != 4:
        raise CalibrationError(f"image calibration data needs a 4-D image input; '{value.describe()}' is not one")
    layout = preprocess.layout
    if layout is None:
        layout = "nchw" if shape[1] in (1, 3) else "nhwc" if shape[3] in (1, 3) else None
    if layout is None:
        raise CalibrationError(f"input '{value.describe()}': cannot tell NCHW from NHWC; set layout (nchw or nhwc)")
    channels, height, width = (shape[1], shape[2], shape[3]) if layout == "nchw" else (shape[3], shape[1], shape[2])
    if channels not in (1, 3):
        raise CalibrationError(f"input '{value.describe()}' has {channels} channels in {layout.upper()}; images give 1 or 3")
    if preprocess.crop is not None:
        if isinstance(height, int) and isinstance(width, int) and preprocess.crop != (height, width):
            raise CalibrationError(f"crop {preprocess.crop[0]}x{preprocess.crop[1]} does not fit input '{value.describe()}'")
        height, width = preprocess.crop
    if not isinstance(height, int) or not isinstance(width, int):
        raise CalibrationError(f"input '{value.describe()}' has no static height and width; set crop")
    for key in ("mean", "std"):
        if len(getattr(preprocess, key)) not in (1, channels):
            raise CalibrationError(f"{key} has {len(getattr(preprocess, key))} values; input '{value.name}' has {channels} channels")
    dtype = np.dtype(value.dtype)
    if dtype.kind not in "fu":
        raise CalibrationError(f"input '{value.describe()}': images give float or uint8 samples, not {dtype}")
    return _Target(height, width, channels, layout, dtype)


def _sample(path: Path, target: _Target, preprocess: Preprocess) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("L" if target.channels == 1 else "RGB")
            side = preprocess.resize or max(target.height, target.width)
            ratio = side / min(image.size)
            size = (max(round(image.width * ratio), 1), max(round(image.height * ratio), 1))
            image = image.resize(size, Image.Resampling.BILINEAR)
            if image.width < target.width or image.height < target.height:
                raise CalibrationError(
                    f"calibration image '{path}' is {image.width}x{image.height} after resizing, smaller than the "
                    f"{target.width}x{target.height} crop (raise resize)"
                )
            left, top = (image.width - target.width) // 2, (image.height - target.height) // 2
            pixels = np.asarray(image.crop((left, top, left + target.width, top + target.height)))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise CalibrationError(f"calibration image '{path}' cannot be decoded: {exc}") from None
    pixels = pixels.reshape(target.height, target.width, target.channels)
    if preprocess.channels == "bgr":
        pixels = pixels[..., ::-1]
    if target.dtype.kind == "u":
        sample = pixels.astype(target.dtype)
    else:
        mean = np.asarray(preprocess.mean, np.float32)
        std = np.asarray(preprocess.std, np.float32)
        sample = ((pixels.astype(np.float32) * np.float32(preprocess.scale) - mean) / std).astype(target.dtype)
    return sample.transpose(2, 0, 1) if target.layout == "nchw" else sample


def image_data(
    folder: Path, files: Sequence[Path], inputs: Sequence[Value], preprocess: Preprocess | None, max_batches: int | None
) -> SampleData:
    """Samples decoded from ``files`` (in name order) for a one-input image model."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise CalibrationError("image calibration data needs Pillow: pip install 'edgetrt[images]'") from None

    if len(inputs) != 1:
        raise CalibrationError(f"image folder '{folder}' feeds one-input models; this one has inputs {[v.name for v in inputs]}")
    settings = preprocess or Preprocess()
    target = _target(inputs[0], settings)

    def read(start: int, stop: int) -> list[np.ndarray]:
        return [np.stack([_sample(path, target, settings) for path in files[start:stop]])]

    return SampleData(inputs, len(files), read, f"'{folder}'", max_batches)
