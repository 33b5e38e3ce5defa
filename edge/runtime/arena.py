"""Memory plans applied to a Schedule: what the builder records and what contexts run out of.

Static-shape engines get their plan at build time from the IR's shapes; the engine file
records every planned tensor's offset and the runtime uses them as they are. Engines with
dynamic inputs are planned once per distinct input-shape signature at run time: the first
run with new shapes runs unplanned while recording each tensor's size, later runs with the
same shapes run out of the arena. At build, each optimization profile is planned at its max
shapes, from the inputs' symbolic dims and without running the model, so the engine knows
the arena it needs. Each memory space (host, a GPU's device memory) gets its own plan.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.plan import HOST
from edge.runtime.interpreter import Schedule, Step
from edge.runtime.memory import ALIGNMENT, MemoryPlan, StepUse, plan_memory
from edge.runtime.profiles import OptimizationProfile

__all__ = ["SlotPlan", "Arena", "static_plan", "plan_from_record", "probe_run", "plan_engine_memory"]


@dataclass(frozen=True)
class SlotPlan:
    """A plan in the runtime's terms: per planned slot its offset, shape and dtype, and the
    steps it makes no-ops (``assembled``: their inputs already sit where they would copy them)."""

    key: Hashable
    entries: tuple[tuple[int, int, tuple[int, ...], np.dtype], ...]
    arena_bytes: int
    summary: dict[str, Any]
    assembled: frozenset[int] = frozenset()


def _storable(dtype: np.dtype | None) -> bool:
    """Numeric and bool tensors live in the arena; strings and objects cannot be views of bytes."""
    return dtype is not None and dtype.kind in "biufc"


Layout = dict[int, tuple[tuple[int, ...], np.dtype]]


def _slot_plan(key: Hashable, schedule: Schedule, layout: Layout) -> tuple[SlotPlan, MemoryPlan]:
    sizes = {slot: int(np.prod(shape, dtype=np.int64)) * dtype.itemsize for slot, (shape, dtype) in layout.items()}
    uses = schedule.uses(layout)
    plan = plan_memory(uses, sizes, keep=schedule.output_slots)
    entries = tuple((slot, plan.offsets[slot], shape, dtype) for slot, (shape, dtype) in layout.items())
    assembled = _assembled(schedule, uses, plan.offsets)
    return SlotPlan(key, entries, plan.arena_bytes, plan.summary(), assembled), plan


def _assembled(schedule: Schedule, uses: Sequence[StepUse], offsets: dict[int, int]) -> frozenset[int]:
    """Steps whose every input the plan placed inside their output, at the offset the step
    would copy it to (a Concat whose producers wrote each piece into its slice): their
    output is complete before they run. Steps that round or quantize values are kept."""
    done = []
    for index, (step, use) in enumerate(zip(schedule.steps, uses)):
        if not use.parts or len(use.parts) != len(use.reads) or not step.exact:
            continue
        base = offsets.get(use.writes[0])
        if base is not None and all(offsets.get(use.reads[pos]) == base + delta for pos, delta in use.parts):
            done.append(index)
    return frozenset(done)


def static_plan(schedule: Schedule, space: str = HOST) -> tuple[SlotPlan, MemoryPlan]:
    """Plan every step output in ``space`` whose shape the IR knows statically."""
    layout = {}
    for slot in schedule.arena_slots(space):
        value = schedule.values[slot]
        if value.is_static and _storable(value.dtype):
            layout[slot] = (tuple(value.shape), value.dtype)  # type: ignore[arg-type]
    return _slot_plan("static" if space == HOST else ("static", space), schedule, layout)


def plan_from_record(schedule: Schedule, record: dict[str, Any] | None, space: str = HOST) -> SlotPlan | None:
    """The static plan of ``space`` an engine file recorded, or None when absent or not this
    schedule's."""
    entry = None if not record else (record.get("static") if space == HOST else record.get("spaces", {}).get(space))
    if not entry:
        return None
    slots = schedule.arena_slots(space)
    candidates = {schedule.values[s].name: s for s in slots}
    if len(candidates) != len(slots):  # names must identify tensors unambiguously
        return None
    result = []
    for name, offset, nbytes in entry.get("tensors", []):
        slot = candidates.get(name)
        value = None if slot is None else schedule.values[slot]
        if value is None or not value.is_static or value.nbytes() != nbytes:
            return None
        result.append((slot, int(offset), tuple(value.shape), value.dtype))
    summary = {k: v for k, v in entry.items() if k != "tensors"}
    layout = {slot: (shape, dtype) for slot, _, shape, dtype in result}
    assembled = _assembled(schedule, schedule.uses(layout), {slot: offset for slot, offset, _, _ in result})
    key = "static" if space == HOST else ("static", space)
    return SlotPlan(key, tuple(result), int(entry["arena_bytes"]), summary, assembled)


