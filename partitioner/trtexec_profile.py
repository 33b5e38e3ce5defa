"""Reader of trtexec ``--exportProfile`` files: per-layer times measured on the device.

trtexec writes a JSON list whose first element is ``{"count": N}`` (the profiled iterations)
and whose other elements are one per engine layer: ``{"name", "timeMs", "averageMs",
"medianMs", "percentage"}`` (``timeMs`` is the total over the N runs). Layer names are
TensorRT's: fused ONNX names joined by " + ", DLA subgraphs as ``{ForeignNode[first...last]}``,
and reformat / copy layers TensorRT inserted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from edge.errors import TrtexecProfileError

__all__ = ["ProfiledLayer", "TrtexecProfile", "read_trtexec_profile"]

_FIELDS = ("name", "timeMs", "averageMs", "medianMs", "percentage")


@dataclass(frozen=True)
class ProfiledLayer:
    """One engine layer's measured time (ms per inference)."""

    name: str
    time_ms: float
    average_ms: float
    median_ms: float
    percentage: float


@dataclass(frozen=True)
class TrtexecProfile:
    """A whole profile: the iteration count and the layers in engine order."""

    source: str
    count: int
    layers: list[ProfiledLayer]

    @property
    def total_ms(self) -> float:
        """Sum of the per-layer average times (one inference)."""
        return sum(layer.average_ms for layer in self.layers)


def read_trtexec_profile(path: str | os.PathLike) -> TrtexecProfile:
    """Parse one ``--exportProfile`` JSON file.

    Raises:
        TrtexecProfileError: the file is missing, not JSON, or not in trtexec's layout (names
            the element and the field).
    """
    where = Path(path)
    try:
        data = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrtexecProfileError(f"trtexec profile '{where}' does not exist") from None
    except OSError as exc:
        raise TrtexecProfileError(f"trtexec profile '{where}' cannot be read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise TrtexecProfileError(f"trtexec profile '{where}': not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, list) or not data or not isinstance(data[0], dict) or "count" not in data[0]:
        raise TrtexecProfileError(f"trtexec profile '{where}': expected a JSON list starting with {{\"count\": N}} (trtexec --exportProfile)")
    count = data[0]["count"]
    if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
        raise TrtexecProfileError(f"trtexec profile '{where}': element 0: 'count' must be a positive integer, got {count!r}")
    layers = [_layer(item, index, where) for index, item in enumerate(data[1:], start=1)]
    if not layers:
        raise TrtexecProfileError(f"trtexec profile '{where}': no layer entries after the count")
    return TrtexecProfile(str(where), count, layers)


def _layer(item: object, index: int, where: Path) -> ProfiledLayer:
    if not isinstance(item, dict):
        raise TrtexecProfileError(f"trtexec profile '{where}': element {index}: expected an object, got {type(item).__name__}")
    for key in _FIELDS:
        if key not in item:
            raise TrtexecProfileError(f"trtexec profile '{where}': element {index}: missing '{key}'")
    if not isinstance(item["name"], str):
        raise TrtexecProfileError(f"trtexec profile '{where}': element {index}: 'name' must be a string")
    numbers = []
    for key in _FIELDS[1:]:
        value = item[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise TrtexecProfileError(f"trtexec profile '{where}': element {index} ('{item['name']}'): '{key}' must be a non-negative number, got {value!r}")
        numbers.append(float(value))
    return ProfiledLayer(item["name"], *numbers)
