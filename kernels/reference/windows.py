"""Sliding-window ops in plain numpy: convolutions as im2col + one matmul per group, pools
as a reduction over the same window view.

Every window op here builds one view ``(N, C, *out, *kernel)`` of the padded input
(``_window_view``): output position o of dim i reads padded input o·stride + k·dilation for
kernel offset k. No caching, no workspace, no compiled code: the oracle the fast kernels
are tested against.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.ir import EDGETRT_DOMAIN
from edge.ir.opinfo import resolve_pads
from edge.kernels.cpu.activations import apply_activation
from edge.kernels.cpu.precision import widen_half
from edge.kernels.cpu.quant import integer_convs
from edge.kernels.registry import OpContext, register

__all__ = ["convolution"]

BACKEND = "reference"


@dataclass(frozen=True)
class _Geometry:
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    begin: tuple[int, ...]
    end: tuple[int, ...]
    out: tuple[int, ...]


def _geometry(ctx: OpContext, size_in: tuple[int, ...], kernel: tuple[int, ...], ceil_mode: bool = False) -> _Geometry:
    """Strides, dilations, pads and output sizes of a window op, as the ONNX spec defines them."""
    rank = len(kernel)
    strides = tuple(ctx.attr("strides") or (1,) * rank)
    dilations = tuple(ctx.attr("dilations") or (1,) * rank)
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    begin, end = resolve_pads(auto_pad, ctx.attr("pads"), size_in, kernel, strides, dilations)
    out = []
    for i, b, e, k, s, d in zip(size_in, begin, end, kernel, strides, dilations):
        span = i + b + e - ((k - 1) * d + 1)
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            count = math.ceil(i / s)
        elif ceil_mode:
            count = math.ceil(span / s) + 1
            if (count - 1) * s >= i + b:  # a window starting in the end padding is dropped
                count -= 1
        else:
            count = span // s + 1
        out.append(count)
    return _Geometry(kernel, strides, dilations, begin, end, tuple(out))


def _window_view(x: np.ndarray, geometry: _Geometry, fill: float | int) -> np.ndarray:
    """(N, C, *out, *kernel): every window of ``x`` padded with ``fill`` (a strided view)."""
    rank = len(geometry.kernel)
    spans = [(k - 1) * d + 1 for k, d in zip(geometry.kernel, geometry.dilations)]
    extent = [max(b + i + e, (o - 1) * s + span) for b, i, e, o, s, span in zip(
        geometry.begin, x.shape[2:], geometry.end, geometry.out, geometry.strides, spans
    )]
    padded = np.full(x.shape[:2] + tuple(extent), fill, x.dtype)
    padded[(slice(None), slice(None)) + tuple(slice(b, b + i) for b, i in zip(geometry.begin, x.shape[2:]))] = x
    view = np.lib.stride_tricks.sliding_window_view(padded, spans, axis=tuple(range(2, 2 + rank)))
    positions = tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(geometry.out, geometry.strides))
    taps = tuple(slice(None, None, d) for d in geometry.dilations)
    return view[(slice(None), slice(None)) + positions + taps]


def _compute_dtype(*arrays: np.ndarray) -> np.dtype:
    """Integers accumulate in int64, floats in their common type."""
    dtype = np.result_type(*arrays)
    return np.dtype(np.int64) if dtype.kind in "iub" else dtype


def convolution(ctx: OpContext, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Grouped N-d cross-correlation of (N, C, *S) by (M, C/group, *K): im2col, then per group
    (N·out, C/group·taps) @ (C/group·taps, M/group)."""
    group = ctx.attr("group", 1)
    kernel = tuple(ctx.attr("kernel_shape") or w.shape[2:])
    geometry = _geometry(ctx, x.shape[2:], kernel)
    dtype = _compute_dtype(x, w)
    n, channels = x.shape[:2]
    m, rank = w.shape[0], len(kernel)
    cg, mg, pixels = channels // group, m // group, math.prod(geometry.out)
    windows = _window_view(x.astype(dtype), geometry, 0)  # (N, C, *out, *K)
    y = np.empty((n, group, mg, pixels), dtype)
    for g in range(group):
        part = windows[:, g * cg : (g + 1) * cg]  # (N, Cg, *out, *K)
        cols = np.moveaxis(part, 1, 1 + rank).reshape(n * pixels, cg * math.prod(kernel))  # rows (n, out), columns (c, k)
        weights = w[g * mg : (g + 1) * mg].astype(dtype).reshape(mg, -1)
        y[:, g] = (cols @ weights.T).reshape(n, pixels, mg).transpose(0, 2, 1)
    y = y.reshape((n, m) + geometry.out)
    if b is not None:
        y = y + b.astype(dtype).reshape((-1,) + (1,) * rank)
    return y.astype(np.result_type(x, w), copy=False)


