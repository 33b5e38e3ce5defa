"""Activation memory planning: tensor lifetimes over an execution order -> offsets in one arena.

The planner is a pure function of the ordered steps (which tensors each step reads and
writes) and the tensor sizes. A tensor is live from the step that writes it to the last step
that reads it (graph outputs stay live to the end). Tensors whose lifetimes do not overlap may
share bytes; an elementwise step may also write its output over an input that dies at that
step (in place), which merges the two tensors into one buffer. A Concat's inputs may be placed
inside its output, each at its slice (concat elision, as TensorRT does): their producers then
write them where the Concat would have copied them, and a chain of concatenations (DenseNet's
blocks) shares one buffer. Buffers are placed greedily, largest first, each into the tightest
gap left by the already placed buffers it overlaps in time (the "greedy by size" offset
assignment), at 64-byte aligned offsets.

The lower bound reported beside the arena is the largest total size of buffers live at one
step: no placement of those buffers can use less.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ALIGNMENT", "StepUse", "MemoryPlan", "PlanCache", "plan_memory", "align"]

ALIGNMENT = 64


def align(nbytes: int, alignment: int = ALIGNMENT) -> int:
    """Round ``nbytes`` up to a multiple of ``alignment``."""
    return -(-nbytes // alignment) * alignment


@dataclass(frozen=True)
class StepUse:
    """What one step of the execution order does with tensors.

    Attributes:
        reads: tensors the step reads (anything not in the plan's sizes is ignored).
        writes: tensors the step produces.
        inplace: (write position, read position) pairs the op allows to share storage,
            taken only when the read tensor has the written tensor's size and dies here.
        parts: (read position, byte offset) pairs of an op whose output 0 is its inputs laid
            end to end (a Concat whose pieces are contiguous): each such input may be placed
            inside output 0 at that offset, so its producer writes it where the op would
            have copied it.
    """

    reads: tuple[Hashable, ...]
    writes: tuple[Hashable, ...]
    inplace: tuple[tuple[int, int], ...] = ()
    parts: tuple[tuple[int, int], ...] = ()


@dataclass
class MemoryPlan:
    """Offsets of every planned tensor in one arena, and how good the packing is.

    Attributes:
        offsets: byte offset of each tensor (tensors sharing a buffer share an offset).
        sizes: byte size of each tensor (unaligned).
        arena_bytes: size of the arena the offsets fit in.
        naive_bytes: sum of every tensor's aligned size (one buffer per tensor, no reuse).
        lower_bound_bytes: largest total size of buffers live at the same step.
        inplace: number of tensors written over a dying input.
        parts: number of tensors placed inside the concatenation that reads them.
    """

    offsets: dict[Hashable, int]
    sizes: dict[Hashable, int]
    arena_bytes: int
    naive_bytes: int
    lower_bound_bytes: int
    inplace: int = 0
    parts: int = 0
    alignment: int = ALIGNMENT
    lifetimes: dict[Hashable, tuple[int, int]] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, Any]:
        """The JSON-able numbers ``inspect`` and the benchmarks report."""
        return {
            "arena_bytes": self.arena_bytes,
            "naive_bytes": self.naive_bytes,
            "lower_bound_bytes": self.lower_bound_bytes,
            "tensors": len(self.offsets),
            "inplace": self.inplace,
            "concat_parts": self.parts,
            "alignment": self.alignment,
        }


@dataclass
class _Buffer:
    """Bytes reserved over steps [start, end] for ``members`` (in-place successors share
    them). A buffer with a ``parent`` lives at ``delta`` inside it instead of on its own
    (a Concat input written where the Concat would copy it); a ``sealed`` one, a part or a
    buffer holding parts, takes no in-place writes, which would overwrite a part."""

    start: int
    end: int
    size: int
    members: list[Hashable]
    offset: int = 0
    parent: _Buffer | None = None
    delta: int = 0
    sealed: bool = False

    def absolute(self) -> int:
        return self.offset if self.parent is None else self.parent.absolute() + self.delta


def plan_memory(
    steps: Sequence[StepUse],
    sizes: Mapping[Hashable, int],
    keep: Collection[Hashable] = (),
    alignment: int = ALIGNMENT,
) -> MemoryPlan:
    """Assign arena offsets to the tensors in ``sizes``.

    Args:
        steps: the execution order; each step's reads and writes.
        sizes: bytes of every tensor to place (others, such as graph inputs and weights,
            live outside the arena and are ignored).
        keep: tensors live until the end (graph outputs), never overwritten in place.
        alignment: every offset is a multiple of this.

    Returns:
        The plan; tensors whose lifetimes overlap never share a byte unless one was written
        in place over the other at the step where the other dies, or one is a part of the
        concatenation the other is (at its offset there).
    """
    end = len(steps)
    first: dict[Hashable, int] = {}
    last: dict[Hashable, int] = {}
    for index, step in enumerate(steps):
        for key in step.writes:
            if key in sizes:
                first.setdefault(key, index)
                last.setdefault(key, index)
        for key in step.reads:
            if key in sizes:
                first.setdefault(key, index)
                last[key] = index
    for key in sizes:
        first.setdefault(key, 0)
        last.setdefault(key, first[key])
    for key in keep:
        if key in sizes:
            last[key] = end

    buffer_of: dict[Hashable, _Buffer] = {}
    buffers: list[_Buffer] = []
    inplace = parts = 0
    for index, step in enumerate(steps):
        taken: set[int] = set()
        for w, r in step.inplace:
            written, read = step.writes[w], step.reads[r]
            if written not in sizes or read not in sizes or written in buffer_of or read == written:
                continue
            host = buffer_of.get(read)
            if (
                host is None
                or last[read] != index
                or read in keep
                or sizes[read] != sizes[written]
                or host.members[-1] != read
                or id(host) in taken
                or host.sealed
            ):
                continue
            host.members.append(written)
            host.end = max(host.end, last[written])
            buffer_of[written] = host
            taken.add(id(host))
            inplace += 1
        for key in step.writes:
            if key in sizes and key not in buffer_of:
                buffer = _Buffer(first[key], last[key], align(max(sizes[key], 1), alignment), [key])
                buffer_of[key] = buffer
                buffers.append(buffer)
        if step.parts and step.writes and step.writes[0] in sizes:
            parts += _nest_parts(step, buffer_of, sizes, keep, alignment)
    for key in sizes:  # tensors no step writes (e.g. bound before the first step)
        if key not in buffer_of:
            buffer = _Buffer(first[key], last[key], align(max(sizes[key], 1), alignment), [key])
            buffer_of[key] = buffer
            buffers.append(buffer)

    roots = [buffer for buffer in buffers if buffer.parent is None]
    arena = _place(roots)
    return MemoryPlan(
        offsets={key: buffer_of[key].absolute() for key in sizes},
        sizes=dict(sizes),
        arena_bytes=arena,
        naive_bytes=sum(align(max(size, 1), alignment) for size in sizes.values()),
        lower_bound_bytes=_peak(roots, end + 1),
        inplace=inplace,
        parts=parts,
        alignment=alignment,
        lifetimes={key: (first[key], last[key]) for key in sizes},
    )


def _nest_parts(
    step: StepUse, buffer_of: dict[Hashable, _Buffer], sizes: Mapping[Hashable, int], keep: Collection[Hashable], alignment: int
) -> int:
    """Place the step's eligible inputs inside its output 0 (see ``StepUse.parts``) and
    return how many. An input qualifies when it has a buffer of its own (no in-place chain,
    not a part already, not a graph output), appears once in the step and sits at an aligned
    offset. The output's buffer then lives from its earliest part's write on; it and its
    parts are sealed against in-place writes."""
    whole = buffer_of[step.writes[0]]
    nested = [
        (host, delta)
        for position, delta in step.parts
        if (host := buffer_of.get(key := step.reads[position])) is not None
        and key not in keep
        and host.members == [key]
        and host.parent is None
        and step.reads.count(key) == 1
        and delta % alignment == 0
        and delta + sizes[key] <= sizes[step.writes[0]]
    ]
    for host, delta in nested:
        host.parent, host.delta, host.sealed = whole, delta, True
        whole.start, whole.end = min(whole.start, host.start), max(whole.end, host.end)
    whole.sealed = whole.sealed or bool(nested)
    return len(nested)


def _place(buffers: list[_Buffer]) -> int:
    """Greedy by size: largest first, each into the best-fitting gap among overlapping ones."""
    placed: list[_Buffer] = []
    arena = 0
    for buffer in sorted(buffers, key=lambda b: (-b.size, b.start, b.end)):
        overlapping = sorted(
            (p for p in placed if p.start <= buffer.end and buffer.start <= p.end), key=lambda p: p.offset
        )
        best_offset, best_gap, cursor = None, None, 0
        for other in overlapping:
            gap = other.offset - cursor
            if gap >= buffer.size and (best_gap is None or gap < best_gap):
                best_offset, best_gap = cursor, gap
            cursor = max(cursor, other.offset + other.size)
        buffer.offset = cursor if best_offset is None else best_offset
        arena = max(arena, buffer.offset + buffer.size)
        placed.append(buffer)
    return arena


def _peak(buffers: list[_Buffer], length: int) -> int:
    """Largest total size of buffers live at one step (a sweep over start/end events)."""
    delta = [0] * (length + 1)
    for buffer in buffers:
        delta[buffer.start] += buffer.size
        delta[buffer.end + 1] -= buffer.size
    peak = live = 0
    for change in delta:
        live += change
        peak = max(peak, live)
    return peak


class PlanCache:
    """A small thread-safe LRU map from a shape signature to a plan, shared by contexts."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: Hashable, item: Any) -> Any:
        """Store ``item`` unless another thread stored one first; return the stored one."""
        with self._lock:
            stored = self._items.setdefault(key, item)
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
            return stored
