"""Lowering: the partitioned IR -> an execution plan (backends, kernels, transfers, segments).

Every top-level node becomes a kernel step on the backend its partition device maps to; a
backend that refuses the node hands it to the host fallback backend with the refusal kept in
the step. A tensor read in another memory space than the one it was written in gets a
``transfer`` step (routed through the host between two device spaces), and a tensor whose
storage dtype differs from what its reader computes in gets a ``reformat`` step, so the
runtime only ever executes steps. Ops no backend can run are reported all at once.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from edge.errors import UnsupportedOperatorError
from edge.ir import Graph, Node, Value, standard_domain
from edge.kernels.backend import Backend, get_backend
from edge.kernels.registry import Kernel, passed_over, resolve
from edge.plan.model import ExecutionPlan, PlanStep, PlanTensor, Segment
from edge.precision import REDUCED

__all__ = ["HOST", "FALLBACK_BACKEND", "lower", "storage_dtype"]

HOST = "host"
FALLBACK_BACKEND = "cpu"


def storage_dtype(value: Value, precision: str, backend: Backend) -> np.dtype:
    """The dtype ``backend`` keeps ``value`` in when a ``precision`` layer writes (or reads) it:
    float16 for float32 tensors of reduced-precision layers on backends with half storage."""
    dtype = np.dtype(value.dtype) if value.dtype is not None else np.dtype(np.float32)
    if backend.half_storage and precision in REDUCED and dtype == np.float32:
        return np.dtype(np.float16)
    return dtype


class _Lowering:
    def __init__(self, graph: Graph, targets: Mapping[str, str], default: str) -> None:
        self.graph = graph
        self.targets = targets
        self.default = default
        self.steps: list[PlanStep] = []
        self.tensors: list[PlanTensor] = []
        self.spaces: dict[str, str] = {}
        self.dtypes: dict[str, np.dtype] = {}
        self.copies: dict[tuple[str, str, str], str] = {}  # (tensor, space, dtype) -> copy's name
        self.missing: dict[str, list[str]] = {}
        for value in graph.inputs:
            self.spaces[value.name] = HOST
            self.dtypes[value.name] = np.dtype(value.dtype) if value.dtype is not None else np.dtype(np.float32)

    def kernel_for(self, node: Node) -> tuple[str, Kernel | None, dict[str, str] | None]:
        """(device, kernel or None, fallback record) for ``node`` on its device's backend; the
        record says why the node left that backend, or why that backend's preferred kernel
        passed it to another of its kernels (an INT8 layer without an integer form)."""
        device = str(node.meta.get("device", "cpu"))
        precision = str(node.meta.get("precision", "fp32"))
        opset = self.graph.opset.get(standard_domain(node.domain), 1)
        backend = self.targets.get(device, self.default)
        found = resolve(node, opset, backend, precision)
        if isinstance(found, Kernel):
            declined = passed_over(node, opset, backend, precision, found)
            return device, found, None if declined is None else {"backend": backend, "code": declined.code, "detail": declined.detail}
        fallback = {"backend": backend, "code": found.code, "detail": found.detail}
        if get_backend(backend).memory_space != HOST:
            host = resolve(node, opset, FALLBACK_BACKEND, precision)
            if isinstance(host, Kernel):
                return "cpu", host, fallback
        return device, None, fallback

    def read(self, name: str, space: str, dtype: np.dtype, device: str, backend: Backend) -> str:
        """The plan tensor holding ``name`` in ``space`` as ``dtype``, adding copies as needed."""
        if name not in self.spaces:  # a constant: every backend takes weights as they are
            return name
        key = (name, space, dtype.str)
        if key in self.copies:
            return self.copies[key]
        current = name
        if self.spaces[name] != space:
            if self.spaces[name] != HOST and space != HOST:
                current = self.read(name, HOST, self.dtypes[name], "cpu", get_backend(FALLBACK_BACKEND))
            if self.spaces[current] != HOST:  # device -> host: the copy is the writer's backend's
                source = self.step_of(current)
                current = self.copy(current, "transfer", HOST, self.dtypes[current], source.device, source.backend)
            if space != HOST:
                current = self.copy(current, "transfer", space, self.dtypes[current], device, backend.name)
        if self.dtypes[current] != dtype:
            current = self.copy(current, "reformat", space, dtype, device if space != HOST else "cpu", backend.name)
        self.copies[key] = current
        return current

    def step_of(self, tensor: str) -> PlanStep:
        for step in reversed(self.steps):
            if tensor in step.outputs:
                return step
        raise KeyError(tensor)

    def copy(self, source: str, kind: str, space: str, dtype: np.dtype, device: str, backend: str) -> str:
        suffix = space if kind == "transfer" else dtype.name
        name = f"{source}@{suffix}"
        self.tensors.append(PlanTensor(name, source, space, dtype.name))
        self.spaces[name] = space
        self.dtypes[name] = dtype
        op = "Copy" if kind == "transfer" else "Cast"
        self.steps.append(PlanStep(kind, op, device, backend, [source], [name]))
        return name

    def add_node(self, node: Node) -> None:
        device, kernel, fallback = self.kernel_for(node)
        if kernel is None:
            label = node.op_type if not node.domain else f"{node.domain}::{node.op_type}"
            self.missing.setdefault(label, []).append(node.name)
            return
        backend = get_backend(kernel.backend)
        precision = str(node.meta.get("precision", "fp32"))
        space = backend.memory_space
        inputs = [
            None if v is None else self.read(v.name, space, storage_dtype(v, precision, backend), device, backend)
            for v in node.inputs
        ]
        for value in node.outputs:
            self.spaces[value.name] = space
            self.dtypes[value.name] = storage_dtype(value, precision, backend)
        op = node.op_type if not node.domain else f"{node.domain}::{node.op_type}"
        self.steps.append(
            PlanStep(
                "kernel",
                op,
                device,
                kernel.backend,
                inputs,
                [v.name for v in node.outputs],
                node=node.name,
                kernel=kernel.name,
                precision=precision,
                fallback=fallback,
            )
        )

    def finish(self) -> list[str]:
        """Bring every graph output to the host in its IR dtype; returns their plan names."""
        host = get_backend(FALLBACK_BACKEND)
        outputs = []
        for value in self.graph.outputs:
            if value.name not in self.spaces:  # a constant or an input passed through
                outputs.append(value.name)
                continue
            dtype = np.dtype(value.dtype) if value.dtype is not None else self.dtypes[value.name]
            if self.spaces[value.name] != HOST and self.dtypes[value.name] != dtype:
                writer = self.step_of(value.name)
                self.read(value.name, self.spaces[value.name], dtype, writer.device, get_backend(writer.backend))
            outputs.append(self.read(value.name, HOST, dtype, "cpu", host))
        return outputs


def lower(graph: Graph, targets: Mapping[str, str], default: str = FALLBACK_BACKEND) -> ExecutionPlan:
    """Plan ``graph`` (already partitioned: ``node.meta["device"]``) onto backends.

    Args:
        targets: backend name per partition device, e.g. ``{"gpu": "cuda", "dla": "cpu"}``.
        default: the backend of devices ``targets`` does not name.

    Raises:
        UnsupportedOperatorError: nodes that no backend can run, every op listed at once.
    """
    lowering = _Lowering(graph, targets, default)
    for node in graph.nodes:
        lowering.add_node(node)
    if lowering.missing:
        raise UnsupportedOperatorError(lowering.missing)
    outputs = lowering.finish()
    steps = lowering.steps
    spaces = {name: space for name, space in lowering.spaces.items()}
    copies = {t.name for t in lowering.tensors}
    storage = {
        value.name: lowering.dtypes[value.name].name
        for node in graph.nodes for value in node.outputs
        if value.dtype is not None and value.name not in copies and lowering.dtypes.get(value.name, value.dtype) != np.dtype(value.dtype)
    }
    return ExecutionPlan(steps, _segments(steps, outputs, set(spaces)), lowering.tensors, spaces, outputs=outputs, storage=storage)


def _segments(steps: list[PlanStep], graph_outputs: list[str], activations: set[str]) -> list[Segment]:
    """Group consecutive steps of one (device, backend); boundary tensors (``activations``
    read but not written inside, and those written inside and read after) per segment."""
    segments: list[Segment] = []
    start = 0
    for index in range(1, len(steps) + 1):
        if index < len(steps) and (steps[index].device, steps[index].backend) == (steps[start].device, steps[start].backend):
            continue
        first = steps[start]
        backend = get_backend(first.backend)
        emulated = first.device != "cpu" and backend.memory_space == HOST
        segments.append(Segment(len(segments), first.device, first.backend, backend.memory_space, emulated, (start, index)))
        start = index
    writer = {name: seg.index for seg in segments for step in steps[seg.steps[0] : seg.steps[1]] for name in step.outputs}
    for seg in segments:
        inside = steps[seg.steps[0] : seg.steps[1]]
        produced = {name for step in inside for name in step.outputs}
        for step in inside:
            for name in step.inputs:
                if name in activations and name not in produced and name not in seg.inputs:
                    seg.inputs.append(name)
    for seg in segments:
        for name in seg.inputs:
            if name not in writer:  # a graph input
                continue
            source = segments[writer[name]]
            if name not in source.outputs:
                source.outputs.append(name)
    for name in graph_outputs:
        if name in writer and name not in segments[writer[name]].outputs:
            segments[writer[name]].outputs.append(name)
    return segments
