"""Matrix products for the CPU kernels: float32 ones on the compiled kernels' pool (each
part one block of the result's rows or columns, see ``edge.kernels.cpu.jit``), the others
on numpy's BLAS."""

from __future__ import annotations

import numpy as np

from edge.kernels.cpu.compiled import compiled

__all__ = ["grouped_matmul", "matrix_product"]


def _contiguous_float32(*arrays: np.ndarray) -> bool:
    return all(a.dtype == np.float32 and a.flags.c_contiguous for a in arrays)


def grouped_matmul(weights: np.ndarray, cols: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """(G, M, K) x (N, G, K, P) -> (N, G, M, P), into ``y`` when given: one 2-D product per
    (image, group). numpy's broadcasting matmul over stacked operands can miss the BLAS path
    and run far slower, so the stack is walked."""
    n, group, _, pixels = cols.shape
    if y is None:
        y = np.empty((n, group, weights.shape[1], pixels), np.result_type(weights, cols))
    jit = compiled()
    if jit is not None and _contiguous_float32(weights, cols, y):
        sources, rows = cols.reshape(n, group, -1), jit.dense_rows(cols.shape[2], pixels)
        jit.gemm_blocks(weights, sources, rows, jit.NO_BIAS, jit.NO_RESIDUAL, *jit.activation_arguments("", ()), y)
        return y
    for index in range(n):
        for g in range(group):
            np.matmul(weights[g], cols[index, g], out=y[index, g])
    return y


def matrix_product(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """a @ b with numpy's semantics, into ``out`` when given: 2-D products and stacks of
    equal shape on the pool, broadcasting ones on numpy."""
    jit = compiled()
    if jit is None or a.dtype != np.float32 or b.dtype != np.float32 or a.ndim < 2 or b.ndim < 2:
        return np.matmul(a, b, out=out)
    if a.ndim == 2 and b.ndim == 2:
        y = np.empty((a.shape[0], b.shape[1]), np.float32) if out is None else out
        if _contiguous_float32(a, y) and b.flags.c_contiguous:
            jit.matmul(a, b, y)
            return y
        if _contiguous_float32(a, y) and b.flags.f_contiguous:  # a layer's weights, transposed (Gemm's transB)
            jit.matmul_transposed(a, b.T, y)
            return y
    elif out is None and a.ndim == b.ndim and a.shape[:-2] == b.shape[:-2] and _contiguous_float32(a, b):
        stack = a.shape[:-2]
        y = np.empty(stack + (a.shape[-2], b.shape[-1]), np.float32)
        grouped_matmul(a.reshape((-1,) + a.shape[-2:]), b.reshape((1, -1) + b.shape[-2:]), y.reshape((1, -1) + y.shape[-2:]))
        return y
    return np.matmul(a, b, out=out)
