"""Convolutions and pools: Conv, ConvTranspose, Max/Average/Lp pools and their global forms.

All of them walk the kernel window tap by tap: each tap is one strided slice of the input
covering every output pixel at once, so the python loop runs kh·kw times, never per pixel.
Conv gathers the taps into an im2col matrix (padding left as zeros, never copied) and does
one 2-D BLAS matmul per (batch, group); 1x1 stride-1 convs skip im2col, and depthwise convs
run all channels' tiny (multiplier x taps) products as one stacked matmul.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edge.kernels.cpu.precision import widen_half
from edge.kernels.registry import OpContext, register

__all__: list[str] = []  # kernels are reached through the registry


@dataclass(frozen=True)
class _Window:
    """Geometry of a sliding window over the spatial dims of an (N, C, *spatial) tensor."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pad_begin: tuple[int, ...]
    pad_end: tuple[int, ...]
    out: tuple[int, ...]

    @property
    def taps(self) -> int:
        return math.prod(self.kernel)

    def extent(self, size_in: tuple[int, ...]) -> tuple[int, ...]:
        """Padded length per dim: the declared pads, grown if ceil_mode needs more."""
        return tuple(
            max(b + i + e, (o - 1) * s + (k - 1) * d + 1)
            for i, b, e, o, s, k, d in zip(
                size_in, self.pad_begin, self.pad_end, self.out, self.strides, self.kernel, self.dilations
            )
        )

    def tap_slices(self) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
        """(kernel offset, slice of the padded input that this offset reads for every output)."""
        for offset in itertools.product(*(range(k) for k in self.kernel)):
            yield offset, (slice(None), slice(None)) + tuple(
                slice(k * d, k * d + (o - 1) * s + 1, s)
                for k, d, o, s in zip(offset, self.dilations, self.out, self.strides)
            )


