"""Per-layer precision: which layers compute in FP16/INT8, and their weights rounded to match.

The CPU backend computes in FP32 and emulates a lower precision by rounding a layer's float
inputs, weights and outputs to FP16 — the storage precision of TensorRT's FP16 layers and of
the DLA. Layers that only move integers (shape arithmetic, indices) stay as they are.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from edge.errors import EdgeError
from edge.ir import Graph, Node

__all__ = [
    "PINNED",
    "PRECISIONS",
    "REDUCED",
    "assign_precision",
    "computes_in_float",
    "layer_precisions",
    "pin_precisions",
    "pinned_precision",
    "round_to_fp16",
    "round_weights",
]

PRECISIONS = ("fp32", "fp16", "int8")
REDUCED = ("fp16", "int8")
"""Precisions the CPU backend emulates by FP16 rounding (an "int8" layer without scales runs FP16;
one with scales is fake-quantized instead, see edge.quant)."""


def computes_in_float(node: Node) -> bool:
    """True for layers whose outputs are all floating point (candidates for FP16/INT8)."""
    return bool(node.outputs) and all(
        v.dtype is not None and np.issubdtype(v.dtype, np.floating) for v in node.outputs if not v.meta.get("omitted")
    )


def round_to_fp16(array: np.ndarray) -> np.ndarray:
    """Round a float32 array to the nearest FP16 value, keeping dtype float32."""
    if array.dtype != np.float32:
        return array
    return array.astype(np.float16).astype(np.float32)


def assign_precision(graph: Graph, precision: str) -> None:
    """Record the default ``meta["precision"]`` of every layer (the partitioner may refine it).

    "int8" marks float layers "int8"; the INT8 stage (edge.quant.apply_int8) keeps that for
    layers whose tensors all have scales and turns the rest into "fp16" (TensorRT's rule for
    layers that lack dynamic ranges).
    """
    target = precision
    for node in graph.walk():
        node.meta["precision"] = target if computes_in_float(node) else "fp32"


PINNED = "pinned by --layer-precisions"
"""``meta["precision_note"]`` of a layer whose precision ``--layer-precisions`` set."""

FASTER_IN_FP16 = "INT8 allowed, FP16 chosen: its FP16 kernel was faster on the build device"
"""``meta["precision_note"]`` of an INT8 layer the auto-tuner runs FP16 (kernels.autotune)."""


def pin_precisions(graph: Graph, pins: Mapping[str, str], build_precision: str) -> None:
    """Give the layers named in ``pins`` (ONNX node names, as trtexec's ``--layerPrecisions``;
    ``"*"`` for every other layer) their precision. A fused layer takes the widest precision
    pinned on its ONNX nodes. Pinned INT8 layers still need their scales (else FP16, noted).

    Raises:
        EdgeError: an unknown precision or layer name, a precision the build does not allow
            (trtexec's rule: FP16 needs --fp16 or --int8, INT8 needs --int8), or FP32 on a DLA layer.
    """
    allowed = PRECISIONS[: PRECISIONS.index(build_precision) + 1]
    for name, precision in pins.items():
        if precision not in PRECISIONS:
            raise EdgeError(f"layer precision '{name}:{precision}': precision is not one of {list(PRECISIONS)}")
        if precision not in allowed:
            raise EdgeError(f"layer precision '{name}:{precision}' needs a {precision} build (add --{precision}), the build is {build_precision}")
    known = {n for node in graph.walk() for n in (node.name, *node.origin)}
    unknown = [name for name in pins if name != "*" and name not in known]
    if unknown:
        raise EdgeError(f"--layer-precisions names no layer of the model: {', '.join(unknown[:5])}" + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
    for node in graph.walk():
        if not computes_in_float(node):
            continue
        precision = pinned_precision(node, pins)
        if precision is None:
            continue
        if precision == "fp32" and node.meta.get("device") == "dla":
            raise EdgeError(f"layer '{node.name}' is placed on the DLA, which runs FP16/INT8 only: it cannot be pinned to fp32")
        node.meta["precision"] = precision
        node.meta["precision_note"] = PINNED


def pinned_precision(node: Node, pins: Mapping[str, str]) -> str | None:
    """The precision ``pins`` give ``node``: the widest pinned on its name or ONNX nodes, else
    the ``"*"`` pin, else None (not pinned)."""
    chosen = [pins[n] for n in (node.name, *node.origin) if n in pins] or ([pins["*"]] if "*" in pins else [])
    return min(chosen, key=PRECISIONS.index) if chosen else None


def round_weights(graph: Graph) -> None:
    """Give FP16 layers FP16-rounded copies of their float32 weights (INT8 layers get
    INT8-quantized ones from edge.quant)."""
    for node in graph.walk():
        if node.meta.get("precision") != "fp16" or not computes_in_float(node):
            continue
        for index, value in enumerate(node.inputs):
            if value is not None and value.is_const and value.dtype == np.float32:
                rounded = round_to_fp16(value.const)
                if not np.array_equal(rounded, value.const):
                    node.set_input(index, graph.make_const(value.name + "_fp16", rounded))


def layer_precisions(graph: Graph) -> dict[str, int]:
    """How many layers compute in each precision, as settled by the build (not as requested)."""
    counts: dict[str, int] = {}
    for node in graph.nodes:
        precision = str(node.meta.get("precision") or "fp32")
        counts[precision] = counts.get(precision, 0) + 1
    return counts
