"""Per-layer INT8 sensitivity: how much quantizing each layer alone moves the outputs from FP32.

Each INT8-capable layer of the calibrated engine is built INT8 with every other layer pinned
to FP32 (``BuilderConfig.layer_precisions``) and compared with the FP32 engine on the same
batches (output cosine and max |error|, :func:`edge.quant.accuracy.top1_agreement`). The
worst layers are the ones to keep in FP16 (``calibrate --sensitivity --keep-fp16 K``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.builder import BuilderConfig, build
from edge.quant.accuracy import top1_agreement

__all__ = ["LayerSensitivity", "keep_fp16", "layer_sensitivity"]


@dataclass(frozen=True)
class LayerSensitivity:
    """One engine layer quantized alone: the ONNX nodes it stands for and its outputs vs FP32."""

    layer: str
    onnx_nodes: list[str]
    cosine: float
    max_error: float


def layer_sensitivity(
    model: str | os.PathLike, cache: str | os.PathLike, batches: Sequence[list[np.ndarray]], input_shapes: dict | None = None
) -> list[LayerSensitivity]:
    """Every layer the calibrated INT8 engine runs in INT8, worst first (lowest cosine, then largest error)."""
    fp32 = build(model, BuilderConfig(input_shapes=input_shapes)).create_context()
    int8 = build(model, BuilderConfig(precision="int8", calib_cache=cache, input_shapes=input_shapes))
    found = []
    for layer in (n for n in int8.graph.nodes if n.meta.get("precision") == "int8"):
        pins = {"*": "fp32", **dict.fromkeys(layer.origin, "int8")}
        alone = build(model, BuilderConfig(precision="int8", calib_cache=cache, input_shapes=input_shapes, layer_precisions=pins))
        agreement = top1_agreement(fp32, alone.create_context(), batches)
        found.append(LayerSensitivity(layer.name, list(layer.origin), agreement.cosine, agreement.max_error))
    return sorted(found, key=lambda s: (s.cosine, -s.max_error))


def keep_fp16(ranking: Sequence[LayerSensitivity], count: int) -> str:
    """The ``--layer-precisions`` value keeping the ``count`` worst layers' ONNX nodes in FP16."""
    return ",".join(f"{name}:fp16" for entry in ranking[:count] for name in entry.onnx_nodes)
