"""CUDA builders of the elementwise ops: unary math and activations, binary arithmetic and
comparisons with broadcasting, IsNaN / IsInf, Where, Cast, SiLU (fp32 and fp16 tensors; math
in float)."""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from edge.ir import EDGETRT_DOMAIN, Node
from edge.kernels.cuda.launch import (
    BLOCK,
    PRECISIONS,
    Body,
    Dims,
    Step,
    broadcast_strides,
    float_suffix,
    grid_1d,
    merge_axes,
    static_refusal,
)
from edge.kernels.registry import register
from edge.refusal import Refusal

__all__ = ["UNARY_CODES", "BINARY_CODES", "CAST_SUFFIX", "broadcast_plan", "product_epilogue"]

FLOATS = (np.float32, np.float16)

UNARY_CODES = {
    name: code
    for code, name in enumerate(
        "Abs Neg Exp Log Sqrt Reciprocal Floor Ceil Round Sign Sin Cos Tan Asin Acos Atan Sinh Cosh "
        "Asinh Acosh Atanh Tanh Erf Softsign Softplus Mish Relu LeakyRelu Sigmoid HardSigmoid "
        "HardSwish Elu Selu Celu Gelu GeluTanh ThresholdedRelu SiLU Swish Clip Identity".split()
    )
}
"""Unary op codes (``enum Unary`` in elementwise.cu)."""

BINARY_CODES = {
    name: code
    for code, name in enumerate(
        "Add Sub Mul Div Pow Max Min PRelu Mod Equal Less LessOrEqual Greater GreaterOrEqual".split()
    )
}
"""Binary op codes (``enum Binary`` in elementwise.cu); from Equal on they give booleans."""

COMPARISONS = ("Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual")

CAST_SUFFIX = {
    np.dtype(np.float32): "f32", np.dtype(np.float16): "f16", np.dtype(np.float64): "f64",
    np.dtype(np.int64): "i64", np.dtype(np.int32): "i32", np.dtype(np.int8): "i8",
    np.dtype(np.uint8): "u8", np.dtype(np.bool_): "b8",
}
"""Dtypes the Cast kernels convert between, by kernel-name suffix."""

# attribute parameters (p0, p1) per unary op, with the ONNX defaults
_PARAMS = {
    "LeakyRelu": lambda s: (s.attr("alpha", 0.01), 0.0),
    "HardSigmoid": lambda s: (s.attr("alpha", 0.2), s.attr("beta", 0.5)),
    "Elu": lambda s: (s.attr("alpha", 1.0), 0.0),
    "Selu": lambda s: (s.attr("alpha", 1.67326319217681884765625), s.attr("gamma", 1.05070102214813232421875)),
    "Celu": lambda s: (s.attr("alpha", 1.0), 0.0),
    "ThresholdedRelu": lambda s: (s.attr("alpha", 1.0), 0.0),
    "Swish": lambda s: (s.attr("alpha", 1.0), 0.0),
}


def _float_refusal(node: Node) -> Refusal | None:
    return static_refusal(node, FLOATS)


def _unary_builder(name: str):
    def build(step: Step) -> Body:
        code = UNARY_CODES[name]
        if name == "Gelu" and step.attr("approximate", "none") == "tanh":
            code = UNARY_CODES["GeluTanh"]
        p0, p1 = _PARAMS.get(name, lambda s: (0.0, 0.0))(step)
        return _unary_body(step, code, p0, p1)

    build.__name__ = f"unary_{name.lower()}"
    return build


def _map_body(step: Step, kernel: str, *params: ctypes._SimpleCData) -> Body:
    """One launch of ``kernel``(x, y, n, *params) over the output's elements."""
    fn = step.function("elementwise", kernel)
    n = math.prod(step.output(0).shape)
    grid = grid_1d(n)
    args = (ctypes.c_int64(n), *params)

    def body(inputs: list, outputs: list, state) -> None:
        fn(state, grid, (BLOCK, 1, 1), inputs[0], outputs[0], *args)

    return body


def _unary_body(step: Step, code: int, p0: float, p1: float) -> Body:
    kernel = f"unary_{float_suffix(step.output(0).dtype)}"
    return _map_body(step, kernel, ctypes.c_int32(code), ctypes.c_float(p0), ctypes.c_float(p1))


