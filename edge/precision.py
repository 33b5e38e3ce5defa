"""Per-layer precision: which layers compute in FP16/INT8, and their weights rounded to match.

The CPU backend computes in FP32 and emulates a lower precision by rounding a layer's float
inputs, weights and outputs to FP16 — the storage precision of TensorRT's FP16 layers and of
the DLA. Layers that only move integers (shape arithmetic, indices) stay as they are.
"""

from __future__ import annotations

import numpy as np

from edge.ir import Graph, Node

__all__ = ["PRECISIONS", "assign_precision", "computes_in_float", "round_to_fp16"]

PRECISIONS = ("fp32", "fp16", "int8")


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
    """Record ``meta["precision"]`` on every float layer; round FP16 layers' weights.

    INT8 layers without calibration scales run in FP16 (TensorRT's rule for layers that
    lack dynamic ranges), so "int8" marks layers "fp16" here until scales are attached.
    """
    target = "fp32" if precision == "fp32" else "fp16"
    for node in graph.walk():
        node.meta["precision"] = target if computes_in_float(node) else "fp32"
        if node.meta["precision"] == "fp16":
            for index, value in enumerate(node.inputs):
                if value is not None and value.is_const and value.dtype == np.float32:
                    rounded = round_to_fp16(value.const)
                    if not np.array_equal(rounded, value.const):
                        node.set_input(index, graph.make_const(value.name + "_fp16", rounded))
