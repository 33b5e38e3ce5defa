"""Per-layer INT8 sensitivity: how much quantizing each layer alone moves the outputs from FP32.

Each layer the calibrated build runs in INT8 is tried in INT8 with every other layer at its
widest precision (FP32; FP16 on the DLA) through a :class:`~edge.quant.probe.PrecisionProbe`,
and the outputs are compared with FP32 on the probe's batches (relative L2 error, cosine and
max |error|, :class:`edge.quant.accuracy.Deviation`). The worst layers are the ones to keep
out of INT8: ``calibrate --sensitivity --keep-fp16 K`` writes them as pins, ``build --best``
tries the others in INT8 least sensitive first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge.quant.accuracy import Deviation
from edge.quant.probe import PrecisionProbe

__all__ = ["LayerSensitivity", "keep_fp16", "layer_sensitivity"]


@dataclass(frozen=True)
class LayerSensitivity:
    """One engine layer quantized alone: the ONNX nodes it stands for and its outputs vs FP32."""

    layer: str
    onnx_nodes: list[str]
    deviation: Deviation


def layer_sensitivity(probe: PrecisionProbe) -> list[LayerSensitivity]:
    """Every layer the probe's build runs in INT8, worst first (largest relative L2 error;
    graph order among equals)."""
    widest = probe.widest()
    found = [
        LayerSensitivity(layer.name, layer.onnx_nodes, probe.measure({**widest, layer.name: "int8"}))
        for layer in probe.layers
        if layer.int8
    ]
    return sorted(found, key=lambda s: -s.deviation.relative)


def keep_fp16(ranking: Sequence[LayerSensitivity], count: int) -> str:
    """The ``--layer-precisions`` value keeping the ``count`` worst layers' ONNX nodes in FP16."""
    return ",".join(f"{name}:fp16" for entry in ranking[:count] for name in entry.onnx_nodes)
