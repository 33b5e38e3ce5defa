"""Quantization ops: Quantize/DequantizeLinear, DynamicQuantizeLinear, QLinearMatMul, (QLinear)ConvInteger.

Scales and zero points may be per tensor, per axis, or (Quantize/Dequantize) blocked.
Integer targets (int2/4/8/16/32 and unsigned) round half to even and saturate to the
type's range; float8/float4 targets (through ml_dtypes, which onnx itself depends on)
round to nearest even and, with ``saturate=1``, clamp to the largest finite value.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_dtypes
import numpy as np

from edge.ir.dtypes import from_onnx
from edge.kernels.cpu.nn import conv
from edge.kernels.registry import KernelFn, OpContext, register

__all__ = ["integer_convs"]  # kernels are reached through the registry


def _broadcast_scale(ctx: OpContext, scale: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Shape a scale or zero point to broadcast against ``x``.

    Scalar: per tensor. 1-D without ``block_size``: one value per slice of ``axis``.
    With ``block_size``: same rank as ``x``, each value repeated over a block of ``axis``.
    """
    if scale.ndim == 0 or x.ndim == 0:
        return scale
    axis = ctx.attr("axis", 1) % x.ndim
    block = ctx.attr("block_size", 0)
    if block:
        return np.take(np.repeat(scale, block, axis=axis), np.arange(x.shape[axis]), axis=axis)
    return scale.reshape((-1,) + (1,) * (x.ndim - 1 - axis))


def _integer_range(dtype: np.dtype) -> tuple[int, int] | None:
    """(min, max) of an integer type, ml_dtypes' narrow ones included; None for float types."""
    try:
        info = ml_dtypes.iinfo(dtype)
    except (ValueError, TypeError):
        return None
    return int(info.min), int(info.max)


def _as_float(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64 if a.dtype == np.float64 else np.float32)


@register("QuantizeLinear")
def quantize_linear(
    ctx: OpContext, x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None = None
) -> np.ndarray:
    """y = saturate(round(x / scale) + zero_point) in the zero point's type (default uint8)."""
    if zero_point is not None:
        target = zero_point.dtype
    elif ctx.attr("output_dtype", 0):
        target = from_onnx(ctx.attr("output_dtype"))
    else:
        target = np.dtype(np.uint8)
    scaled = _as_float(x) / _as_float(_broadcast_scale(ctx, scale, x))
    offset = 0 if zero_point is None else _as_float(_broadcast_scale(ctx, zero_point, x))
    bounds = _integer_range(target)
    if bounds is not None:
        return np.clip(np.rint(scaled) + offset, *bounds).astype(target)
    y = scaled + offset
    if ctx.attr("saturate", 1):
        limit = float(ml_dtypes.finfo(target).max)
        y = np.clip(y, -limit, limit)
    return y.astype(target)


@register("DequantizeLinear")
def dequantize_linear(
    ctx: OpContext, x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None = None
) -> np.ndarray:
    """y = (x - zero_point) * scale, in the scale's type unless ``output_dtype`` says otherwise."""
    target = from_onnx(ctx.attr("output_dtype")) if ctx.attr("output_dtype", 0) else scale.dtype
    values = _as_float(x)
    if zero_point is not None:
        values = values - _as_float(_broadcast_scale(ctx, zero_point, x))
    return (values * _as_float(_broadcast_scale(ctx, scale, x))).astype(target)


def _requantize(acc: np.ndarray, multiplier: np.ndarray, zero_point: np.ndarray | None) -> np.ndarray:
    """int32 accumulator -> the zero point's integer type: round half to even, add, saturate."""
    target = np.dtype(np.uint8) if zero_point is None else zero_point.dtype
    offset = 0 if zero_point is None else zero_point.astype(np.float64)
    low, high = _integer_range(target)
    return np.clip(np.rint(acc * multiplier) + offset, low, high).astype(target)


