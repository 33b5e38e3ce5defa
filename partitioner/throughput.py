"""Throughput of a deployment: batched runs on one engine, and copies on GPU + DLA0 + DLA1 at once.

A DLA copy of the network runs its DLA subgraphs on its core and its fallback layers and
reformats on the GPU; a GPU copy runs everything on the GPU. Each copy keeps one batch in
flight (one stream, as trtexec runs an engine), so a DLA copy completes one batch per its
latency. The GPU's own copy gets the GPU time the DLA copies' fallback work leaves. Every
engine runs ``concurrent_factor`` slower while others share the DRAM.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.partitioner.cost import CostModel
from edge.partitioner.plan import Estimate

__all__ = ["Deployment", "deployments"]


@dataclass(frozen=True)
class Deployment:
    """One way to run the model: which engines, the latency of one batch, images per second."""

    name: str
    engines: int
    latency_ms: float
    images_per_s: float

    def to_dict(self) -> dict[str, object]:
        return {"deployment": self.name, "engines": self.engines, "latency_ms": round(self.latency_ms, 4),
                "images_per_s": round(self.images_per_s, 1)}


def _rate(gpu_copy: Estimate | None, dla_copy: Estimate | None, dla_cores: int, factor: float) -> tuple[float, float]:
    """(batches per ms, latency of one batch in ms) of the GPU copy plus ``dla_cores`` DLA copies."""
    rate, latency = 0.0, 0.0
    gpu_busy = 0.0
    if dla_copy is not None and dla_cores:
        per_copy = dla_copy.latency_ms * factor
        rate += dla_cores / per_copy
        gpu_busy = dla_cores / per_copy * dla_copy.gpu_ms * factor
        latency = per_copy
    if gpu_copy is not None:
        per_batch = gpu_copy.latency_ms * factor
        rate += max(0.0, 1.0 - gpu_busy) / per_batch
        latency = max(latency, per_batch)
    return rate, latency


def deployments(gpu_only: Estimate | None, dla: Estimate | None, dla_cores: int, batch: int, cost: CostModel) -> list[Deployment]:
    """GPU alone, one DLA core (+ fallback), every DLA core, and GPU + every DLA core."""
    options: list[tuple[str, Estimate | None, int]] = [("GPU", gpu_only, 0)]
    if dla is not None and dla.dla_layers:
        options.append(("DLA0" + (" + GPU fallback" if dla.gpu_layers else ""), None, 1))
        if dla_cores > 1:
            options.append((f"{dla_cores}xDLA", None, dla_cores))
        if gpu_only is not None:
            options.append((f"GPU + {dla_cores}xDLA" if dla_cores > 1 else "GPU + DLA0", gpu_only, dla_cores))
    found = []
    for name, gpu_copy, cores in options:
        if gpu_copy is None and cores == 0:
            continue
        engines = cores + (1 if gpu_copy is not None else 0)
        rate, latency = _rate(gpu_copy, dla, cores, cost.concurrent_factor(engines))
        found.append(Deployment(name, engines, latency, rate * batch * 1e3))
    return found
