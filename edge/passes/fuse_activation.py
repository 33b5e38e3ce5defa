"""Epilogue fusion: Conv / ConvTranspose / Gemm / BatchNormalization + residual Add + activation
-> one edgetrt node.

The fused op computes ``act(op(X, W, B) + Z)`` (``Z`` for convolutions and Gemms, also seen
through the Reshape that flattens a 3-D MatMul into a Gemm): the bias is already in the op,
the residual ``Z`` is an ``Add`` whose other operand has exactly the op's output shape (an
add that broadcasts is a bias, handled by ``fold_bn``, or not an epilogue at all), and ``act`` is one of the activations the contract lists. Rules fire
bottom-up in any order: the residual rule needs a fused node without activation, the
activation rule accepts a plain op or a fused node without one, so Conv -> Add -> Relu ends
as ``FusedConv(X, W, B, Z, activation="Relu")``. An inference BatchNormalization left standing
(nothing before it to fold into, as in pre-activation blocks: BN -> Relu -> Conv) takes its
activation the same way, as TensorRT fuses a scale layer with the activation after it.
"""

from __future__ import annotations

import numpy as np

from edge.ir import EDGETRT_DOMAIN, Graph, Node, Value, standard_domain
from edge.ir.opinfo import ACTIVATIONS
from edge.passes.common import opset_of, same_shape
from edge.passes.rewrite import Builder, Match, Op, Rule, RuleSet, Var

__all__ = ["fuse_activations", "activation_of", "FUSE_ACTIVATION_RULES"]

_FLOAT_MAX = float(np.finfo(np.float32).max)
_FUSED = {
    "Conv": "FusedConv",
    "ConvTranspose": "FusedConvTranspose",
    "Gemm": "FusedGemm",
    "BatchNormalization": "FusedBatchNormalization",
}
_ACTIVATION_OPS = tuple(name for name, a in ACTIVATIONS.items() if a.domain == "")  # SiLU has its own rules


def activation_of(graph: Graph, node: Node) -> tuple[str, list[float]] | None:
    """(activation name, params) when ``node`` is an activation an epilogue can run, else None."""
    op = node.op_type
    if node.domain == EDGETRT_DOMAIN:
        return ("SiLU", []) if op == "SiLU" else None
    if standard_domain(node.domain) != "":
        return None
    if op == "Gelu":
        return ("Gelu", []) if node.attrs.get("approximate", "none") == "none" else None
    if op == "Clip":
        if opset_of(graph, node) < 11:
            return op, [float(node.attrs.get("min", -_FLOAT_MAX)), float(node.attrs.get("max", _FLOAT_MAX))]
        bounds = []
        for index, default in ((1, -_FLOAT_MAX), (2, _FLOAT_MAX)):
            bound = node.input(index)
            if bound is None:
                bounds.append(default)
            elif bound.const is not None and bound.const.size == 1:
                bounds.append(float(bound.const.reshape(())))
            else:
                return None
        return op, bounds
    if op in _ACTIVATION_OPS:
        return op, [float(node.attrs.get(attr, default)) for attr, default in ACTIVATIONS[op].params]
    return None


def _is_fused(node: Node) -> bool:
    return node.domain == EDGETRT_DOMAIN and node.op_type in _FUSED.values()


def _check_activation(graph: Graph, match: Match) -> str | None:
    node = match.node("op")
    if activation_of(graph, match.root) is None:
        return f"{match.root.op_type} with these attributes has no epilogue form"
    if _is_fused(node) and node.attrs.get("activation"):
        return f"'{node.name}' already has activation {node.attrs['activation']}"
    if not _is_fused(node) and standard_domain(node.domain) != "":
        return f"'{node.name}' is not a standard {node.op_type}"
    if node.op_type == "BatchNormalization" and (node.attrs.get("training_mode", 0) or len(node.outputs) > 1):
        return f"'{node.name}' runs in training mode or outputs its statistics"
    return None


def _fused_copy(
    b: Builder, node: Node, inputs: list[Value | None], like: Value | None = None, **attrs: object
) -> Value:
    """The fused form of ``node`` (or of an already fused node) with ``attrs`` merged in; its
    output is typed like ``like`` (default: the matched root's output)."""
    op_type = node.op_type if _is_fused(node) else _FUSED[node.op_type]
    merged = dict(node.attrs)
    merged.setdefault("activation", "")
    merged.setdefault("activation_params", [])
    merged.update(attrs)
    while inputs and inputs[-1] is None:
        inputs.pop()
    b.graph.opset.setdefault(EDGETRT_DOMAIN, 1)
    return b.op(op_type, inputs, merged, domain=EDGETRT_DOMAIN, like=like if like is not None else b.anchor.outputs[0])


def _fuse_activation(b: Builder, m: Match) -> Value:
    node = m.node("op")
    name, params = activation_of(b.graph, m.root)  # type: ignore[misc]
    return _fused_copy(b, node, list(node.inputs), activation=name, activation_params=params)


def _check_reshaped_gemm(graph: Graph, match: Match) -> str | None:
    reason = _check_activation(graph, match)
    if reason is None and match.node("op").op_type not in ("Gemm", "FusedGemm"):
        return "only a Gemm's activation moves across a Reshape"
    return reason


