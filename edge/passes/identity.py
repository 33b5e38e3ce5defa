"""Identity removal: nodes whose output equals their input are bypassed.

1. ``Identity``, and ``Dropout`` outside training mode when its mask output is unused.
2. ``Reshape`` / ``Expand`` whose output shape equals the (static) input shape.
3. ``Cast`` to the input's own dtype.
4. ``Transpose`` with the identity permutation.
5. ``Pad`` whose pads are all zero.
6. ``Slice`` with unit steps whose output shape equals the (static) input shape.
7. ``x + 0``, ``x - 0``, ``x · 1`` and ``x / 1`` with a constant of zeros (ones) that neither
   broadcasts ``x`` to a larger shape nor changes its dtype: an exporter's all-zero attention
   mask, say, once constant folding has computed it.

The rewrite framework keeps the interface intact: when the removed node feeds a graph
output, the input value takes over the output's name, and a graph input is never renamed.
"""

from __future__ import annotations

import numpy as np

from edge.ir import Graph, Value
from edge.passes.rewrite import Builder, Const, Match, Op, Rule, RuleSet, Var

__all__ = ["remove_identities", "IDENTITY_RULES"]


def _source(builder: Builder, match: Match) -> Value:
    return match.value("x")


def _check_same_shape(graph: Graph, match: Match) -> str | None:
    x, y = match.value("x"), match.node("op").outputs[0]
    if not (x.is_static and y.is_static and x.shape == y.shape):
        return f"shape {x.shape} -> {y.shape} is not a static no-op"
    return None


def _check_dropout(graph: Graph, match: Match) -> str | None:
    node = match.node("op")
    training = node.input(2)
    if training is not None and (training.const is None or bool(training.const.reshape(-1)[0])):
        return "training_mode is not constant false"
    return None


def _check_cast(graph: Graph, match: Match) -> str | None:
    x, y = match.value("x"), match.node("op").outputs[0]
    return None if x.dtype is not None and x.dtype == y.dtype else f"casts {x.dtype} to {y.dtype}"


def _check_transpose(graph: Graph, match: Match) -> str | None:
    perm = match.node("op").attrs.get("perm")
    if perm is None or list(perm) != list(range(len(perm))):
        return f"perm {perm} is not the identity"
    return None


def _check_pad(graph: Graph, match: Match) -> str | None:
    node = match.node("op")
    pads = (
        node.attrs.get("pads")
        if len(node.inputs) < 2
        else (node.inputs[1].const if node.inputs[1] is not None else None)
    )
    if pads is None or np.any(np.asarray(pads) != 0):
        return "pads are not constant zeros"
    return None


def _check_slice(graph: Graph, match: Match) -> str | None:
    node = match.node("op")
    steps = node.input(4)
    if steps is not None and (steps.const is None or np.any(steps.const != 1)):
        return "steps are not all 1"
    return _check_same_shape(graph, match)


def _check_neutral_operand(graph: Graph, match: Match) -> str | None:
    c = match.value("c")
    if c.dtype != match.value("x").dtype:
        return f"the constant's dtype {c.dtype} differs from the operand's"
    return _check_same_shape(graph, match)


def _neutral_rule(name: str, op_type: str, neutral: float, commute: bool) -> Rule:
    """``x op c`` -> ``x`` for a constant ``c`` of ``neutral`` everywhere."""
    c = Const("c", lambda a: a.size > 0 and bool(np.all(a == neutral)))
    return Rule(name, Op(op_type, Var("x"), c, name="op", commute=commute), _source, _check_neutral_operand)


def _rule(name: str, op_type: str, check=None) -> Rule:
    return Rule(name, Op(op_type, Var("x"), name="op"), _source, check)


IDENTITY_RULES = RuleSet(
    [
        _rule("identity", "Identity"),
        _rule("dropout", "Dropout", _check_dropout),
        _rule("noop_reshape", "Reshape", _check_same_shape),
        _rule("noop_expand", "Expand", _check_same_shape),
        _rule("noop_cast", "Cast", _check_cast),
        _rule("noop_transpose", "Transpose", _check_transpose),
        _rule("noop_pad", "Pad", _check_pad),
        _rule("noop_slice", "Slice", _check_slice),
        _neutral_rule("add_zero", "Add", 0.0, commute=True),
        _neutral_rule("sub_zero", "Sub", 0.0, commute=False),
        _neutral_rule("mul_one", "Mul", 1.0, commute=True),
        _neutral_rule("div_one", "Div", 1.0, commute=False),
    ]
)


def remove_identities(graph: Graph) -> int:
    """Bypass no-op nodes; returns how many were removed."""
    return IDENTITY_RULES.apply(graph)
