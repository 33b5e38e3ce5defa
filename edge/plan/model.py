"""The execution plan: what the builder decided, in the order the runtime executes it.

A plan is device-neutral data stored in the engine file. Each step runs one IR node on one
backend with a chosen kernel and tactic at one precision, or moves a tensor between memory
spaces (``transfer``) or storage types (``reformat``). Consecutive steps on one device and
backend form a segment, as TensorRT's DLA loadables and GPU regions do. Tensors are named by
plan tensor names: an IR value's name, or ``<name>@<space>`` / ``<name>@<dtype>`` for the
copies that transfers and reformats create.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from edge.kernels.tactics import Tactic

__all__ = ["STEP_KINDS", "PlanTensor", "PlanStep", "Segment", "ExecutionPlan"]

STEP_KINDS = ("kernel", "transfer", "reformat")


@dataclass(frozen=True)
class PlanTensor:
    """A tensor the plan creates beside the IR's values (a copy in another space or dtype)."""

    name: str
    source: str
    space: str
    dtype: str


@dataclass
class PlanStep:
    """One step of the plan.

    Attributes:
        kind: "kernel" (runs ``node``), "transfer" (copies ``inputs[0]`` into another memory
            space) or "reformat" (converts ``inputs[0]`` to another storage dtype).
        node: the IR node's name (kernel steps), else None.
        op: the op type (``domain::op`` for custom domains); "Copy" / "Cast" for the others.
        device: the plan device: "cpu", "gpu" or "dla".
        backend: the backend that runs it ("cpu", "reference", "cuda", ...).
        kernel: the registered implementation's name.
        tactic: the variant chosen at build time (None: the kernel's heuristic).
        precision: "fp32", "fp16" or "int8".
        layout: the activation layout the kernel reads and writes ("nchw" today).
        inputs / outputs: plan tensor names (None for an omitted optional input).
        fallback: why the step is not on its partition device's preferred backend, or not on
            that backend's preferred kernel for its precision, if so ({backend, code, detail}).
    """

    kind: str
    op: str
    device: str
    backend: str
    inputs: list[str | None]
    outputs: list[str]
    node: str | None = None
    kernel: str | None = None
    tactic: Tactic | None = None
    precision: str = "fp32"
    layout: str = "nchw"
    fallback: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["tactic"] = None if self.tactic is None else self.tactic.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanStep:
        fields = dict(data)
        fields["tactic"] = Tactic.from_dict(data.get("tactic"))
        return cls(**fields)


@dataclass
class Segment:
    """A maximal run of steps on one device and backend.

    Attributes:
        device: the plan device the partitioner chose ("cpu", "gpu", "dla").
        backend: who runs it; ``emulated`` when that backend only stands in for the device.
        space: the backend's memory space ("host", "device", ...).
        steps: [first, end) indices into ``ExecutionPlan.steps``.
        inputs / outputs: plan tensors crossing the segment's boundary.
    """

    index: int
    device: str
    backend: str
    space: str
    emulated: bool
    steps: tuple[int, int]
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["steps"] = list(self.steps)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Segment:
        fields = dict(data)
        fields["steps"] = tuple(data["steps"])
        return cls(**fields)


@dataclass
class ExecutionPlan:
    """Ordered steps, their segments, and the tensors transfers and reformats create.

    Attributes:
        spaces: memory space of every plan tensor that is not a constant ("host" for graph
            inputs and outputs, which users hand over and get back as numpy arrays).
        outputs: the plan tensor holding each graph output on the host, in graph order.
        storage: the dtype a backend keeps an IR tensor in where it is not the IR's (float16
            outputs of reduced-precision layers on half-storage backends).

    The memory plan per space lives beside it in the engine's build record
    (``build["memory"]``, see :func:`edge.runtime.arena.plan_engine_memory`).
    """

    steps: list[PlanStep]
    segments: list[Segment]
    tensors: list[PlanTensor]
    spaces: dict[str, str]
    outputs: list[str] = field(default_factory=list)
    storage: dict[str, str] = field(default_factory=dict)

    def backends(self) -> list[str]:
        """Backends the plan uses, in first-use order."""
        return list(dict.fromkeys(step.backend for step in self.steps))

    def kernel_step(self, node_name: str) -> PlanStep | None:
        for step in self.steps:
            if step.kind == "kernel" and step.node == node_name:
                return step
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [s.to_dict() for s in self.steps],
            "segments": [s.to_dict() for s in self.segments],
            "tensors": [dataclasses.asdict(t) for t in self.tensors],
            "spaces": dict(self.spaces),
            "outputs": list(self.outputs),
            "storage": dict(self.storage),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExecutionPlan:
        return cls(
            steps=[PlanStep.from_dict(s) for s in data["steps"]],
            segments=[Segment.from_dict(s) for s in data["segments"]],
            tensors=[PlanTensor(**t) for t in data["tensors"]],
            spaces=dict(data["spaces"]),
            outputs=list(data.get("outputs", [])),
            storage=dict(data.get("storage", {})),
        )