for _name in UNARY_CODES:
    if _name not in ("GeluTanh", "Identity", "SiLU", "Clip"):
        register(_name, backend="cuda", precisions=PRECISIONS, supports=_float_refusal, inplace=True)(_unary_builder(_name))

register("SiLU", backend="cuda", domain=EDGETRT_DOMAIN, precisions=PRECISIONS, supports=_float_refusal, inplace=True)(
    _unary_builder("SiLU")
)


@register("Clip", backend="cuda", since=1, precisions=PRECISIONS, supports=_float_refusal, inplace=True)
def clip_attrs(step: Step) -> Body:
    """Opset < 11: bounds are attributes."""
    return _unary_body(step, UNARY_CODES["Clip"], step.attr("min", -np.inf), step.attr("max", np.inf))


def _clip_refusal(node: Node) -> Refusal | None:
    for index in (1, 2):
        bound = node.inputs[index] if index < len(node.inputs) else None
        if bound is not None and not bound.is_const:
            return Refusal("cuda.dynamic_attribute", f"Clip '{node.name}': bound input {index} is not a constant")
    return _float_refusal(node)


@register("Clip", backend="cuda", since=11, precisions=PRECISIONS, supports=_clip_refusal, inplace=True)
def clip(step: Step) -> Body:
    """Opset 11+: bounds are constant inputs (max applied after min, as ONNX specifies)."""
    low, high = step.const(1), step.const(2)
    return _unary_body(
        step,
        UNARY_CODES["Clip"],
        -np.inf if low is None else float(np.asarray(low).reshape(-1)[0]),
        np.inf if high is None else float(np.asarray(high).reshape(-1)[0]),
    )


def _classifier(nan: bool, pos: bool, neg: bool, step: Step) -> Body:
    kernel = f"classify_{float_suffix(step.input(0).dtype)}"
    return _map_body(step, kernel, ctypes.c_int32(nan), ctypes.c_int32(pos), ctypes.c_int32(neg))


@register("IsNaN", backend="cuda", precisions=PRECISIONS, supports=_float_refusal)
def is_nan(step: Step) -> Body:
    """A boolean mask of the NaN elements."""
    return _classifier(True, False, False, step)


@register("IsInf", backend="cuda", precisions=PRECISIONS, supports=_float_refusal)
def is_inf(step: Step) -> Body:
    """A boolean mask of the infinite elements, of either sign or the one the attributes keep."""
    return _classifier(False, bool(step.attr("detect_positive", 1)), bool(step.attr("detect_negative", 1)), step)


def product_epilogue(step: Step, n: int, act: int, p0: float, p1: float) -> Callable[[Any, Any, Any], None]:
    """``run(y, z, state)``: y = act(y + z) in place over a product's ``n`` outputs (the conv
    epilogue kernel with no bias; ``z`` may be None), for an activation or a residual the
    product's own kernel or library does not apply."""
    fn = step.function("elementwise", f"conv_epilogue_{float_suffix(step.output(0).dtype)}")
    grid = grid_1d(n)
    args = (ctypes.c_int64(n), ctypes.c_int64(1), ctypes.c_int32(1), ctypes.c_int32(act), ctypes.c_float(p0), ctypes.c_float(p1))

    def run(y, z, state) -> None:
        fn(state, grid, (BLOCK, 1, 1), y, None, z, *args)

    return run


def broadcast_plan(shapes: list[tuple[int, ...]], out: tuple[int, ...]) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """(merged output shape, each operand's strides over it) for a broadcasting kernel."""
    return merge_axes(out, *[broadcast_strides(shape, out) for shape in shapes])


def _binary_refusal(node: Node) -> Refusal | None:
    if len([v for v in node.inputs if v is not None]) != 2:
        return Refusal("cuda.arity", f"{node.op_type} '{node.name}': the cuda kernel takes exactly two inputs")
    if node.inputs[0].dtype != node.inputs[1].dtype:
        return Refusal("cuda.dtype", f"{node.op_type} '{node.name}': inputs of {node.inputs[0].dtype} and {node.inputs[1].dtype}")
    if node.op_type == "Mod" and not node.attrs.get("fmod", 0):
        return Refusal("cuda.attribute", f"Mod '{node.name}': only fmod=1 runs on the cuda backend")
    return _float_refusal(node)


