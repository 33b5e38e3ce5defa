"""Fold BatchNormalization and per-channel Mul/Add constants into the preceding linear op.

Inference BatchNormalization is an affine map per channel ``c``::

    y = (x - mean[c]) * s[c] + beta[c],   s = gamma / sqrt(var + eps)

and a convolution is linear in its weights, so with ``x = W * in + B``::

    y = (W * s) * in + ((B - mean) * s + beta)

The same holds for a per-channel ``Mul(x, c)`` (``s = c``, no shift) and ``Add(x, c)``
(bias ``B + c``). Output channels are axis 1: the first weight axis for Conv, the second
(per group) for ConvTranspose, the columns of op(B) for a 2-D Gemm / MatMul (a MatMul
becomes a Gemm to carry the bias). Folding needs constant weights and parameters, and the
intermediate must feed only the BatchNormalization/Mul/Add (the matcher enforces that:
another consumer would still need the unscaled tensor). A per-channel Mul/Add after a
BatchNormalization that has no linear op to fold into merges into its gamma/beta instead.
"""

from __future__ import annotations

import numpy as np

from edge.ir import Graph, Node, Value
from edge.passes.common import per_channel
from edge.passes.rewrite import Builder, Const, Match, Op, Rule, RuleSet

__all__ = ["fold_batchnorm", "FOLD_BN_RULES"]

_LINEAR = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _channels(node: Node) -> int | None:
    shape = node.outputs[0].shape
    if shape is None or len(shape) < 2 or not isinstance(shape[1], int):
        return None
    return shape[1]


def _check_linear(graph: Graph, node: Node) -> str | None:
    """Why ``node``'s weights cannot absorb a per-channel scale and shift."""
    out = node.outputs[0]
    if node.inputs[1] is None or node.inputs[1].const is None:
        return f"{node.op_type} weights are not constant"
    if node.input(2) is not None and node.inputs[2].const is None:
        return f"{node.op_type} bias is not constant"
    if _channels(node) is None:
        return f"channel count of '{out.name}' is unknown"
    if node.op_type in ("Gemm", "MatMul"):
        if out.rank != 2 or node.inputs[1].const.ndim != 2 or node.inputs[0].rank != 2:
            return f"{node.op_type} is not 2-D"
    return None


def _fold(b: Builder, node: Node, scale: np.ndarray | None, shift: np.ndarray) -> Value:
    """A copy of linear ``node`` computing ``node(x) * scale + shift`` per output channel."""
    out = node.outputs[0]
    weight = node.inputs[1].const
    dtype = weight.dtype
    channels = shift.shape[0]
    w = weight.astype(np.float64)
    if node.op_type == "Gemm":
        alpha, beta = node.attrs.get("alpha", 1.0), node.attrs.get("beta", 1.0)
        w = w * alpha
        bias = node.input(2).const.astype(np.float64) * beta if node.input(2) is not None else np.zeros(channels)
    else:
        bias = node.input(2).const.astype(np.float64) if node.input(2) is not None else np.zeros(channels)
    if scale is not None:
        if node.op_type == "Conv":
            w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
        elif node.op_type == "ConvTranspose":
            group = node.attrs.get("group", 1)
            per_group = w.shape[1]
            grouped = w.reshape(group, -1, per_group, int(np.prod(w.shape[2:], dtype=np.int64)))
            w = (grouped * scale.reshape(group, 1, per_group, 1)).reshape(w.shape)
        elif node.op_type == "Gemm" and node.attrs.get("transB", 0):
            w = w * scale[:, None]
        else:
            w = w * scale[None, :]
        bias = bias * scale
    bias = bias + shift
    new_w = b.const(w.astype(dtype), hint=f"{node.name}_W")
    new_b = b.const(bias.astype(dtype), hint=f"{node.name}_B")
    if node.op_type in ("Conv", "ConvTranspose"):
        return b.op(node.op_type, [node.inputs[0], new_w, new_b], dict(node.attrs), like=out)
    attrs = {k: v for k, v in node.attrs.items() if k in ("transA", "transB")}
    return b.op("Gemm", [node.inputs[0], new_w, new_b], attrs, like=out)


def _check_bn(graph: Graph, match: Match) -> str | None:
    bn, node = match.node("bn"), match.node("op")
    if bn.attrs.get("training_mode", 0):
        return "BatchNormalization in training mode"
    if len([v for v in bn.outputs if v.uses or graph.is_output(v)]) > 1:
        return "BatchNormalization running statistics are used"
    return _check_linear(graph, node)


