"""Fully connected layers and layout chains: MatMul + Add -> Gemm, Transpose/Reshape collapsing.

1. ``Add(MatMul(A, B), C)`` -> ``Gemm(A, B, C)`` when A and B are 2-D and C broadcasts to
   the (M, N) output (Gemm's unidirectional broadcast). When A has rank > 2 with a static
   shape and C is a per-column bias or a whole tensor of the output's shape (a residual,
   where the layer has no bias), A is flattened to (prod(leading), K), the Gemm runs, and
   the result is reshaped back — one GEMM call instead of a batched matmul plus an add.
   A bias-free ``MatMul(A, B)`` with a 2-D B whose one consumer is an activation becomes a
   Gemm the same way, so the activation fuses into it (LLaMA-style bias-free MLPs).
2. ``Transpose(Transpose(x, p), q)`` -> ``Transpose(x, p[q])`` (identity removal then drops
   an identity permutation).
3. ``Reshape(Reshape(x, s), t)`` -> one Reshape to the final shape (static, or ``t`` when it
   copies no dims with 0).
4. A 2-D ``Transpose(perm=[1, 0])`` feeding operand A or B of a Gemm or 2-D MatMul becomes
   ``transA`` / ``transB`` of a Gemm.
"""

from __future__ import annotations

import numpy as np

from edge.ir import Graph, Value
from edge.passes.common import same_shape
from edge.passes.fuse_activation import activation_of
from edge.passes.rewrite import Builder, Match, Op, Rule, RuleSet, Var

__all__ = ["fuse_matmul", "FUSE_MATMUL_RULES"]


def _check_gemm_operands(a: Value, w: Value, out: Value) -> str | None:
    """Why ``MatMul(a, w)`` cannot run as one (flattened) Gemm, or None."""
    if w.rank != 2 or a.rank is None or a.rank < 2:
        return f"MatMul operands have ranks {a.rank} and {w.rank}"
    if a.rank > 2 and (not a.is_static or not out.is_static):
        return f"{a.rank}-D MatMul input '{a.name}' has a dynamic shape"
    return None


def _check_matmul_add(graph: Graph, match: Match) -> str | None:
    a, w, c = match.value("a"), match.value("b"), match.value("c")
    out = match.root.outputs[0]
    if (reason := _check_gemm_operands(a, w, out)) is not None:
        return reason
    if c.shape is None or out.shape is None or c.dtype != out.dtype:
        return "bias shape or dtype is unknown or differs"
    if any(not isinstance(d, int) for d in c.shape):
        return f"bias shape {c.shape} is not static"
    if a.rank == 2:
        if len(c.shape) > 2 or out.rank != 2:
            return f"bias of shape {c.shape} changes the output rank"
        m, n = out.shape
        for have, want in zip(c.shape[::-1], (n, m)):
            if have != 1 and have != want:
                return f"bias of shape {c.shape} does not broadcast to ({m}, {n})"
        return None
    if same_shape(c, out):
        return None
    if (
        any(d != 1 for d in c.shape[:-1])
        or (c.shape and c.shape[-1] not in (1, out.shape[-1]))
        or len(c.shape) > out.rank
    ):
        return f"bias of shape {c.shape} is neither a per-column bias nor the output's shape"
    return None


def _check_matmul_activation(graph: Graph, match: Match) -> str | None:
    out = match.root.outputs[0]
    if (reason := _check_gemm_operands(match.value("a"), match.value("b"), out)) is not None:
        return reason
    users = out.consumers
    if graph.is_output(out) or len(users) != 1 or activation_of(graph, users[0]) is None:
        return "the MatMul does not feed exactly one fusible activation"
    return None


def _gemm(b: Builder, a: Value, w: Value, c: Value | None, out: Value) -> Value:
    """``MatMul(a, w) [+ c]`` as one Gemm, ``a``'s leading dims flattened into its rows."""
    if a.rank == 2:
        return b.op("Gemm", [a, w] + ([c] if c is not None else []), like=out)
    k = a.shape[-1]
    rows = int(np.prod(a.shape[:-1]))
    flat = b.op("Reshape", [a, b.const(np.array([rows, k], np.int64), hint="shape")], dtype=a.dtype, shape=(rows, k))
    inputs = [flat, w]
    if c is not None:
        addend = (rows, out.shape[-1]) if same_shape(c, out) else (int(np.prod(c.shape)),)  # residual, or a vector of columns
        if c.const is not None:
            inputs.append(b.const(c.const.reshape(addend), hint="bias"))
        elif c.shape != addend:
            inputs.append(b.op("Reshape", [c, b.const(np.array(addend, np.int64), hint="shape")], dtype=c.dtype, shape=addend))
        else:
            inputs.append(c)
    gemm = b.op("Gemm", inputs, dtype=out.dtype, shape=(rows, out.shape[-1]))
    return b.op("Reshape", [gemm, b.const(np.array(out.shape, np.int64), hint="shape")], like=out)


