"""Indexing kernels: gather/scatter families, Where, NonZero, OneHot, ReverseSequence,
TensorScatter (KV-cache writes)."""

from __future__ import annotations

import numpy as np

from edge.errors import KernelError
from edge.kernels.registry import OpContext, register

__all__: list[str] = []

# ufuncs whose ``.at`` applies a scatter reduction with repeated indices accumulating.
_REDUCTIONS = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _wrap(indices: np.ndarray, dims) -> np.ndarray:
    """Negative indices counted from the end of their dimension (broadcast over ``dims``)."""
    indices = indices.astype(np.int64)
    return np.where(indices < 0, indices + np.asarray(dims, np.int64), indices)


def _scatter(out: np.ndarray, index: tuple, updates: np.ndarray, reduction: str) -> np.ndarray:
    """Write ``updates`` at ``index`` into ``out`` in place; reductions accumulate duplicates."""
    if reduction == "none":
        out[index] = updates
    else:
        _REDUCTIONS[reduction].at(out, index, updates)
    return out


@register("Gather")
def gather(ctx: OpContext, data: np.ndarray, indices: np.ndarray) -> np.ndarray:
    axis = ctx.attr("axis", 0)
    axis = axis + data.ndim if axis < 0 else axis
    return np.take(data, _wrap(indices, data.shape[axis]), axis=axis)


def _element_index(indices: np.ndarray, axis: int, dim: int) -> tuple[np.ndarray, ...]:
    """Full coordinate arrays for GatherElements/ScatterElements: the grid, with ``axis`` replaced."""
    grid = list(np.indices(indices.shape, sparse=True))
    grid[axis] = _wrap(indices, dim)
    return tuple(grid)


@register("GatherElements")
def gather_elements(ctx: OpContext, data: np.ndarray, indices: np.ndarray) -> np.ndarray:
    axis = ctx.attr("axis", 0) % data.ndim
    return data[_element_index(indices, axis, data.shape[axis])]


@register("ScatterElements", "Scatter")
def scatter_elements(ctx: OpContext, data: np.ndarray, indices: np.ndarray, updates: np.ndarray) -> np.ndarray:
    axis = ctx.attr("axis", 0) % data.ndim
    index = _element_index(indices, axis, data.shape[axis])
    return _scatter(data.copy(), index, updates, ctx.attr("reduction", "none"))


def _nd_index(data_shape: tuple[int, ...], indices: np.ndarray, batch_dims: int) -> tuple[np.ndarray, ...]:
    """Index tuple for GatherND/ScatterND: batch coordinates, then the last axis of ``indices``."""
    depth = indices.shape[-1]
    coords = _wrap(indices, data_shape[batch_dims : batch_dims + depth])
    batch_shape = indices.shape[:batch_dims]
    lead = indices.ndim - 1 - batch_dims  # index dims after the batch dims
    batch = [
        np.arange(n).reshape((1,) * i + (n,) + (1,) * (batch_dims - i - 1 + lead))
        for i, n in enumerate(batch_shape)
    ]
    return tuple(batch) + tuple(coords[..., k] for k in range(depth))


@register("GatherND")
def gather_nd(ctx: OpContext, data: np.ndarray, indices: np.ndarray) -> np.ndarray:
    return data[_nd_index(data.shape, indices, ctx.attr("batch_dims", 0))].copy()


@register("ScatterND")
def scatter_nd(ctx: OpContext, data: np.ndarray, indices: np.ndarray, updates: np.ndarray) -> np.ndarray:
    return _scatter(data.copy(), _nd_index(data.shape, indices, 0), updates, ctx.attr("reduction", "none"))


@register("Where", inplace=True)
def where(ctx: OpContext, condition: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.where(condition, x, y)


@register("NonZero")
def nonzero(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    if x.ndim == 0:
        return np.zeros((0, int(bool(x))), np.int64)
    return np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1)


@register("OneHot")
def one_hot(ctx: OpContext, indices: np.ndarray, depth: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Out-of-range indices (after wrapping negatives) give a row of ``off`` values."""
    size = int(np.asarray(depth).reshape(-1)[0])
    axis = ctx.attr("axis", -1)
    axis = axis + indices.ndim + 1 if axis < 0 else axis
    wrapped = _wrap(indices.astype(np.int64), size)
    classes = np.arange(size).reshape((size,) + (1,) * (indices.ndim - axis))
    hot = np.expand_dims(wrapped, axis) == classes
    return np.where(hot, values[1], values[0]).astype(values.dtype)


@register("ReverseSequence")
def reverse_sequence(ctx: OpContext, x: np.ndarray, sequence_lens: np.ndarray) -> np.ndarray:
    """Reverse the first ``sequence_lens[b]`` steps of each batch entry along the time axis."""
    time_axis, batch_axis = ctx.attr("time_axis", 0), ctx.attr("batch_axis", 1)
    steps = np.arange(x.shape[time_axis])[:, None]
    lens = sequence_lens.astype(np.int64)[None, :]
    source = np.where(steps < lens, lens - 1 - steps, steps)  # [time, batch]
    grid = list(np.indices(x.shape, sparse=True))
    shape = [1] * x.ndim
    shape[time_axis], shape[batch_axis] = x.shape[time_axis], x.shape[batch_axis]
    grid[time_axis] = source.reshape(shape) if time_axis < batch_axis else source.T.reshape(shape)
    return np.ascontiguousarray(x[tuple(grid)])


@register("TensorScatter", since=24)
def tensor_scatter(ctx: OpContext, past: np.ndarray, update: np.ndarray, write_indices: np.ndarray | None = None) -> np.ndarray:
    """A KV-cache write: each batch entry's ``update`` rows go into a copy of ``past`` along
    ``axis`` from its write index on (wrapping around the cache with mode "circular")."""
    axis = ctx.attr("axis", -2) % past.ndim
    capacity, length = past.shape[axis], update.shape[axis]
    starts = np.zeros(past.shape[0], np.int64) if write_indices is None else write_indices.astype(np.int64).reshape(-1)
    circular = ctx.attr("mode", "linear") == "circular"
    present = past.copy()
    for batch, start in enumerate(starts):
        rows = start + np.arange(length)
        if circular:
            rows %= capacity
        elif length and (start < 0 or rows[-1] >= capacity):
            raise KernelError(
                f"node '{ctx.node.name}' (TensorScatter): batch {batch} writes positions {start}..{rows[-1]}, the cache holds {capacity}"
            )
        np.moveaxis(present[batch], axis - 1, 0)[rows] = np.moveaxis(update[batch], axis - 1, 0)
    return present
