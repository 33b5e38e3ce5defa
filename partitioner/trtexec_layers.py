"""Reader of trtexec ``--exportLayerInfo`` files: where and in what precision each engine layer ran.

The file is TensorRT's engine-inspector JSON: ``{"Layers": [...], "Bindings": [...]}``. Built
with ``--profilingVerbosity=detailed`` every layer is an object with ``Name``, ``LayerType``,
``Inputs`` and ``Outputs`` (each ``{"Name", "Dimensions", "Format/Datatype", ...}``) and
optional ``ParameterType``, ``TacticName``; without it the layers are bare name strings, which
say nothing about precision and are refused with that advice. A layer's precision is its first
input's data type (its output's for a layer without inputs). DLA layers are the ones whose
``LayerType`` names the DLA, or the ``{ForeignNode[...]}`` layers that are not Myelin (GPU)
subgraphs; every other layer ran on the GPU.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from edge.errors import TrtexecProfileError

__all__ = ["EngineLayer", "TrtexecLayerInfo", "read_trtexec_layer_info"]

_PRECISIONS = (
    ("int8", re.compile(r"\bint8\b", re.IGNORECASE)),
    ("fp16", re.compile(r"\b(fp16|half)\b", re.IGNORECASE)),
    ("fp32", re.compile(r"\b(fp32|float)\b", re.IGNORECASE)),
    ("int32", re.compile(r"\bint32\b", re.IGNORECASE)),
    ("int64", re.compile(r"\bint64\b", re.IGNORECASE)),
    ("bool", re.compile(r"\bbool\b", re.IGNORECASE)),
)
_FOREIGN = "ForeignNode["


@dataclass(frozen=True)
class EngineLayer:
    """One engine layer as the inspector describes it."""

    name: str
    layer_type: str
    device: str
    precision: str | None
    tactic: str | None


@dataclass(frozen=True)
class TrtexecLayerInfo:
    """All engine layers of one ``--exportLayerInfo`` file, in engine order."""

    source: str
    layers: list[EngineLayer]


def _precision(tensors: list, where: str) -> str | None:
    for tensor in tensors[:1]:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("Format/Datatype"), str):
            raise TrtexecProfileError(f"{where}: a tensor without 'Format/Datatype'")
        text = tensor["Format/Datatype"]
        return next((name for name, pattern in _PRECISIONS if pattern.search(text)), None)
    return None


def _device(name: str, layer_type: str) -> str:
    kind = layer_type.lower()
    if "dla" in kind or (_FOREIGN in name and "myelin" not in kind):
        return "dla"
    return "gpu"


def _layer(item: object, index: int, where: Path) -> EngineLayer:
    label = f"trtexec layer info '{where}': layer {index}"
    if isinstance(item, str):
        raise TrtexecProfileError(
            f"{label} is only a name: the engine was built without --profilingVerbosity=detailed (rebuild with it to see devices and precisions)"
        )
    if not isinstance(item, dict):
        raise TrtexecProfileError(f"{label}: expected an object, got {type(item).__name__}")
    for key, kind in (("Name", str), ("LayerType", str), ("Inputs", list), ("Outputs", list)):
        if not isinstance(item.get(key), kind):
            raise TrtexecProfileError(f"{label}: '{key}' missing or not a {kind.__name__}")
    precision = _precision(item["Inputs"], f"{label} ('{item['Name']}')") or _precision(item["Outputs"], f"{label} ('{item['Name']}')")
    tactic = item.get("TacticName")
    return EngineLayer(item["Name"], item["LayerType"], _device(item["Name"], item["LayerType"]), precision, tactic if isinstance(tactic, str) else None)


def read_trtexec_layer_info(path: str | os.PathLike) -> TrtexecLayerInfo:
    """Parse one ``--exportLayerInfo`` JSON file.

    Raises:
        TrtexecProfileError: missing or unreadable file, not JSON, not the inspector's layout
            (names the layer and the field), or built without detailed profiling verbosity.
    """
    where = Path(path)
    try:
        data = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrtexecProfileError(f"trtexec layer info '{where}' does not exist") from None
    except OSError as exc:
        raise TrtexecProfileError(f"trtexec layer info '{where}' cannot be read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise TrtexecProfileError(f"trtexec layer info '{where}': not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("Layers"), list):
        raise TrtexecProfileError(f"trtexec layer info '{where}': expected an object with a 'Layers' list (trtexec --exportLayerInfo)")
    layers = [_layer(item, index, where) for index, item in enumerate(data["Layers"])]
    if not layers:
        raise TrtexecProfileError(f"trtexec layer info '{where}': 'Layers' is empty")
    return TrtexecLayerInfo(str(where), layers)
