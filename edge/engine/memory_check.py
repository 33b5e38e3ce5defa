"""Validation of the static memory plan an engine records (``build.memory.static``).

The runtime places tensors at the recorded offsets as they are (see
:func:`edge.runtime.arena.plan_from_record`), so the record must fit the graph: every name a
planned tensor of this graph, its size the tensor's size, its bytes inside the arena, and no
two tensors alive at the same step sharing a byte, except where the planner's own rules
allow it: an in-place write over an input that dies at that step (same offset and size), or
a Concat input placed at its slice of the Concat's output.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from edge.errors import EngineFormatError
from edge.runtime.interpreter import Schedule
from edge.runtime.memory import StepUse, align

__all__ = ["check_memory_record"]


def _fail(reason: str) -> None:
    raise EngineFormatError(f"engine is corrupted: memory plan {reason}")


def check_memory_record(schedule: Schedule, record: dict[str, Any]) -> None:
    """Raise EngineFormatError when a recorded static plan (the host's, and every other memory
    space's) does not fit ``schedule`` (the engine's execution plan compiled)."""
    _check_space(schedule, record.get("static"), record["alignment"], "host")
    for space, entry in (record.get("spaces") or {}).items():
        _check_space(schedule, entry, record["alignment"], space)


def _check_space(schedule: Schedule, static: dict[str, Any] | None, alignment: int, space: str) -> None:
    if not static:
        return
    slots = {schedule.values[s].name: s for s in schedule.arena_slots(space)}
    placed: dict[int, tuple[int, int]] = {}
    for name, offset, nbytes in static.get("tensors", []):
        slot = slots.get(name)
        if slot is None or slot in placed:
            _fail(f"names tensor '{name}', which is not a planned tensor of this graph or is listed twice")
        value = schedule.values[slot]
        if value.nbytes() != nbytes:
            _fail(f"gives tensor '{name}' {nbytes} bytes, the graph says {value.nbytes()}")
        if offset % alignment:
            _fail(f"places tensor '{name}' at offset {offset}, not a multiple of the alignment {alignment}")
        if offset + nbytes > static["arena_bytes"]:
            _fail(f"places tensor '{name}' at {offset}+{nbytes} bytes, past the arena of {static['arena_bytes']}")
        placed[slot] = (offset, nbytes)
    naive = sum(align(max(n, 1), alignment) for _, n in placed.values())
    if static["arena_bytes"] > max(naive, alignment):
        _fail(f"claims an arena of {static['arena_bytes']} bytes, more than one buffer per tensor needs ({naive})")
    layout = {s: (tuple(schedule.values[s].shape), schedule.values[s].dtype) for s in placed}
    _check_overlaps(schedule, schedule.uses(layout), placed)


def _lifetimes(uses: list[StepUse], placed: dict[int, tuple[int, int]], keep: set[int]) -> dict[int, tuple[int, int]]:
    """Per placed tensor, the first and last step that touches it (graph outputs: to the end)."""
    first: dict[Hashable, int] = {}
    last: dict[Hashable, int] = {}
    for index, use in enumerate(uses):
        for slot in (*use.writes, *use.reads):
            if slot in placed:
                first.setdefault(slot, index)
                last[slot] = index
    end = len(uses)
    return {s: (first.get(s, 0), end if s in keep else last.get(s, first.get(s, 0))) for s in placed}


def _allowed_pairs(
    uses: list[StepUse], placed: dict[int, tuple[int, int]], life: dict[int, tuple[int, int]]
) -> tuple[set[tuple[int, int]], dict[int, int]]:
    """In-place pairs the plan took (same offset and size, the read tensor dying at that
    step) and each Concat part's containing tensor (placed at its slice)."""
    inplace: set[tuple[int, int]] = set()
    parent: dict[int, int] = {}
    for index, use in enumerate(uses):
        for w, r in use.inplace:
            written, read = use.writes[w], use.reads[r]
            if written in placed and read in placed and placed[written] == placed[read] and life[read][1] == index:
                inplace.add((read, written))
        if use.parts and use.writes and use.writes[0] in placed:
            whole = use.writes[0]
            for position, delta in use.parts:
                part = use.reads[position]
                if part in placed and placed[part][0] == placed[whole][0] + delta:
                    parent[part] = whole
    return inplace, parent


def _ancestors(slot: int, parent: dict[int, int]) -> set[int]:
    found = set()
    while slot in parent and slot not in found:
        slot = parent[slot]
        found.add(slot)
    return found


def _check_overlaps(schedule: Schedule, uses: list[StepUse], placed: dict[int, tuple[int, int]]) -> None:
    life = _lifetimes(uses, placed, set(schedule.output_slots))
    inplace, parent = _allowed_pairs(uses, placed, life)
    order = sorted(placed, key=lambda s: placed[s][0])
    for i, a in enumerate(order):
        a_start, a_size = placed[a]
        for b in order[i + 1 :]:
            b_start, b_size = placed[b]
            if b_start >= a_start + max(a_size, 1):
                break
            if life[a][1] < life[b][0] or life[b][1] < life[a][0]:
                continue
            if (a, b) in inplace or (b, a) in inplace or a in _ancestors(b, parent) or b in _ancestors(a, parent):
                continue
            names = schedule.values[a].name, schedule.values[b].name
            _fail(f"puts tensors '{names[0]}' and '{names[1]}', alive at the same time, in shared bytes")
