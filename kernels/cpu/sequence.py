"""Sequence and optional ops: building, reading and splitting ``seq(tensor)`` values,
wrapping and unwrapping optionals, and mapping a body graph over sequences.

Sequences are :class:`~edge.ir.TensorSequence` values; an empty optional is ``None`` (see
``edge.ir.sequence``). These ops run on the host: no device backend registers them, so the
plan keeps them there.
"""

from __future__ import annotations

import numpy as np

from edge.errors import KernelError
from edge.ir import TensorSequence
from edge.kernels.registry import OpContext, register

__all__: list[str] = []


def _sequence(ctx: OpContext, value: object, what: str = "input 0") -> TensorSequence:
    if not isinstance(value, TensorSequence):
        raise KernelError(f"node '{ctx.node.name}' ({ctx.node.op_type}): {what} must be a sequence, got {type(value).__name__}")
    return value


def _position(ctx: OpContext, position: np.ndarray | None, length: int, default: int, inserting: bool = False) -> int:
    """A sequence index from a scalar tensor, negative counting from the end; an insert
    may also name ``length`` (append)."""
    if position is None:
        return default
    index = int(np.asarray(position).reshape(-1)[0])
    high = length if inserting else length - 1
    if not -length <= index <= high:
        raise KernelError(f"node '{ctx.node.name}' ({ctx.node.op_type}): position {index} is outside [{-length}, {high}] for a sequence of {length}")
    return index + length if index < 0 else index


@register("SequenceEmpty", since=11)
def sequence_empty(ctx: OpContext) -> TensorSequence:
    return TensorSequence()


@register("SequenceConstruct", since=11)
def sequence_construct(ctx: OpContext, *tensors: np.ndarray) -> TensorSequence:
    return TensorSequence(tensors)


@register("SequenceLength", since=11)
def sequence_length(ctx: OpContext, sequence: TensorSequence) -> np.ndarray:
    return np.array(len(_sequence(ctx, sequence)), np.int64)


@register("SequenceAt", since=11)
def sequence_at(ctx: OpContext, sequence: TensorSequence, position: np.ndarray) -> np.ndarray:
    items = _sequence(ctx, sequence)
    return items[_position(ctx, position, len(items), 0)]


@register("SequenceInsert", since=11)
def sequence_insert(ctx: OpContext, sequence: TensorSequence, tensor: np.ndarray, position: np.ndarray | None = None) -> TensorSequence:
    """A new sequence with ``tensor`` at ``position`` (the end by default)."""
    items = list(_sequence(ctx, sequence))
    items.insert(_position(ctx, position, len(items), len(items), inserting=True), tensor)
    return TensorSequence(items)


@register("SequenceErase", since=11)
def sequence_erase(ctx: OpContext, sequence: TensorSequence, position: np.ndarray | None = None) -> TensorSequence:
    """A new sequence without the tensor at ``position`` (the last by default)."""
    items = list(_sequence(ctx, sequence))
    if not items:
        raise KernelError(f"node '{ctx.node.name}' (SequenceErase): the sequence is empty")
    del items[_position(ctx, position, len(items), len(items) - 1)]
    return TensorSequence(items)


@register("SplitToSequence", since=11)
def split_to_sequence(ctx: OpContext, x: np.ndarray, split: np.ndarray | None = None) -> TensorSequence:
    """Split along ``axis``: into pieces of one (squeezed unless ``keepdims``) without
    ``split``, into chunks of a scalar ``split`` (the last one shorter), or into the lengths
    a 1-D ``split`` lists."""
    axis = ctx.attr("axis", 0) % x.ndim
    if split is None:
        pieces = np.split(x, x.shape[axis], axis=axis)
        if not ctx.attr("keepdims", 1):
            pieces = [np.squeeze(p, axis=axis) for p in pieces]
        return TensorSequence(pieces)
    lengths = np.asarray(split).astype(np.int64)
    if lengths.ndim == 0:
        bounds = list(range(int(lengths), x.shape[axis], int(lengths)))
    else:
        if int(lengths.sum()) != x.shape[axis]:
            raise KernelError(f"node '{ctx.node.name}' (SplitToSequence): split {lengths.tolist()} does not add up to dim {axis} = {x.shape[axis]}")
        bounds = np.cumsum(lengths)[:-1].tolist()
    return TensorSequence(np.split(x, bounds, axis=axis))


@register("ConcatFromSequence", since=11)
def concat_from_sequence(ctx: OpContext, sequence: TensorSequence) -> np.ndarray:
    """Concatenate along ``axis``, or stack along a new ``axis`` with ``new_axis``."""
    items = _sequence(ctx, sequence)
    if not items:
        raise KernelError(f"node '{ctx.node.name}' (ConcatFromSequence): the sequence is empty")
    axis = ctx.attr("axis")
    if ctx.attr("new_axis", 0):
        return np.stack(list(items), axis=axis)
    return np.concatenate(list(items), axis=axis)


@register("SequenceMap", since=17)
def sequence_map(ctx: OpContext, sequence: TensorSequence, *additional: np.ndarray | TensorSequence) -> tuple[TensorSequence, ...]:
    """Run ``body`` once per element of the input sequences (a tensor input is given whole
    to every iteration); each body output becomes one output sequence."""
    length = len(_sequence(ctx, sequence))
    inputs = (sequence, *additional)
    for index, value in enumerate(additional, 1):
        if isinstance(value, TensorSequence) and len(value) != length:
            raise KernelError(f"node '{ctx.node.name}' (SequenceMap): input {index} has {len(value)} elements, input 0 has {length}")
    body = ctx.attr("body")
    results = [
        ctx.run_subgraph(body, [v[i] if isinstance(v, TensorSequence) else v for v in inputs]) for i in range(length)
    ]
    return tuple(TensorSequence(step[k] for step in results) for k in range(ctx.num_outputs))


@register("Optional", since=15)
def optional(ctx: OpContext, value: np.ndarray | TensorSequence | None = None) -> np.ndarray | TensorSequence | None:
    """An optional holding ``value``, or an empty one (None) without an input."""
    return value


@register("OptionalHasElement", since=15)
def optional_has_element(ctx: OpContext, value: np.ndarray | TensorSequence | None = None) -> np.ndarray:
    return np.array(value is not None)


@register("OptionalGetElement", since=15)
def optional_get_element(ctx: OpContext, value: np.ndarray | TensorSequence | None) -> np.ndarray | TensorSequence:
    if value is None:
        raise KernelError(f"node '{ctx.node.name}' (OptionalGetElement): the optional input is empty")
    return value
