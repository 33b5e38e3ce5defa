"""TensorRT calibration cache files: read and write the exact text format trtexec uses.

Line 1 is ``TRT-<version>-<algorithm>``; every other line is ``<tensor name>: <8 hex digits>``,
the IEEE-754 float32 bit pattern of the tensor's scale (amax / 127), most significant nibble
first. Names may contain colons and spaces, so a line splits at its *last* ``": "``.
"""

from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from edge.errors import CalibrationError
from edge.fileio import write_atomic
from edge.quant.calibrators import CALIBRATORS

__all__ = ["TRT_VERSION", "CalibrationCache", "hex_to_scale", "read_cache", "scale_to_hex", "write_cache"]

TRT_VERSION = 8602
"""Version token written by default: TensorRT 8.6.2 (JetPack 6.0), NV_TENSORRT_VERSION's
``major*1000 + minor*100 + patch``; TensorRT 10.3 (JetPack 6.1+) writes 100300."""

_HEADER = re.compile(r"TRT-(\d+)-(\w+)")
_HEX = re.compile(r"[0-9a-fA-F]{8}")


@dataclass
class CalibrationCache:
    """A calibration cache: the TensorRT version token, algorithm token and per-tensor scales."""

    algorithm: str
    scales: dict[str, float] = field(default_factory=dict)
    version: int = TRT_VERSION

    @property
    def calibrator(self) -> str | None:
        """edgetrt's calibrator name for the header's algorithm, or None for a foreign one."""
        return next((name for name, token in CALIBRATORS.items() if token == self.algorithm), None)

    def to_text(self) -> str:
        lines = [f"TRT-{self.version}-{self.algorithm}"]
        lines += [f"{name}: {scale_to_hex(scale)}" for name, scale in self.scales.items()]
        return "\n".join(lines) + "\n"


def scale_to_hex(scale: float) -> str:
    """The 8 lowercase hex digits of ``scale``'s big-endian float32 bit pattern."""
    return struct.pack(">f", scale).hex()


def hex_to_scale(digits: str) -> float:
    return struct.unpack(">f", bytes.fromhex(digits))[0]


def read_cache(path: str | os.PathLike) -> CalibrationCache:
    """Parse a calibration cache written by TensorRT (trtexec, a calibrator) or by edgetrt.

    Raises:
        CalibrationError: unreadable file, bad header, or a line that is not
            ``name: 8-hex-digits`` with a positive finite scale (names the line).
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"calibration cache '{source}' cannot be read: {exc}") from None
    lines = text.splitlines()
    header = _HEADER.fullmatch(lines[0].strip()) if lines else None
    if header is None:
        first = lines[0][:60] if lines else ""
        raise CalibrationError(f"calibration cache '{source}' line 1 is '{first}', expected TRT-<version>-<algorithm>")
    cache = CalibrationCache(header.group(2), version=int(header.group(1)))
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, digits = line.rpartition(": ")
        digits = digits.strip()
        if not sep or not name or not _HEX.fullmatch(digits):
            raise CalibrationError(f"calibration cache '{source}' line {number}: expected 'tensor: 8 hex digits', got '{line[:80]}'")
        scale = hex_to_scale(digits)
        if not math.isfinite(scale) or scale <= 0:
            raise CalibrationError(f"calibration cache '{source}' line {number}: scale of '{name}' is {scale}, not a positive number")
        cache.scales[name] = scale
    return cache


def write_cache(path: str | os.PathLike, cache: CalibrationCache) -> None:
    """Write ``cache`` atomically (a failed write leaves any previous file as it was)."""
    bad = [name for name, scale in cache.scales.items() if not math.isfinite(scale) or scale <= 0]
    if bad:
        raise CalibrationError(f"cannot write calibration cache '{path}': tensor '{bad[0]}' has no positive scale")
    write_atomic(path, cache.to_text())
