"""The activations the optimizer folds into a conv or GEMM epilogue, applied in place.

They run on the fused op's fresh output buffer, so each is one pass over memory that the
separate activation layer would have spent on a new buffer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import special

from edge.ir.opinfo import activation_params
from edge.kernels.cpu.elementwise import relu_into

__all__ = ["ACTIVATIONS", "apply_activation"]


def _relu(y: np.ndarray, params: Sequence[float]) -> None:
    relu_into(y, y)


def _clip(y: np.ndarray, params: Sequence[float]) -> None:
    low, high = params
    np.clip(y, low, high, out=y)


def _leaky_relu(y: np.ndarray, params: Sequence[float]) -> None:
    alpha = params[0] if params else activation_params("LeakyRelu")[0]
    np.multiply(y, np.asarray(alpha, y.dtype), out=y, where=y < 0)


def _sigmoid(y: np.ndarray, params: Sequence[float]) -> None:
    special.expit(y, out=y)


def _hard_sigmoid(y: np.ndarray, params: Sequence[float]) -> None:
    alpha, beta = (params[0], params[1]) if len(params) >= 2 else activation_params("HardSigmoid", params)
    y *= np.asarray(alpha, y.dtype)
    y += np.asarray(beta, y.dtype)
    np.clip(y, 0, 1, out=y)


def _hard_swish(y: np.ndarray, params: Sequence[float]) -> None:
    gate = y * np.asarray(1 / 6, y.dtype)
    gate += np.asarray(0.5, y.dtype)
    np.clip(gate, 0, 1, out=gate)
    y *= gate


def _silu(y: np.ndarray, params: Sequence[float]) -> None:
    y *= special.expit(y)


def _gelu(y: np.ndarray, params: Sequence[float]) -> None:
    gate = special.erf(y * np.asarray(1 / np.sqrt(2), y.dtype))
    gate += 1
    gate *= np.asarray(0.5, y.dtype)
    y *= gate


def _tanh(y: np.ndarray, params: Sequence[float]) -> None:
    np.tanh(y, out=y)


ACTIVATIONS: dict[str, Callable[[np.ndarray, Sequence[float]], None]] = {
    "Relu": _relu,
    "Clip": _clip,
    "LeakyRelu": _leaky_relu,
    "Sigmoid": _sigmoid,
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _hard_swish,
    "SiLU": _silu,
    "Gelu": _gelu,
    "Tanh": _tanh,
}
"""Epilogue activations by the name used in the ``activation`` attribute (``edge.ir.opinfo.ACTIVATIONS``), each in place."""


def apply_activation(y: np.ndarray, name: str, params: Sequence[float] = ()) -> np.ndarray:
    """Apply activation ``name`` ("" = none) to ``y`` in place and return it."""
    if name:
        ACTIVATIONS[name](y, list(params))
    return y