def _window(ctx: OpContext, size_in: tuple[int, ...], kernel: tuple[int, ...], ceil_mode: bool = False) -> _Window:
    """Resolve strides, dilations, pads / auto_pad (and ceil_mode) into output sizes."""
    rank = len(kernel)
    strides = tuple(ctx.attr("strides") or (1,) * rank)
    dilations = tuple(ctx.attr("dilations") or (1,) * rank)
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    effective = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = tuple(-(-i // s) for i, s in zip(size_in, strides))
        total = [max(0, (o - 1) * s + e - i) for o, s, e, i in zip(out, strides, effective, size_in)]
        begin = tuple(t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total)
        end = tuple(t - b for t, b in zip(total, begin))
        return _Window(kernel, strides, dilations, begin, end, out)
    pads = (0,) * (2 * rank) if auto_pad == "VALID" else tuple(ctx.attr("pads") or (0,) * (2 * rank))
    begin, end = pads[:rank], pads[rank:]
    out = []
    for i, b, e, k, s in zip(size_in, begin, end, effective, strides):
        span = i + b + e - k
        count = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (count - 1) * s >= i + b:  # a last window starting in the right padding is dropped
            count -= 1
        out.append(count)
    return _Window(kernel, strides, dilations, tuple(begin), tuple(end), tuple(out))


def _padded(x: np.ndarray, window: _Window, fill: float | int) -> np.ndarray:
    """``x`` placed into a ``fill``-valued array of the window's padded extent."""
    size_in = x.shape[2:]
    extent = window.extent(size_in)
    if extent == size_in and not any(window.pad_begin):
        return x
    out = np.full(x.shape[:2] + extent, fill, x.dtype)
    out[(slice(None), slice(None)) + tuple(slice(b, b + i) for b, i in zip(window.pad_begin, size_in))] = x
    return out


def _kernel_shape(ctx: OpContext, w: np.ndarray) -> tuple[int, ...]:
    return tuple(ctx.attr("kernel_shape") or w.shape[2:])


def _bias(y: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    if b is not None:
        y += b.reshape((-1,) + (1,) * (y.ndim - 2)).astype(y.dtype, copy=False)
    return y


@register("Conv")
@widen_half
def conv(ctx: OpContext, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """N-d grouped convolution (cross-correlation) of (N, C, *S) by (M, C/group, *K)."""
    group = ctx.attr("group", 1)
    kernel = _kernel_shape(ctx, w)
    window = _window(ctx, x.shape[2:], kernel)
    n, c = x.shape[:2]
    m = w.shape[0]
    cg, mg = c // group, m // group
    pixels = math.prod(window.out)
    w = w.astype(x.dtype, copy=False)
    pointwise = window.taps == 1 and window.strides == (1,) * len(kernel) and window.out == x.shape[2:]
    if pointwise:
        cols = np.ascontiguousarray(x).reshape(n, group, cg, pixels)
    else:
        cols = _im2col(x, window).reshape(n, group, cg * window.taps, pixels)
    weights = w.reshape(group, mg, cg * window.taps)
    if cg == 1 and group > 1:
        # depthwise: one tiny (multiplier x taps) product per channel; numpy's stacked
        # matmul runs these as a batch, faster than a python loop or per-tap multiply-adds
        y = np.matmul(weights, cols)
    else:
        y = _grouped_matmul(weights, cols)
    return _bias(y.reshape((n, m) + window.out), b)


def _im2col(x: np.ndarray, window: _Window) -> np.ndarray:
    """(N, C, taps, *out): for every kernel tap, the input pixel each output reads (0 in pads).

    Each tap is one strided copy of the in-bounds part of ``x``; padding is never
    materialised as a padded copy of the input, only as the zeros left around it.
    """
    n, c = x.shape[:2]
    size_in = x.shape[2:]
    padded = any(window.pad_begin) or any(window.pad_end)
    cols = (np.zeros if padded else np.empty)((n, c, window.taps) + window.out, x.dtype)
    for index, offset in enumerate(itertools.product(*(range(k) for k in window.kernel))):
        target, source = [slice(None), slice(None), index], [slice(None), slice(None)]
        for k, d, s, b, o, i in zip(offset, window.dilations, window.strides, window.pad_begin, window.out, size_in):
            shift = k * d - b  # input position read by output 0
            first = max(0, -(shift // s) if shift < 0 else 0)
            last = min(o - 1, (i - 1 - shift) // s)
            if last < first:
                break
            target.append(slice(first, last + 1))
            source.append(slice(first * s + shift, last * s + shift + 1, s))
        else:
            cols[tuple(target)] = x[tuple(source)]
    return cols


def _grouped_matmul(weights: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(G, M, K) x (N, G, K, P) -> (N, G, M, P) as one 2-D BLAS call per (batch, group).

    numpy's broadcasting matmul over stacked operands can miss the BLAS path and run ten
    times slower, so the stack is walked here, each product written in place.
    """
    n, group, _, pixels = cols.shape
    y = np.empty((n, group, weights.shape[1], pixels), np.result_type(weights, cols))
    for index in range(n):
        for g in range(group):
            np.matmul(weights[g], cols[index, g], out=y[index, g])
    return y


@register("ConvTranspose")
@widen_half
def conv_transpose(ctx: OpContext, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Transposed convolution of (N, C, *S) by (C, M/group, *K): one matmul, then col2im."""
    group = ctx.attr("group", 1)
    kernel = _kernel_shape(ctx, w)
    rank = len(kernel)
    n, c = x.shape[:2]
    size_in = x.shape[2:]
    cg, mg = c // group, w.shape[1]
    m = mg * group
    strides = tuple(ctx.attr("strides") or (1,) * rank)
    dilations = tuple(ctx.attr("dilations") or (1,) * rank)
    output_padding = tuple(ctx.attr("output_padding") or (0,) * rank)
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    full = tuple(
        s * (i - 1) + p + (k - 1) * d + 1 for s, i, p, k, d in zip(strides, size_in, output_padding, kernel, dilations)
    )
    output_shape = ctx.attr("output_shape")
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = tuple(output_shape[-rank:]) if output_shape is not None else tuple(i * s for i, s in zip(size_in, strides))
        total = [f - o for f, o in zip(full, out)]
        begin = tuple(t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total)
    else:
        pads = tuple(ctx.attr("pads") or (0,) * (2 * rank)) if auto_pad != "VALID" else (0,) * (2 * rank)
        begin = pads[:rank]
        out = tuple(f - b - e for f, b, e in zip(full, begin, pads[rank:]))
    taps = math.prod(kernel)
    columns = _grouped_matmul(
        w.astype(x.dtype, copy=False).reshape(group, cg, mg * taps).transpose(0, 2, 1),
        np.ascontiguousarray(x).reshape(n, group, cg, math.prod(size_in)),
    ).reshape((n, m, taps) + size_in)
    extent = tuple(max(f, bg + o) for f, bg, o in zip(full, begin, out))
    canvas = np.zeros((n, m) + extent, x.dtype)
    for index, offset in enumerate(itertools.product(*(range(k) for k in kernel))):
        target = tuple(
            slice(k * d, k * d + (i - 1) * s + 1, s) for k, d, i, s in zip(offset, dilations, size_in, strides)
        )
        canvas[(slice(None), slice(None)) + target] += columns[:, :, index]
    y = np.ascontiguousarray(canvas[(slice(None), slice(None)) + tuple(slice(bg, bg + o) for bg, o in zip(begin, out))])
    return _bias(y, b)


def _lowest(dtype: np.dtype) -> float | int:
    return -np.inf if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).min


@register("MaxPool")
def max_pool(ctx: OpContext, x: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Max over each window; the optional Indices output flattens (N, C, *S) positions."""
    kernel = tuple(ctx.attr("kernel_shape"))
    window = _window(ctx, x.shape[2:], kernel, bool(ctx.attr("ceil_mode", 0)))
    padded = _padded(x, window, _lowest(x.dtype))
    slices = [taps for _, taps in window.tap_slices()]
    if ctx.num_outputs < 2 or ctx.node.outputs[1].meta.get("omitted"):
        y = padded[slices[0]].copy()
        for taps in slices[1:]:
            np.maximum(y, padded[taps], out=y)
        return y
    stacked = np.stack([padded[taps] for taps in slices], axis=-1)
    best = np.argmax(stacked, axis=-1)
    y = np.take_along_axis(stacked, best[..., None], axis=-1)[..., 0]
    return y, _max_indices(x.shape, window, best, ctx.attr("storage_order", 0))


def _max_indices(shape: tuple[int, ...], window: _Window, best: np.ndarray, storage_order: int) -> np.ndarray:
    """Flat input positions of the chosen taps; storage_order=1 orders spatial dims column-major."""
    offsets = np.unravel_index(best, window.kernel)
    rank = len(window.kernel)
    coords = []
    for dim in range(rank):
        start = np.arange(window.out[dim]) * window.strides[dim] - window.pad_begin[dim]
        start = start.reshape((-1,) + (1,) * (rank - 1 - dim))
        coords.append(start + offsets[dim] * window.dilations[dim])
    n, c = shape[:2]
    spatial = shape[2:]
    if storage_order:
        coords, spatial = coords[::-1], spatial[::-1]
    flat = np.zeros(best.shape, np.int64)
    for coord, size in zip(coords, spatial):
        flat = flat * size + coord
    plane = math.prod(shape[2:])
    base = (np.arange(n)[:, None] * c + np.arange(c)[None, :]) * plane
    return flat + base.reshape((n, c) + (1,) * rank)


def _window_sum(padded: np.ndarray, window: _Window) -> np.ndarray:
    total = None
    for _, taps in window.tap_slices():
        total = padded[taps].copy() if total is None else np.add(total, padded[taps], out=total)
    return total


@register("AveragePool")
@widen_half
def average_pool(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """Window mean; ``count_include_pad`` decides whether declared pads count in the divisor."""
    kernel = tuple(ctx.attr("kernel_shape"))
    window = _window(ctx, x.shape[2:], kernel, bool(ctx.attr("ceil_mode", 0)))
    total = _window_sum(_padded(x, window, 0), window)
    size_in = x.shape[2:]
    extent = window.extent(size_in)
    counted = np.zeros((1, 1) + extent, x.dtype)
    if ctx.attr("count_include_pad", 0):
        region = tuple(slice(0, b + i + e) for b, i, e in zip(window.pad_begin, size_in, window.pad_end))
    else:
        region = tuple(slice(b, b + i) for b, i in zip(window.pad_begin, size_in))
    counted[(slice(None), slice(None)) + region] = 1
    return total / _window_sum(counted, window)


@register("LpPool")
@widen_half
def lp_pool(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    p = ctx.attr("p", 2)
    kernel = tuple(ctx.attr("kernel_shape"))
    window = _window(ctx, x.shape[2:], kernel, bool(ctx.attr("ceil_mode", 0)))
    total = _window_sum(_padded(np.abs(x) ** p, window, 0), window)
    return total ** (1 / p)


def _spatial_axes(x: np.ndarray) -> tuple[int, ...]:
    return tuple(range(2, x.ndim))


@register("GlobalAveragePool")
@widen_half
def global_average_pool(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return np.mean(x, axis=_spatial_axes(x), keepdims=True)


@register("GlobalMaxPool")
def global_max_pool(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return np.max(x, axis=_spatial_axes(x), keepdims=True)


@register("GlobalLpPool")
@widen_half
def global_lp_pool(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    p = ctx.attr("p", 2)
    return np.sum(np.abs(x) ** p, axis=_spatial_axes(x), keepdims=True) ** (1 / p)
