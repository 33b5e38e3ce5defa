"""Small predicates and helpers shared by several passes (constants, shapes, broadcasting)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.ir import Graph, Node, Value, standard_domain

__all__ = [
    "scalar",
    "is_scalar",
    "is_float",
    "same_shape",
    "per_channel",
    "opset_of",
    "reduce_axes",
]


def scalar(value: Value | None) -> float | None:
    """The number held by a constant with exactly one element, else None."""
    if value is None or value.const is None or value.const.size != 1:
        return None
    return float(value.const.reshape(()))


def is_scalar(value: Value | None, expected: float, tol: float = 1e-6) -> bool:
    """True when ``value`` is a one-element constant equal to ``expected`` (relative ``tol``)."""
    number = scalar(value)
    return number is not None and abs(number - expected) <= tol * max(1.0, abs(expected))


def is_float(value: Value | None) -> bool:
    return value is not None and value.dtype is not None and value.dtype.kind == "f"


def same_shape(a: Value, b: Value) -> bool:
    """Both shapes known, equal, and free of unknown (None) dims."""
    return a.shape is not None and a.shape == b.shape and all(d is not None for d in a.shape)


def per_channel(array: np.ndarray, rank: int, axis: int, channels: int | None) -> np.ndarray | None:
    """``array`` as a 1-D per-channel vector along ``axis`` of a rank-``rank`` tensor, else None.

    Broadcasting ``array`` against the tensor must vary (at most) along ``axis`` and must not
    grow the tensor's rank — the condition for folding it into a weight or bias.
    """
    if array.ndim > rank or channels is None:
        return None
    full = (1,) * (rank - array.ndim) + array.shape
    if any(d != 1 for i, d in enumerate(full) if i != axis) or full[axis] not in (1, channels):
        return None
    return np.broadcast_to(array.reshape(-1), (channels,)) if array.size == 1 else array.reshape(channels)


def opset_of(graph: Graph, node: Node) -> int:
    return graph.opset.get(standard_domain(node.domain), 1)


def reduce_axes(graph: Graph, node: Node) -> list[int] | None:
    """Axes of a Reduce* node (attribute before opset 18, input after), normalized; None if unknown."""
    axes: Sequence[int] | None = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1] is not None:
        if node.inputs[1].const is None:
            return None
        axes = [int(a) for a in node.inputs[1].const.reshape(-1)]
    rank = node.inputs[0].rank if node.inputs[0] is not None else None
    if axes is None or rank is None:
        return None
    return sorted(a % rank for a in axes)