def _transposed(ctx: OpContext, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """ConvTranspose: every input pixel scatters its weighted kernel into the output, tap by
    tap; then the ONNX pads (or output_shape / auto_pad) crop the full result."""
    group = ctx.attr("group", 1)
    kernel = tuple(ctx.attr("kernel_shape") or w.shape[2:])
    rank = len(kernel)
    n, channels = x.shape[:2]
    size_in = x.shape[2:]
    cg, mg = channels // group, w.shape[1]
    strides = tuple(ctx.attr("strides") or (1,) * rank)
    dilations = tuple(ctx.attr("dilations") or (1,) * rank)
    extra = tuple(ctx.attr("output_padding") or (0,) * rank)
    full = tuple(s * (i - 1) + p + (k - 1) * d + 1 for s, i, p, k, d in zip(strides, size_in, extra, kernel, dilations))
    auto_pad, output_shape = ctx.attr("auto_pad", "NOTSET"), ctx.attr("output_shape")
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = tuple(output_shape[-rank:]) if output_shape is not None else tuple(i * s for i, s in zip(size_in, strides))
        totals = [f - o for f, o in zip(full, out)]
        begin = tuple(t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in totals)
    else:
        pads = ctx.attr("pads") if auto_pad == "NOTSET" and ctx.attr("pads") else (0,) * (2 * rank)
        begin = tuple(pads[:rank])
        out = tuple(f - bg - e for f, bg, e in zip(full, begin, pads[rank:]))
    dtype = _compute_dtype(x, w)
    canvas = np.zeros((n, group * mg) + tuple(max(f, bg + o) for f, bg, o in zip(full, begin, out)), dtype)
    for g in range(group):
        xs = x[:, g * cg : (g + 1) * cg].astype(dtype)
        ws = w[g * cg : (g + 1) * cg].astype(dtype)
        for offset in itertools.product(*(range(k) for k in kernel)):
            # (N, Cg, *S) x (Cg, Mg) at this tap -> (N, Mg, *S)
            contribution = np.einsum("nc...,cm->nm...", xs, ws[(slice(None), slice(None)) + offset])
            target = tuple(slice(k * d, k * d + (i - 1) * s + 1, s) for k, d, i, s in zip(offset, dilations, size_in, strides))
            canvas[(slice(None), slice(g * mg, (g + 1) * mg)) + target] += contribution
    y = canvas[(slice(None), slice(None)) + tuple(slice(bg, bg + o) for bg, o in zip(begin, out))]
    if b is not None:
        y = y + b.astype(dtype).reshape((-1,) + (1,) * rank)
    return np.ascontiguousarray(y).astype(np.result_type(x, w), copy=False)


def _epilogue(ctx: OpContext, y: np.ndarray, z: np.ndarray | None) -> np.ndarray:
    """A fused op's residual and activation (edgetrt domain)."""
    if z is not None:
        y = y + z
    return apply_activation(y, ctx.attr("activation", ""), tuple(ctx.attr("activation_params", []) or ()))


@register("Conv", backend=BACKEND)
@widen_half
def conv(ctx: OpContext, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    return convolution(ctx, x, w, b)


@register("FusedConv", domain=EDGETRT_DOMAIN, backend=BACKEND)
@widen_half
def fused_conv(ctx: OpContext, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, z: np.ndarray | None = None) -> np.ndarray:
    return _epilogue(ctx, convolution(ctx, x, w, b), z)


@register("ConvTranspose", backend=BACKEND)
@widen_half
def conv_transpose(ctx: OpContext, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    return _transposed(ctx, x, w, b)


@register("FusedConvTranspose", domain=EDGETRT_DOMAIN, backend=BACKEND)
@widen_half
def fused_conv_transpose(
    ctx: OpContext, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, z: np.ndarray | None = None
) -> np.ndarray:
    return _epilogue(ctx, _transposed(ctx, x, w, b), z)


_conv_integer, _qlinear_conv = integer_convs(convolution)
register("ConvInteger", backend=BACKEND)(_conv_integer)
register("QLinearConv", backend=BACKEND)(_qlinear_conv)


def _pool_view(ctx: OpContext, x: np.ndarray, fill: float | int) -> tuple[_Geometry, np.ndarray]:
    kernel = tuple(ctx.attr("kernel_shape"))
    geometry = _geometry(ctx, x.shape[2:], kernel, bool(ctx.attr("ceil_mode", 0)))
    return geometry, _window_view(x, geometry, fill)


def _flat_windows(view: np.ndarray, rank: int) -> np.ndarray:
    """(N, C, *out, taps): each window's values in row-major kernel order."""
    return view.reshape(view.shape[: 2 + rank] + (-1,))


@register("MaxPool", backend=BACKEND)
def max_pool(ctx: OpContext, x: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Max over each window (padding never wins); Indices flatten (N, C, *S) positions,
    column-major over the spatial dims when ``storage_order`` is 1."""
    lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    geometry, view = _pool_view(ctx, x, lowest)
    rank = len(geometry.kernel)
    flat = _flat_windows(view, rank)
    y = flat.max(axis=-1)
    if ctx.num_outputs < 2 or ctx.node.outputs[1].meta.get("omitted"):
        return y
    offsets = np.unravel_index(flat.argmax(axis=-1), geometry.kernel)  # per spatial dim, the chosen tap
    coords = []
    for dim in range(rank):
        starts = np.arange(geometry.out[dim]) * geometry.strides[dim] - geometry.begin[dim]
        coords.append(starts.reshape((-1,) + (1,) * (rank - 1 - dim)) + offsets[dim] * geometry.dilations[dim])
    spatial = x.shape[2:]
    if ctx.attr("storage_order", 0):
        coords, spatial = coords[::-1], spatial[::-1]
    index = np.zeros(y.shape, np.int64)
    for coord, size in zip(coords, spatial):
        index = index * size + coord
    planes = np.arange(x.shape[0] * x.shape[1]).reshape(x.shape[:2] + (1,) * rank) * math.prod(x.shape[2:])
    return y, index + planes


@register("AveragePool", backend=BACKEND)
@widen_half
def average_pool(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """Window sum over the count of positions counted: input positions, plus the declared
    pads when ``count_include_pad`` (never the extra end a ceil_mode window reaches)."""
    geometry, view = _pool_view(ctx, x, 0)
    rank = len(geometry.kernel)
    counted = np.ones((1, 1) + x.shape[2:], x.dtype)
    if ctx.attr("count_include_pad", 0):
        counted = np.pad(counted, [(0, 0), (0, 0), *zip(geometry.begin, geometry.end)], constant_values=1)
        inner = _Geometry(geometry.kernel, geometry.strides, geometry.dilations, (0,) * rank, (0,) * rank, geometry.out)
        counts = _window_view(counted, inner, 0)
    else:
        counts = _window_view(counted, geometry, 0)
    total = _flat_windows(view, rank).sum(axis=-1)
    return (total / _flat_windows(counts, rank).sum(axis=-1)).astype(x.dtype, copy=False)
