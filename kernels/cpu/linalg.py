"""Matrix products and determinants: Gemm, MatMul, MatMulInteger, Einsum, Det (numpy / BLAS)."""

from __future__ import annotations

import numpy as np

from edge.kernels.cpu.gemm import matrix_product
from edge.kernels.cpu.precision import widen_half
from edge.kernels.registry import OpContext, register

__all__: list[str] = []  # kernels are reached through the registry


@register("Gemm")
@widen_half
def gemm(ctx: OpContext, a: np.ndarray, b: np.ndarray, c: np.ndarray | None = None) -> np.ndarray:
    """alpha · op(A) · op(B) + beta · C, C broadcast to (M, N)."""
    if ctx.attr("transA", 0):
        a = a.T
    if ctx.attr("transB", 0):
        b = b.T
    alpha, beta = ctx.attr("alpha", 1.0), ctx.attr("beta", 1.0)
    if a.dtype == b.dtype and ctx.out[0] is not None:
        y = matrix_product(a, b, out=ctx.output(0, (a.shape[0], b.shape[1]), a.dtype))
    else:
        y = matrix_product(a, b)
    if alpha != 1.0:
        y *= np.asarray(alpha, y.dtype)
    if c is not None and beta != 0.0:
        y += c * np.asarray(beta, y.dtype) if beta != 1.0 else c
    return y


@register("MatMul")
@widen_half
def matmul(ctx: OpContext, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numpy's matmul; a stacked A times a 2-D B runs as one (rows x K) @ (K x N) product,
    since numpy's broadcasting matmul can miss the BLAS path for stacked operands."""
    if b.ndim == 2 and a.ndim > 2:
        return matrix_product(np.ascontiguousarray(a).reshape(-1, a.shape[-1]), b).reshape(a.shape[:-1] + (b.shape[1],))
    return matrix_product(a, b)


def _zero_point_rows(zero_point: np.ndarray | None, rank: int) -> np.ndarray | int:
    """A's zero point: scalar, or one per row (M,) broadcast along the last axis."""
    if zero_point is None:
        return 0
    zero_point = zero_point.astype(np.int32)
    return zero_point if zero_point.ndim == 0 else zero_point.reshape(zero_point.shape + (1,))


@register("MatMulInteger")
def matmul_integer(
    ctx: OpContext,
    a: np.ndarray,
    b: np.ndarray,
    a_zero_point: np.ndarray | None = None,
    b_zero_point: np.ndarray | None = None,
) -> np.ndarray:
    """(A - a_zp) · (B - b_zp) accumulated in int32; b_zp is scalar or one per column."""
    left = a.astype(np.int32) - _zero_point_rows(a_zero_point, a.ndim)
    right = b.astype(np.int32) - (0 if b_zero_point is None else b_zero_point.astype(np.int32))
    return np.matmul(left, right)


@register("Einsum")
@widen_half
def einsum(ctx: OpContext, *operands: np.ndarray) -> np.ndarray:
    return np.einsum(ctx.attr("equation").replace(" ", ""), *operands, optimize=True)


@register("Det")
@widen_half
def det(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return np.linalg.det(x).astype(x.dtype, copy=False)
