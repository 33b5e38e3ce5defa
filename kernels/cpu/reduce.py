"""Reductions (Reduce*), ArgMax/ArgMin, TopK, CumSum and CumProd.

Reduce ops took ``axes`` as an attribute until opset 13 (ReduceSum) or 18 (the others) and
as an optional input since; both forms share one implementation. Empty reductions give the
identity of the operation (0 for sums, 1 for products, -inf/inf for max/min).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge.kernels.cpu.precision import widen_half
from edge.kernels.registry import OpContext, register

__all__: list[str] = []  # kernels are reached through the registry


def _lowest(dtype: np.dtype):
    if dtype == np.bool_:
        return False
    return -np.inf if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).min


def _highest(dtype: np.dtype):
    if dtype == np.bool_:
        return True
    return np.inf if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).max


def _log_sum_exp(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """log(sum(exp(x))) shifted by the max so large inputs do not overflow."""
    if x.size == 0:
        return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))
    peak = np.max(x, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0).astype(x.dtype)
    total = np.log(np.sum(np.exp(x - peak), axis=axis, keepdims=True)) + peak
    return total if keepdims else np.squeeze(total, axis=axis)


_REDUCTIONS: dict[str, Callable[[np.ndarray, tuple[int, ...], bool], np.ndarray]] = {
    "ReduceSum": lambda x, axis, keep: np.sum(x, axis=axis, keepdims=keep, dtype=x.dtype),
    "ReduceMean": lambda x, axis, keep: np.mean(x, axis=axis, keepdims=keep),
    "ReduceProd": lambda x, axis, keep: np.prod(x, axis=axis, keepdims=keep, dtype=x.dtype),
    "ReduceMax": lambda x, axis, keep: np.max(x, axis=axis, keepdims=keep, initial=_lowest(x.dtype)),
    "ReduceMin": lambda x, axis, keep: np.min(x, axis=axis, keepdims=keep, initial=_highest(x.dtype)),
    "ReduceL1": lambda x, axis, keep: np.sum(np.abs(x), axis=axis, keepdims=keep, dtype=x.dtype),
    "ReduceL2": lambda x, axis, keep: np.sqrt(np.sum(np.square(x), axis=axis, keepdims=keep, dtype=x.dtype)),
    "ReduceSumSquare": lambda x, axis, keep: np.sum(np.square(x), axis=axis, keepdims=keep, dtype=x.dtype),
    "ReduceLogSum": lambda x, axis, keep: np.log(np.sum(x, axis=axis, keepdims=keep, dtype=x.dtype)),
    "ReduceLogSumExp": _log_sum_exp,
}

_AXES_BECAME_INPUT = {"ReduceSum": 13}


def _reduce(x: np.ndarray, axes, ctx: OpContext, fn) -> np.ndarray:
    """Apply ``fn`` over ``axes`` (None or empty: all, unless noop_with_empty_axes)."""
    keepdims = bool(ctx.attr("keepdims", 1))
    if axes is None or len(axes) == 0:
        if ctx.attr("noop_with_empty_axes", 0):
            return x
        axes = tuple(range(x.ndim))
    axes = tuple(int(a) % max(x.ndim, 1) for a in axes)
    return np.asarray(fn(x, axes, keepdims)).astype(x.dtype, copy=False)


def _attr_form(fn):
    def kernel(ctx: OpContext, x: np.ndarray) -> np.ndarray:
        return _reduce(x, ctx.attr("axes"), ctx, fn)

    return kernel


def _input_form(fn):
    def kernel(ctx: OpContext, x: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:
        return _reduce(x, None if axes is None else axes.reshape(-1).tolist(), ctx, fn)

    return kernel


for _name, _fn in _REDUCTIONS.items():
    register(_name, since=1)(widen_half(_attr_form(_fn)))
    register(_name, since=_AXES_BECAME_INPUT.get(_name, 18))(widen_half(_input_form(_fn)))


def _arg_reduce(find: Callable[..., np.ndarray]):
    """ArgMax/ArgMin: ``select_last_index`` searches the reversed axis and maps back."""

    def kernel(ctx: OpContext, x: np.ndarray) -> np.ndarray:
        axis = ctx.attr("axis", 0) % x.ndim
        if ctx.attr("select_last_index", 0):
            index = x.shape[axis] - 1 - find(np.flip(x, axis), axis=axis)
        else:
            index = find(x, axis=axis)
        if ctx.attr("keepdims", 1):
            index = np.expand_dims(index, axis)
        return index.astype(np.int64)

    return kernel


register("ArgMax")(_arg_reduce(np.argmax))
register("ArgMin")(_arg_reduce(np.argmin))


def _top_k(ctx: OpContext, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest (or smallest) along ``axis``, sorted, ties resolved by lower index."""
    axis = ctx.attr("axis", -1) % x.ndim
    size = x.shape[axis]
    if ctx.attr("largest", 1):
        # stable ascending sort of the reversed axis, read backwards: values descending,
        # and among equal values the lower original index first
        order = np.argsort(np.flip(x, axis), axis=axis, kind="stable")
        order = size - 1 - np.flip(order, axis)
    else:
        order = np.argsort(x, axis=axis, kind="stable")
    indices = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, indices, axis=axis), indices.astype(np.int64)


@register("TopK", since=1)
def top_k_attr(ctx: OpContext, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Opset < 10: k is an attribute."""
    return _top_k(ctx, x, int(ctx.attr("k")))


@register("TopK", since=10)
def top_k(ctx: OpContext, x: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _top_k(ctx, x, int(np.asarray(k).reshape(-1)[0]))


def _cumulative(ctx: OpContext, x: np.ndarray, axis: np.ndarray, running, identity: int) -> np.ndarray:
    """Running sum/product along ``axis``; ``exclusive`` shifts in the identity, ``reverse`` runs backwards."""
    axis = int(np.asarray(axis).reshape(-1)[0]) % x.ndim
    reverse = ctx.attr("reverse", 0)
    if reverse:
        x = np.flip(x, axis)
    total = running(x, axis=axis, dtype=x.dtype)
    if ctx.attr("exclusive", 0):
        first = np.full_like(np.take(total, [0], axis=axis), identity)
        total = np.concatenate([first, np.take(total, np.arange(x.shape[axis] - 1), axis=axis)], axis=axis)
    if reverse:
        total = np.flip(total, axis)
    return np.ascontiguousarray(total)


@register("CumSum")
@widen_half
def cum_sum(ctx: OpContext, x: np.ndarray, axis: np.ndarray) -> np.ndarray:
    return _cumulative(ctx, x, axis, np.cumsum, 0)


@register("CumProd")
@widen_half
def cum_prod(ctx: OpContext, x: np.ndarray, axis: np.ndarray) -> np.ndarray:
    return _cumulative(ctx, x, axis, np.cumprod, 1)
