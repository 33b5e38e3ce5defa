"""Selecting, placing and reinterpreting elements: Compress, Unique, BitCast, CenterCropPad,
MaxUnpool, Col2Im."""

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


@register("MaxUnpool", since=9)
def max_unpool(ctx: OpContext, x: np.ndarray, indices: np.ndarray, output_shape: np.ndarray | None = None) -> np.ndarray:
    """Zeros with each pooled value put back where MaxPool found it: ``indices`` are flat
    indices into the shape pooling inverts; a larger ``output_shape`` keeps each value's
    coordinates (padding at the ends)."""
    kernel = ctx.attr("kernel_shape")
    rank = len(kernel)
    strides = ctx.attr("strides") or [1] * rank
    pads = ctx.attr("pads") or [0] * (2 * rank)
    spatial = [(i - 1) * s + k - pads[d] - pads[d + rank] for d, (i, s, k) in enumerate(zip(x.shape[2:], strides, kernel))]
    natural = (*x.shape[:2], *spatial)
    shape = natural if output_shape is None else tuple(int(d) for d in output_shape.reshape(-1))
    out = np.zeros(shape, x.dtype)
    places = np.ravel_multi_index(np.unravel_index(indices.reshape(-1), natural), shape)
    out.reshape(-1)[places] = x.reshape(-1)
    return out


@register("Col2Im", since=18)
def col2im(ctx: OpContext, x: np.ndarray, image_shape: np.ndarray, block_shape: np.ndarray) -> np.ndarray:
    """Sum column blocks [N, C * prod(block), L] back into images [N, C, *image_shape]."""
    image = [int(d) for d in image_shape.reshape(-1)]
    block = [int(d) for d in block_shape.reshape(-1)]
    rank = len(image)
    strides = ctx.attr("strides") or [1] * rank
    dilations = ctx.attr("dilations") or [1] * rank
    pads = ctx.attr("pads") or [0] * (2 * rank)
    padded_size = [i + pads[d] + pads[d + rank] for d, i in enumerate(image)]
    counts = [(p - (dl * (k - 1) + 1)) // s + 1 for p, k, s, dl in zip(padded_size, block, strides, dilations)]
    n, channels = x.shape[0], x.shape[1] // int(np.prod(block))
    columns = x.reshape(n, channels, *block, *counts)
    padded = np.zeros((n, channels, *padded_size), x.dtype)
    for offset in np.ndindex(*block):
        window = tuple(slice(o * dl, o * dl + s * (c - 1) + 1, s) for o, dl, s, c in zip(offset, dilations, strides, counts))
        padded[(slice(None), slice(None), *window)] += columns[(slice(None), slice(None), *offset)]
    crop = tuple(slice(pads[d], pads[d] + image[d]) for d in range(rank))
    return np.ascontiguousarray(padded[(slice(None), slice(None), *crop)])
