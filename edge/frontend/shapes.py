"""Shape inference where onnx's falls short: registered shape functions, then evaluation.

onnx's inference (with data propagation) types almost every standard op. What it leaves
untyped — custom ops, ops whose output shape depends on constant data it did not propagate —
is filled here in topological order: a registered shape function if there is one, else the
CPU kernel run on zero-filled inputs (constants with their real data) when every input shape
is static and no non-constant input sets the output's shape by its values. The same runs
after every optimizer pass, so a dim onnx could only name symbolically ("unk__3") becomes a
number once folding has made every input of its node static.
"""

from __future__ import annotations

import numpy as np

from edge.errors import EdgeError
from edge.ir import Graph, Node, Value, standard_domain
from edge.kernels.registry import OpContext, lookup_shape

__all__ = ["VALUE_SHAPED_INPUTS", "infer_missing_shapes", "needs_inference"]

_REDUCTIONS = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare")
VALUE_SHAPED_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "ConstantOfShape": (0,), "Range": (0, 1, 2),
    "Slice": (1, 2, 3, 4), "Pad": (1, 2, 3), "TopK": (1,), "Resize": (1, 2, 3), "Upsample": (1,),
    "OneHot": (1,), "Squeeze": (1,), "Unsqueeze": (1,), "Split": (1,), "CenterCropPad": (1,),
    "NonZero": (0,), "Unique": (0,), "Compress": (1,), "NonMaxSuppression": (0, 1, 2, 3, 4),
    "MaxUnpool": (2,), "Col2Im": (1, 2), "DFT": (1,), "STFT": (2, 3), "AffineGrid": (1,),
    **{op: (1,) for op in _REDUCTIONS},
}
"""Standard ops whose output shape depends on the values of the inputs at these positions:
evaluating them on zeros would give a wrong shape unless those inputs are constants."""


def needs_inference(value: Value) -> bool:
    """True when the dtype, the rank or any dimension is still unknown."""
    return value.dtype is None or value.shape is None or any(d is None for d in value.shape)


def infer_missing_shapes(graph: Graph) -> None:
    """Fill dtype/shape of node outputs that are still unknown, or still symbolic on a node
    whose inputs are all static (a dim onnx invented), where the inputs allow."""
    from edge.runtime.interpreter import evaluate_node

    for node in graph.nodes:
        outputs = [v for v in node.outputs if not v.meta.get("omitted")]
        static = _all_inputs_static(node)
        if not any(needs_inference(v) or (static and not v.is_static) for v in outputs):
            continue
        shape_fn = lookup_shape(node.op_type, node.domain)
        opset = graph.opset.get(standard_domain(node.domain), 1)
        if shape_fn is not None:
            results = shape_fn(OpContext(node, opset), *node.inputs)
        elif static and not _shaped_by_values(node) and not any(True for _ in node.subgraphs()):
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
            if shape is None:
                continue
            if needs_inference(value) or (static and not value.is_static and all(isinstance(d, int) for d in shape)):
                value.shape = tuple(shape)


def _shaped_by_values(node: Node) -> bool:
    """Whether a non-constant input sets the output shape by its values (see VALUE_SHAPED_INPUTS)."""
    if node.domain and standard_domain(node.domain) != "":
        return False
    positions = VALUE_SHAPED_INPUTS.get(node.op_type, ())
    return any(i < len(node.inputs) and node.inputs[i] is not None and not node.inputs[i].is_const for i in positions)


def _all_inputs_static(node: Node) -> bool:
    return all(v is None or v.is_const or (v.is_static and v.dtype is not None) for v in node.inputs)


def _probe(value: Value | None) -> np.ndarray | None:
    if value is None:
        return None
    if value.is_const:
        return value.const
    return np.zeros(value.shape, value.dtype)
