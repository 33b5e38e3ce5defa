"""Elementwise arithmetic, comparisons, logic and activations with numpy broadcasting."""

from __future__ import annotations

import numpy as np

from edge.kernels.registry import OpContext, register


@register("Add")
def add(ctx: OpContext, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.add(a, b)


@register("Relu")
def relu(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return np.maximum(x, np.zeros((), x.dtype))
