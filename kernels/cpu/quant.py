"""QuantizeLinear / DequantizeLinear: per-tensor, per-axis and blocked scales.

Integer targets (int2/4/8/16/32 and unsigned) round half to even and saturate to the
type's range; float8/float4 targets (through ml_dtypes, which onnx itself depends on)
round to nearest even and, with ``saturate=1``, clamp to the largest finite value.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from edge.ir.dtypes import from_onnx
from edge.kernels.registry import OpContext, register

__all__: list[str] = []  # kernels are reached through the registry


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
