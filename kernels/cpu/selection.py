"""Selecting and reinterpreting elements: Compress, Unique, BitCast, CenterCropPad."""

from __future__ import annotations

import numpy as np

from edge.ir.dtypes import from_onnx
from edge.kernels.registry import OpContext, register

__all__: list[str] = []


@register("Compress", since=9)
def compress(ctx: OpContext, x: np.ndarray, condition: np.ndarray) -> np.ndarray:
    axis = ctx.attr("axis")
    return np.compress(condition.astype(bool).reshape(-1), x.reshape(-1) if axis is None else x, axis=axis)


@register("Unique", since=11)
def unique(ctx: OpContext, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Unique values (or slices along ``axis``), sorted or in order of first occurrence, with
    first indices, the inverse mapping and counts (all int64)."""
    axis = ctx.attr("axis")
    values, first, inverse, counts = np.unique(
        x.reshape(-1) if axis is None else x, axis=axis, return_index=True, return_inverse=True, return_counts=True
    )
    inverse = inverse.reshape(-1)
    if not ctx.attr("sorted", 1):
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        values = np.take(values, order, axis=0 if axis is None else axis)
        first, counts, inverse = first[order], counts[order], rank[inverse]
    return values, first.astype(np.int64), inverse.astype(np.int64), counts.astype(np.int64)


@register("BitCast", since=26)
def bitcast(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """The same bytes read as type ``to`` (of the same width, so the shape is kept)."""
    return np.ascontiguousarray(x).reshape(-1).view(from_onnx(ctx.attr("to"))).reshape(x.shape)


@register("CenterCropPad", since=18)
def center_crop_pad(ctx: OpContext, x: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Crop (centred, extra row at the end) or zero-pad (centred) each listed axis to ``shape``."""
    axes = [a % x.ndim for a in (ctx.attr("axes") or range(x.ndim))]
    targets = dict(zip(axes, (int(s) for s in shape.reshape(-1))))
    out_shape = tuple(targets.get(a, d) for a, d in enumerate(x.shape))
    out = np.zeros(out_shape, x.dtype)
    source, target = [], []
    for axis, (have, want) in enumerate(zip(x.shape, out_shape)):
        if want <= have:
            start = (have - want) // 2
            source.append(slice(start, start + want))
            target.append(slice(0, want))
        else:
            start = (want - have) // 2
            source.append(slice(0, have))
            target.append(slice(start, start + have))
    out[tuple(target)] = x[tuple(source)]
    return out
