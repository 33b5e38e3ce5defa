"""Recognize decomposed building blocks and replace each by its single-op form.

1. LayerNormalization: ``(x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps)`` over trailing
   axes becomes ``LayerNormalization(x, 1, 0)``; a following ``Mul`` / ``Add`` by a
   constant that varies only along the normalized axes folds into its scale / bias
   (``(n*g + b)*c + d = n*(g*c) + (b*c + d)``).
2. GELU, erf form ``0.5·x·(1 + erf(x/√2))`` -> ``Gelu``; tanh form
   ``0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`` -> ``Gelu(approximate="tanh")``. The three
   usual association orders of the outer products are accepted.
3. SiLU / Swish ``x·sigmoid(x)`` (and ``Swish`` with alpha 1) -> edgetrt ``SiLU``.
4. HardSwish ``x·HardSigmoid(x; 1/6, 1/2)`` or ``x·clip(x + 3, 0, 6)/6`` -> ``HardSwish``.
5. Scaled-dot-product attention ``softmax(Q·Kᵀ·s [+ mask])·V`` with Kᵀ a Transpose that
   swaps the last two axes -> edgetrt ``Attention(Q, K, V[, mask]; scale=s)``; the scale may
   also be split onto Q and Kᵀ (``(Q·a)·(Kᵀ·b)``, scale a·b). The softmax may be guarded
   as ``Where(IsNaN(p), 0, p)`` (torch's SDPA export zeroes rows a mask blanks out entirely);
   that form is taken only without a mask or with a constant finite one, where no row can
   be blanked out and the guard never fires for finite Q and K. Where Q, K and V each come
   through a Transpose moving the heads from axis 2 to axis 1 (``perm=[0, 2, 1, 3]``) and the
   output goes back through the same Transpose, as every multi-head block splits its heads,
   the four Transposes fold into the Attention (``bshd=1``: its tensors keep the projections'
   (batch, sequence, heads, head size) layout), so no copy runs.
6. ShuffleNet's channel shuffle, Reshape (N, C, *S) -> (N, g, C/g, *S), Transpose swapping
   axes 1 and 2, Reshape back -> edgetrt ``ChannelShuffle(groups=g)``: one copy instead of
   three layers.

Division by a constant has already become multiplication by its inverse (canonicalize), so
the patterns only spell the multiplicative forms; constants are compared with a 1e-4
relative tolerance because exporters round them differently.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from edge.ir import EDGETRT_DOMAIN, Graph, Value
from edge.passes.common import is_float, is_scalar, reduce_axes, scalar
from edge.passes.fuse_activation import activation_of
from edge.passes.rewrite import Builder, Const, Match, Op, Pattern, Rule, RuleSet, Var

__all__ = ["recognize", "RECOGNIZE_RULES"]

_TOL = 1e-4


# -- LayerNormalization ------------------------------------------------------------------


def _layernorm_patterns() -> list[Op]:
    patterns = []
    for square_op in ("Pow", "Mul"):
        mean = Op("ReduceMean", Var("x"), name="mean")
        diff = Op("Sub", Var("x"), mean, name="diff")
        square = Op("Pow", diff, Const("two"), name="sq") if square_op == "Pow" else Op("Mul", diff, diff, name="sq")
        var = Op("ReduceMean", square, name="var")
        std = Op("Sqrt", Op("Add", var, Const("eps"), commute=True, name="add_eps"), name="std")
        patterns.append(Op("Div", diff, std, name="norm"))
    return patterns


def _check_layernorm(graph: Graph, match: Match) -> str | None:
    x = match.value("x")
    if not is_float(x) or x.rank is None:
        return "input is not a float tensor of known rank"
    mean, var = match.node("mean"), match.node("var")
    axes = reduce_axes(graph, mean)
    if axes is None or axes != reduce_axes(graph, var):
        return "mean and variance reduce different or unknown axes"
    if axes != list(range(axes[0], x.rank)):
        return f"axes {axes} are not the trailing axes of a rank-{x.rank} tensor"
    if not mean.attrs.get("keepdims", 1) or not var.attrs.get("keepdims", 1):
        return "a ReduceMean drops its axes"
    if "two" in match.bindings and not is_scalar(match.value("two"), 2.0):
        return "the variance does not square"
    if scalar(match.value("eps")) is None:
        return "epsilon is not a scalar constant"
    if any(not isinstance(d, int) for d in x.shape[axes[0] :]):
        return "normalized dims are not static"
    return None


def _layernorm(b: Builder, m: Match) -> Value:
    x = m.value("x")
    axis = reduce_axes(b.graph, m.node("mean"))[0]  # type: ignore[index]
    shape = tuple(x.shape[axis:])
    ones = b.const(np.ones(shape, x.dtype), hint="ln_scale")
    zeros = b.const(np.zeros(shape, x.dtype), hint="ln_bias")
    attrs = {"axis": axis, "epsilon": float(scalar(m.value("eps")))}  # type: ignore[arg-type]
    return b.op("LayerNormalization", [x, ones, zeros], attrs, like=m.root.outputs[0])


def _normalized_shape(match: Match) -> tuple[int, ...]:
    ln = match.node("ln")
    return tuple(ln.inputs[1].const.shape)


def _check_ln_affine(graph: Graph, match: Match) -> str | None:
    ln = match.node("ln")
    if ln.inputs[1] is None or ln.inputs[1].const is None or (ln.input(2) is not None and ln.inputs[2].const is None):
        return "LayerNormalization scale/bias are not constant"
    c = match.const("c")
    norm = _normalized_shape(match)
    if c.dtype != ln.outputs[0].dtype:
        return "constant dtype differs"
    try:
        if c.ndim > len(norm) or np.broadcast_shapes(c.shape, norm) != norm:
            return f"constant of shape {c.shape} varies outside the normalized axes {norm}"
    except ValueError:
        return f"constant of shape {c.shape} does not broadcast to {norm}"
    return None


def _ln_affine(multiply: bool):
    def rewrite(b: Builder, m: Match) -> Value:
        ln = m.node("ln")
        norm = _normalized_shape(m)
        scale = ln.inputs[1].const
        bias = ln.inputs[2].const if ln.input(2) is not None else np.zeros(norm, scale.dtype)
        c = m.const("c")
        if multiply:
            scale, bias = scale * c, bias * c
        else:
            bias = bias + c
        dtype = ln.inputs[1].const.dtype
        scale_v = b.const(np.broadcast_to(scale, norm).astype(dtype), hint="ln_scale")
        bias_v = b.const(np.broadcast_to(bias, norm).astype(dtype), hint="ln_bias")
        return b.op("LayerNormalization", [ln.inputs[0], scale_v, bias_v], dict(ln.attrs), like=m.root.outputs[0])

    return rewrite


# -- GELU --------------------------------------------------------------------------------


def _gelu_outer(inner: Pattern) -> list[Op]:
    """The three association orders of 0.5 · x · (1 + inner)."""
    gate = Op("Add", inner, Const("one"), commute=True)
    return [
        Op("Mul", Op("Mul", Var("x"), gate, commute=True), Const("half"), commute=True),
        Op("Mul", Op("Mul", Var("x"), Const("half"), commute=True), gate, commute=True),
        Op("Mul", Var("x"), Op("Mul", gate, Const("half"), commute=True), commute=True),
    ]


def _gelu_erf_patterns() -> list[Op]:
    return _gelu_outer(Op("Erf", Op(("Mul", "Div"), Var("x"), Const("c1"), name="scale_op")))


def _gelu_tanh_patterns() -> list[Op]:
    cubes = [Op("Pow", Var("x"), Const("three")), Op("Mul", Var("x"), Op("Mul", Var("x"), Var("x")), commute=True)]
    patterns = []
    for cube in cubes:
        poly = Op("Add", Var("x"), Op("Mul", cube, Const("c3"), commute=True), commute=True)
        patterns += _gelu_outer(Op("Tanh", Op("Mul", poly, Const("c2"), commute=True)))
    return patterns


def _check_gelu_common(match: Match) -> str | None:
    if not is_float(match.value("x")):
        return "input is not floating point"
    if not (is_scalar(match.value("one"), 1.0, _TOL) and is_scalar(match.value("half"), 0.5, _TOL)):
        return "outer constants are not 1 and 0.5"
    return None


def _check_gelu_erf(graph: Graph, match: Match) -> str | None:
    reason = _check_gelu_common(match)
    if reason is not None:
        return reason
    want = math.sqrt(0.5) if match.node("scale_op").op_type == "Mul" else math.sqrt(2.0)
    return None if is_scalar(match.value("c1"), want, _TOL) else "erf argument is not x/sqrt(2)"


def _check_gelu_tanh(graph: Graph, match: Match) -> str | None:
    reason = _check_gelu_common(match)
    if reason is not None:
        return reason
    if "three" in match.bindings and not is_scalar(match.value("three"), 3.0):
        return "power is not 3"
    if not is_scalar(match.value("c3"), 0.044715, _TOL) or not is_scalar(
        match.value("c2"), math.sqrt(2 / math.pi), _TOL
    ):
        return "tanh polynomial constants differ from GELU's"
    return None


def _gelu(approximate: str):
    def rewrite(b: Builder, m: Match) -> Value:
        attrs = {"approximate": approximate} if approximate != "none" else {}
        return b.op("Gelu", [m.value("x")], attrs, like=m.root.outputs[0])

    return rewrite


# -- SiLU / HardSwish ----------------------------------------------------------------------


def _silu(b: Builder, m: Match) -> Value:
    b.graph.opset.setdefault(EDGETRT_DOMAIN, 1)
    return b.op("SiLU", [m.value("x")], domain=EDGETRT_DOMAIN, like=m.root.outputs[0])


def _check_swish(graph: Graph, match: Match) -> str | None:
    return None if abs(float(match.root.attrs.get("alpha", 1.0)) - 1.0) < 1e-7 else "Swish alpha is not 1"


def _hard_swish(b: Builder, m: Match) -> Value:
    return b.op("HardSwish", [m.value("x")], like=m.root.outputs[0])


def _check_hard_sigmoid(graph: Graph, match: Match) -> str | None:
    node = match.node("hs")
    alpha, beta = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
    return None if abs(alpha - 1 / 6) < 1e-6 and abs(beta - 0.5) < 1e-7 else "HardSigmoid is not x/6 + 1/2"


def _check_relu6_form(graph: Graph, match: Match) -> str | None:
    clip = activation_of(graph, match.node("clip"))
    if clip is None or clip[1] != [0.0, 6.0]:
        return "Clip is not clip(x, 0, 6)"
    if not is_scalar(match.value("three"), 3.0) or not is_scalar(match.value("sixth"), 1 / 6, _TOL):
        return "constants are not 3 and 1/6"
    return None


def _relu6_patterns() -> list[Op]:
    clip = Op("Clip", Op("Add", Var("x"), Const("three"), commute=True), name="clip")
    return [
        Op("Mul", Op("Mul", Var("x"), clip, commute=True), Const("sixth"), commute=True),
        Op("Mul", Var("x"), Op("Mul", clip, Const("sixth"), commute=True), commute=True),
    ]


# -- attention ---------------------------------------------------------------------------


_SCALES = ("scale", "q_scale", "k_scale")
"""Where attention's scale may sit: on the scores, on Q, on Kᵀ (exporters that split
1/√d into √(1/√d) on each operand, as transformers' SDPA path does); their product is it."""