def _centered(x: np.ndarray, zero_point: np.ndarray | None, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """x - zero_point in int32; ``shape`` reshapes a per-channel zero point to broadcast."""
    if zero_point is None:
        return x.astype(np.int32)
    zero = zero_point.astype(np.int32)
    return x.astype(np.int32) - (zero.reshape(shape) if shape is not None and zero.ndim else zero)


@register("DynamicQuantizeLinear")
def dynamic_quantize_linear(ctx: OpContext, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 quantization with scale and zero point chosen from x's range (which always includes 0)."""
    low = min(0.0, float(np.min(x))) if x.size else 0.0
    high = max(0.0, float(np.max(x))) if x.size else 0.0
    scale = np.float32((high - low) / 255)
    zero_point = np.uint8(np.clip(np.rint(-low / scale), 0, 255)) if scale else np.uint8(0)
    divisor = scale if scale else np.float32(1)
    y = np.clip(np.rint(x.astype(np.float32) / divisor) + zero_point, 0, 255).astype(np.uint8)
    return y, np.asarray(scale, np.float32), np.asarray(zero_point, np.uint8)


@register("QLinearMatMul")
def qlinear_matmul(
    ctx: OpContext,
    a: np.ndarray,
    a_scale: np.ndarray,
    a_zero_point: np.ndarray,
    b: np.ndarray,
    b_scale: np.ndarray,
    b_zero_point: np.ndarray,
    y_scale: np.ndarray,
    y_zero_point: np.ndarray,
) -> np.ndarray:
    """Integer matmul of the centered operands, requantized by a_scale·b_scale/y_scale.

    A's scale/zero point may be per row (M,), B's per column (N,).
    """
    rows = (-1, 1)
    acc = np.matmul(_centered(a, a_zero_point, rows), _centered(b, b_zero_point))
    a_factor = a_scale.astype(np.float64).reshape(rows) if a_scale.ndim else a_scale.astype(np.float64)
    multiplier = a_factor * b_scale.astype(np.float64) / y_scale.astype(np.float64)
    return _requantize(acc, multiplier, y_zero_point)


def integer_convs(convolution: Callable[[OpContext, np.ndarray, np.ndarray], np.ndarray]) -> tuple[KernelFn, KernelFn]:
    """The ConvInteger and QLinearConv kernels of a backend whose float-or-int Conv is
    ``convolution(ctx, x, w)`` (each backend keeps its own convolution, the zero-point and
    requantization arithmetic is shared)."""

    def centered_conv(ctx: OpContext, x: np.ndarray, x_zero_point, w: np.ndarray, w_zero_point, w_input: int) -> np.ndarray:
        """int32 convolution of (x - x_zp) by (w - w_zp), w_zp scalar or one per output channel.

        W is node input ``w_input`` and its zero point the input two later; when both are
        constants the centered W is made once per node (and Conv's weight fold then caches too).
        """
        channel = (-1,) + (1,) * (w.ndim - 1)
        sources: list[np.ndarray | None] = [None] * (w_input + 2)
        sources[w_input - 1], sources[w_input + 1] = w, w_zero_point
        centered_w = ctx.from_constants(("centered-w",), sources, lambda: _centered(w, w_zero_point, channel))
        return convolution(ctx, _centered(x, x_zero_point), centered_w)

    def conv_integer(
        ctx: OpContext,
        x: np.ndarray,
        w: np.ndarray,
        x_zero_point: np.ndarray | None = None,
        w_zero_point: np.ndarray | None = None,
    ) -> np.ndarray:
        return centered_conv(ctx, x, x_zero_point, w, w_zero_point, 1)

    def qlinear_conv(
        ctx: OpContext,
        x: np.ndarray,
        x_scale: np.ndarray,
        x_zero_point: np.ndarray,
        w: np.ndarray,
        w_scale: np.ndarray,
        w_zero_point: np.ndarray,
        y_scale: np.ndarray,
        y_zero_point: np.ndarray,
        bias: np.ndarray | None = None,
    ) -> np.ndarray:
        """ConvInteger plus an int32 bias, requantized by x_scale·w_scale/y_scale (w_scale per channel)."""
        acc = centered_conv(ctx, x, x_zero_point, w, w_zero_point, 3)
        if bias is not None:
            acc = acc + bias.astype(np.int32).reshape((-1,) + (1,) * (acc.ndim - 2))
        channel = (-1,) + (1,) * (acc.ndim - 2)
        w_factor = w_scale.astype(np.float64).reshape(channel) if w_scale.ndim else w_scale.astype(np.float64)
        multiplier = x_scale.astype(np.float64) * w_factor / y_scale.astype(np.float64)
        return _requantize(acc, multiplier, y_zero_point)

    return conv_integer, qlinear_conv


_conv_integer, _qlinear_conv = integer_convs(conv)
register("ConvInteger")(_conv_integer)
register("QLinearConv")(_qlinear_conv)
