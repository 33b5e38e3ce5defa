"""Executes execution plans with their backends' launches: the loop every run goes through.

A graph and its :class:`~edge.plan.ExecutionPlan` are compiled once into a flat ``Schedule``
(launch, input slots, output slots, and the slots to free after each step); running it is a
loop over that list that knows nothing of ops, precisions or devices. Without a plan, every
node runs on one backend (subgraphs of If/Loop, constant folding, shape inference fallbacks).

A run may be given one preallocated output buffer per slot (views into an execution
context's arenas, one per memory space): launches write into them. A Schedule holds no
per-run state besides each host launch's ``cache`` of pure facts derived from attributes and
shapes, so several threads may run one Schedule at once; per-run state (scratch memory,
streams) comes from the caller's :class:`~edge.kernels.backend.RunState`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.errors import KernelError
from edge.ir import Graph, Node, Value, captured_values, standard_domain
from edge.kernels.backend import Backend, Launch, RunState, StepSpec, TensorInfo, get_backend
from edge.kernels.cpu.backend import HostLaunch, convert, detach
from edge.kernels.registry import OpContext, lookup
from edge.plan import HOST, ExecutionPlan, PlanStep, lower, storage_dtype
from edge.quant.numerics import explicit_quantizer
from edge.runtime.memory import PlanCache, StepUse

__all__ = ["Step", "Schedule", "evaluate_node", "run_graph"]


@dataclass
class Step:
    """One step of a compiled schedule.

    ``node`` is the IR node of a kernel step, or a stand-in ``Copy``/``Cast`` node naming the
    tensor a transfer or reformat moves (so profilers and error messages treat all alike).
    """

    node: Node
    plan: PlanStep
    backend: Backend
    spec: StepSpec
    inputs: list[int | None]
    outputs: list[int]
    free: list[int]
    reads: list[int] = field(default_factory=list)
    inplace: bool = False
    exact: bool = True  # neither rounds nor quantizes: Concat elision may skip it
    launch: Launch | None = None

    @property
    def space(self) -> str:
        return self.backend.memory_space


class Schedule:
    """A graph compiled to slot indices along its execution plan, ready to run many times.

    Slots hold tensors: host constants are preloaded, graph inputs and captured outer values
    are bound per run, every step output gets its own slot, and a slot is cleared after its
    last reader so memory follows liveness. Subgraph schedules (If/Loop bodies) are compiled
    here too, so running never mutates shared state.
    """

    def __init__(self, graph: Graph, backend: str = "cpu", plan: ExecutionPlan | None = None) -> None:
        self.graph = graph
        self.backend = backend
        self.plan = plan if plan is not None else lower(graph, {}, default=backend)
        self.slot: dict[str, int] = {}
        self.values: list[Value] = []
        self.space: list[str | None] = []
        self.constants: dict[int, np.ndarray] = {}
        self.subschedules: dict[int, Schedule] = {}
        self.plans = PlanCache()  # arena plans per input-shape signature, shared by contexts
        self._stored: dict[tuple[str, str], np.ndarray] = {}  # constants converted for a device's storage
        self.captured = captured_values(graph)
        by_name = _values_by_name(graph)
        self._by_name = by_name
        for value in [*graph.inputs, *self.captured]:
            self._slot_of(value.name, HOST)
        nodes = {node.name: node for node in graph.nodes}
        self.steps: list[Step] = []
        for plan_step in self.plan.steps:
            self.steps.append(self._compile(plan_step, nodes))
        self.convert_inputs = tuple(
            (self.slot[v.name], q) for v in graph.inputs if (q := explicit_quantizer(v)) is not None
        )
        outputs = self.plan.outputs or [v.name for v in graph.outputs]
        self.output_slots = [self._slot_of(name, HOST) for name in outputs]
        self.input_slots = [self.slot[v.name] for v in graph.inputs]
        self.captured_slots = [(id(v), self.slot[v.name]) for v in self.captured]
        self._preloaded: list[np.ndarray | None] = [self.constants.get(s) for s in range(self.num_slots)]
        self._nested = any(True for step in self.steps for _ in step.node.subgraphs())
        self._backends = list({id(s.backend): s.backend for s in self.steps}.values())
        self._devices = [b for b in self._backends if b.memory_space != HOST]  # synchronized after a run
        self._prepared = False
        self._lock = threading.Lock()
        self._plan_frees()
        self._groups = self._capture_groups()
        self._code_scales = {  # slots of tensors stored as INT8 codes: what hooks see decoded
            self.slot[name]: np.float32(self._by_name[name].meta["int8_scale"])
            for name, dtype in self.plan.storage.items() if dtype == "int8" and name in self.slot and name in self._by_name
        }
        self._phases = [_phase(step, self.space) for step in self.steps]

    # -- compilation ---------------------------------------------------------------------
    def _slot_of(self, name: str, space: str | None) -> int:
        if name not in self.slot:
            self.slot[name] = len(self.values)
            value = self._by_name.get(name)
            if value is None:
                value = self._copy_value(name)
            elif name in self.plan.storage:  # kept in another dtype by its backend (fp16 storage)
                value = Value(name, np.dtype(self.plan.storage[name]), value.shape)
            self.values.append(value)
            self.space.append(None if value.is_const else space)
            if value.is_const:
                self.constants[self.slot[name]] = value.const
        return self.slot[name]

    def _copy_value(self, name: str) -> Value:
        """The stand-in Value of a plan tensor made by a transfer or reformat."""
        for tensor in self.plan.tensors:
            if tensor.name == name:
                source = self.values[self.slot[tensor.source]]
                value = Value(name, np.dtype(tensor.dtype), source.shape)
                self._by_name[name] = value
                return value
        raise KernelError(f"execution plan reads tensor '{name}' that nothing produces")

    def _compile(self, plan_step: PlanStep, nodes: Mapping[str, Node]) -> Step:
        backend = get_backend(plan_step.backend)
        space = backend.memory_space
        host = space == HOST
        ins: list[int | None] = []
        for name in plan_step.inputs:
            if name is None:
                ins.append(None)
                continue
            slot = self._slot_of(name, self.plan.spaces.get(name, space))
            ins.append(None if (slot in self.constants and not host) else slot)
        outs = [self._slot_of(name, self.plan.spaces.get(name, space)) for name in plan_step.outputs]
        if plan_step.kind == "kernel":
            node = nodes[plan_step.node]
        else:  # a stand-in node: a Cast to the reformatted dtype, or a Copy
            source = self.values[self.slot[plan_step.inputs[0]]]
            reading = Value(source.name, source.dtype, source.shape)  # unlinked: the IR's use lists stay as they are
            attrs = {"to": _onnx_type(self.values[outs[0]].dtype)} if plan_step.kind == "reformat" else {}
            node = Node(plan_step.op, [reading], [self.values[outs[0]]], attrs, name=f"{plan_step.kind}:{source.name}")
        reads = [s for s in ins if s is not None]
        for sub in node.subgraphs():
            self.subschedules[id(sub)] = Schedule(sub, plan_step.backend)
            reads += [self.slot[v.name] for v in captured_values(sub) if v.name in self.slot]
        spec = StepSpec(
            node=node,
            opset=self.graph.opset.get(standard_domain(node.domain), 1),
            precision=plan_step.precision,
            tactic=plan_step.tactic,
            layout=plan_step.layout,
            inputs=[None if n is None else self._info(n, plan_step.precision, backend) for n in plan_step.inputs],
            outputs=[self._info(n) for n in plan_step.outputs],
            device=plan_step.device,
        )
        kernel = lookup(node.op_type, node.domain, plan_step.backend, spec.opset) if plan_step.kind == "kernel" else None
        return Step(
            node, plan_step, backend, spec, ins, outs, [], reads,
            inplace=bool(kernel is not None and kernel.inplace),
            exact=not (plan_step.kind == "kernel" and backend.converts(node)),
        )

    def _info(self, name: str, precision: str = "fp32", backend: Backend | None = None) -> TensorInfo:
        """What a step's kernel is told about tensor ``name``; a constant read by a device
        backend is given in the dtype that backend stores it in (float16 weights of fp16 layers
        on half-storage backends; converted once per constant and dtype)."""
        value = self.values[self.slot[name]]
        shape = None if value.shape is None else tuple(value.shape)
        if not value.is_const:
            return TensorInfo(name, value.dtype, shape)  # type: ignore[arg-type]
        const = value.const
        if backend is not None and backend.memory_space != HOST:
            dtype = storage_dtype(value, precision, backend)
            key = (name, dtype.str)
            if key not in self._stored:
                self._stored[key] = np.ascontiguousarray(const, dtype=dtype)
            const = self._stored[key]
        return TensorInfo(name, const.dtype, shape, const)

    def _plan_frees(self) -> None:
        keep = set(self.constants) | set(self.output_slots)
        last_read: dict[int, int] = {}
        for index, step in enumerate(self.steps):
            for slot in step.reads:
                last_read[slot] = index
            for slot in step.outputs:
                last_read.setdefault(slot, index)
        for slot, index in last_read.items():
            if slot not in keep:
                self.steps[index].free.append(slot)

    def prepare(self) -> None:
        """Have every step's backend prepare its launch (once; compiles device kernels)."""
        if self._prepared:
            return
        with self._lock:
            if self._prepared:
                return
            for step in self.steps:
                if step.plan.kind == "transfer":
                    step.launch = _transfer(step.backend, self.space[step.outputs[0]] == HOST)
                else:
                    step.launch = step.backend.prepare(step.spec)
            self._prepared = True

    # -- what the memory planner sees ------------------------------------------------------
    @property
    def num_slots(self) -> int:
        return len(self.values)

    def backends(self) -> list[Backend]:
        """The backends this schedule's steps run on, in first-use order."""
        return list(self._backends)

    def arena_slots(self, space: str = HOST) -> list[int]:
        """Slots the memory planner may place in ``space``: step outputs there (not inputs,
        weights or omitted outputs)."""
        return [
            s for step in self.steps for s in step.outputs
            if self.space[s] == space and not self.values[s].meta.get("omitted")
        ]

    def uses(self, layout: Mapping[int, tuple[tuple[int, ...], np.dtype]] | None = None) -> list[StepUse]:
        """The execution order as the memory planner sees it (slots read/written per step).

        With ``layout`` (the planned slots' shapes and dtypes), a host Concat whose pieces are
        contiguous slices of its output (every dim before the axis is 1) offers them as parts.
        """
        uses = []
        for step in self.steps:
            inplace: tuple[tuple[int, int], ...] = ()
            if step.inplace and step.outputs:
                dtype = self.values[step.outputs[0]].dtype
                inplace = tuple(
                    (0, position)
                    for position, slot in enumerate(step.reads)
                    if dtype is not None and self.values[slot].dtype == dtype and self.space[slot] == step.space
                )
            concat = step.plan.kind == "kernel" and step.plan.op == "Concat" and step.space == HOST
            parts = _concat_parts(step, self.values, layout) if concat and layout else ()
            uses.append(StepUse(tuple(step.reads), tuple(step.outputs), inplace, parts))
        return uses

    # -- execution -------------------------------------------------------------------------
    def new_state(self, arena: np.ndarray | None = None) -> RunState:
        """Per-context state: every backend's scratch (workspaces, streams)."""
        return RunState({b.name: b.new_state() for b in self.backends()}, arena)

    def run(
        self,
        inputs: Sequence[np.ndarray | None],
        captured: Mapping[int, np.ndarray] | None = None,
        on_step: Callable[[Step, list], None] | None = None,
        buffers: Sequence[object | None] | None = None,
        state: RunState | None = None,
        assembled: frozenset[int] = frozenset(),
        transfers: bool = True,
    ) -> list[np.ndarray]:
        """Run on arrays given in ``graph.inputs`` order; returns ``graph.outputs`` arrays.

        Args:
            inputs: one array per graph input.
            captured: arrays for outer-scope values, keyed by ``id(value)`` (subgraphs).
            on_step: called after each step with its outputs (profiling, debugging); a device
                step's outputs are copied to the host first (the hook then costs a sync).
            buffers: per slot, the planned output buffer (an arena view) or None.
            state: the execution context's per-run state (its host arena, scratch, streams);
                a fresh one per run when None.
            assembled: indices of steps whose planned output ``buffers`` already hold their
                result (see ``edge.runtime.arena.SlotPlan``): they are not run.
            transfers: False skips, once warm, the host<->device copies and what reads their
                results (trtexec's --noDataTransfers): the device works on the last inputs
                copied in, and outputs left on the device come back as None.

        With ``state.timing``, the first device backend's events time the run's phases
        (``state.times``: "h2d", "compute", "d2h" in ms, and "enqueue", the host's launch time).
        """
        if not self._prepared:
            self.prepare()
        if state is None:
            state = self.new_state()
        arena = state.arena
        slots = list(self._preloaded)
        for slot, array in zip(self.input_slots, inputs):
            slots[slot] = array
        convert(slots, self.convert_inputs)
        if captured:
            for key, slot in self.captured_slots:
                if key in captured:
                    slots[slot] = captured[key]
        if self._nested:
            state.subgraph = self._subgraph_runner(slots)
        per_step = state.step_times is not None
        graphs = buffers is not None and on_step is None
        timer = self._devices[0] if (state.timing or per_step) and self._devices else None
        skipping = not transfers and state.warm
        skipped: set[int] = set()
        marked, enqueue = None, 0.0
        index = 0
        while index < len(self.steps):
            step = self.steps[index]
            if skipping and self._phases[index] == "h2d" and buffers is not None:
                for slot in step.outputs:  # the device buffer still holds the last inputs
                    slots[slot] = buffers[slot]
                index += 1
                continue
            if skipping and (self._phases[index] == "d2h" or any(s in skipped for s in step.inputs if s is not None)):
                skipped.update(step.outputs)  # outputs stay on the device
                index += 1
                continue
            phase = self._phases[index]
            mark = index if per_step else phase
            if timer is not None and mark != marked:
                marked = mark
                timer.mark(state, mark)
            began = time.perf_counter()
            group = self._groups.get(index) if graphs and state.graphs is not None else None
            if group is not None and self._replay(index, group, slots, buffers, state, timer if per_step else None):  # type: ignore[arg-type]
                index = group[0]
            else:
                self._launch(index, slots, buffers, state, assembled, on_step)
                index += 1
            if phase == "compute":
                enqueue += time.perf_counter() - began
            if per_step and timer is None:
                state.step_times[index - 1] = (time.perf_counter() - began) * 1e3  # type: ignore[index]
        if timer is not None:
            timer.mark(state, "end")
        for backend in self._devices:
            backend.synchronize(state)
        if timer is not None:
            state.times = self._phase_times(timer.phase_times(state), state.step_times)
            state.times["enqueue"] = enqueue * 1e3
        state.warm = True
        if skipped:
            return [None if s in skipped else slots[s] for s in self.output_slots]  # type: ignore[misc]
        if arena is None:
            return [slots[s] for s in self.output_slots]  # type: ignore[misc]
        return [detach(slots[s], arena) for s in self.output_slots]  # type: ignore[arg-type]

    def _phase_times(self, marked: dict, step_times: dict[int, float] | None) -> dict[str, float]:
        """Milliseconds per phase from the device marks: marks are phases, or (with
        ``step_times`` to fill) step indices whose times also sum into their phases."""
        if step_times is None:
            return dict(marked)
        times: dict[str, float] = {}
        for index, ms in marked.items():
            step_times[index] = ms
            times[self._phases[index]] = times.get(self._phases[index], 0.0) + ms
        return times

    def _observed(self, slot: int, array: np.ndarray | None) -> np.ndarray | None:
        """A step output as ``on_step`` hooks see it: a tensor stored as INT8 codes decoded to
        its values ``q · s`` (float32), as every other tensor shows its values."""
        scale = self._code_scales.get(slot)
        return array if scale is None or array is None else np.asarray(array).astype(np.float32) * scale

    def _launch(self, index: int, slots: list, buffers, state: RunState, assembled: frozenset[int], on_step) -> None:
        """Run step ``index`` on the values in ``slots`` and record its results there."""
        step = self.steps[index]
        out = None if buffers is None else [buffers[s] for s in step.outputs]
        if out is not None and index in assembled:
            results = out
        else:
            results = step.launch([None if s is None else slots[s] for s in step.inputs], out, state)  # type: ignore[misc]
        for slot, result in zip(step.outputs, results):
            slots[slot] = result
        if on_step is not None:
            on_step(step, [self._observed(s, r if self.space[s] == HOST or r is None else step.backend.copy_out(r, state))
                           for s, r in zip(step.outputs, results)])
        for slot in step.free:
            slots[slot] = None

    def _replay(self, start: int, group: tuple[int, Backend], slots: list, buffers: Sequence, state: RunState, timer: Backend | None) -> bool:
        """Run the capturable steps [start, end) as one device graph: captured on the first
        warm run, replayed after. False when they must run step by step (not warm yet, an
        unplanned output, or a capture the backend refused: capture is then off for the context).
        With ``timer`` (per-step timing) a second graph is captured with ``timer``'s marks
        between its steps, so each step's device time is measured without launch gaps."""
        end, backend = group
        graphs = state.graphs
        key = (start, timer is not None)
        graph = graphs.get(key)  # type: ignore[union-attr]
        steps = self.steps[start:end]
        if graph is None:
            if not state.warm or any(buffers[s] is None for step in steps for s in step.outputs):
                return False
            before = list(slots)

            def enqueue() -> None:
                for i in range(start, end):
                    if timer is not None and i > start:
                        timer.mark(state, i)
                    self._launch(i, slots, buffers, state, frozenset(), None)

            try:
                graph = backend.capture(enqueue, state)
            except KernelError:  # nothing ran: the steps run one by one from the same values
                slots[:] = before
                state.graphs = None
                return False
            graphs[key] = graph  # type: ignore[index]
        backend.replay(graph, state)
        for step in steps:
            for slot in step.outputs:
                slots[slot] = buffers[slot]
            for slot in step.free:
                slots[slot] = None
        return True

    def _capture_groups(self) -> dict[int, tuple[int, Backend]]:
        """Maximal runs of two or more consecutive steps on one capturing backend that stay in
        its memory space (kernels and reformats; transfers stage host memory per run): start
        index -> (end, backend)."""
        groups: dict[int, tuple[int, Backend]] = {}
        index = 0
        while index < len(self.steps):
            backend = self.steps[index].backend
            end = index
            while end < len(self.steps) and self.steps[end].backend is backend and backend.can_capture and self.steps[end].plan.kind != "transfer":
                end += 1
            if end - index >= 2:
                groups[index] = (end, backend)
            index = max(end, index + 1)
        return groups

    def _subgraph_runner(self, slots: list) -> Callable[[Graph, Sequence[np.ndarray | None]], list[np.ndarray]]:
        """Runs a subgraph attribute with this run's outer values visible to it."""

        def run_subgraph(graph: Graph, sub_inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
            sub = self.subschedules.get(id(graph))
            if sub is None or sub.graph is not graph:  # a graph no node holds: compile it now
                sub = Schedule(graph, self.backend)
            outer = {id(v): slots[self.slot[v.name]] for v in sub.captured if v.name in self.slot}
            return sub.run(sub_inputs, outer)

        return run_subgraph


def _onnx_type(dtype: np.dtype) -> int:
    """ONNX's TensorProto code of ``dtype`` (a Cast node's ``to`` attribute)."""
    from onnx.helper import np_dtype_to_tensor_dtype

    return int(np_dtype_to_tensor_dtype(np.dtype(dtype)))


def _phase(step: Step, space: list[str | None]) -> str:
    """What a step counts as in a timed run: "h2d"/"d2h" copies, device "compute", or "host"."""
    if step.plan.kind == "transfer":
        return "d2h" if space[step.outputs[0]] == HOST else "h2d"
    return "host" if step.backend.memory_space == HOST else "compute"


def _values_by_name(graph: Graph) -> dict[str, Value]:
    """Every value a top-level step may name: inputs, node outputs, constants, captured."""
    table = {v.name: v for v in captured_values(graph)}
    for value in graph.inputs:
        table[value.name] = value
    for node in graph.nodes:
        for value in node.inputs:
            if value is not None:
                table.setdefault(value.name, value)
        for value in node.outputs:
            table[value.name] = value
    for value in graph.outputs:  # a constant output that no node reads
        table.setdefault(value.name, value)
    return table


def _transfer(backend: Backend, to_host: bool) -> Launch:
    """The launch of a transfer: the device side's ``backend`` copies out of or into its space."""
    if to_host:

        def copy_out(args: list, out: list | None, state: RunState) -> list:
            array = backend.copy_out(args[0], state)
            if out is not None and out[0] is not None:
                np.copyto(out[0], array)
                return [out[0]]
            return [array]

        return copy_out

    def copy_in(args: list, out: list | None, state: RunState) -> list:
        return [backend.copy_in(None if out is None else out[0], args[0], state)]

    return copy_in


def _concat_parts(
    step: Step, values: Sequence[Value], layout: Mapping[int, tuple[tuple[int, ...], np.dtype]]
) -> tuple[tuple[int, int], ...]:
    """(read position, byte offset in the output) of each planned Concat input that is one
    contiguous slice of the planned output (every dim before the axis is 1, one dtype)."""
    if not step.outputs or step.outputs[0] not in layout or len(step.reads) != len(step.inputs):
        return ()
    shape, dtype = layout[step.outputs[0]]
    axis = step.node.attrs.get("axis", 0)
    axis = axis + len(shape) if axis < 0 else axis
    if not 0 <= axis < len(shape) or any(d != 1 for d in shape[:axis]):
        return ()
    parts, offset = [], 0
    for position, slot in enumerate(step.reads):
        piece = layout[slot][0] if slot in layout else values[slot].shape
        if values[slot].dtype != dtype or not all(isinstance(d, int) for d in piece):
            return ()
        if slot in layout:
            parts.append((position, offset))
        offset += int(np.prod(piece, dtype=np.int64)) * dtype.itemsize
    return tuple(parts)


def evaluate_node(node: Node, inputs: Sequence[np.ndarray | None], opset: int, backend: str = "cpu") -> list[np.ndarray]:
    """Run one node on concrete arrays in FP32 (constant folding, shape inference)."""
    kernel = lookup(node.op_type, node.domain, backend, opset)
    if kernel is None:
        raise KernelError(f"node '{node.name}': no {backend} kernel for {node.op_type}")
    spec = StepSpec(node, opset, "fp32", None, "nchw", [], [])
    launch = HostLaunch(spec, kernel.fn, backend)
    launch.convert_in = launch.convert_out = ()  # the node as written, whatever its layer precision
    state = RunState({backend: None}, subgraph=lambda graph, sub_inputs: Schedule(graph, backend).run(sub_inputs))
    return launch(list(inputs), None, state)


def run_graph(graph: Graph, feeds: Mapping[str, np.ndarray], backend: str = "cpu") -> dict[str, np.ndarray]:
    """Convenience: run a graph once on named inputs, returning named outputs."""
    missing = [v.name for v in graph.inputs if v.name not in feeds]
    if missing:
        raise KernelError(f"missing inputs {missing}")
    outputs = Schedule(graph, backend).run([feeds[v.name] for v in graph.inputs])
    return {v.name: a for v, a in zip(graph.outputs, outputs)}
