"""The partitioner's input options and its result, a JSON-able PartitionPlan stored in engine files."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OBJECTIVES", "PartitionOptions", "Estimate", "LayerPlan", "SubgraphPlan", "PartitionPlan"]

OBJECTIVES = ("latency", "offload", "energy")
"""latency: fastest single inference; offload: least GPU time within the latency budget
(frees the GPU for other work); energy: least energy within the latency budget."""


@dataclass(frozen=True)
class PartitionOptions:
    """How to place layers; the flag names follow trtexec.

    Attributes:
        dla_core: DLA core to use (``--dla N``); None places everything on the GPU.
        gpu_fallback: let DLA-ineligible layers run on the GPU (``--gpu-fallback``);
            without it the first ineligible layer is an error.
        precision: build precision ("fp32", "fp16", "int8"). DLA layers run INT8 with
            "int8" and FP16 otherwise (trtexec turns FP16 on with --useDLACore).
        power_mode: nvpmodel mode id or name; None is the profile's default mode.
        objective: one of ``OBJECTIVES``.
        latency_budget_ms: upper bound on estimated latency for "offload" and "energy"; without
            one they are bounded by the greedy placement's latency (the plan records the bound used).
        algorithm: which placement is applied to the graph: "optimized" or "greedy".
        max_loadables: DLA loadables resident per core (16, dla.md section 1).
        subgraph_memory_bytes: limit on the intermediate tensors of one DLA subgraph (1 GiB).
    """

    dla_core: int | None = None
    gpu_fallback: bool = False
    precision: str = "fp32"
    power_mode: int | str | None = None
    objective: str = "offload"
    latency_budget_ms: float | None = None
    algorithm: str = "optimized"
    max_loadables: int = 16
    subgraph_memory_bytes: int = 1 << 30

    @property
    def dla_precision(self) -> str:
        return "int8" if self.precision == "int8" else "fp16"

    @property
    def gpu_precision(self) -> str:
        """trtexec enables FP16 whenever a DLA core is used, so GPU layers may run FP16 too."""
        if self.dla_core is not None and self.precision == "fp32":
            return "fp16"
        return self.precision


@dataclass(frozen=True)
class Estimate:
    """Cost-model estimate of one placement (times in ms, energy in mJ)."""

    latency_ms: float
    gpu_ms: float
    dla_ms: float
    energy_mj: float
    dla_layers: int
    gpu_layers: int
    subgraphs: int
    transitions: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Estimate:
        return cls(**data)


@dataclass(frozen=True)
class LayerPlan:
    """Placement of one IR node; ``origin`` holds the original ONNX node names.

    ``reason`` is the sentence why the layer is not on the DLA and ``code`` its stable refusal
    code (``edge.refusal.Refusal``); plans written before codes existed load with ``code`` None.
    """

    name: str
    op: str
    origin: list[str]
    device: str
    precision: str
    reason: str | None = None
    subgraph: int | None = None
    gpu_ms: float = 0.0
    dla_ms: float | None = None
    code: str | None = None


@dataclass(frozen=True)
class SubgraphPlan:
    """One DLA loadable: its layers (IR node names, execution order) and boundary tensors."""

    index: int
    core: int
    layers: list[str]
    inputs: list[str]
    outputs: list[str]


@dataclass
class PartitionPlan:
    """Result of partitioning a graph for a profile; ``to_dict`` gives plain JSON-able data."""

    profile: str
    power_mode: int
    power_mode_name: str
    dla_core: int | None
    dla_version: int | None
    gpu_fallback: bool
    precision: str
    objective: str
    latency_budget_ms: float | None
    algorithm: str
    layers: list[LayerPlan]
    subgraphs: list[SubgraphPlan]
    estimates: dict[str, Estimate]
    notes: list[str] = field(default_factory=list)

    @property
    def applied(self) -> Estimate:
        """Estimate of the placement written to the graph."""
        return self.estimates[self.algorithm]

    def layer(self, name: str) -> LayerPlan:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["estimates"] = {k: v.to_dict() for k, v in self.estimates.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartitionPlan:
        fields = dict(data)
        fields["layers"] = [LayerPlan(**layer) for layer in data["layers"]]
        fields["subgraphs"] = [SubgraphPlan(**sub) for sub in data["subgraphs"]]
        fields["estimates"] = {k: Estimate.from_dict(v) for k, v in data["estimates"].items()}
        fields["notes"] = list(data.get("notes", []))
        return cls(**fields)
