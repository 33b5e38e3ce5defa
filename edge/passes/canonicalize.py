"""Canonicalization: one spelling per computation, so later fusion rules see fewer forms.

1. ``Flatten`` / ``Squeeze`` / ``Unsqueeze`` with a static output shape -> ``Reshape``.
2. ``Sub(x, c)`` -> ``Add(x, -c)`` and ``Div(x, c)`` -> ``Mul(x, 1/c)`` for float constants
   ``c`` (integer division is not a multiplication).
3. ``Sum`` of two inputs -> ``Add``; ``Sum`` of one input -> that input.
4. ``Upsample`` -> ``Resize`` with Upsample's semantics (asymmetric coordinates, floor).
5. ``Pad`` (constant mode) folded into the following ``Conv`` / ``AveragePool`` (zero pad
   value; AveragePool then counts the padding, as the explicit zeros were counted) or
   ``MaxPool`` (pad value -inf), when only spatial dims are padded.
"""

from __future__ import annotations

import numpy as np

from edge.ir import Graph, Value
from edge.passes.common import is_float
from edge.passes.rewrite import Builder, Const, Match, Op, Rule, RuleSet, Var

__all__ = ["canonicalize", "CANONICAL_RULES"]


def _check_static_output(graph: Graph, match: Match) -> str | None:
    out = match.node("op").outputs[0]
    return None if out.is_static else f"output shape {out.shape} is not static"


def _to_reshape(b: Builder, m: Match) -> Value:
    out = m.node("op").outputs[0]
    return b.op("Reshape", [m["x"], b.const(np.array(out.shape, np.int64), hint="shape")], like=out)


def _check_float(graph: Graph, match: Match) -> str | None:
    return None if is_float(match.value("c")) else "constant is not floating point"


def _sub_to_add(b: Builder, m: Match) -> Value:
    c = m.const("c")
    return b.op("Add", [m["x"], b.const(np.negative(c))], like=m.root.outputs[0])


def _div_to_mul(b: Builder, m: Match) -> Value:
    c = m.const("c")
    with np.errstate(divide="ignore"):
        inverse = (np.ones((), c.dtype) / c).astype(c.dtype)
    return b.op("Mul", [m["x"], b.const(inverse)], like=m.root.outputs[0])


def _check_sum_arity(count: int):
    def check(graph: Graph, match: Match) -> str | None:
        n = len(match.root.inputs)
        return None if n == count else f"Sum has {n} inputs"

    return check


def _sum_to_add(b: Builder, m: Match) -> Value:
    return b.op("Add", list(m.root.inputs), like=m.root.outputs[0])


def _sum_of_one(b: Builder, m: Match) -> Value:
    return m.value("x")


def _upsample_scales(b: Builder, m: Match) -> Value | None:
    node = m.root
    if "scales" in node.attrs:
        return b.const(np.asarray(node.attrs["scales"], np.float32), hint="scales")
    return node.input(1)


def _check_upsample(graph: Graph, match: Match) -> str | None:
    node = match.root
    if "scales" not in node.attrs and (node.input(1) is None):
        return "no scales"
    return None