def _matmul_add(b: Builder, m: Match) -> Value:
    return _gemm(b, m.value("a"), m.value("b"), m.value("c"), m.root.outputs[0])


def _matmul_before_activation(b: Builder, m: Match) -> Value:
    return _gemm(b, m.value("a"), m.value("b"), None, m.root.outputs[0])


def _check_transposes(graph: Graph, match: Match) -> str | None:
    if match.node("inner").attrs.get("perm") is None or match.root.attrs.get("perm") is None:
        return "a permutation is implicit (reversal of unknown rank)"
    return None


def _merge_transposes(b: Builder, m: Match) -> Value:
    inner = list(m.node("inner").attrs["perm"])
    outer = list(m.root.attrs["perm"])
    return b.op("Transpose", [m["x"]], {"perm": [inner[i] for i in outer]}, like=m.root.outputs[0])


def _check_reshapes(graph: Graph, match: Match) -> str | None:
    out = match.root.outputs[0]
    if out.is_static:
        return None
    target = match.root.input(1)
    if target is None or target.const is None or np.any(target.const == 0) or match.root.attrs.get("allowzero", 0):
        return "final shape is neither static nor free of copied (0) dims"
    return None


def _merge_reshapes(b: Builder, m: Match) -> Value:
    out = m.root.outputs[0]
    target = b.const(np.array(out.shape, np.int64), hint="shape") if out.is_static else m.root.inputs[1]
    return b.op("Reshape", [m["x"], target], like=out)


def _is_swap(graph: Graph, match: Match) -> str | None:
    t = match.node("t")
    perm = t.attrs.get("perm")
    if t.outputs[0].rank != 2 or (perm is not None and list(perm) != [1, 0]):
        return "not a 2-D transpose"
    node = match.root
    if node.op_type == "MatMul" and any(v is None or v.rank != 2 for v in node.inputs):
        return "MatMul operands are not 2-D"
    return None


def _fold_transpose(position: int):
    flag = ("transA", "transB")[position]

    def rewrite(b: Builder, m: Match) -> Value:
        node = m.root
        attrs = dict(node.attrs) if node.op_type == "Gemm" else {}
        attrs[flag] = 1 - int(attrs.get(flag, 0))
        inputs = list(node.inputs)
        inputs[position] = m.value("x")
        return b.op("Gemm", inputs, attrs, like=node.outputs[0])

    return rewrite


FUSE_MATMUL_RULES = RuleSet(
    [
        Rule(
            "matmul_add_to_gemm",
            Op("Add", Op("MatMul", Var("a"), Var("b")), Var("c"), commute=True),
            _matmul_add,
            _check_matmul_add,
        ),
        Rule("matmul_before_activation", Op("MatMul", Var("a"), Var("b")), _matmul_before_activation, _check_matmul_activation),
        Rule(
            "transpose_chain",
            Op("Transpose", Op("Transpose", Var("x"), name="inner")),
            _merge_transposes,
            _check_transposes,
            shared_ok=("inner",),
        ),
        Rule(
            "reshape_chain",
            Op("Reshape", Op("Reshape", Var("x"), name="inner")),
            _merge_reshapes,
            _check_reshapes,
            shared_ok=("inner",),
        ),
        Rule(
            "transpose_into_gemm_a",
            Op(("Gemm", "MatMul"), Op("Transpose", Var("x"), name="t")),
            _fold_transpose(0),
            _is_swap,
            shared_ok=("t",),
        ),
        Rule(
            "transpose_into_gemm_b",
            Op(("Gemm", "MatMul"), Var("a"), Op("Transpose", Var("x"), name="t")),
            _fold_transpose(1),
            _is_swap,
            shared_ok=("t",),
        ),
    ]
)


def fuse_matmul(graph: Graph) -> int:
    """Apply the MatMul/Gemm and layout-chain rules; returns how many fired."""
    return FUSE_MATMUL_RULES.apply(graph)
