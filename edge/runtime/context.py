"""Execution contexts: per-run state (arena, chosen profile) on top of an engine's shared weights and schedule."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from edge.errors import InputError
from edge.kernels.threads import bind_calling_thread
from edge.plan import HOST
from edge.runtime.arena import Arena, SlotPlan, plan_from_record, probe_run, static_plan
from edge.runtime.interpreter import Schedule, Step
from edge.runtime.profiles import OptimizationProfile, profiles_from_record, select_profile
from edge.runtime.timing import RunTimes

if TYPE_CHECKING:
    from edge.engine import Engine, TensorSpec
    from edge.runtime.bench import LayerProfiler

__all__ = ["ExecutionContext", "check_inputs"]

StepHook = Callable[[Step, list[np.ndarray]], None]


class ExecutionContext:
    """Runs an engine on named numpy arrays out of its own activation arena.

    Several contexts on one engine share its weights and compiled schedule; each owns its
    arenas (one per memory space: host, and a GPU's device memory) and its backends' per-run
    state (scratch, streams), so contexts may run concurrently, one per thread. Outputs are
    always fresh arrays, never views of an arena.

    Attributes:
        profiler: optional ``fn(step, outputs)`` called after every layer with its outputs
            on the host (a device step's are copied back, a sync per layer).
        layer_profiler: optional :class:`edge.runtime.bench.LayerProfiler` given each run's
            per-layer times (device events on a GPU; CUDA graphs are off meanwhile).
        last_times: what the latest :meth:`run` took (None before the first).
    """

    def __init__(self, engine: Engine, cuda_graph: bool = True) -> None:
        """``cuda_graph``: capture the device part of a run once warm and replay it (static
        shapes; the runs of steps a backend can capture), like trtexec's --useCudaGraph."""
        self.engine = engine
        self.profiler: StepHook | None = None
        self.layer_profiler: LayerProfiler | None = None
        self.last_times: RunTimes | None = None
        self._schedule = engine.schedule()
        self._specs = engine.inputs
        self._outputs = [spec.name for spec in engine.outputs]
        self._arena = Arena()
        self._state = self._schedule.new_state()
        self._device_views = _device_views(engine, self._schedule)
        self._profiles: list[OptimizationProfile] = profiles_from_record(engine.build.get("optimization_profiles"))
        self._profile_index: int | None = None
        self._static = _static_plan(engine, self._schedule) if all(_is_static(s) for s in self._specs) else None
        self._graphs_possible = self._static is not None and any(b.can_capture for b in self._schedule.backends())
        if cuda_graph and self._graphs_possible:
            self._state.graphs = {}
        self._state.timing = self._device_views is not None

    # -- optimization profiles -----------------------------------------------------------
    @property
    def optimization_profiles(self) -> list[OptimizationProfile]:
        return list(self._profiles)

    @property
    def optimization_profile(self) -> int | None:
        """The profile this context is pinned to, or None to pick the first that fits."""
        return self._profile_index

    def set_optimization_profile(self, index: int | None) -> None:
        """Pin the context to profile ``index`` (None: choose per run), like TensorRT's."""
        if index is not None and not 0 <= index < len(self._profiles):
            raise InputError(f"optimization profile {index} does not exist; the engine has {len(self._profiles)}")
        self._profile_index = index
        if index is not None:
            memory = self.engine.build.get("memory") or {}
            for record in memory.get("profiles", []):
                if record.get("index") == index and "arena_bytes" in record:
                    self._arena.reserve(int(record["arena_bytes"]))

    # -- memory ----------------------------------------------------------------------------
    @property
    def arena(self) -> np.ndarray:
        """This context's activation memory (a uint8 buffer; planned tensors are views of it)."""
        return self._arena.array

    # -- execution -------------------------------------------------------------------------
    def run(
        self, feeds: Mapping[str, np.ndarray], *, transfers: bool = True, spin_wait: bool = False, cuda_graph: bool | None = None
    ) -> dict[str, np.ndarray]:
        """Run once; returns outputs by name (fresh arrays the caller owns).

        Args:
            transfers: False (trtexec's --noDataTransfers) skips, once warm, the copies between
                host and device: the device computes on the inputs copied in last, and outputs
                that stay on the device are left out of the result.
            spin_wait: busy-wait for the device instead of blocking (--useSpinWait).
            cuda_graph: override the context's CUDA-graph setting for this run.

        Raises:
            InputError: unknown, missing, mistyped or misshaped input, or a shape outside the
                optimization profiles, naming the input, its shape and the allowed range.
        """
        start = time.perf_counter()
        state = self._state
        state.spin_wait = spin_wait
        saved_graphs = state.graphs
        if cuda_graph is False:
            state.graphs = None
        elif cuda_graph and saved_graphs is None and self._graphs_possible:
            state.graphs = saved_graphs = {}
        try:
            outputs = self._execute(feeds, transfers)
        finally:
            if cuda_graph is False:
                state.graphs = saved_graphs
        host_ms = (time.perf_counter() - start) * 1000.0
        if self._device_views is None:  # host work happens inside the call: compute is the call
            self.last_times = RunTimes(host_ms, None, host_ms, None, host_ms)
        else:
            times = state.times
            self.last_times = RunTimes(times.get("enqueue"), times.get("h2d"), times.get("compute"), times.get("d2h"), host_ms)
        return outputs

    def _execute(self, feeds: Mapping[str, np.ndarray], transfers: bool = True) -> dict[str, np.ndarray]:
        check_inputs(self._specs, feeds)
        arrays = [np.asarray(feeds[s.name], order="C") for s in self._specs]
        bind_calling_thread()  # the pool's team size is kept per thread
        schedule = self._schedule
        plan = self._static
        if plan is None:
            shapes = {s.name: a.shape for s, a in zip(self._specs, arrays)}
            select_profile(self._profiles, shapes, self._profile_index)
            key = tuple(a.shape for a in arrays)
            plan = schedule.plans.get(key)
            if plan is None:
                results, plan = probe_run(schedule, arrays, key, self.profiler)
                schedule.plans.put(key, plan)
                return dict(zip(self._outputs, results))
        buffers = self._arena.views(plan, schedule.num_slots)
        if self._device_views:
            buffers = [d if d is not None else h for h, d in zip(buffers, self._device_views)]
        self._state.arena = self._arena.array
        self._state.step_times = None if self.layer_profiler is None else {}
        results = schedule.run(arrays, on_step=self.profiler, buffers=buffers, state=self._state, assembled=plan.assembled, transfers=transfers)
        if self.layer_profiler is not None:
            self.layer_profiler.add(schedule.steps, self._state.step_times)
        return {name: result for name, result in zip(self._outputs, results) if result is not None}


def _is_static(spec: TensorSpec) -> bool:
    return all(isinstance(d, int) for d in spec.shape)


def _device_views(engine: Engine, schedule: Schedule) -> list | None:
    """Per slot, the view of this context's device arena for tensors in a non-host memory
    space (one allocation per space, sized by the engine's plan); None without such spaces."""
    spaces = {s for s in schedule.space if s is not None and s != HOST}
    if not spaces:
        return None
    views: list = [None] * schedule.num_slots
    owners = {step.space: step.backend for step in schedule.steps}
    for space in sorted(spaces):
        plan = plan_from_record(schedule, engine.build.get("memory"), space) or static_plan(schedule, space)[0]
        backend = owners[space]
        buffer = backend.allocate(max(plan.arena_bytes, 1))
        for slot, offset, shape, dtype in plan.entries:
            views[slot] = backend.view(buffer, offset, shape, dtype)
    return views


def _static_plan(engine: Engine, schedule) -> SlotPlan:
    """The engine file's recorded plan; planned here only for engines that lack one."""
    cached = schedule.plans.get("static")
    if cached is None:
        cached = plan_from_record(schedule, engine.build.get("memory")) or static_plan(schedule)[0]
        cached = schedule.plans.put("static", cached)
    return cached


def check_inputs(specs: list[TensorSpec], feeds: Mapping[str, np.ndarray]) -> None:
    """Validate names, dtypes and shapes (symbolic dims must agree across inputs)."""
    names = [s.name for s in specs]
    unknown = [n for n in feeds if n not in names]
    if unknown:
        raise InputError(f"unknown input '{unknown[0]}'; the engine's inputs are {names}")
    symbols: dict[str, tuple[int, str]] = {}
    for spec in specs:
        if spec.name not in feeds:
            raise InputError(f"missing input '{spec.name}' ({spec.describe()})")
        array = feeds[spec.name]
        if not isinstance(array, np.ndarray):
            raise InputError(f"input '{spec.name}' must be a numpy array, got {type(array).__name__}")
        if array.dtype != spec.dtype:
            raise InputError(f"input '{spec.name}' has dtype {array.dtype}, the engine expects {spec.dtype}")
        expected = "x".join("?" if d is None else str(d) for d in spec.shape)
        actual = "x".join(str(d) for d in array.shape)
        if array.ndim != len(spec.shape):
            raise InputError(f"input '{spec.name}' has shape {actual} (rank {array.ndim}), the engine expects {expected}")
        for axis, (want, got) in enumerate(zip(spec.shape, array.shape)):
            if isinstance(want, int) and want != got:
                raise InputError(f"input '{spec.name}' has shape {actual}, the engine expects {expected} (dim {axis})")
            if isinstance(want, str):
                seen = symbols.setdefault(want, (got, spec.name))
                if seen[0] != got:
                    raise InputError(
                        f"input '{spec.name}' dim {axis} '{want}' is {got}, but input '{seen[1]}' set it to {seen[0]}"
                    )
