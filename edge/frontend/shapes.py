"""Shape inference where onnx's falls short: registered shape functions, then evaluation.

onnx's inference (with data propagation) types almost every standard op. What it leaves
untyped — custom ops, ops whose output shape depends on constant data it did not propagate —
is filled here in topological order: a registered shape function if there is one, else the
CPU kernel run on zero-filled inputs (constants with their real data) when every input shape
is static.
"""

from __future__ import annotations

import numpy as np

from edge.errors import EdgeError
from edge.ir import Graph, Node, Value, standard_domain
from edge.kernels.registry import OpContext, lookup_shape

__all__ = ["infer_missing_shapes", "needs_inference"]


def needs_inference(value: Value) -> bool:
    """True when the dtype, the rank or any dimension is still unknown."""
    return value.dtype is None or value.shape is None or any(d is None for d in value.shape)


def infer_missing_shapes(graph: Graph) -> None:
    """Fill dtype/shape of node outputs that are still unknown, where inputs allow."""
    from edge.runtime.interpreter import evaluate_node

    for node in graph.nodes:
        outputs = [v for v in node.outputs if not v.meta.get("omitted")]
        if not any(needs_inference(v) for v in outputs):
            continue
        shape_fn = lookup_shape(node.op_type, node.domain)
        opset = graph.opset.get(standard_domain(node.domain), 1)
        if shape_fn is not None:
            results = shape_fn(OpContext(node, opset), *node.inputs)
        elif _all_inputs_static(node) and not any(True for _ in node.subgraphs()):
            try:
                arrays = evaluate_node(node, [_probe(v) for v in node.inputs], opset)
            except EdgeError:
                continue
            if not all(isinstance(a, np.ndarray) for a in arrays):
                continue  # a sequence or an empty optional: typed by onnx or not at all
            results = [(a.dtype, a.shape) for a in arrays]
        else:
            continue
        for value, (dtype, shape) in zip(node.outputs, results):
            if value.dtype is None:
                value.dtype = np.dtype(dtype)
            if needs_inference(value):
                value.shape = tuple(shape) if shape is not None else None


def _all_inputs_static(node: Node) -> bool:
    return all(v is None or v.is_const or (v.is_static and v.dtype is not None) for v in node.inputs)


def _probe(value: Value | None) -> np.ndarray | None:
    if value is None:
        return None
    if value.is_const:
        return value.const
    return np.zeros(value.shape, value.dtype)