def _fuse_through_reshape(b: Builder, m: Match) -> Value:
    """act(Reshape(gemm)) == Reshape(act(gemm)): an elementwise op commutes with a reshape."""
    node, reshape = m.node("op"), m.node("reshape")
    name, params = activation_of(b.graph, m.root)  # type: ignore[misc]
    fused = _fused_copy(b, node, list(node.inputs), node.outputs[0], activation=name, activation_params=params)
    return b.op("Reshape", [fused, *reshape.inputs[1:]], dict(reshape.attrs), like=m.root.outputs[0])


def _residual_problem(node: Node, z: Value, out: Value) -> str | None:
    """Why ``out + z`` cannot become ``node``'s residual (``out``: its output, or that output
    reshaped), or None."""
    if z is out:
        return "the residual is the op's output itself"
    if _is_fused(node) and (node.attrs.get("activation") or node.input(3) is not None):
        return f"'{node.name}' already has an activation or residual"
    if not _is_fused(node) and standard_domain(node.domain) != "":
        return f"'{node.name}' is not a standard {node.op_type}"
    if not same_shape(z, out) or z.dtype != out.dtype:
        return f"residual '{z.name}' {z.shape} does not match '{out.name}' {out.shape}"
    return None


def _check_residual(graph: Graph, match: Match) -> str | None:
    node = match.node("op")
    return _residual_problem(node, match.value("z"), node.outputs[0])


def _with_residual(node: Node, z: Value) -> list[Value | None]:
    """``node``'s inputs with ``z`` as the fused op's residual (input 3)."""
    inputs = list(node.inputs) + [None] * (3 - len(node.inputs))
    return [*inputs[:3], z]


def _fuse_residual(b: Builder, m: Match) -> Value:
    node = m.node("op")
    return _fused_copy(b, node, _with_residual(node, m.value("z")))


def _check_reshaped_residual(graph: Graph, match: Match) -> str | None:
    node = match.node("op")
    if not node.outputs[0].is_static:
        return f"'{node.name}' has a dynamic shape: the residual cannot be flattened like it"
    return _residual_problem(node, match.value("z"), match.node("reshape").outputs[0])


def _fuse_residual_through_reshape(b: Builder, m: Match) -> Value:
    """Reshape(gemm) + Z == Reshape(gemm + Reshape(Z)): the residual flattened like the product."""
    node, reshape, z = m.node("op"), m.node("reshape"), m.value("z")
    flat = node.outputs[0]
    z_flat = b.op("Reshape", [z, b.const(np.array(flat.shape, np.int64), hint="shape")], dtype=z.dtype, shape=flat.shape)
    fused = _fused_copy(b, node, _with_residual(node, z_flat), flat)
    return b.op("Reshape", [fused, *reshape.inputs[1:]], dict(reshape.attrs), like=m.root.outputs[0])


_PLAIN = Op(tuple(_FUSED), name="op")
_PLAIN_PRODUCT = Op(("Conv", "ConvTranspose", "Gemm"), name="op")
_FUSED_ANY = Op(tuple(_FUSED.values()), name="op", domain=EDGETRT_DOMAIN)
_FUSED_PRODUCT = Op(("FusedConv", "FusedConvTranspose", "FusedGemm"), name="op", domain=EDGETRT_DOMAIN)
_RESHAPED_GEMM = Op("Reshape", Op(("Gemm", "FusedGemm"), name="op", domain="*"), name="reshape")


def _activation_rules() -> list[Rule]:
    rules = []
    gemms = Op("Reshape", Op(("Gemm", "FusedGemm"), name="op", domain="*"), name="reshape")
    for act in _ACTIVATION_OPS:
        rules.append(
            Rule(f"{act.lower()}_through_reshape", Op(act, gemms), _fuse_through_reshape, _check_reshaped_gemm)
        )
    rules.append(
        Rule("silu_through_reshape", Op("SiLU", gemms, domain=EDGETRT_DOMAIN), _fuse_through_reshape, _check_reshaped_gemm)
    )
    for source_name, source in (("op", _PLAIN), ("fused", _FUSED_ANY)):
        for act in _ACTIVATION_OPS:
            rules.append(
                Rule(f"{act.lower()}_into_{source_name}", Op(act, source), _fuse_activation, _check_activation)
            )
        rules.append(
            Rule(f"silu_into_{source_name}", Op("SiLU", source, domain=EDGETRT_DOMAIN), _fuse_activation, _check_activation)
        )
    return rules


FUSE_ACTIVATION_RULES = RuleSet(
    [
        Rule("residual_into_op", Op("Add", _PLAIN_PRODUCT, Var("z"), commute=True), _fuse_residual, _check_residual),
        Rule("residual_into_fused", Op("Add", _FUSED_PRODUCT, Var("z"), commute=True), _fuse_residual, _check_residual),
        Rule("residual_through_reshape", Op("Add", _RESHAPED_GEMM, Var("z"), commute=True),
             _fuse_residual_through_reshape, _check_reshaped_residual),
        *_activation_rules(),
    ]
)


def fuse_activations(graph: Graph) -> int:
    """Fuse residual adds and activations into conv/gemm epilogues; returns how many fired."""
    return FUSE_ACTIVATION_RULES.apply(graph)
