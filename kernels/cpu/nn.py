"""Convolutions and pools: Conv, ConvTranspose, Max/Average/Lp pools and their global forms.

All of them walk the kernel window tap by tap: each tap is one strided slice of the input
covering every output pixel at once, so the python loop runs kh·kw times, never per pixel.
Conv gathers the taps into an im2col matrix (padding left as zeros, never copied) and does
one 2-D BLAS matmul per (batch, group); 1x1 stride-1 convs skip im2col, and depthwise convs
run all channels' tiny (multiplier x taps) products as one stacked matmul.

Those numpy paths are the reference. When numba is installed (the ``fast`` extra), float32
2-D depthwise convs, MaxPool (without Indices) and AveragePool run the compiled loops of
``edge.kernels.cpu.jit`` instead, one memory pass where numpy needs one per tap; setting
the environment variable ``EDGETRT_JIT=0`` keeps every op on numpy.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from edge.kernels.cpu.precision import widen_half
from edge.kernels.registry import OpContext, register

__all__: list[str] = []  # kernels are reached through the registry


def _compiled() -> ModuleType | None:
    """The compiled kernels module, or None when numba is missing or ``EDGETRT_JIT=0``."""
    if os.environ.get("EDGETRT_JIT", "1") == "0":
        return None
    return _load_compiled()


@functools.cache
def _load_compiled() -> ModuleType | None:
    try:
        return importlib.import_module("edge.kernels.cpu.jit")
    except ImportError:  # numba is optional
        return None


def _compiled_2d(x: np.ndarray, window: _Window) -> ModuleType | None:
    """The compiled kernels when they cover this input: float32, NCHW, a 2-D window."""
    if x.dtype != np.float32 or len(window.kernel) != 2:
        return None
    return _compiled()


def _geometry(window: _Window) -> tuple[int, ...]:
    """A 2-D window as the compiled kernels' eight ints: kernel, strides, dilations, top/left pads."""
    return (*window.kernel, *window.strides, *window.dilations, *window.pad_begin)


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


def _padded(x: np.ndarray, window: _Window, fill: float | int, ctx: OpContext | None = None) -> np.ndarray:
    """``x`` placed into a ``fill``-valued array of the window's padded extent (in the
    context's workspace when given: only the border is filled, the rest is ``x``)."""
    size_in = x.shape[2:]
    extent = window.extent(size_in)
    if extent == size_in and not any(window.pad_begin):
        return x
    shape = x.shape[:2] + extent
    if ctx is None:
        out = np.full(shape, fill, x.dtype)
    else:
        out = ctx.workspace.get("pool-padded", shape, x.dtype)
        for dim, (b, i) in enumerate(zip(window.pad_begin, size_in)):
            skip = (slice(None),) * (dim + 2)
            out[skip + (slice(0, b),)] = fill
            out[skip + (slice(b + i, None),)] = fill
    out[(slice(None), slice(None)) + tuple(slice(b, b + i) for b, i in zip(window.pad_begin, size_in))] = x
    return out


def _kernel_shape(ctx: OpContext, w: np.ndarray) -> tuple[int, ...]:
    return tuple(ctx.attr("kernel_shape") or w.shape[2:])


