"""Explicit quantization (Q/DQ models): weights become float constants that remember their
int8 form, activation Q->DQ pairs become per-tensor INT8 facts on the tensor they quantize.

1. ``DequantizeLinear(w_q, s, zp)`` on a constant integer weight -> the dequantized float
   constant; its ``meta`` keeps ``int8_weight`` (the integers), ``int8_scale``,
   ``int8_zero_point`` and ``int8_axis`` so the INT8 path can use the integers directly.
2. ``DequantizeLinear(QuantizeLinear(w, s, zp), s, zp)`` on a constant float weight ->
   the same, with the integers computed by the CPU QuantizeLinear kernel (so rounding and
   saturation are exactly the runtime's).
3. ``DequantizeLinear(QuantizeLinear(x, s, zp), s, zp)`` on an activation ``x`` -> ``x``
   itself, with ``x.meta["int8_scale"]`` / ``["int8_zero_point"]`` recording the scale the
   INT8 path must use. In fp32 the graph then skips the quantization round trip; the INT8
   path re-applies it from the meta.

This pass runs before constant folding, which would otherwise evaluate rule 1 and 2 and
drop what the integers were.
"""

from __future__ import annotations

import numpy as np

from edge.ir import Graph, Node, Value
from edge.passes.common import opset_of
from edge.passes.rewrite import Builder, Const, Match, Op, Rule, RuleSet, Var

__all__ = ["fold_qdq", "QDQ_RULES"]


def _zero_point(node: Node) -> Value | None:
    return node.input(2)


def _check_params(graph: Graph, node: Node) -> str | None:
    if node.attrs.get("block_size", 0):
        return "blocked quantization is kept as is"
    if node.inputs[1].const is None:
        return f"scale of '{node.name}' is not constant"
    zp = _zero_point(node)
    if zp is not None and zp.const is None:
        return f"zero point of '{node.name}' is not constant"
    return None


def _evaluate(graph: Graph, node: Node, inputs: list[np.ndarray | None]) -> np.ndarray:
    from edge.runtime.interpreter import evaluate_node

    return evaluate_node(node, inputs, opset_of(graph, node))[0]


def _quant_meta(value: Value, node: Node, integers: np.ndarray | None) -> None:
    zp = _zero_point(node)
    value.meta["int8_scale"] = node.inputs[1].const
    value.meta["int8_zero_point"] = zp.const if zp is not None else np.zeros((), np.int8)
    value.meta["int8_axis"] = int(node.attrs.get("axis", 1))
    if integers is not None:
        value.meta["int8_weight"] = integers


def _check_dq_weight(graph: Graph, match: Match) -> str | None:
    if match.const("w").dtype.kind not in "iu":
        return "weight is not integer"
    return _check_params(graph, match.root)


def _dq_weight(b: Builder, m: Match) -> Value:
    dq = m.root
    integers = m.const("w")
    weight = b.const(
        _evaluate(b.graph, dq, [integers, *(v.const if v is not None else None for v in dq.inputs[1:])]),
        hint="dq_weight",
    )
    _quant_meta(weight, dq, integers)
    return weight


def _same_params(q: Node, dq: Node) -> str | None:
    for index, what in ((1, "scale"), (2, "zero point")):
        a, c = q.input(index), dq.input(index)
        if (a is None) != (c is None):
            return f"Q and DQ {what} differ"
        if a is not None and (a.const is None or c.const is None or not np.array_equal(a.const, c.const)):
            return f"Q and DQ {what} differ or are not constant"
    if q.attrs.get("axis", 1) != dq.attrs.get("axis", 1):
        return "Q and DQ axes differ"
    return None


def _check_qdq(graph: Graph, match: Match) -> str | None:
    q, dq = match.node("q"), match.root
    return _check_params(graph, q) or _check_params(graph, dq) or _same_params(q, dq)


def _qdq_weight(b: Builder, m: Match) -> Value:
    q, dq = m.node("q"), m.root
    params = [v.const if v is not None else None for v in q.inputs[1:]]
    integers = _evaluate(b.graph, q, [m.const("w"), *params])
    weight = b.const(_evaluate(b.graph, dq, [integers, *params]), hint="qdq_weight")
    _quant_meta(weight, dq, integers)
    return weight


def _qdq_activation(b: Builder, m: Match) -> Value:
    x = m.value("x")
    _quant_meta(x, m.node("q"), None)
    return x


QDQ_RULES = RuleSet(
    [
        Rule("dq_weight", Op("DequantizeLinear", Const("w")), _dq_weight, _check_dq_weight),
        Rule(
            "qdq_weight",
            Op("DequantizeLinear", Op("QuantizeLinear", Const("w"), name="q")),
            _qdq_weight,
            _check_qdq,
            shared_ok=("q",),
        ),
        Rule(
            "qdq_activation",
            Op("DequantizeLinear", Op("QuantizeLinear", Var("x"), name="q")),
            _qdq_activation,
            _check_qdq,
            shared_ok=("q",),
        ),
    ]
)


def fold_qdq(graph: Graph) -> int:
    """Fold weight Q/DQ into constants and activation Q/DQ pairs into tensor meta."""
    return QDQ_RULES.apply(graph)
