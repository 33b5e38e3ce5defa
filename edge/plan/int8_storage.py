"""INT8 storage between layers: device tensors kept as their INT8 codes (TensorRT's INT8 formats).

An INT8 layer writes a tensor as INT8 (``meta["int8_output"]``) when only INT8 layers read it;
without this pass a device backend still stores it in float16 as ``q · s``. Where the writer
and every reader of such a tensor are integer kernels that take codes (a kernel's
``int8_codes`` meta: the input positions it reads as codes; output 0 it then writes as codes),
the tensor is stored as int8 codes instead: half the traffic of float16, and no quantize pass
in the readers. Decided after the auto-tuner (an INT8 layer it settled in FP16 reads floats),
and checked by preparing every step that touches such a tensor: a tensor whose writer or
reader cannot prepare with codes keeps its float storage.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge.ir import Graph, Node, Value, standard_domain
from edge.kernels.backend import get_backend
from edge.kernels.registry import lookup
from edge.plan.lower import HOST
from edge.plan.model import ExecutionPlan, PlanStep
from edge.quant.numerics import quantizer_of

__all__ = ["CODES_META", "INTEGER_OPS", "likely_codes", "store_int8_codes"]

CODES_META = "int8_codes"
"""Kernel meta: the input positions an integer kernel reads as INT8 codes (it writes output 0
as codes where that is stored so)."""
INTEGER_OPS = frozenset({"Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul"})
"""The ops whose INT8 layers have integer kernels on a device (what ``likely_codes`` expects)."""


def likely_codes(node: Node, positions: tuple[int, ...], graph_outputs: set[int]) -> tuple[set[int], bool]:
    """Before the plan is settled, which of ``node``'s inputs at ``positions`` and whether its
    output 0 will likely be stored as INT8 codes: tensors written as INT8 between INT8 layers
    of ``INTEGER_OPS`` (the auto-tuner times an INT8 layer's integer tactics so; ids of the
    graph outputs in ``graph_outputs``)."""

    def integer(layer: Node | None) -> bool:
        return layer is not None and layer.meta.get("precision") == "int8" and layer.op_type in INTEGER_OPS

    def reads_codes(reader: Node, index: int) -> bool:  # the activation, or a convolution's residual
        return integer(reader) and (index == 0 or (index == 3 and reader.op_type in ("Conv", "FusedConv")))

    inputs = {p for p in positions if p < len(node.inputs) and (v := node.inputs[p]) is not None and not v.is_const
              and _on_symmetric_grid(v) and integer(v.producer)}
    out = node.outputs[0]
    output = (_on_symmetric_grid(out) and id(out) not in graph_outputs and bool(out.uses)
              and all(reads_codes(reader, index) for reader, index in out.uses))
    return inputs, output


def store_int8_codes(graph: Graph, plan: ExecutionPlan, prepares: Callable[[list[str]], set[str]] | None = None) -> list[str]:
    """Store as INT8 codes (``plan.storage``) the device tensors that integer kernels write and
    alone read; ``prepares(names)`` returns those of ``names`` whose steps failed to prepare
    with codes (they keep their float storage). Returns the tensors stored as codes."""
    values = {v.name: v for v in graph.values()}
    readers: dict[str, list[tuple[PlanStep, int]]] = {}
    for step in plan.steps:
        for index, name in enumerate(step.inputs):
            if name is not None:
                readers.setdefault(name, []).append((step, index))
    outputs = set(plan.outputs)
    chosen = []
    for step in plan.steps:
        if not step.outputs or not _codes_positions(graph, step):
            continue
        name = step.outputs[0]
        value = values.get(name)
        uses = readers.get(name, [])
        if value is None or name in outputs or not uses or not _on_symmetric_grid(value):
            continue
        if all(reader.backend == step.backend and index in _codes_positions(graph, reader) for reader, index in uses):
            chosen.append(name)
    kept = {name: plan.storage.get(name) for name in chosen}
    for name in chosen:
        plan.storage[name] = "int8"
    failed = prepares(chosen) if prepares is not None and chosen else set()
    for name in failed:
        if kept[name] is None:
            del plan.storage[name]
        else:
            plan.storage[name] = kept[name]  # type: ignore[assignment]
    return [name for name in chosen if name not in failed]


def _codes_positions(graph: Graph, step: PlanStep) -> tuple[int, ...]:
    """The input positions ``step``'s kernel reads as INT8 codes (none: it takes floats, or it
    is not an INT8 kernel step on a device)."""
    if step.kind != "kernel" or step.precision != "int8" or get_backend(step.backend).memory_space == HOST:
        return ()
    domain, _, op = step.op.rpartition("::")
    kernel = lookup(op, domain, step.backend, graph.opset.get(standard_domain(domain), 1), "int8")
    if kernel is None or kernel.name != step.kernel:
        return ()
    return tuple(kernel.meta.get(CODES_META, ()))


def _on_symmetric_grid(value: Value) -> bool:
    """A tensor written as INT8 on a grid with zero point 0 within int8's range."""
    quantizer = quantizer_of(value.meta)
    return bool(value.meta.get("int8_output")) and quantizer is not None and quantizer.zero_point == 0 and (
        np.iinfo(np.int8).min <= quantizer.low and quantizer.high <= np.iinfo(np.int8).max)