def _attention_patterns() -> list[Op]:
    patterns = []
    for scaled, q_scaled, k_scaled, masked, guarded in itertools.product((True, False), repeat=5):
        q: Pattern = Op("Mul", Var("q"), Const("q_scale"), commute=True) if q_scaled else Var("q")
        kt: Pattern = Op("Transpose", Var("k"), name="kt")
        if k_scaled:
            kt = Op("Mul", kt, Const("k_scale"), commute=True)
        scores: Pattern = Op("MatMul", q, kt, name="qk")
        if scaled:
            scores = Op("Mul", scores, Const("scale"), commute=True)
        if masked:
            scores = Op("Add", scores, Var("mask"), commute=True)
        probs: Pattern = Op("Softmax", scores, name="softmax")
        if guarded:
            zero = Const("nan_fill", lambda a: a.size == 1 and float(a.reshape(-1)[0]) == 0.0)
            probs = Op("Where", Op("IsNaN", probs), zero, probs, name="guard")
        patterns.append(Op("MatMul", probs, Var("v")))
    return patterns


def _check_attention(graph: Graph, match: Match) -> str | None:
    kt, softmax = match.node("kt"), match.node("softmax")
    scores = match.node("qk").outputs[0]
    rank = scores.rank
    if rank is None or rank < 2 or match.value("v").rank != rank or match.value("q").rank != rank:
        return "Q, Kᵀ, V ranks are unknown or differ"
    perm = kt.attrs.get("perm")
    if perm is None or sorted(perm) != list(range(rank)):
        return "Kᵀ permutation is implicit or invalid"
    axis = softmax.attrs.get("axis", -1 if graph.opset.get("", 1) >= 13 else 1)
    if axis % rank != rank - 1:
        return f"softmax over axis {axis}, not the last"
    for name in _SCALES:
        if name in match.bindings and scalar(match.value(name)) is None:
            return f"{name.replace('_', ' ')} is not a scalar constant"
    if "mask" in match.bindings:
        mask = match.value("mask")
        if mask.shape is None or scores.shape is None or mask.rank > rank or not is_float(mask):
            return "mask shape is unknown or it is not additive"
        for m_dim, s_dim in zip(mask.shape[::-1], scores.shape[::-1]):
            if m_dim != 1 and m_dim != s_dim:
                return f"mask of shape {mask.shape} broadcasts beyond the scores {scores.shape}"
    if "guard" in match.bindings and "mask" in match.bindings:
        mask = match.value("mask").const
        if mask is None or not np.all(np.isfinite(mask)):
            return "the softmax's NaN guard may fire: the mask is not a finite constant"
    return None


