"""Data layouts of 4-D image tensors: ONNX's NCHW and the channels-last NHWC of GPU regions.

A node with the ``channels_last`` attribute set (edgetrt::FusedConv, edgetrt::MaxPool,
edgetrt::AveragePool; see ``edge.passes.layout``) reads and writes its image tensors as
(N, H, W, C). Its other attributes keep ONNX's meaning, and its weights stay (M, C/group,
kH, kW): only activations change layout, so weights, pads and group checks read as in NCHW.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edge.ir.graph import Node, Value

__all__ = [
    "CHANNELS_LAST",
    "TO_CHANNELS_LAST",
    "TO_CHANNELS_FIRST",
    "is_channels_last",
    "to_channels_last",
    "to_channels_first",
    "channels_first_shape",
]

CHANNELS_LAST = "channels_last"
"""The attribute (int 0/1) that puts a node's image tensors in NHWC."""
TO_CHANNELS_LAST = (0, 2, 3, 1)
"""Transpose permutation NCHW -> NHWC."""
TO_CHANNELS_FIRST = (0, 3, 1, 2)
"""Transpose permutation NHWC -> NCHW."""


def is_channels_last(node: Node) -> bool:
    """True when ``node`` reads and writes its image tensors as NHWC."""
    return bool(node.attrs.get(CHANNELS_LAST, 0))


def to_channels_last(shape: Sequence[Any]) -> tuple[Any, ...]:
    """(N, C, H, W) -> (N, H, W, C)."""
    return tuple(shape[axis] for axis in TO_CHANNELS_LAST)


def to_channels_first(shape: Sequence[Any]) -> tuple[Any, ...]:
    """(N, H, W, C) -> (N, C, H, W)."""
    return tuple(shape[axis] for axis in TO_CHANNELS_FIRST)


def channels_first_shape(node: Node, value: Value | None) -> tuple[Any, ...] | None:
    """The NCHW shape of image input ``value`` of ``node`` (its own shape unless ``node`` is
    channels-last): what window and group checks read."""
    if value is None or value.shape is None:
        return None
    if is_channels_last(node) and len(value.shape) == 4:
        return to_channels_first(value.shape)
    return value.shape