def _fold_bn(b: Builder, m: Match) -> Value:
    bn = m.node("bn")
    eps = float(bn.attrs.get("epsilon", 1e-5))
    gamma, beta, mean, var = (m.const(k).astype(np.float64).reshape(-1) for k in ("gamma", "beta", "mean", "var"))
    scale = gamma / np.sqrt(var + eps)
    return _fold(b, m.node("op"), scale, beta - mean * scale)


def _channel_constant(graph: Graph, match: Match) -> np.ndarray | str:
    node = match.node("op")
    out = node.outputs[0]
    if match.value("c").dtype != out.dtype:
        return "constant dtype differs"
    reason = _check_linear(graph, node)
    if reason is not None:
        return reason
    vector = per_channel(match.const("c"), out.rank or 0, 1, _channels(node))
    if vector is None:
        return f"constant of shape {match.const('c').shape} is not per-channel for '{out.name}' {out.shape}"
    return vector.astype(np.float64)


def _check_channel(graph: Graph, match: Match) -> str | None:
    result = _channel_constant(graph, match)
    return result if isinstance(result, str) else None


def _fold_mul(b: Builder, m: Match) -> Value:
    scale = _channel_constant(b.graph, m)
    assert not isinstance(scale, str)
    return _fold(b, m.node("op"), scale, np.zeros_like(scale))


def _fold_add(b: Builder, m: Match) -> Value:
    shift = _channel_constant(b.graph, m)
    assert not isinstance(shift, str)
    return _fold(b, m.node("op"), None, shift)


def _check_bn_affine(graph: Graph, match: Match) -> str | None:
    bn = match.node("op")
    out = bn.outputs[0]
    if bn.attrs.get("training_mode", 0) or any(v is None or v.const is None for v in bn.inputs[1:5]):
        return "BatchNormalization is in training mode or its parameters are not constant"
    if match.value("c").dtype != out.dtype:
        return "constant dtype differs"
    if per_channel(match.const("c"), out.rank or 0, 1, bn.inputs[1].const.size) is None:
        return f"constant of shape {match.const('c').shape} is not per-channel for '{out.name}' {out.shape}"
    return None


def _bn_affine(multiply: bool):
    """BN(x)·c = BN(x; gamma·c, beta·c) and BN(x) + c = BN(x; gamma, beta + c), per channel."""

    def rewrite(b: Builder, m: Match) -> Value:
        bn = m.node("op")
        gamma, beta = bn.inputs[1].const, bn.inputs[2].const
        c = per_channel(m.const("c"), bn.outputs[0].rank or 0, 1, gamma.size).astype(gamma.dtype)  # type: ignore[union-attr]
        gamma, beta = (gamma * c, beta * c) if multiply else (gamma, beta + c)
        inputs = [bn.inputs[0], b.const(gamma, hint="bn_scale"), b.const(beta, hint="bn_bias"), *bn.inputs[3:5]]
        return b.op("BatchNormalization", inputs, dict(bn.attrs), like=m.root.outputs[0])

    return rewrite


_BN = Op("BatchNormalization", name="op")

FOLD_BN_RULES = RuleSet(
    [
        Rule(
            "batchnorm_into_linear",
            Op(
                "BatchNormalization",
                Op(_LINEAR, name="op"),
                Const("gamma"),
                Const("beta"),
                Const("mean"),
                Const("var"),
                name="bn",
            ),
            _fold_bn,
            _check_bn,
        ),
        Rule("mul_into_linear", Op("Mul", Op(_LINEAR, name="op"), Const("c"), commute=True), _fold_mul, _check_channel),
        Rule("add_into_linear", Op("Add", Op(_LINEAR, name="op"), Const("c"), commute=True), _fold_add, _check_channel),
        Rule("mul_into_batchnorm", Op("Mul", _BN, Const("c"), commute=True), _bn_affine(True), _check_bn_affine),
        Rule("add_into_batchnorm", Op("Add", _BN, Const("c"), commute=True), _bn_affine(False), _check_bn_affine),
    ]
)


def fold_batchnorm(graph: Graph) -> int:
    """Fold BatchNormalization and per-channel Mul/Add into Conv/ConvTranspose/Gemm/MatMul."""
    return FOLD_BN_RULES.apply(graph)
