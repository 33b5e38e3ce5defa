"""numba-compiled CPU kernels for the memory-bound ops numpy runs slowly: depthwise conv and 2-D pools.

numpy evaluates a k x k window as k² full passes over memory (one strided slice per tap);
these loops read each input row once per tap while the output row stays in L1, so one
depthwise 3x3 conv costs about one pass instead of a dozen. They run on one thread
(numba's ``parallel`` pool would ignore the thread count the caller set for BLAS and
onnxruntime). Layouts: NCHW float32, C-contiguous. Window geometry (output size, pads,
ceil_mode) is resolved by the caller (``edge.kernels.cpu.nn``), so every routine takes the
output buffer and the top/left pads and skips taps that fall outside the input.

The numpy kernels in ``edge.kernels.cpu.nn`` stay the reference: they are used when numba is
missing, for other dtypes and ranks, and by the tests as the oracle. Importing this module
compiles every routine for its one signature (or loads it from numba's on-disk cache), so
a process pays the JIT once, at first use. Where neither the package folder nor the user's
cache folder is writable, numba cannot cache and the routines are compiled in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

__all__ = ["depthwise_conv2d", "max_pool2d", "average_pool2d"]

_PLANE = numba.float32[:, :, :, ::1]
_INPUT = numba.types.Array(numba.float32, 4, "C", readonly=True)  # mutable arrays convert to it
_MATRIX = numba.types.Array(numba.float32, 2, "C", readonly=True)
_INT = numba.int64
_UINT = numba.uint64
_GEOMETRY = (_INT,) * 8  # kernel h, w; stride h, w; dilation h, w; pad top, left


def _compile(*signature: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit`` for one signature, cached on disk when some cache folder is writable."""

    def decorate(fn: Callable[..., Any]) -> Any:
        typed = numba.void(*signature)
        try:
            return numba.njit(typed, cache=True, fastmath=False, nogil=True)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available" (read-only install)
            return numba.njit(typed, cache=False, fastmath=False, nogil=True)(fn)

    return decorate