def _binary_builder(name: str):
    def build(step: Step) -> Body:
        code = BINARY_CODES[name]
        dtype = step.input(0).dtype
        out = step.output(0).shape
        n = math.prod(out)
        grid = grid_1d(n)
        shapes = [step.input(0).shape, step.input(1).shape]
        suffix = float_suffix(dtype)
        if name not in COMPARISONS and all(tuple(s) == tuple(out) for s in shapes):
            fn = step.function("elementwise", f"binary_flat_{suffix}")
            args: tuple = (ctypes.c_int64(n), ctypes.c_int32(code))
        else:
            kind = "compare" if name in COMPARISONS else "binary"
            fn = step.function("elementwise", f"{kind}_bcast_{suffix}")
            shape, (sa, sb) = broadcast_plan(shapes, out)
            args = (ctypes.c_int64(n), ctypes.c_int32(code), ctypes.c_int32(len(shape)), Dims.of(shape), Dims.of(sa), Dims.of(sb))

        def body(inputs: list, outputs: list, state) -> None:
            fn(state, grid, (BLOCK, 1, 1), inputs[0], inputs[1], outputs[0], *args)

        return body

    build.__name__ = f"binary_{name.lower()}"
    return build


for _name in BINARY_CODES:
    register(_name, backend="cuda", precisions=PRECISIONS, supports=_binary_refusal, inplace=_name not in COMPARISONS)(
        _binary_builder(_name)
    )
register("Sum", backend="cuda", precisions=PRECISIONS, supports=_binary_refusal, inplace=True)(_binary_builder("Add"))


def _where_refusal(node: Node) -> Refusal | None:
    refusal = static_refusal(node)
    if refusal is None and (node.inputs[1].dtype not in [np.dtype(d) for d in FLOATS] or node.inputs[1].dtype != node.inputs[2].dtype):
        return Refusal("cuda.dtype", f"Where '{node.name}': the cuda backend selects float tensors only")
    return refusal


@register("Where", backend="cuda", precisions=PRECISIONS, supports=_where_refusal)
def where(step: Step) -> Body:
    """condition ? X : Y with all three broadcast to the output."""
    out = step.output(0).shape
    n = math.prod(out)
    shape, strides = broadcast_plan([step.input(i).shape for i in range(3)], out)
    fn = step.function("elementwise", f"where_{float_suffix(step.output(0).dtype)}")
    args = (ctypes.c_int64(n), ctypes.c_int32(len(shape)), Dims.of(shape), *[Dims.of(s) for s in strides])
    grid = grid_1d(n)

    def body(inputs: list, outputs: list, state) -> None:
        fn(state, grid, (BLOCK, 1, 1), inputs[0], inputs[1], inputs[2], outputs[0], *args)

    return body


def _cast_refusal(node: Node) -> Refusal | None:
    refusal = static_refusal(node)
    if refusal is not None:
        return refusal
    for value in (node.inputs[0], node.outputs[0]):
        if value.dtype not in CAST_SUFFIX:
            return Refusal("cuda.dtype", f"Cast '{node.name}': the cuda backend does not convert {value.dtype}")
    return None


@register("Cast", backend="cuda", precisions=("fp32", "fp16", "int8"), supports=_cast_refusal)
def cast(step: Step) -> Body:
    """Dtype conversion (numpy astype semantics: truncation toward zero, bool as != 0)."""
    source, target = np.dtype(step.input(0).dtype), np.dtype(step.output(0).dtype)
    fn = step.function("elementwise", f"cast_{CAST_SUFFIX[source]}_{CAST_SUFFIX[target]}")
    n = math.prod(step.output(0).shape)
    grid = grid_1d(n)

    def body(inputs: list, outputs: list, state) -> None:
        fn(state, grid, (BLOCK, 1, 1), inputs[0], outputs[0], ctypes.c_int64(n))

    return body
