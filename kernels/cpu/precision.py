"""Compute dtype rules shared by the CPU kernels: half-precision floats run in float32.

numpy's float16 arithmetic rounds after every step (and its float16 matmul accumulates in
float16), and many routines (einsum, scipy.special) have no bfloat16 loop at all. Kernels
whose math is more than one rounding therefore widen float16/bfloat16 inputs to float32,
compute, and round the result back to the input dtype once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np

__all__ = ["HALF_FLOATS", "widen_half"]

HALF_FLOATS = frozenset({np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)})


def widen_half(kernel: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate ``kernel(ctx, *inputs)``: half-float inputs run in float32, outputs of that
    widened dtype are cast back to the first input's dtype."""

    @functools.wraps(kernel)
    def wrapped(ctx: Any, *inputs: np.ndarray | None) -> Any:
        for first in inputs:  # a plain loop: this runs on every call of most kernels
            if first is not None:
                break
        else:
            return kernel(ctx, *inputs)
        if first.dtype not in HALF_FLOATS:
            return kernel(ctx, *inputs)
        narrow = first.dtype
        widened = [x.astype(np.float32) if x is not None and x.dtype in HALF_FLOATS else x for x in inputs]
        result = kernel(ctx, *widened)
        if isinstance(result, tuple):
            return tuple(_narrow(r, narrow) for r in result)
        return _narrow(result, narrow)

    return wrapped


def _narrow(result: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return result.astype(dtype) if result.dtype == np.float32 else result
