"""Checks of a decoded engine against its own graph, beyond what the JSON Schema can say.

A document that passed :mod:`edge.engine.schema` can still lie: a node may write a graph
input, a window attribute may be negative, a kernel may not exist for the recorded opset,
or the recorded memory plan may place a tensor past the arena or over another tensor that is
alive at the same time (which would silently corrupt results). Each check raises
:class:`EngineFormatError` with a one-line reason. ``SECTION_CHECKS`` lists them; a new
document section (the execution plan) adds its function there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from edge.engine.memory_check import check_memory_record
from edge.errors import EngineFormatError, GraphError
from edge.frontend.attributes import window_attribute_problem
from edge.frontend.budget import format_bytes, oversized_tensor, physical_memory
from edge.ir import EDGETRT_DOMAIN, Graph, standard_domain, verify
from edge.kernels.backend import get_backend
from edge.kernels.registry import lookup
from edge.plan import ExecutionPlan
from edge.runtime.interpreter import Schedule

__all__ = ["SECTION_CHECKS", "check_engine_graph"]

_MAX_OPSET = {"": onnx.defs.onnx_opset_version()}


def _check_structure(graph: Graph, document: dict[str, Any]) -> None:
    for sub in [graph, *(s for node in graph.walk() for s in node.subgraphs())]:
        bound = {id(v) for v in sub.inputs}
        for node in sub.nodes:
            for value in node.outputs:
                if id(value) in bound or value.is_const:
                    raise EngineFormatError(
                        f"engine is corrupted: node '{node.name}' writes '{value.name}', a graph input or constant"
                    )
    try:
        verify(graph)
    except GraphError as exc:
        raise EngineFormatError(f"engine is corrupted: {exc}") from None


def _check_kernels(graph: Graph, document: dict[str, Any]) -> None:
    for domain, version in graph.opset.items():
        newest = _MAX_OPSET.get(standard_domain(domain))
        if newest is not None and version > newest:
            raise EngineFormatError(f"engine is corrupted: opset {version} of domain '{domain}' does not exist (newest {newest})")
    plan_backends = {step.get("backend") for step in (document.get("plan") or {}).get("steps", [])}
    backends = ["cpu", *sorted(b for b in plan_backends if isinstance(b, str) and b != "cpu")]
    for node in graph.walk():
        opset = graph.opset.get(standard_domain(node.domain))
        if all(lookup(node.op_type, node.domain, backend, opset) is None for backend in backends):
            raise EngineFormatError(
                f"engine is corrupted: node '{node.name}' is {node.op_type} (domain '{node.domain}'), "
                f"which has no kernel at opset {opset}"
            )


def _check_attributes(graph: Graph, document: dict[str, Any]) -> None:
    problem = window_attribute_problem(graph)
    if problem is not None:
        raise EngineFormatError(f"engine is corrupted: {problem}")


_BASE_OP = {"FusedConv": "Conv", "FusedConvTranspose": "ConvTranspose", "FusedGemm": "Gemm", "FusedBatchNormalization": "BatchNormalization"}
_Attr = onnx.defs.OpSchema.AttrType
_NUMBER = (int, float)
_KINDS: dict[Any, tuple[type, bool]] = {  # ONNX attribute type -> (python type, is a list)
    _Attr.FLOAT: (_NUMBER, False), _Attr.INT: (int, False), _Attr.STRING: (str, False),
    _Attr.TENSOR: (np.ndarray, False), _Attr.SPARSE_TENSOR: (np.ndarray, False), _Attr.GRAPH: (Graph, False),
    _Attr.TYPE_PROTO: (int, False), _Attr.FLOATS: (_NUMBER, True), _Attr.INTS: (int, True),
    _Attr.STRINGS: (str, True), _Attr.TENSORS: (np.ndarray, True), _Attr.GRAPHS: (Graph, True),
}


def _fits(value: Any, kind: type | tuple[type, ...], many: bool) -> bool:
    items = value if many else [value]
    if many and not isinstance(value, list):
        return False
    return all(isinstance(v, kind) and not isinstance(v, bool) for v in items)


def _check_attribute_types(graph: Graph, document: dict[str, Any]) -> None:
    """Every attribute a standard op's ONNX schema declares has that schema's type."""
    for node in graph.walk():
        domain = standard_domain(node.domain)
        op = _BASE_OP.get(node.op_type) if domain == EDGETRT_DOMAIN else node.op_type
        if op is None or domain not in ("", EDGETRT_DOMAIN) or not onnx.defs.has(op):
            continue  # edgetrt's own ops (Attention, SiLU, ...) have no ONNX schema to hold them to
        version = graph.opset.get("", onnx.defs.onnx_opset_version())
        # an op the optimizer introduced (Gelu, LayerNormalization) may be newer than the model's opset
        schema = onnx.defs.get_schema(op, version) if onnx.defs.has(op, version) else onnx.defs.get_schema(op)
        declared = schema.attributes
        for name, value in node.attrs.items():
            if name in declared and declared[name].type in _KINDS and not _fits(value, *_KINDS[declared[name].type]):
                raise EngineFormatError(
                    f"engine is corrupted: node '{node.name}' ({node.op_type}) attribute {name}={str(value)[:80]!r} "
                    f"is not of ONNX type {declared[name].type.name}"
                )


def _check_memory(graph: Graph, document: dict[str, Any]) -> None:
    problem = oversized_tensor(graph)
    if problem is not None:
        raise EngineFormatError(f"engine cannot run here: {problem}")
    record = document["build"].get("memory")
    if record is None:
        return
    ram = physical_memory()
    for plan in [record, record.get("static") or {}, *record.get("profiles", [])]:
        arena = plan.get("arena_bytes")
        if isinstance(arena, int) and arena > ram:
            raise EngineFormatError(
                f"engine cannot run here: its memory plan needs an arena of {format_bytes(arena)}, "
                f"more than this machine's {format_bytes(ram)} of RAM"
            )
    check_memory_record(_plan_schedule(graph, document), record)


def _plan_schedule(graph: Graph, document: dict[str, Any]) -> Schedule:
    """The engine's execution plan compiled against its graph (the plan the memory record
    describes); engines without a plan run every layer on the CPU backend."""
    record = document.get("plan")
    plan = ExecutionPlan.from_dict(record) if record is not None else None
    return Schedule(graph, plan=plan)


def _check_plan(graph: Graph, document: dict[str, Any]) -> None:
    """Every step names a layer of the graph, tensors something produces, a known backend."""
    record = document.get("plan")
    if record is None:
        return
    plan = ExecutionPlan.from_dict(record)
    nodes = {node.name for node in graph.nodes}
    known = {v.name for v in graph.inputs} | {v.name for node in graph.nodes for v in node.inputs if v is not None}
    known |= {v.name for node in graph.nodes for v in node.outputs} | {v.name for v in graph.outputs}
    known |= {t.name for t in plan.tensors}
    for index, step in enumerate(plan.steps):
        if step.kind == "kernel" and step.node not in nodes:
            raise EngineFormatError(f"engine is corrupted: plan step {index} runs layer '{step.node}', which the graph lacks")
        for name in [*step.inputs, *step.outputs]:
            if name is not None and name not in known:
                raise EngineFormatError(f"engine is corrupted: plan step {index} names tensor '{name}', which nothing defines")
    covered = [i for segment in plan.segments for i in range(*segment.steps)]
    if covered != list(range(len(plan.steps))):
        raise EngineFormatError("engine is corrupted: the plan's segments do not cover its steps in order")
    for backend in plan.backends():
        check = getattr(get_backend(backend), "check_engine", None)  # a backend this machine cannot run: BackendUnavailable
        if check is not None:
            check(graph)  # a backend embedding compiled code (TensorRT plans) refuses what it cannot run


SECTION_CHECKS: list[Callable[[Graph, dict[str, Any]], None]] = [
    _check_structure,
    _check_kernels,
    _check_attribute_types,
    _check_attributes,
    _check_plan,
    _check_memory,
]
"""Checks run in order on every loaded engine: (graph, raw document) -> None or raise."""


def check_engine_graph(graph: Graph, document: dict[str, Any]) -> None:
    """Run every check of :data:`SECTION_CHECKS`."""
    for check in SECTION_CHECKS:
        check(graph, document)
