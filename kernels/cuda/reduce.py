"""CUDA builders of the reductions: Reduce* over any axes, ArgMax/ArgMin, Softmax/LogSoftmax,
and the global pools (a mean or max over the spatial axes)."""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence

import numpy as np

from edge.ir import Node
from edge.kernels.cuda.launch import BLOCK, PRECISIONS, Body, Dims, Step, contiguous_strides, float_suffix, grid_1d, merge_axes, static_refusal
from edge.kernels.registry import register
from edge.refusal import Refusal

__all__ = ["REDUCE_CODES", "reduction_plan", "reduce_threads", "reduce_body"]

FLOATS = (np.float32, np.float16)

REDUCE_CODES = {
    name: code
    for code, name in enumerate(
        "ReduceSum ReduceMean ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceSumSquare ReduceLogSum ReduceLogSumExp".split()
    )
}
"""Reduce op codes (``enum Reduce`` in reduce.cu)."""

_AXES_BECAME_INPUT = {"ReduceSum": 13}


def reduction_plan(shape: Sequence[int], axes: Sequence[int]) -> tuple[tuple, tuple, tuple, tuple]:
    """(kept shape, kept strides, reduced shape, reduced strides) of a contiguous ``shape``
    reduced over ``axes``, each with neighbouring axes merged."""
    strides = contiguous_strides(shape)
    reduced = sorted({a % len(shape) for a in axes}) if shape else []
    kept = [a for a in range(len(shape)) if a not in reduced]
    kshape, (kstride,) = merge_axes([shape[a] for a in kept], [strides[a] for a in kept])
    rshape, (rstride,) = merge_axes([shape[a] for a in reduced], [strides[a] for a in reduced])
    return kshape, kstride, rshape, rstride


def reduce_threads(count: int) -> int:
    """Threads per block for a block reduction over ``count`` elements (a warp multiple)."""
    threads = 32
    while threads < min(count, 512):
        threads *= 2
    return threads


def reduce_body(step: Step, code: int, axes: Sequence[int]) -> Body:
    """One block per output element, reducing ``axes`` of input 0 with op ``code``."""
    shape = tuple(step.input(0).shape)
    kshape, kstride, rshape, rstride = reduction_plan(shape, axes)
    count = math.prod(rshape)
    outputs = math.prod(kshape)
    fn = step.function("reduce", f"reduce_{float_suffix(step.output(0).dtype)}")
    block = (reduce_threads(count), 1, 1)
    args = (
        ctypes.c_int64(count), ctypes.c_int32(code),
        ctypes.c_int32(len(kshape)), Dims.of(kshape), Dims.of(kstride),
        ctypes.c_int32(len(rshape)), Dims.of(rshape), Dims.of(rstride),
    )

    def body(inputs: list, outs: list, state) -> None:
        fn(state, (outputs, 1, 1), block, inputs[0], outs[0], *args)

    return body


def _copy_body(step: Step) -> Body:
    def body(inputs: list, outputs: list, state) -> None:
        if inputs[0].ptr != outputs[0].ptr:
            step.backend.device.copy_d2d(outputs[0].ptr, inputs[0].ptr, outputs[0].nbytes, state.stream)

    return body


def _reduce_builder(name: str, axes_from_input: bool):
    def build(step: Step) -> Body:
        if axes_from_input:
            given = step.const(1)
            axes = None if given is None else [int(a) for a in np.asarray(given).reshape(-1)]
        else:
            axes = step.attr("axes")
        rank = len(step.input(0).shape)
        if not axes:
            if step.attr("noop_with_empty_axes", 0):
                return _copy_body(step)
            axes = list(range(rank))
        return reduce_body(step, REDUCE_CODES[name], axes)

    build.__name__ = f"{name[6:].lower()}_reduce"
    return build


def _axes_input_refusal(node: Node) -> Refusal | None:
    axes = node.inputs[1] if len(node.inputs) > 1 else None
    if axes is not None and not axes.is_const:
        return Refusal("cuda.dynamic_attribute", f"{node.op_type} '{node.name}': axes input is not a constant")
    return static_refusal(node, FLOATS)


def _float_refusal(node: Node) -> Refusal | None:
    return static_refusal(node, FLOATS)


for _name in REDUCE_CODES:
    register(_name, backend="cuda", since=1, precisions=PRECISIONS, supports=_float_refusal)(_reduce_builder(_name, False))
    register(_name, backend="cuda", since=_AXES_BECAME_INPUT.get(_name, 18), precisions=PRECISIONS, supports=_axes_input_refusal)(
        _reduce_builder(_name, True)
    )


def _global_builder(code: int):
    def build(step: Step) -> Body:
        return reduce_body(step, code, list(range(2, len(step.input(0).shape))))

    return build


register("GlobalAveragePool", backend="cuda", precisions=PRECISIONS, supports=_float_refusal)(_global_builder(REDUCE_CODES["ReduceMean"]))
register("GlobalMaxPool", backend="cuda", precisions=PRECISIONS, supports=_float_refusal)(_global_builder(REDUCE_CODES["ReduceMax"]))


def _arg_builder(is_max: int):
    def build(step: Step) -> Body:
        shape = tuple(step.input(0).shape)
        axis = step.attr("axis", 0) % len(shape)
        outer, length, inner = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :])
        fn = step.function("reduce", f"arg_reduce_{float_suffix(step.input(0).dtype)}")
        grid = grid_1d(outer * inner)
        args = (ctypes.c_int64(outer), ctypes.c_int64(length), ctypes.c_int64(inner), ctypes.c_int32(is_max),
                ctypes.c_int32(step.attr("select_last_index", 0)))

        def body(inputs: list, outputs: list, state) -> None:
            fn(state, grid, (BLOCK, 1, 1), inputs[0], outputs[0], *args)

        return body

    return build


register("ArgMax", backend="cuda", precisions=PRECISIONS, supports=_float_refusal)(_arg_builder(1))
register("ArgMin", backend="cuda", precisions=PRECISIONS, supports=_float_refusal)(_arg_builder(0))


def softmax_rows(shape: Sequence[int], axis: int, coerced: bool) -> tuple[int, int, int]:
    """(rows, length, inner) of a softmax along ``axis``; ``coerced`` (opset < 13) flattens
    the dims from ``axis`` on into one."""
    axis %= max(len(shape), 1)
    if coerced:
        return math.prod(shape[:axis]), math.prod(shape[axis:]), 1
    outer, inner = math.prod(shape[:axis]), math.prod(shape[axis + 1 :])
    return outer * inner, shape[axis], inner


def _softmax_builder(log: int, coerced: bool):
    def build(step: Step) -> Body:
        shape = tuple(step.input(0).shape)
        rows, length, inner = softmax_rows(shape, step.attr("axis", 1 if coerced else -1), coerced)
        fn = step.function("reduce", f"softmax_{float_suffix(step.input(0).dtype)}")
        block = (reduce_threads(length), 1, 1)
        args = (ctypes.c_int64(length), ctypes.c_int64(inner), ctypes.c_int32(log))

        def body(inputs: list, outputs: list, state) -> None:
            fn(state, (rows, 1, 1), block, inputs[0], outputs[0], *args)

        return body

    return build


for _name, _log in (("Softmax", 0), ("LogSoftmax", 1)):
    register(_name, backend="cuda", since=1, precisions=PRECISIONS, supports=_float_refusal)(_softmax_builder(_log, True))
    register(_name, backend="cuda", since=13, precisions=PRECISIONS, supports=_float_refusal)(_softmax_builder(_log, False))
