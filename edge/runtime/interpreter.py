"""Executes IR graphs with registered kernels: the core every CPU-side run goes through.

A graph is compiled once into a flat ``Schedule`` (kernel, input slots, output slots, and
the slots to free after each step); running it is a loop over that list. The same code
runs subgraphs (If/Loop bodies), constant folding and shape inference fallbacks.

A run may be given one preallocated output buffer per slot (views into an execution
context's arena, see :mod:`edge.runtime.memory`): kernels may write into them through
``ctx.out``, otherwise the result is copied in. A Schedule holds no per-run state besides
each step's ``cache`` of pure facts derived from attributes and shapes, so several threads
may run one Schedule at once; scratch memory comes from the caller's ``Workspace``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.errors import EdgeError, KernelError
from edge.ir import EDGETRT_DOMAIN, Graph, Node, Value, captured_values, standard_domain
from edge.kernels.registry import Kernel, OpContext, Workspace, lookup, same_bytes
from edge.precision import REDUCED, round_to_fp16
from edge.quant.numerics import explicit_quantizer, input_quantizers
from edge.runtime.memory import INPLACE_OPS, PlanCache, StepUse

__all__ = ["Step", "Schedule", "evaluate_node", "run_graph"]

Conversions = tuple[tuple[int, Callable[[np.ndarray], np.ndarray]], ...]
"""(position, fn) pairs: how a reduced-precision layer's arrays are emulated (FP16 rounding,
INT8 fake quantization), applied in order to the array at each position."""


@dataclass
class Step:
    """One node of a compiled schedule."""

    node: Node
    kernel: Kernel
    opset: int
    inputs: list[int | None]
    outputs: list[int]
    free: list[int]
    reads: list[int] = field(default_factory=list)
    cache: dict = field(default_factory=dict)
    nested: bool = False
    convert_in: Conversions = ()  # by input index, before the kernel
    convert_out: Conversions = ()  # by output index, after the kernel


class Schedule:
    """A graph compiled to slot indices, ready to run many times.

    Slots hold arrays: constants are preloaded, graph inputs and captured outer values are
    bound per run, every node output gets its own slot, and a slot is cleared after its
    last reader so memory follows liveness. Subgraph schedules (If/Loop bodies) are
    compiled here too, so running never mutates shared state.
    """

    def __init__(self, graph: Graph, backend: str = "cpu") -> None:
        self.graph = graph
        self.backend = backend
        self.slot: dict[int, int] = {}
        self.values: list[Value] = []
        self.constants: dict[int, np.ndarray] = {}
        self.subschedules: dict[int, Schedule] = {}
        self.plans = PlanCache()  # arena plans per input-shape signature, shared by contexts
        self.captured = captured_values(graph)
        for value in [*graph.inputs, *self.captured]:
            self._slot_of(value)
        self.steps: list[Step] = []
        for node in graph.nodes:
            kernel = lookup(node.op_type, node.domain, backend, graph.opset.get(standard_domain(node.domain)))
            if kernel is None:
                raise KernelError(f"node '{node.name}': no {backend} kernel for {node.op_type}")
            ins = [None if v is None else self._slot_of(v) for v in node.inputs]
            outs = [self._slot_of(v) for v in node.outputs]
            opset = graph.opset.get(standard_domain(node.domain), 1)
            convert_in, convert_out = _conversions(node)
            reads = [s for s in ins if s is not None]
            nested = False
            for sub in node.subgraphs():
                nested = True
                self.subschedules[id(sub)] = Schedule(sub, backend)
                reads += [self.slot[id(v)] for v in captured_values(sub) if id(v) in self.slot]
            self.steps.append(
                Step(node, kernel, opset, ins, outs, [], reads, nested=nested, convert_in=convert_in, convert_out=convert_out)
            )
        self.convert_inputs: Conversions = tuple(
            (self.slot[id(v)], q) for v in graph.inputs if (q := explicit_quantizer(v)) is not None
        )
        self.output_slots = [self._slot_of(v) for v in graph.outputs]
        self.input_slots = [self.slot[id(v)] for v in graph.inputs]
        self.captured_slots = [(id(v), self.slot[id(v)]) for v in self.captured]
        self._preloaded: list[np.ndarray | None] = [self.constants.get(s) for s in range(self.num_slots)]
        self._plan_frees()

    def _slot_of(self, value: Value) -> int:
        key = id(value)
        if key not in self.slot:
            self.slot[key] = len(self.slot)
            self.values.append(value)
            if value.is_const:
                self.constants[self.slot[key]] = value.const
        return self.slot[key]

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

    @property
    def num_slots(self) -> int:
        return len(self.slot)

    def arena_slots(self) -> list[int]:
        """Slots the memory planner may place: node outputs (not inputs, weights or omitted)."""
        return [s for step in self.steps for s in step.outputs if not self.values[s].meta.get("omitted")]

    def uses(self, layout: Mapping[int, tuple[tuple[int, ...], np.dtype]] | None = None) -> list[StepUse]:
        """The execution order as the memory planner sees it (slots read/written per step).

        With ``layout`` (the planned slots' shapes and dtypes), a Concat whose pieces are
        contiguous slices of its output (every dim before the axis is 1) offers them as parts.
        """
        uses = []
        for step in self.steps:
            inplace: tuple[tuple[int, int], ...] = ()
            key = step.node.op_type if standard_domain(step.node.domain) in ("", EDGETRT_DOMAIN) else None
            if key in INPLACE_OPS and step.outputs:
                dtype = self.values[step.outputs[0]].dtype
                inplace = tuple(
                    (0, position)
                    for position, slot in enumerate(step.reads)
                    if dtype is not None and self.values[slot].dtype == dtype
                )
            parts = _concat_parts(step, self.values, layout) if key == "Concat" and layout else ()
            uses.append(StepUse(tuple(step.reads), tuple(step.outputs), inplace, parts))
        return uses

    def run(
        self,
        inputs: Sequence[np.ndarray | None],
        captured: Mapping[int, np.ndarray] | None = None,
        on_step: Callable[[Step, list[np.ndarray]], None] | None = None,
        buffers: Sequence[np.ndarray | None] | None = None,
        arena: np.ndarray | None = None,
        workspace: Workspace | None = None,
        assembled: frozenset[int] = frozenset(),
    ) -> list[np.ndarray]:
        """Run on arrays given in ``graph.inputs`` order; returns ``graph.outputs`` arrays.

        Args:
            inputs: one array per graph input.
            captured: arrays for outer-scope values, keyed by ``id(value)`` (subgraphs).
            on_step: called after each step with its outputs (profiling, debugging).
            buffers: per slot, the planned output buffer (an arena view) or None.
            arena: the memory ``buffers`` view; results that would alias it without a
                planned buffer are copied out, and so are the returned outputs.
            workspace: kernels' scratch buffers, reused across runs by one caller at a
                time (an execution context); a fresh one per run when None.
            assembled: indices of steps whose planned output ``buffers`` already hold their
                result (see ``edge.runtime.arena.SlotPlan``): they are not run.
        """
        if workspace is None:
            workspace = Workspace()
        slots = list(self._preloaded)
        for slot, array in zip(self.input_slots, inputs):
            slots[slot] = array
        _convert(slots, self.convert_inputs)
        if captured:
            for key, slot in self.captured_slots:
                if key in captured:
                    slots[slot] = captured[key]
        for index, step in enumerate(self.steps):
            out = None if buffers is None else [buffers[s] for s in step.outputs]
            if out is not None and index in assembled:
                results = out
            else:
                args = [None if s is None else slots[s] for s in step.inputs]
                if step.convert_in:
                    _convert(args, step.convert_in)
                results = _call(step, args, self, slots, out, workspace)
                if step.convert_out:
                    _convert(results, step.convert_out)
                if out is not None:
                    results = [_place(r, view, arena) for r, view in zip(results, out)]
            for slot, result in zip(step.outputs, results):
                slots[slot] = result
            if on_step is not None:
                on_step(step, results)
            for slot in step.free:
                slots[slot] = None
        if arena is None:
            return [slots[s] for s in self.output_slots]  # type: ignore[misc]
        return [_detach(slots[s], arena) for s in self.output_slots]  # type: ignore[arg-type]


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


def _conversions(node: Node) -> tuple[Conversions, Conversions]:
    """How a layer's precision is emulated: an INT8 layer with scales fake-quantizes its
    activation inputs; another FP16/INT8 layer rounds every input and output to FP16; an
    output that is an explicit Q/DQ tensor is quantized where produced, at any precision."""
    convert_in: Conversions = input_quantizers(node)
    convert_out: Conversions = ()
    if not convert_in and node.meta.get("precision") in REDUCED:
        convert_in = tuple((i, round_to_fp16) for i, v in enumerate(node.inputs) if v is not None)
        convert_out = tuple((i, round_to_fp16) for i in range(len(node.outputs)))
    explicit = tuple((i, q) for i, v in enumerate(node.outputs) if (q := explicit_quantizer(v)) is not None)
    return convert_in, convert_out + explicit


def _convert(arrays: list, conversions: Conversions) -> None:
    """Apply ``conversions`` to ``arrays`` in place, skipping positions that hold no array."""
    for index, convert in conversions:
        if index < len(arrays) and arrays[index] is not None:
            arrays[index] = convert(arrays[index])


def _place(result: np.ndarray, view: np.ndarray | None, arena: np.ndarray | None) -> np.ndarray:
    """Put a kernel's result into its planned buffer (or keep it off the arena)."""
    if result is view:
        return result
    if view is not None and result.shape == view.shape and result.dtype == view.dtype:
        if not same_bytes(result, view):  # an aliasing op (Reshape) planned over its input
            np.copyto(view, result)
        return view
    # no buffer, or a data-dependent shape the plan did not foresee: the result must not
    # alias arena bytes that a later step will overwrite
    return _detach(result, arena)


def _detach(array: np.ndarray, arena: np.ndarray | None) -> np.ndarray:
    return array.copy() if arena is not None and np.may_share_memory(array, arena) else array


def _call(
    step: Step,
    args: list[np.ndarray | None],
    schedule: Schedule,
    slots: list,
    out: list | None = None,
    workspace: Workspace | None = None,
) -> list[np.ndarray]:
    """Invoke a step's kernel, normalising its result to a list and naming the node on failure."""
    run_subgraph = None
    if step.nested:

        def run_subgraph(graph: Graph, sub_inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
            sub = schedule.subschedules.get(id(graph))
            if sub is None or sub.graph is not graph:  # a graph the node does not hold: compile it now
                sub = Schedule(graph, schedule.backend)
            outer = {id(v): slots[schedule.slot[id(v)]] for v in sub.captured if id(v) in schedule.slot}
            return sub.run(sub_inputs, outer)

    ctx = OpContext(step.node, step.opset, run_subgraph, out, step.cache, workspace)
    try:
        result = step.kernel.fn(ctx, *args)
    except EdgeError:
        raise
    except Exception as exc:
        shapes = ", ".join("None" if a is None else f"{a.dtype}{list(np.shape(a))}" for a in args)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KernelError(f"node '{step.node.name}' ({step.node.op_type}) failed on inputs ({shapes}): {message}") from exc
    if type(result) is np.ndarray:
        return [result]
    results = list(result) if isinstance(result, (tuple, list)) else [result]
    return [np.asarray(r) if not isinstance(r, np.ndarray) else r for r in results]


def evaluate_node(node: Node, inputs: Sequence[np.ndarray | None], opset: int, backend: str = "cpu") -> list[np.ndarray]:
    """Run one node on concrete arrays (constant folding, shape inference)."""
    kernel = lookup(node.op_type, node.domain, backend, opset)
    if kernel is None:
        raise KernelError(f"node '{node.name}': no {backend} kernel for {node.op_type}")
    step = Step(node, kernel, opset, [], [], [], nested=any(True for _ in node.subgraphs()))
    empty = Schedule(Graph(), backend)
    empty.subschedules = {id(sub): Schedule(sub, backend) for sub in node.subgraphs()}
    return _call(step, list(inputs), empty, [])


def run_graph(graph: Graph, feeds: Mapping[str, np.ndarray], backend: str = "cpu") -> dict[str, np.ndarray]:
    """Convenience: run a graph once on named inputs, returning named outputs."""
    missing = [v.name for v in graph.inputs if v.name not in feeds]
    if missing:
        raise KernelError(f"missing inputs {missing}")
    outputs = Schedule(graph, backend).run([feeds[v.name] for v in graph.inputs])
    return {v.name: a for v, a in zip(graph.outputs, outputs)}
