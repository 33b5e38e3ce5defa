"""Constant folding: run the CPU kernels on every node whose inputs are all known.

A node folds when each input is a constant (or omitted), or when it only reads facts the IR
already knows: ``Shape`` / ``Size`` of a value with a static shape. Folding executes the
registered CPU kernel (``evaluate_node``) instead of re-implementing op math, so a folded
constant is bit-for-bit what the runtime would have computed. Chains such as
Shape -> Gather -> Concat -> Reshape or ConstantOfShape weights collapse in one sweep
because each folded output immediately makes its consumers foldable.

Not folded: random ops (a fresh value per run), nodes with subgraphs, outputs that are graph
outputs (the interface keeps a producing node), and results above ``MAX_FOLD_BYTES`` that
would bloat the engine more than they save (checked from the declared output shapes before
running the kernel, so an oversized constant is never allocated).
"""

from __future__ import annotations

import math

import numpy as np

from edge.errors import KernelError
from edge.ir import Graph, Node, Value
from edge.passes.common import opset_of

__all__ = ["fold_constants", "MAX_FOLD_BYTES"]

MAX_FOLD_BYTES = 256 << 20
_NONDETERMINISTIC = {
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
}


def fold_constants(graph: Graph) -> int:
    """Replace foldable nodes by constant values; returns how many nodes were folded."""
    from edge.runtime.interpreter import evaluate_node

    folded = 0
    for node in list(graph.nodes):
        if any(graph.is_output(v) for v in node.outputs):
            continue
        arrays = _known_result(node) if node.op_type in ("Shape", "Size") else None
        if arrays is None:
            if not _foldable(node) or _estimated_bytes(node) > MAX_FOLD_BYTES:
                continue
            try:
                arrays = evaluate_node(
                    node, [None if v is None else v.const for v in node.inputs], opset_of(graph, node)
                )
            except KernelError:
                continue  # leave it to the runtime, which reports the failure with context
        if any(a.nbytes > MAX_FOLD_BYTES for a in arrays):
            continue
        for value, array in zip(node.outputs, arrays):
            constant = graph.make_const(value.name, _typed(array, value))
            constant.meta.update(value.meta)
            graph.replace_all_uses(value, constant)
        graph.remove_node(node)
        folded += 1
    return folded


def _foldable(node: Node) -> bool:
    if node.op_type in _NONDETERMINISTIC or any(True for _ in node.subgraphs()):
        return False
    return all(v is None or v.is_const for v in node.inputs)


def _estimated_bytes(node: Node) -> int:
    """Bytes the node's outputs would take, known before running it (0 when unknown), so a
    ConstantOfShape of 8 GB is left to the runtime instead of being allocated here."""
    total = 0
    for value in node.outputs:
        shape = value.shape
        if node.op_type == "ConstantOfShape" and node.inputs and node.inputs[0] is not None:
            shape = tuple(int(d) for d in np.asarray(node.inputs[0].const).reshape(-1))
        if shape is not None and all(isinstance(d, int) for d in shape):
            itemsize = value.dtype.itemsize if value.dtype is not None else 8
            total += math.prod(max(d, 0) for d in shape) * itemsize
    return total


def _known_result(node: Node) -> list[np.ndarray] | None:
    """Shape/Size of a statically shaped value, computed from the IR's shape alone."""
    source = node.inputs[0]
    if source is None or not source.is_static:
        return None
    shape = np.array(source.shape, dtype=np.int64)
    if node.op_type == "Size":
        return [np.array(int(np.prod(shape)), dtype=np.int64)]
    rank = len(shape)
    start = int(node.attrs.get("start", 0))
    end = node.attrs.get("end")
    start = min(max(start + rank if start < 0 else start, 0), rank)
    stop = rank if end is None else min(max(int(end) + rank if int(end) < 0 else int(end), 0), rank)
    return [shape[start:stop]]


def _typed(array: np.ndarray, value: Value) -> np.ndarray:
    """Keep the declared dtype (a kernel may compute in a wider type for a 0-d result)."""
    if value.dtype is not None and array.dtype != value.dtype and value.dtype.kind == array.dtype.kind:
        return array.astype(value.dtype)
    return array
