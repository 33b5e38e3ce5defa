"""Describe a model or an engine: header, I/O and one row per layer (used by ``inspect``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edge.engine import MAGIC, Engine, load
from edge.frontend import load_onnx
from edge.ir import Graph, Value
from edge.plan import HOST, ExecutionPlan
from edge.precision import REDUCED

__all__ = ["describe", "emulation_note", "layer_rows", "segment_rows", "is_engine_file"]


# Names that say "engine": such a file is read as one, so a foreign or damaged file gets the
# engine loader's message ("not an edgetrt engine") rather than an ONNX parse error.
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def is_engine_file(path: str | os.PathLike) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(MAGIC)) == MAGIC


def _value(value: Value | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {
        "name": value.name,
        "dtype": None if value.dtype is None else value.dtype.name,
        "shape": None if value.shape is None else list(value.shape),
        "const": value.is_const,
    }


def layer_rows(graph: Graph, plan: ExecutionPlan | None = None) -> list[dict[str, Any]]:
    """One JSON-able row per node: name, op, I/O tensors, device, precision, origin, and with
    an engine's plan the backend, kernel and tactic that run it (and why not on its device)."""
    steps = {s.node: s for s in plan.steps if s.kind == "kernel"} if plan is not None else {}
    emulated = {}
    if plan is not None:
        for segment in plan.segments:
            for index in range(*segment.steps):
                emulated[plan.steps[index].node] = segment.emulated
    rows = []
    for node in graph.nodes:
        step = steps.get(node.name)
        rows.append(
            {
                "name": node.name,
                "op": node.op_type if not node.domain else f"{node.domain}::{node.op_type}",
                "inputs": [_value(v) for v in node.inputs],
                "outputs": [_value(v) for v in node.outputs if not v.meta.get("omitted")],
                "device": node.meta.get("device"),
                "precision": node.meta.get("precision"),
                "precision_note": node.meta.get("precision_note"),
                "backend": None if step is None else step.backend,
                "kernel": None if step is None else step.kernel,
                "tactic": None if step is None or step.tactic is None else step.tactic.name,
                "emulated": bool(emulated.get(node.name, False)),
                "fallback": None if step is None else step.fallback,
                "origin": node.origin,
            }
        )
    return rows


def segment_rows(plan: ExecutionPlan) -> list[dict[str, Any]]:
    """One row per plan segment: device, backend, layer and transfer counts, boundary tensors."""
    rows = []
    for segment in plan.segments:
        steps = plan.steps[segment.steps[0] : segment.steps[1]]
        rows.append(
            {
                **segment.to_dict(),
                "layers": sum(s.kind == "kernel" for s in steps),
                "transfers": sum(s.kind == "transfer" for s in steps),
                "reformats": sum(s.kind == "reformat" for s in steps),
            }
        )
    return rows


def emulation_note(engine: Engine) -> str | None:
    """One line saying which layers this machine only emulates, or None when none are.

    A layer is emulated when its device (GPU, DLA) is run by a host backend standing in for
    it, or when a host backend computes its FP16/INT8 in FP32 with rounding (the CPU has no
    FP16/INT8 math). Its outputs follow the target's numerics; its time is not the target's.
    """
    devices: dict[str, int] = {}
    precisions: dict[str, int] = {}
    for segment in engine.plan.segments:
        kernels = [s for s in engine.plan.steps[segment.steps[0] : segment.steps[1]] if s.kind == "kernel"]
        if segment.emulated and kernels:
            devices[segment.device] = devices.get(segment.device, 0) + len(kernels)
        if segment.space == HOST:
            for step in kernels:
                if step.precision in REDUCED:
                    precisions[step.precision] = precisions.get(step.precision, 0) + 1
    if not devices and not precisions:
        return None
    parts = []
    if devices:
        counts = ", ".join(f"{n} {device.upper()}" for device, n in sorted(devices.items()))
        parts.append(f"{counts} layer(s) run on the CPU backend standing in for the device")
    if precisions:
        counts = ", ".join(f"{n} {precision.upper()}" for precision, n in sorted(precisions.items()))
        parts.append(f"{counts} layer(s) computed in FP32 and rounded to their precision")
    return "emulated here: " + "; ".join(parts) + ". Outputs follow the target's numerics; times are this CPU's, not the target's"


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """Header (engines only), inputs, outputs and layer rows of a model or engine file."""
    plan = None
    if is_engine_file(path) or Path(path).suffix.lower() in ENGINE_SUFFIXES:
        engine: Engine = load(path, check_machine=False)
        graph, header, build, plan = engine.graph, engine.header, engine.build, engine.plan
        kind, emulation = "engine", emulation_note(engine)
    else:
        graph, header, build, kind, emulation = load_onnx(path), {}, {}, "onnx", None
    return {
        "file": str(Path(path)),
        "kind": kind,
        "header": header,
        "build": {k: v for k, v in build.items() if k in ("config", "timings_s", "optimizer", "memory", "partition_summary", "tactics", "targets", "optimization_profiles", "best")},
        "inputs": [_value(v) for v in graph.inputs],
        "outputs": [_value(v) for v in graph.outputs],
        "op_counts": graph.op_types(),
        "layers": layer_rows(graph, plan),
        "segments": [] if plan is None else segment_rows(plan),
        "emulation": emulation,
    }
