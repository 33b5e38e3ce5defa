"""Elementwise arithmetic, comparisons, logic, unary math and activations with numpy broadcasting.

Every kernel keeps the input dtype (float32 stays float32): attribute scalars are python
floats, which numpy treats as weak scalars, so they never upcast an array.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import special

from edge.kernels.cpu.compiled import compiled as _compiled
from edge.kernels.cpu.precision import widen_half
from edge.kernels.registry import OpContext, register

__all__ = ["relu_into", "zeros_view"]  # kernels themselves are reached through the registry

_ZEROS: dict[np.dtype, np.ndarray] = {}


def zeros_view(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A read-only array of zeros of ``shape``, a view of one shared calloc'd buffer.

    numpy's maximum against a scalar runs without SIMD (several times slower than against
    an array), and untouched calloc pages all map the one zero page, so reading this costs
    neither memory nor cache.
    """
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    zeros = _ZEROS.get(dtype)
    if zeros is None or zeros.size < size:
        zeros = np.zeros(max(size, 1 << 20), dtype)
        zeros.flags.writeable = False
        _ZEROS[dtype] = zeros
    return zeros[:size].reshape(shape)


def relu_into(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """max(x, 0) written into ``out`` (which may be ``x``); NaN stays NaN."""
    return np.maximum(x, zeros_view(x.shape, x.dtype), out=out)


def _unary(op_type: str, fn, inplace: bool) -> None:
    """Register a kernel that applies ``fn`` to its one input (half floats run in float32)."""
    register(op_type, inplace=inplace)(widen_half(lambda ctx, x: fn(x)))


def _binary(op_type: str, fn, inplace: bool) -> None:
    register(op_type, inplace=inplace)(lambda ctx, a, b: fn(a, b))


for _name, _fn in {
    "Abs": np.abs,
    "Neg": np.negative,
    "Exp": np.exp,
    "Log": np.log,
    "Sqrt": np.sqrt,
    "Reciprocal": np.reciprocal,
    "Floor": np.floor,
    "Ceil": np.ceil,
    "Round": np.round,  # round half to even, as ONNX specifies
    "Sign": np.sign,
    "Sin": np.sin,
    "Cos": np.cos,
    "Tan": np.tan,
    "Tanh": np.tanh,
    "Erf": special.erf,
    "Not": np.logical_not,
    "Softsign": lambda x: x / (1 + np.abs(x)),
    "Softplus": lambda x: np.logaddexp(0, x),
    "Mish": lambda x: x * np.tanh(np.logaddexp(0, x)),
}.items():
    _unary(_name, _fn, inplace=True)

for _name, _fn in {  # kept out of place as the memory planner always had them
    "Asin": np.arcsin,
    "Acos": np.arccos,
    "Atan": np.arctan,
    "Sinh": np.sinh,
    "Cosh": np.cosh,
    "Asinh": np.arcsinh,
    "Acosh": np.arccosh,
    "Atanh": np.arctanh,
    "IsNaN": np.isnan,
    "BitwiseNot": np.invert,
}.items():
    _unary(_name, _fn, inplace=False)

for _name, _fn in {
    "And": np.logical_and,
    "Or": np.logical_or,
    "Xor": np.logical_xor,
}.items():
    _binary(_name, _fn, inplace=True)

for _name, _fn in {
    "Equal": np.equal,
    "Less": np.less,
    "LessOrEqual": np.less_equal,
    "Greater": np.greater,
    "GreaterOrEqual": np.greater_equal,
    "BitwiseAnd": np.bitwise_and,
    "BitwiseOr": np.bitwise_or,
    "BitwiseXor": np.bitwise_xor,
}.items():
    _binary(_name, _fn, inplace=False)


def _into(ctx: OpContext, ufunc: np.ufunc, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``ufunc(a, b)``, written into the planned output buffer when the operands share a dtype."""
    if ctx.out[0] is None or a.dtype != b.dtype:
        return ufunc(a, b)
    key = ("broadcast", a.shape, b.shape)
    shape = ctx.cache.get(key)
    if shape is None:
        shape = ctx.cache[key] = np.broadcast_shapes(a.shape, b.shape)
    return ufunc(a, b, out=ctx.output(0, shape, a.dtype))


@register("Add", inplace=True)
def add(ctx: OpContext, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _into(ctx, np.add, a, b)


@register("Sub", inplace=True)
def sub(ctx: OpContext, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _into(ctx, np.subtract, a, b)


@register("Mul", inplace=True)
def mul(ctx: OpContext, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _into(ctx, np.multiply, a, b)


@register("Div", inplace=True)
def div(ctx: OpContext, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Float division; integer division truncates toward zero (C semantics, as onnxruntime)."""
    if np.issubdtype(a.dtype, np.integer):
        quotient = np.floor_divide(a, b)
        inexact = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
        return (quotient + inexact.astype(a.dtype)).astype(a.dtype, copy=False)
    return np.divide(a, b)


@register("Pow", inplace=True)
@widen_half
def pow_(ctx: OpContext, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The result has the base's dtype whatever the exponent's type (opset 12+ allows mixing)."""
    if np.issubdtype(x.dtype, np.floating):
        return np.power(x, y.astype(x.dtype, copy=False))
    if np.issubdtype(y.dtype, np.floating):
        return np.power(x.astype(np.float64), y).astype(x.dtype)
    return np.power(x, y.astype(x.dtype, copy=False))


@register("Mod", inplace=True)
def mod(ctx: OpContext, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``fmod=1``: sign of the dividend (C fmod); ``fmod=0``: sign of the divisor (Python %)."""
    if ctx.attr("fmod", 0):
        return np.fmod(a, b)
    return np.mod(a, b)


@register("BitShift")
def bit_shift(ctx: OpContext, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    shift = np.left_shift if ctx.attr("direction") == "LEFT" else np.right_shift
    return shift(x, y.astype(x.dtype, copy=False))


@register("Max", inplace=True)
def variadic_max(ctx: OpContext, *xs: np.ndarray) -> np.ndarray:
    return functools.reduce(np.maximum, xs)


@register("Min", inplace=True)
def variadic_min(ctx: OpContext, *xs: np.ndarray) -> np.ndarray:
    return functools.reduce(np.minimum, xs)


@register("Sum", inplace=True)
def variadic_sum(ctx: OpContext, *xs: np.ndarray) -> np.ndarray:
    return functools.reduce(np.add, xs)


@register("Mean", inplace=True)
def variadic_mean(ctx: OpContext, *xs: np.ndarray) -> np.ndarray:
    total = functools.reduce(np.add, xs)
    return (total / len(xs)).astype(total.dtype, copy=False)


@register("IsInf")
def is_inf(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    positive, negative = ctx.attr("detect_positive", 1), ctx.attr("detect_negative", 1)
    return np.isinf(x) & (((x > 0) & bool(positive)) | ((x < 0) & bool(negative)))


# ---- activations ----------------------------------------------------------------------------


@register("Relu", inplace=True)
def relu(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    if x.dtype.kind != "f":
        return np.maximum(x, np.zeros((), x.dtype))
    return relu_into(x, ctx.output(0, x.shape, x.dtype))


@register("LeakyRelu", inplace=True)
@widen_half
def leaky_relu(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, x, x * ctx.attr("alpha", 0.01))


@register("PRelu", inplace=True)
@widen_half
def prelu(ctx: OpContext, x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, x, x * slope).astype(x.dtype, copy=False)


@register("Sigmoid", inplace=True)
@widen_half
def sigmoid(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return special.expit(x)


@register("Swish", inplace=True)
@widen_half
def swish(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return x * special.expit(x * ctx.attr("alpha", 1.0))


@register("HardSigmoid", inplace=True)
@widen_half
def hard_sigmoid(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return np.clip(x * ctx.attr("alpha", 0.2) + ctx.attr("beta", 0.5), 0, 1)


@register("HardSwish", inplace=True)
@widen_half
def hard_swish(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return x * np.clip(x * (1 / 6) + 0.5, 0, 1)


@register("Elu", inplace=True)
@widen_half
def elu(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(x) * ctx.attr("alpha", 1.0))


@register("Selu", inplace=True)
@widen_half
def selu(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    alpha = ctx.attr("alpha", 1.67326319217681884765625)
    gamma = ctx.attr("gamma", 1.05070102214813232421875)
    return np.where(x > 0, x * gamma, np.expm1(x) * (alpha * gamma))


@register("Celu", inplace=True)
@widen_half
def celu(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    alpha = ctx.attr("alpha", 1.0)
    return np.maximum(x, 0) + np.minimum(np.expm1(x / alpha) * alpha, 0)


@register("Gelu", inplace=True)
@widen_half
def gelu(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """``approximate="none"``: x·Φ(x) through erf; ``"tanh"``: the tanh approximation."""
    if ctx.attr("approximate", "none") == "tanh":
        inner = (x + x * x * x * 0.044715) * math.sqrt(2 / math.pi)
        return x * 0.5 * (1 + np.tanh(inner))
    return x * 0.5 * (1 + special.erf(x * math.sqrt(0.5)))


@register("ThresholdedRelu", inplace=True)
@widen_half
def thresholded_relu(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return np.where(x > ctx.attr("alpha", 1.0), x, np.zeros((), x.dtype))


@register("Shrink", inplace=True)
@widen_half
def shrink(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    bias, lambd = ctx.attr("bias", 0.0), ctx.attr("lambd", 0.5)
    zero = np.zeros((), x.dtype)
    return np.where(x < -lambd, x + bias, np.where(x > lambd, x - bias, zero)).astype(x.dtype, copy=False)


def _clip(x: np.ndarray, low: np.ndarray | float | None, high: np.ndarray | float | None) -> np.ndarray:
    """max then min, so ``min > max`` yields ``max`` everywhere as ONNX specifies."""
    if low is not None:
        x = np.maximum(x, np.asarray(low, x.dtype))
    if high is not None:
        x = np.minimum(x, np.asarray(high, x.dtype))
    return x


@register("Clip", since=1, inplace=True)
@widen_half
def clip_attrs(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """Opset < 11: bounds are float attributes."""
    return _clip(x, ctx.attr("min"), ctx.attr("max"))


@register("Clip", since=11, inplace=True)
@widen_half
def clip(ctx: OpContext, x: np.ndarray, low: np.ndarray | None = None, high: np.ndarray | None = None) -> np.ndarray:
    """Opset 11+: bounds are optional scalar inputs."""
    return _clip(x, low, high)


# ---- softmax family -------------------------------------------------------------------------


def _compiled_rows(x: np.ndarray, axis: int, log: bool) -> np.ndarray | None:
    """Softmax (``log``: LogSoftmax) over the last axis of a non-empty float32 array by the
    compiled kernel, one call instead of numpy's five; None where that does not apply."""
    compiled = _compiled()
    if compiled is None or x.dtype != np.float32 or x.ndim == 0 or x.size == 0 or axis % x.ndim != x.ndim - 1:
        return None
    y = np.empty(x.shape, np.float32)
    compiled.softmax_rows(np.ascontiguousarray(x).reshape(-1, x.shape[-1]), y.reshape(-1, x.shape[-1]), int(log))
    return y


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    fast = _compiled_rows(x, axis, log=False)
    if fast is not None:
        return fast
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    fast = _compiled_rows(x, axis, log=True)
    if fast is not None:
        return fast
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _hardmax(x: np.ndarray, axis: int) -> np.ndarray:
    """One-hot of the first maximum along ``axis``."""
    index = np.expand_dims(np.argmax(x, axis=axis), axis)
    out = np.zeros_like(x)
    np.put_along_axis(out, index, 1, axis=axis)
    return out


def _coerced(fn):
    """Opset < 13: flatten to 2-D at ``axis`` (default 1), apply along the second axis."""

    def kernel(ctx: OpContext, x: np.ndarray) -> np.ndarray:
        axis = ctx.attr("axis", 1) % max(x.ndim, 1)
        rows = math.prod(x.shape[:axis])
        return fn(x.reshape(rows, -1), 1).reshape(x.shape)

    return kernel


def _per_axis(fn):
    """Opset 13+: apply along ``axis`` (default -1)."""

    def kernel(ctx: OpContext, x: np.ndarray) -> np.ndarray:
        return fn(x, ctx.attr("axis", -1))

    return kernel


for _name, _fn in {"Softmax": _softmax, "LogSoftmax": _log_softmax, "Hardmax": _hardmax}.items():
    register(_name, since=1)(widen_half(_coerced(_fn)))
    register(_name, since=13)(widen_half(_per_axis(_fn)))
