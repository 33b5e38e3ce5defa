"""The INT8 conversions of GPU steps, as the CPU backend applies them (``conversions_of``).

An INT8 layer's float activation inputs are put on their INT8 grid before it computes (those
an INT8 layer wrote as INT8 already are), the tensors it writes as INT8
(``meta["int8_output"]``) are requantized to theirs, and a tensor with explicit Q/DQ scales
is quantized where it is produced, at every precision. The FP16 rounding the CPU emulates
needs nothing here: the GPU stores those layers' tensors in float16.

Kernels that do this themselves (the integer kernels quantize their inputs as they load them
and requantize in their epilogue) register with ``quantizes=True``; every other step of an
INT8 layer runs its float kernel between ``fake_quantize`` launches: inputs into copies in
the context's scratch (other readers still see the tensor as it was), outputs in place.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np

from edge.ir import Node
from edge.kernels.cpu.backend import conversions_of
from edge.kernels.cuda.launch import BLOCK, Body, DeviceTensor, Step, float_suffix, grid_1d
from edge.quant.numerics import Quantizer

__all__ = ["FakeQuant", "quantizers", "with_conversions"]

SCRATCH = "conversions"
"""The context scratch buffer the quantized input copies live in (apart from the kernels' own)."""

_ALIGN = 256


class FakeQuant(ctypes.Structure):
    """``struct FakeQuant`` of common.cuh: a Quantizer's scale, zero point and code range
    (scale 0: no quantization)."""

    _fields_ = [(name, ctypes.c_float) for name in ("scale", "zero", "low", "high")]

    @classmethod
    def of(cls, quantizer: Quantizer | None) -> FakeQuant:
        if quantizer is None:
            return cls(0.0, 0.0, 0.0, 0.0)
        return cls(float(quantizer.scale), float(quantizer.zero_point), float(quantizer.low), float(quantizer.high))


Quantizers = tuple[tuple[int, Quantizer], ...]


def quantizers(node: Node) -> tuple[Quantizers, Quantizers]:
    """(input index, quantizer) and (output index, quantizer) pairs of ``node``'s INT8
    conversions: the quantizers of ``conversions_of`` on float32 tensors (the CPU's leave
    others as they are)."""
    convert_in, convert_out = conversions_of(node)

    def kept(conversions, values) -> Quantizers:
        return tuple((i, fn) for i, fn in conversions if isinstance(fn, Quantizer) and values[i].dtype == np.float32)

    return kept(convert_in, node.inputs), kept(convert_out, node.outputs)


def _launch(step: Step, dtype: np.dtype, shape: tuple[int, ...], quantizer: Quantizer):
    """(kernel, grid, trailing arguments) of one fake quantization of a ``shape`` tensor."""
    n = math.prod(shape)
    return step.function("quant", f"fake_quantize_{float_suffix(dtype)}"), grid_1d(n), (ctypes.c_int64(n), FakeQuant.of(quantizer))


def with_conversions(step: Step, body: Body) -> Body:
    """``body`` between its step's INT8 conversions (``body`` itself where there are none)."""
    convert_in, convert_out = quantizers(step.node)
    if not convert_in and not convert_out:
        return body
    inputs, offset = [], 0
    for index, quantizer in convert_in:
        info = step.input(index)
        dtype, shape = np.dtype(info.dtype), tuple(info.shape)
        inputs.append((index, offset, dtype, shape, *_launch(step, dtype, shape, quantizer)))
        offset += -(-math.prod(shape) * dtype.itemsize // _ALIGN) * _ALIGN
    scratch = offset
    outputs = []
    for index, quantizer in convert_out:
        info = step.output(index)
        outputs.append((index, *_launch(step, np.dtype(info.dtype), tuple(info.shape), quantizer)))

    def converted(tensors: list, results: list, state) -> None:
        tensors = list(tensors)
        base = state.workspace(step.backend, scratch, SCRATCH) if scratch else 0
        for index, start, dtype, shape, fn, grid, args in inputs:
            copy = DeviceTensor(base + start, shape, dtype)
            fn(state, grid, (BLOCK, 1, 1), tensors[index], copy, *args)
            tensors[index] = copy
        body(tensors, results, state)
        for index, fn, grid, args in outputs:
            fn(state, grid, (BLOCK, 1, 1), results[index], results[index], *args)

    return converted