@numba.njit(cache=False, inline="always")
def _column_spans(kw: int, sw: int, dw: int, left: int, width: int, out_width: int) -> np.ndarray:
    """Per kernel column j: (first output column, count, first input column) of the outputs
    whose input column ox·sw + j·dw - left lies inside [0, width). Computed once per call:
    integer division per output row would cost more than the row's arithmetic."""
    spans = np.empty((kw, 3), np.uint64)
    for j in range(kw):
        shift = j * dw - left
        first = min(out_width, (sw - 1 - shift) // sw) if shift < 0 else 0
        end = max(first, min(out_width, (width - 1 - shift) // sw + 1))
        spans[j, 0], spans[j, 1], spans[j, 2] = first, end - first, first * sw + shift if end > first else 0
    return spans


# The loops index flat arrays with unsigned offsets: numba wraps negative signed indices,
# and that per-element check keeps LLVM from vectorizing (about 4x slower here).


@numba.njit(cache=False, inline="always")
def _depthwise_unit_stride(x, weights, kh, kw, dh, dw, top, left, y):  # type: ignore[no-untyped-def]
    """Stride-1 depthwise conv, one long loop per tap instead of one short loop per tap and row.

    Each input plane is copied into a zero-bordered scratch image of row length ``wide`` (the
    padded width); the output is accumulated in a scratch of the same row length, where tap
    (i, j) of every output is the padded image shifted by i·dh·wide + j·dw. The wide - out_w
    columns past each output row are junk, dropped when the rows are copied out.
    """
    batch, channels, height, width = x.shape
    outputs, out_h, out_w = y.shape[1], y.shape[2], y.shape[3]
    multiplier = outputs // channels
    taps = kh * kw
    wide = out_w + (kw - 1) * dw
    tall = out_h + (kh - 1) * dh
    length = _UINT(out_h * wide)
    image = np.zeros(tall * wide + (kw - 1) * dw, np.float32)  # the tail keeps junk reads in bounds
    total = np.empty(out_h * wide, np.float32)
    rows, cols = min(height, tall - top), _UINT(min(width, wide - left))
    source, target = x.reshape(-1), y.reshape(-1)
    for n in range(batch):
        for m in range(outputs):
            if m % multiplier == 0:
                plane = (n * channels + m // multiplier) * height * width
                for r in range(rows):
                    into, start = _UINT((top + r) * wide + left), _UINT(plane + r * width)
                    for k in range(cols):
                        image[into + k] = source[start + k]
            bias = weights[m, taps] if weights.shape[1] > taps else np.float32(0)
            for k in range(length):
                total[k] = bias
            for i in range(kh):
                for j in range(kw):
                    tap = weights[m, i * kw + j]
                    shift = _UINT(i * dh * wide + j * dw)
                    for k in range(length):
                        total[k] += tap * image[shift + k]
            plane = (n * outputs + m) * out_h * out_w
            for r in range(out_h):
                into, start = _UINT(plane + r * out_w), _UINT(r * wide)
                for k in range(_UINT(out_w)):
                    target[into + k] = total[start + k]


_WEIGHTED, _MAXIMUM, _SUM = 0, 1, 2  # what _slide does with each tap (a compile-time constant)


@numba.njit(cache=False, inline="always")
def _row(kind, target, out_at, source, in_at, count, stride, tap):  # type: ignore[no-untyped-def]
    """Fold ``count`` inputs read every ``stride`` from ``in_at`` into the outputs from ``out_at``."""
    if kind == _MAXIMUM:
        for k in range(count):
            value, best = source[in_at + k * stride], target[out_at + k]
            target[out_at + k] = value if value >= best or value != value else best  # NaN wins, as in np.maximum
    elif kind == _SUM:
        for k in range(count):
            target[out_at + k] += source[in_at + k * stride]
    else:
        for k in range(count):
            target[out_at + k] += tap * source[in_at + k * stride]


@numba.njit(cache=False, inline="always")
def _slide(kind, x, weights, kh, kw, sh, sw, dh, dw, top, left, y):  # type: ignore[no-untyped-def]
    """Any window, row by row: each output row starts at the bias / -inf / 0 and takes every
    tap's in-bounds span of one input row (taps outside the input are skipped, which is what
    zero or -inf padding amounts to). Stride 2 gets its own copy of the loop, where the
    constant stride lets LLVM vectorize the strided reads."""
    batch, channels, height, width = x.shape
    outputs, out_h, out_w = y.shape[1], y.shape[2], y.shape[3]
    multiplier = outputs // channels
    taps = kh * kw
    source, target, step = x.reshape(-1), y.reshape(-1), _UINT(sw)
    spans = _column_spans(kw, sw, dw, left, width, out_w)
    for n in range(batch):
        for m in range(outputs):
            plane_in = (n * channels + m // multiplier) * height * width
            if kind == _WEIGHTED:
                start = weights[m, taps] if weights.shape[1] > taps else np.float32(0)
            else:
                start = np.float32(-np.inf) if kind == _MAXIMUM else np.float32(0)
            tap = np.float32(1)
            for oy in range(out_h):
                row = _UINT(((n * outputs + m) * out_h + oy) * out_w)
                for k in range(_UINT(out_w)):
                    target[row + k] = start
                for i in range(kh):
                    iy = oy * sh - top + i * dh
                    if iy < 0 or iy >= height:
                        continue
                    line = _UINT(plane_in + iy * width)
                    for j in range(kw):
                        if kind == _WEIGHTED:
                            tap = weights[m, i * kw + j]
                        out_at, count, in_at = row + spans[j, 0], spans[j, 1], line + spans[j, 2]
                        if sw == 2:
                            _row(kind, target, out_at, source, in_at, count, _UINT(2), tap)
                        else:
                            _row(kind, target, out_at, source, in_at, count, step, tap)


@_compile(_INPUT, _MATRIX, *_GEOMETRY, _PLANE)
def depthwise_conv2d(x, weights, kh, kw, sh, sw, dh, dw, top, left, y):  # type: ignore[no-untyped-def]
    """y[n, m] = bias[m] + Σ taps of x[n, m // multiplier] ⋆ w[m] (group == input channels).

    ``weights`` is (M, kh·kw) or (M, kh·kw + 1); the extra column is the bias.
    """
    if sh == 1 and sw == 1:
        _depthwise_unit_stride(x, weights, kh, kw, dh, dw, top, left, y)
    else:
        _slide(_WEIGHTED, x, weights, kh, kw, sh, sw, dh, dw, top, left, y)


@_compile(_INPUT, *_GEOMETRY, _PLANE)
def max_pool2d(x, kh, kw, sh, sw, dh, dw, top, left, y):  # type: ignore[no-untyped-def]
    """Window maximum; padding never wins (-inf when a window holds no input). NaN propagates."""
    _slide(_MAXIMUM, x, np.empty((0, 0), np.float32), kh, kw, sh, sw, dh, dw, top, left, y)


@_compile(_INPUT, *_GEOMETRY, _MATRIX, _PLANE)
def average_pool2d(x, kh, kw, sh, sw, dh, dw, top, left, divisor, y):  # type: ignore[no-untyped-def]
    """Window sum over the input positions it covers, divided by ``divisor`` (out_h, out_w),
    which the caller computes from count_include_pad."""
    _slide(_SUM, x, np.empty((0, 0), np.float32), kh, kw, sh, sw, dh, dw, top, left, y)
    planes, out_h, out_w = y.shape[0] * y.shape[1], y.shape[2], y.shape[3]
    target, counts = y.reshape(planes, out_h * out_w), divisor.reshape(-1)
    for plane in range(planes):
        for k in range(_UINT(out_h * out_w)):
            target[plane, k] /= counts[k]
