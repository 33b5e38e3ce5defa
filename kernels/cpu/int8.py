"""INT8 kernels of the CPU backend: Conv, Gemm and MatMul computed as INT8 hardware computes them.

An INT8 layer's activation inputs arrive on their INT8 grid (``backend.conversions_of``).
These kernels take their codes q_x = x / s_x and the weight's INT8 codes q_w with their
per-output-channel scales s_w[k] (``meta["int8_weight"]``), accumulate q_x · q_w exactly as
an int32 accumulator does, and run the FP32 epilogue ``float(acc) * (s_x * s_w[k]) + bias``,
then the residual and the activation of a fused layer; the backend requantizes an output the
layer writes as INT8. The accumulation runs as a float64 product of the integer codes: every
partial sum is an integer far below 2**53, so the result is the int32 accumulator exactly, at
BLAS speed (numpy's integer matmul has no BLAS path).

Which layers have that integer form, and the FP32 factor of each output channel, come from
:mod:`edge.quant.integer` (shared with the GPU's integer kernels); a layer without one
(asymmetric Q/DQ models, weights scaled along another axis than their output channels) runs
the float kernel on the dequantized values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from edge.ir import EDGETRT_DOMAIN
from edge.ir.layout import TO_CHANNELS_FIRST, TO_CHANNELS_LAST, is_channels_last
from edge.kernels.cpu.activations import apply_activation
from edge.kernels.cpu.fused import fused_conv, fused_gemm
from edge.kernels.cpu.linalg import gemm, matmul
from edge.kernels.cpu.nn import conv, convolve
from edge.kernels.registry import KernelFn, OpContext, register
from edge.quant.integer import IntegerOperand, epilogue_multiplier, integer_operands
from edge.refusal import Refusal

__all__: list[str] = []  # kernels are reached through the registry

INT8 = ("int8",)


def _codes(operand: IntegerOperand, array: np.ndarray) -> np.ndarray:
    """An operand's codes as float64: the weight's, or the activation's ``array / scale``
    (exact integers, the array being on its grid)."""
    if operand.codes is not None:
        return operand.codes
    return np.rint(array / operand.scale).astype(np.float64)


def _operands(ctx: OpContext) -> tuple[IntegerOperand, IntegerOperand] | None:
    """The node's (input 0, input 1) integer operands, weight codes as float64 (BLAS), found
    once per node; None where the layer has no integer form."""
    found = ctx.cache.get("int8-operands")
    if found is None:
        operands = integer_operands(ctx.node)
        found = False
        if not isinstance(operands, Refusal):
            a, b = operands
            found = (a, b if b.codes is None else replace(b, codes=b.codes.astype(np.float64)))
        ctx.cache["int8-operands"] = found
    return found or None


def _epilogue(ctx: OpContext, acc: np.ndarray, multiplier: np.ndarray, add: np.ndarray | None) -> np.ndarray:
    """``float32(acc) * multiplier + add``, then the fused activation, in the output buffer."""
    y = ctx.output(0, acc.shape, np.dtype(np.float32))
    np.copyto(y, acc, casting="same_kind")  # int32 -> fp32 conversion, round to nearest even
    y *= multiplier
    if add is not None:
        y += add
    return apply_activation(y, ctx.attr("activation", ""), tuple(ctx.attr("activation_params", []) or ()))


def _integer(float_kernel: KernelFn, integer_kernel: Callable[..., np.ndarray]) -> KernelFn:
    """A kernel that runs ``integer_kernel(ctx, a, b, *inputs)`` on a layer's integer operands,
    and ``float_kernel`` where the layer has none."""

    def kernel(ctx: OpContext, *inputs: np.ndarray | None) -> np.ndarray:
        operands = _operands(ctx)
        if operands is None:
            return float_kernel(ctx, *inputs)
        return integer_kernel(ctx, *operands, *inputs)

    kernel.__doc__ = integer_kernel.__doc__
    return kernel


def _conv(
    ctx: OpContext, a: IntegerOperand, b: IntegerOperand, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, z: np.ndarray | None = None
) -> np.ndarray:
    """act(s_x · s_w[k] · Σ q_x q_w + B + Z): the integer convolution and its FP32 epilogue
    (in NHWC for a ``channels_last`` FusedConv: the sums computed NCHW, then transposed)."""
    if is_channels_last(ctx.node):
        acc = convolve(ctx, np.ascontiguousarray(_codes(a, x).transpose(TO_CHANNELS_FIRST)), _codes(b, w)).transpose(TO_CHANNELS_LAST)
        channel: tuple[int, ...] = (-1,)
    else:
        acc = convolve(ctx, _codes(a, x), _codes(b, w))
        channel = (-1,) + (1,) * (acc.ndim - 2)
    multiplier = epilogue_multiplier(ctx.node, a, b).reshape(channel)
    add = None if bias is None else bias.reshape(channel)
    if z is not None:
        add = z if add is None else z + add
    return _epilogue(ctx, acc, multiplier, add)


def _gemm(
    ctx: OpContext, a: IntegerOperand, b: IntegerOperand, x: np.ndarray, w: np.ndarray, c: np.ndarray | None = None, z: np.ndarray | None = None
) -> np.ndarray:
    """act(alpha · s_a · s_b[n] · Σ q_a q_b + beta · C + Z): the integer Gemm and its FP32 epilogue."""
    codes_a = _codes(a, x).T if ctx.attr("transA", 0) else _codes(a, x)
    codes_b = _codes(b, w).T if ctx.attr("transB", 0) else _codes(b, w)
    multiplier = epilogue_multiplier(ctx.node, a, b)
    beta = np.float32(ctx.attr("beta", 1.0))
    add = None if c is None or beta == 0 else (c * beta if beta != 1 else c)
    if z is not None:
        add = z if add is None else z + add
    return _epilogue(ctx, np.matmul(codes_a, codes_b), multiplier, add)


def _matmul(ctx: OpContext, a: IntegerOperand, b: IntegerOperand, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """s_a · s_b[n] · Σ q_a q_b: the integer MatMul (B a weight scaled per column, or an activation)."""
    return _epilogue(ctx, np.matmul(_codes(a, x), _codes(b, w)), epilogue_multiplier(ctx.node, a, b), None)


register("Conv", precisions=INT8)(_integer(conv, _conv))
register("FusedConv", domain=EDGETRT_DOMAIN, precisions=INT8)(_integer(fused_conv, _conv))
register("Gemm", precisions=INT8)(_integer(gemm, _gemm))
register("FusedGemm", domain=EDGETRT_DOMAIN, precisions=INT8)(_integer(fused_gemm, _gemm))
register("MatMul", precisions=INT8)(_integer(matmul, _matmul))