def _attention(b: Builder, m: Match) -> Value:
    kt = m.node("kt")
    perm = list(kt.attrs["perm"])
    k_perm = perm[:-2] + [perm[-1], perm[-2]]  # K = Kᵀ with its last two axes swapped back
    k = m.value("k")
    if k_perm != list(range(len(k_perm))):
        shape = None if k.shape is None else tuple(k.shape[i] for i in k_perm)
        k = b.op("Transpose", [k], {"perm": k_perm}, dtype=k.dtype, shape=shape)
    inputs = [m.value("q"), k, m.value("v")] + ([m.value("mask")] if "mask" in m.bindings else [])
    scale = math.prod(scalar(m.get(name)) for name in _SCALES if name in m.bindings)
    b.graph.opset.setdefault(EDGETRT_DOMAIN, 1)
    return b.op("Attention", inputs, {"scale": float(scale)}, domain=EDGETRT_DOMAIN, like=m.root.outputs[0])  # type: ignore[arg-type]


_HEADS_TO_AXIS_1 = [0, 2, 1, 3]
"""The head split's Transpose, (batch, sequence, heads, size) <-> (batch, heads, sequence, size)."""


def _heads_pattern() -> Op:
    def split(role: str) -> Op:
        return Op("Transpose", Var(role), name=f"t{role}")

    attention = Op("Attention", split("q"), split("k"), split("v"), name="attention", domain=EDGETRT_DOMAIN)
    return Op("Transpose", attention, name="merge")


