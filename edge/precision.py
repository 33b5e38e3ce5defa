"""Per-layer precision: which layers compute in FP16/INT8, and their weights rounded to match.

The CPU backend computes in FP32 and emulates a lower precision by rounding a layer's float
inputs, weights and outputs to FP16 — the storage precision of TensorRT's FP16 layers and of
the DLA. Layers that only move integers (shape arithmetic, indices) stay as they are.
"""

from __future__ import annotations

import numpy as np

from edge.ir import Graph, Node

__all__ = ["PRECISIONS", "REDUCED", "assign_precision", "computes_in_float", "layer_precisions", "round_to_fp16", "round_weights"]

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