def _bias(y: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    if b is not None:
        y += b.reshape((-1,) + (1,) * (y.ndim - 2)).astype(y.dtype, copy=False)
    return y


@dataclass(frozen=True)
class _ConvPlan:
    """How one Conv node runs for one pair of input shapes (cached per node).

    ``mode`` is "pointwise" (1x1, stride 1, no pads: the input is the column matrix),
    "shifted" (depthwise, stride 1, 2-D: taps are contiguous shifts of a padded flat
    image, see ``_depthwise_shifted``) or "im2col" (everything else). ``bias_row``: the
    bias rides in the GEMM as an extra weight column against a row of ones, cheaper than
    a broadcast add over the output afterwards. ``depthwise``: group == input channels
    over a 2-D window, which the compiled kernel takes when it is available.
    """

    window: _Window
    group: int
    cg: int
    mg: int
    mode: str
    bias_row: bool
    depthwise: bool


def _conv_plan(ctx: OpContext, x: np.ndarray, w: np.ndarray, has_bias: bool) -> _ConvPlan:
    key = ("conv", x.shape, w.shape, has_bias)
    plan = ctx.cache.get(key)
    if plan is None:
        group = ctx.attr("group", 1)
        kernel = _kernel_shape(ctx, w)
        window = _window(ctx, x.shape[2:], kernel)
        cg, mg = x.shape[1] // group, w.shape[0] // group
        unit = (1,) * len(kernel)
        depthwise = cg == 1 and group > 1 and len(kernel) == 2
        if window.taps == 1 and window.strides == unit and window.out == x.shape[2:]:
            mode = "pointwise"
        elif depthwise and mg == 1 and window.strides == unit:
            mode = "shifted"
        else:
            mode = "im2col"
        plan = ctx.cache[key] = _ConvPlan(window, group, cg, mg, mode, has_bias, depthwise)
    return plan


def _conv_weights(ctx: OpContext, plan: _ConvPlan, w: np.ndarray, b: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
    """W as (group, M/group, C/group·taps [+1 bias column]), cached when W and B are constants."""

    def fold() -> np.ndarray:
        weights = w.astype(dtype, copy=False).reshape(plan.group, plan.mg, -1)
        if plan.bias_row:
            column = b.astype(dtype, copy=False).reshape(plan.group, plan.mg, 1)
            weights = np.concatenate([weights, column], axis=2)
        return np.ascontiguousarray(weights)

    return ctx.from_constants(("conv-weights", plan), (w, b), fold)


@register("Conv")
@widen_half
def conv(ctx: OpContext, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """N-d grouped convolution (cross-correlation) of (N, C, *S) by (M, C/group, *K).

    The result goes straight into the planned output buffer when there is one; the
    column matrices live in the context's workspace, reused from run to run.
    """
    plan = _conv_plan(ctx, x, w, b is not None)
    window = plan.window
    n, m = x.shape[0], w.shape[0]
    dtype = np.result_type(x.dtype, w.dtype)
    weights = _conv_weights(ctx, plan, w, b, dtype)
    y = ctx.output(0, (n, m) + window.out, dtype)
    if plan.depthwise and dtype == x.dtype and (compiled := _compiled_2d(x, window)) is not None:
        compiled.depthwise_conv2d(np.ascontiguousarray(x), weights.reshape(m, -1), *_geometry(window), y)
        return y
    if plan.mode == "shifted":
        return _depthwise_shifted(ctx, x, weights, b, window, y)
    pixels = math.prod(window.out)
    group, cg, mg = plan.group, plan.cg, plan.mg
    rows = cg * window.taps
    if plan.mode == "pointwise" and not plan.bias_row:
        cols = np.ascontiguousarray(x).reshape(n, group, cg, pixels)
    elif plan.mode == "pointwise":
        cols = ctx.workspace.get("conv-cols", (n, group, rows + 1, pixels), x.dtype)
        cols[:, :, :rows] = x.reshape(n, group, cg, pixels)
        cols[:, :, rows] = 1
    else:
        cols = ctx.workspace.get("conv-cols", (n, group, rows + plan.bias_row, pixels), x.dtype)
        _im2col(x.reshape((n, group, cg) + x.shape[2:]), window, _tap_view(cols, cg, window))
        if plan.bias_row:
            cols[:, :, rows] = 1
    flat = y.reshape(n, group, mg, pixels)
    if cg == 1 and group > 1:
        # depthwise: one tiny (multiplier x taps) product per channel; numpy's stacked
        # matmul runs these as a batch, faster than a python loop or per-tap multiply-adds
        for index in range(n):
            np.matmul(weights, cols[index], out=flat[index])
    else:
        _grouped_matmul(weights, cols, flat)
    return y


def _tap_view(cols: np.ndarray, cg: int, window: _Window) -> np.ndarray:
    """(N, G, C/G, taps, *out) view of the first C/G·taps rows of (N, G, rows, pixels) columns."""
    item = cols.itemsize
    n, group, rows, _ = cols.shape
    pixels = math.prod(window.out)
    spatial = tuple(math.prod(window.out[d + 1 :]) * item for d in range(len(window.out)))
    return np.lib.stride_tricks.as_strided(
        cols,
        shape=(n, group, cg, window.taps) + window.out,
        strides=(group * rows * pixels * item, rows * pixels * item, window.taps * pixels * item, pixels * item)
        + spatial,
    )


def _im2col(x: np.ndarray, window: _Window, cols: np.ndarray) -> None:
    """Fill ``cols`` (*lead, taps, *out) from ``x`` (*lead, *S): for every kernel tap, the input
    pixel each output reads, 0 where that falls in the padding.

    Each tap is one strided copy of the in-bounds part of ``x``; only the uncovered border
    of each tap is zeroed (the buffer is reused, so it holds stale values).
    """
    lead = (slice(None),) * (x.ndim - len(window.kernel))
    size_in = x.shape[len(lead) :]
    for index, offset in enumerate(itertools.product(*(range(k) for k in window.kernel))):
        target, source, edges = [], [], []
        for dim, (k, d, s, b, o, i) in enumerate(
            zip(offset, window.dilations, window.strides, window.pad_begin, window.out, size_in)
        ):
            shift = k * d - b  # input position read by output 0
            first = max(0, -(shift // s) if shift < 0 else 0)
            last = min(o - 1, (i - 1 - shift) // s)
            if last < first:
                cols[lead + (index,)] = 0
                break
            target.append(slice(first, last + 1))
            source.append(slice(first * s + shift, last * s + shift + 1, s))
            skip = (slice(None),) * dim
            if first > 0:
                edges.append(skip + (slice(0, first),))
            if last < o - 1:
                edges.append(skip + (slice(last + 1, None),))
        else:
            cols[lead + (index, *target)] = x[lead + tuple(source)]
            for edge in edges:
                cols[lead + (index, *edge)] = 0


def _depthwise_shifted(
    ctx: OpContext, x: np.ndarray, weights: np.ndarray, b: np.ndarray | None, window: _Window, y: np.ndarray
) -> np.ndarray:
    """Stride-1 depthwise 2-D conv on a zero-padded image flattened per channel.

    With padded row length Wp, tap (i, j) of every output pixel reads the flat padded
    image shifted by i·dh·Wp + j·dw, so each tap's column block is one contiguous copy
    and the products run as one stacked (1 x taps [+1 bias]) @ (taps [+1] x oh·Wp) matmul
    per channel. The Wp - ow columns past each output row are junk, dropped when the
    result is copied out.
    """
    n, c, height, width = x.shape
    (kh, kw), (dh, dw) = window.kernel, window.dilations
    (top, left), (oh, ow) = window.pad_begin, window.out
    hp, wp = window.extent((height, width))
    tail = (kw - 1) * dw
    length = oh * wp
    padded = ctx.workspace.get("conv-padded", (n * c, hp * wp + tail), x.dtype)
    image = padded[:, : hp * wp].reshape(n * c, hp, wp)
    image[:, :top] = 0
    image[:, top + height :] = 0
    image[:, top : top + height, :left] = 0
    image[:, top : top + height, left + width :] = 0
    padded[:, hp * wp :] = 0
    image[:, top : top + height, left : left + width] = x.reshape(n * c, height, width)
    taps = kh * kw
    cols = ctx.workspace.get("conv-cols", (n, c, weights.shape[2], length), x.dtype)
    columns = cols.reshape(n * c, weights.shape[2], length)
    for index, (i, j) in enumerate(itertools.product(range(kh), range(kw))):
        start = i * dh * wp + j * dw
        columns[:, index] = padded[:, start : start + length]
    if b is not None:
        columns[:, taps] = 1
    products = ctx.workspace.get("conv-products", (n, c, 1, length), y.dtype)
    for index in range(n):
        np.matmul(weights, cols[index], out=products[index])
    np.copyto(y, products.reshape(n, c, oh, wp)[:, :, :, :ow])
    return y


def _grouped_matmul(weights: np.ndarray, cols: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """(G, M, K) x (N, G, K, P) -> (N, G, M, P) as one 2-D BLAS call per (batch, group), into
    ``y`` when given. numpy's broadcasting matmul over stacked operands can miss the BLAS
    path and run far slower, so the stack is walked here."""
    n, group, _, pixels = cols.shape
    if y is None:
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
    window, slices = _pool_window(ctx, x)
    if ctx.num_outputs < 2 or ctx.node.outputs[1].meta.get("omitted"):
        if (compiled := _compiled_2d(x, window)) is not None:
            y = ctx.output(0, x.shape[:2] + window.out, x.dtype)
            compiled.max_pool2d(np.ascontiguousarray(x), *_geometry(window), y)
            return y
        padded = _padded(x, window, _lowest(x.dtype), ctx)
        y = ctx.output(0, x.shape[:2] + window.out, x.dtype)
        np.copyto(y, padded[slices[0]])
        for taps in slices[1:]:
            np.maximum(y, padded[taps], out=y)
        return y
    padded = _padded(x, window, _lowest(x.dtype))
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


def _pool_window(ctx: OpContext, x: np.ndarray) -> tuple[_Window, list[tuple[slice, ...]]]:
    """A pool's window and tap slices for this input shape (cached per node)."""
    key = ("pool", x.shape)
    cached = ctx.cache.get(key)
    if cached is None:
        kernel = tuple(ctx.attr("kernel_shape"))
        window = _window(ctx, x.shape[2:], kernel, bool(ctx.attr("ceil_mode", 0)))
        cached = ctx.cache[key] = (window, [taps for _, taps in window.tap_slices()])
    return cached


def _window_sum(padded: np.ndarray, slices: list[tuple[slice, ...]], out: np.ndarray | None = None) -> np.ndarray:
    """Sum of every tap's slice (see ``_pool_window``), accumulated in ``out`` (a fresh array when None)."""
    total = padded[slices[0]].copy() if out is None else out
    if out is not None:
        np.copyto(total, padded[slices[0]])
    for taps in slices[1:]:
        np.add(total, padded[taps], out=total)
    return total


def _average_divisor(ctx: OpContext, x: np.ndarray, window: _Window, slices: list[tuple[slice, ...]]) -> np.ndarray:
    """How many counted input positions each output window covers, (1, 1, *out) (cached)."""
    key = ("pool-divisor", x.shape[2:], x.dtype)
    divisor = ctx.cache.get(key)
    if divisor is None:
        size_in = x.shape[2:]
        counted = np.zeros((1, 1) + window.extent(size_in), x.dtype)
        if ctx.attr("count_include_pad", 0):
            region = tuple(slice(0, b + i + e) for b, i, e in zip(window.pad_begin, size_in, window.pad_end))
        else:
            region = tuple(slice(b, b + i) for b, i in zip(window.pad_begin, size_in))
        counted[(slice(None), slice(None)) + region] = 1
        divisor = ctx.cache[key] = _window_sum(counted, slices)
    return divisor


@register("AveragePool")
@widen_half
def average_pool(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """Window mean; ``count_include_pad`` decides whether declared pads count in the divisor."""
    window, slices = _pool_window(ctx, x)
    if (compiled := _compiled_2d(x, window)) is not None:
        y = ctx.output(0, x.shape[:2] + window.out, x.dtype)
        divisor = _average_divisor(ctx, x, window, slices)[0, 0]
        compiled.average_pool2d(np.ascontiguousarray(x), *_geometry(window), divisor, y)
        return y
    y = ctx.output(0, x.shape[:2] + window.out, x.dtype)
    total = _window_sum(_padded(x, window, 0, ctx), slices, y)
    return np.divide(total, _average_divisor(ctx, x, window, slices), out=total)


@register("LpPool")
@widen_half
def lp_pool(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    p = ctx.attr("p", 2)
    window, slices = _pool_window(ctx, x)
    total = _window_sum(_padded(np.abs(x) ** p, window, 0), slices)
    return total ** (1 / p)


def _spatial_axes(x: np.ndarray) -> tuple[int, ...]:
    return tuple(range(2, x.ndim))


@register("GlobalAveragePool")
@widen_half
def global_average_pool(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    y = ctx.output(0, x.shape[:2] + (1,) * (x.ndim - 2), x.dtype)
    return np.mean(x, axis=_spatial_axes(x), keepdims=True, out=y)


@register("GlobalMaxPool")
def global_max_pool(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return np.max(x, axis=_spatial_axes(x), keepdims=True)


@register("GlobalLpPool")
@widen_half
def global_lp_pool(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    p = ctx.attr("p", 2)
    return np.sum(np.abs(x) ** p, axis=_spatial_axes(x), keepdims=True) ** (1 / p)