def _check_heads(graph: Graph, match: Match) -> str | None:
    attention = match.node("attention")
    if attention.attrs.get("bshd", 0):
        return "the Attention already reads heads on axis 2"
    for name in ("tq", "tk", "tv", "merge"):
        perm = match.node(name).attrs.get("perm")
        if perm is None or [int(p) for p in perm] != _HEADS_TO_AXIS_1:
            return f"Transpose '{match.node(name).name}' has perm {perm}, not the head split {_HEADS_TO_AXIS_1}"
    return None


def _heads_in_place(b: Builder, m: Match) -> Value:
    attention = m.node("attention")
    inputs = [m.value("q"), m.value("k"), m.value("v"), *attention.inputs[3:]]
    return b.op("Attention", inputs, {**attention.attrs, "bshd": 1}, domain=EDGETRT_DOMAIN, like=m.root.outputs[0])  # type: ignore[arg-type]


# -- channel shuffle ---------------------------------------------------------------------


def _channel_shuffle_pattern() -> Op:
    split = Op("Reshape", Var("x"), Const("split_shape"), name="split")
    swap = Op("Transpose", split, name="swap")
    return Op("Reshape", swap, Const("merge_shape"), name="merge")


def _check_channel_shuffle(graph: Graph, match: Match) -> str | None:
    x, split, merged = match.value("x"), match.node("split").outputs[0], match.root.outputs[0]
    if x.shape is None or split.shape is None or merged.shape is None or len(x.shape) < 3:
        return "shapes are unknown or the input has no channel axis"
    groups = split.shape[1] if len(split.shape) > 1 else None
    channels = x.shape[1]
    if not (isinstance(groups, int) and isinstance(channels, int) and groups > 0 and channels % groups == 0):
        return f"reshape {list(x.shape)} -> {list(split.shape)} does not split a static channel axis"
    if tuple(split.shape) != (x.shape[0], groups, channels // groups, *x.shape[2:]) or merged.shape != x.shape:
        return f"reshape {list(x.shape)} -> {list(split.shape)} -> {list(merged.shape)} is not a channel split merged back"
    perm = [int(p) for p in match.node("swap").attrs.get("perm", [])]
    if perm != [0, 2, 1, *range(3, len(split.shape))]:
        return f"transpose perm {perm} does not swap the group and channel axes"
    return None


def _channel_shuffle(b: Builder, m: Match) -> Value:
    groups = int(m.node("split").outputs[0].shape[1])  # type: ignore[index]
    b.graph.opset.setdefault(EDGETRT_DOMAIN, 1)
    return b.op("ChannelShuffle", [m.value("x")], {"groups": groups}, domain=EDGETRT_DOMAIN, like=m.root.outputs[0])


def _rules() -> list[Rule]:
    rules = [Rule("layernorm", p, _layernorm, _check_layernorm) for p in _layernorm_patterns()]
    ln = Op("LayerNormalization", name="ln")
    rules += [
        Rule("layernorm_scale", Op("Mul", ln, Const("c"), commute=True), _ln_affine(True), _check_ln_affine),
        Rule("layernorm_bias", Op("Add", ln, Const("c"), commute=True), _ln_affine(False), _check_ln_affine),
    ]
    rules += [Rule("gelu_erf", p, _gelu("none"), _check_gelu_erf) for p in _gelu_erf_patterns()]
    rules += [Rule("gelu_tanh", p, _gelu("tanh"), _check_gelu_tanh) for p in _gelu_tanh_patterns()]
    rules += [
        Rule("silu", Op("Mul", Var("x"), Op("Sigmoid", Var("x")), commute=True), _silu),
        Rule("swish_to_silu", Op("Swish", Var("x")), _silu, _check_swish),
        Rule(
            "hard_swish",
            Op("Mul", Var("x"), Op("HardSigmoid", Var("x"), name="hs"), commute=True),
            _hard_swish,
            _check_hard_sigmoid,
        ),
    ]
    rules += [Rule("hard_swish_relu6", p, _hard_swish, _check_relu6_form) for p in _relu6_patterns()]
    rules += [Rule("attention", p, _attention, _check_attention, shared_ok=("kt",)) for p in _attention_patterns()]
    rules.append(Rule("attention_heads_in_place", _heads_pattern(), _heads_in_place, _check_heads))
    rules.append(Rule("channel_shuffle", _channel_shuffle_pattern(), _channel_shuffle, _check_channel_shuffle))
    return rules


RECOGNIZE_RULES = RuleSet(_rules())


def recognize(graph: Graph) -> int:
    """Replace decomposed LayerNorm / GELU / SiLU / HardSwish / attention / channel shuffles;
    returns how many fired."""
    return RECOGNIZE_RULES.apply(graph)
