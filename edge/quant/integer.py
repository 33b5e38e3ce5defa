"""The integer form of an INT8 layer: which Conv / Gemm / MatMul layers compute as INT8 hardware does.

An INT8 layer has an integer form when its activation input 0 has a per-tensor scale with
zero point 0 and its input 1 is either a constant weight with INT8 codes (``meta["int8_weight"]``,
zero point 0, one scale per output channel or one for the tensor) or, for MatMul, another
such activation. Then ``y = float32(Σ q_x · q_w) · (s_x · s_w[k])`` plus the float epilogue,
with an int32 accumulator (``calibration.md`` §6). Every backend's integer kernels decide
with :func:`integer_operands` and scale their accumulators with :func:`epilogue_multiplier`,
so they agree on which layers run in integers and on the FP32 factor each output channel gets.
Layers without an integer form (asymmetric Q/DQ models, weights scaled along another axis)
run the float kernel on their dequantized values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.ir import Node, Value
from edge.quant.numerics import quantizer_of, weight_axis
from edge.refusal import Refusal

__all__ = ["IntegerOperand", "epilogue_multiplier", "integer_operands"]


@dataclass(frozen=True)
class IntegerOperand:
    """One operand of an integer layer.

    Attributes:
        scale: float32, a scalar (activations, per-tensor weights) or one per output channel.
        codes: a constant weight's INT8 codes in the weight's own layout; None for an
            activation, which is coded per run (``round(x / scale)``, it being on its grid).
    """

    scale: np.ndarray
    codes: np.ndarray | None = None


def _operand(node: Node, index: int, channel_axis: int | None) -> IntegerOperand | Refusal:
    value: Value = node.inputs[index]
    where = f"{node.op_type} '{node.name}': input {index} ('{value.name}')"
    if value.is_const:
        meta = value.meta
        codes = meta.get("int8_weight")
        if codes is None:
            return Refusal("int8.no_codes", f"{where} is a constant without INT8 codes")
        if np.any(np.asarray(meta.get("int8_zero_point", 0)) != 0):
            return Refusal("int8.zero_point", f"{where} has a nonzero zero point")
        scale = np.asarray(meta["int8_scale"], np.float32).reshape(-1)
        if scale.size > 1 and (channel_axis is None or meta.get("int8_axis", 1) % codes.ndim != channel_axis % codes.ndim):
            return Refusal("int8.scale_axis", f"{where} is scaled along axis {meta.get('int8_axis', 1)}, not its output channels")
        return IntegerOperand(scale if scale.size > 1 else scale.reshape(()), codes)
    quantizer = quantizer_of(value.meta)
    if quantizer is None:
        return Refusal("int8.no_scale", f"{where} has no per-tensor INT8 scale")
    if quantizer.zero_point:
        return Refusal("int8.zero_point", f"{where} has zero point {quantizer.zero_point}")
    return IntegerOperand(np.asarray(quantizer.scale, np.float32))


def integer_operands(node: Node) -> tuple[IntegerOperand, IntegerOperand] | Refusal:
    """The (input 0, input 1) operands of an INT8 Conv / Gemm / MatMul layer (fused or not),
    or the reason it has no integer form (it then computes in float on its quantized values)."""
    if node.meta.get("precision") != "int8":
        return Refusal("int8.precision", f"{node.op_type} '{node.name}' is not an INT8 layer")
    a = _operand(node, 0, None)
    if isinstance(a, Refusal):
        return a
    if a.codes is not None:
        return Refusal("int8.constant_input", f"{node.op_type} '{node.name}': input 0 is a constant")
    b = _operand(node, 1, weight_axis(node.op_type, 1, node.attrs))
    return b if isinstance(b, Refusal) else (a, b)


def epilogue_multiplier(node: Node, a: IntegerOperand, b: IntegerOperand) -> np.ndarray:
    """The float32 factor of each output channel's accumulator: ``s_x · s_w[k]``, times
    ``alpha`` for Gemm (computed in float32 in this order, as every backend must)."""
    multiplier = a.scale * b.scale
    if node.op_type in ("Gemm", "FusedGemm"):
        multiplier = multiplier * np.float32(node.attrs.get("alpha", 1.0))
    return np.asarray(multiplier, np.float32)