def _upsample_to_resize(b: Builder, m: Match) -> Value:
    node = m.root
    mode = node.attrs.get("mode", "nearest")
    scales = _upsample_scales(b, m)
    out = node.outputs[0]
    if b.opset <= 10:  # Resize-10 has Upsample's exact semantics and signature
        return b.op("Resize", [m["x"], scales], {"mode": mode}, like=out)
    attrs = {"mode": mode, "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    return b.op("Resize", [m["x"], None, scales], attrs, like=out)


def _pad_amounts(graph: Graph, match: Match) -> tuple[np.ndarray | None, float | None, str | None]:
    """(pads, pad value, refusal reason) of the matched Pad node."""
    pad = match.node("pad")
    mode = pad.attrs.get("mode", "constant")
    if mode != "constant":
        return None, None, f"pad mode '{mode}'"
    if "pads" in pad.attrs:
        pads, value = np.asarray(pad.attrs["pads"]), float(pad.attrs.get("value", 0.0))
    else:
        pads_in, value_in = pad.input(1), pad.input(2)
        if pads_in is None or pads_in.const is None:
            return None, None, "pads are not constant"
        if pad.input(3) is not None:
            return None, None, "Pad has an axes input"
        if value_in is not None and (value_in.const is None or value_in.const.size != 1):
            return None, None, "pad value is not a constant scalar"
        pads = pads_in.const.astype(np.int64)
        value = 0.0 if value_in is None else float(value_in.const.reshape(()))
    rank = len(pads) // 2
    if np.any(pads < 0) or np.any(pads[[0, 1, rank, rank + 1]] != 0):
        return None, None, "pads touch batch/channel dims or are negative"
    return pads, value, None


def _check_pad_fold(graph: Graph, match: Match) -> str | None:
    op = match.node("op")
    pads, value, reason = _pad_amounts(graph, match)
    if reason is not None:
        return reason
    if op.attrs.get("auto_pad", "NOTSET") != "NOTSET":
        return "target uses auto_pad"
    if op.op_type == "MaxPool":
        if value != -np.inf:
            return f"MaxPool pads with -inf, not {value}"
        if op.attrs.get("ceil_mode", 0) or len(op.outputs) > 1:
            return "MaxPool with ceil_mode or indices output"
    elif value != 0.0:
        return f"pad value {value} is not zero"
    if op.op_type == "AveragePool":
        if op.attrs.get("ceil_mode", 0):
            return "AveragePool with ceil_mode"
        if any(op.attrs.get("pads", [0])) and not op.attrs.get("count_include_pad", 0):
            return "AveragePool already pads without counting the padding"
    return None


def _fold_pad(b: Builder, m: Match) -> Value:
    op = m.node("op")
    pads, _, _ = _pad_amounts(b.graph, m)
    assert pads is not None
    rank = len(pads) // 2
    spatial = rank - 2
    existing = np.asarray(op.attrs.get("pads") or [0] * (2 * spatial), np.int64)
    merged = existing + np.concatenate([pads[2:rank], pads[rank + 2 :]])
    attrs = dict(op.attrs, pads=[int(p) for p in merged])
    if op.op_type == "AveragePool":
        attrs["count_include_pad"] = 1
    return b.op(op.op_type, [m["x"], *op.inputs[1:]], attrs, like=op.outputs[0])


CANONICAL_RULES = RuleSet(
    [
        Rule("flatten_to_reshape", Op("Flatten", Var("x"), name="op"), _to_reshape, _check_static_output),
        Rule("squeeze_to_reshape", Op("Squeeze", Var("x"), name="op"), _to_reshape, _check_static_output),
        Rule("unsqueeze_to_reshape", Op("Unsqueeze", Var("x"), name="op"), _to_reshape, _check_static_output),
        Rule("sub_const_to_add", Op("Sub", Var("x"), Const("c")), _sub_to_add, _check_float),
        Rule("div_const_to_mul", Op("Div", Var("x"), Const("c")), _div_to_mul, _check_float),
        Rule("sum_to_add", Op("Sum"), _sum_to_add, _check_sum_arity(2)),
        Rule("sum_of_one", Op("Sum", Var("x")), _sum_of_one, _check_sum_arity(1)),
        Rule("upsample_to_resize", Op("Upsample", Var("x")), _upsample_to_resize, _check_upsample),
        Rule(
            "pad_into_conv_pool",
            Op(("Conv", "AveragePool", "MaxPool"), Op("Pad", Var("x"), name="pad"), name="op"),
            _fold_pad,
            _check_pad_fold,
        ),
    ]
)


def canonicalize(graph: Graph) -> int:
    """Apply the canonicalization rules; returns how many fired."""
    return CANONICAL_RULES.apply(graph)