def probe_run(
    schedule: Schedule,
    inputs: Sequence[np.ndarray],
    key: Hashable,
    on_step: Callable[[Step, list[np.ndarray]], None] | None = None,
) -> tuple[list[np.ndarray], SlotPlan]:
    """Run unplanned while recording every tensor's shape; plan the arena for those shapes."""
    layout: dict[int, tuple[tuple[int, ...], np.dtype]] = {}
    wanted = set(schedule.arena_slots(HOST))

    def record(step: Step, results: list[np.ndarray]) -> None:
        for slot, result in zip(step.outputs, results):
            if slot in wanted and _storable(result.dtype):
                layout[slot] = (result.shape, result.dtype)
        if on_step is not None:
            on_step(step, results)

    outputs = schedule.run(inputs, on_step=record)
    return outputs, _slot_plan(key, schedule, layout)[0]


class Arena:
    """One execution context's activation memory: a 64-byte aligned uint8 buffer and views."""

    def __init__(self) -> None:
        self.array = np.empty(0, np.uint8)
        self._views: dict[Hashable, list[np.ndarray | None]] = {}

    def reserve(self, nbytes: int) -> None:
        """Grow to at least ``nbytes`` (dropping views of the old buffer)."""
        if nbytes <= self.array.size:
            return
        raw = np.empty(nbytes + ALIGNMENT, np.uint8)
        start = (-raw.ctypes.data) % ALIGNMENT
        self.array = raw[start : start + nbytes]
        self._views.clear()

    def views(self, plan: SlotPlan, num_slots: int) -> list[np.ndarray | None]:
        """Per slot, the view ``plan`` gives it (None for unplanned slots); cached per plan."""
        views = self._views.get(plan.key)
        if views is None:
            self.reserve(plan.arena_bytes)
            views = [None] * num_slots
            for slot, offset, shape, dtype in plan.entries:
                nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                views[slot] = self.array[offset : offset + nbytes].view(dtype).reshape(shape)
            if len(self._views) >= 64:
                self._views.pop(next(iter(self._views)))
            self._views[plan.key] = views
        return views


def _symbolic_layout(schedule: Schedule, shapes: dict[str, tuple[int, ...]]) -> tuple[Layout, int]:
    """Host tensor shapes at the given input shapes, found by binding the inputs' symbolic dims
    (no model execution); tensors whose dims do not follow from those symbols stay unplanned
    (sized at run time). Returns the layout and how many tensors it leaves out."""
    symbols: dict[str, int] = {}
    for value in schedule.graph.inputs:
        for dim, size in zip(value.shape or (), shapes.get(value.name, ())):
            if isinstance(dim, str):
                symbols[dim] = int(size)
    layout: Layout = {}
    unplanned = 0
    for slot in schedule.arena_slots(HOST):
        value = schedule.values[slot]
        dims = None if value.shape is None else [symbols.get(d) if isinstance(d, str) else d for d in value.shape]
        if dims is None or any(d is None for d in dims) or not _storable(value.dtype):
            unplanned += 1
            continue
        layout[slot] = (tuple(dims), value.dtype)  # type: ignore[arg-type]
    return layout, unplanned


def plan_engine_memory(schedule: Schedule, profiles: Sequence[OptimizationProfile] = ()) -> dict[str, Any]:
    """The memory record an engine stores: static offsets per memory space, or one host plan
    per profile at max shapes (from the shapes' symbols, never by running the model).

    ``static`` is the host arena's plan and ``spaces`` every other memory space's (a GPU's
    device arena). The top-level ``arena_bytes``/``naive_bytes``/``lower_bound_bytes`` are
    the host plan's, or the largest over the profiles (what ``inspect`` reports).
    """
    graph = schedule.graph
    record: dict[str, Any] = {"alignment": ALIGNMENT, "static": None, "spaces": {}, "profiles": []}
    if all(v.is_static for v in graph.inputs):
        for space in sorted({s for s in schedule.space if s is not None}):
            slot_plan, plan = static_plan(schedule, space)
            tensors = [[schedule.values[s].name, o, plan.sizes[s]] for s, o, _, _ in slot_plan.entries]
            entry = {**slot_plan.summary, "tensors": tensors}
            if space == HOST:
                record["static"] = entry
                record.update({k: slot_plan.summary[k] for k in ("arena_bytes", "naive_bytes", "lower_bound_bytes")})
            else:
                record["spaces"][space] = entry
        if record["static"] is None:
            record["static"] = {**static_plan(schedule, HOST)[0].summary, "tensors": []}
            record.update({k: record["static"][k] for k in ("arena_bytes", "naive_bytes", "lower_bound_bytes")})
        return record
    for index, profile in enumerate(profiles):
        shapes = profile.shapes("max")
        entry: dict[str, Any] = {"index": index, "max_shapes": {k: list(v) for k, v in shapes.items()}}
        layout, unplanned = _symbolic_layout(schedule, shapes)
        entry.update(_slot_plan(("profile", index), schedule, layout)[0].summary, unplanned_tensors=unplanned)
        record["profiles"].append(entry)
    for key in ("arena_bytes", "naive_bytes", "lower_bound_bytes"):
        record[key] = max((p[key] for p in record["profiles"] if key in p), default=None)
    return record
