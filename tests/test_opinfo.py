"""The shared op-metadata table: auto_pad resolution against ONNX's formula computed
independently with numpy, and the activation table against the CPU epilogue kernels."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest

from edge.ir.opinfo import ACTIVATIONS, DLA_ACTIVATIONS, activation_params, resolve_pads
from edge.kernels.cpu import activations

SIZES = np.arange(1, 40)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_same_pads_follow_onnx_formula(auto_pad: str) -> None:
    # ONNX Conv spec: output = ceil(input / stride); total = max(0, (output - 1) * stride +
    # (kernel - 1) * dilation + 1 - input); SAME_UPPER puts the extra pad at the end
    for kernel, stride, dilation in itertools.product((1, 2, 3, 4, 7), (1, 2, 3), (1, 2)):
        out = np.ceil(SIZES / stride).astype(int)
        total = np.maximum(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - SIZES)
        small, large = total // 2, total - total // 2
        begin, end = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
        for size, b, e, o in zip(SIZES, begin, end, out):
            got = resolve_pads(auto_pad, None, (int(size),), (kernel,), (stride,), (dilation,))
            assert got == ((b,), (e,)), (size, kernel, stride, dilation)
            assert (size + b + e - (kernel - 1) * dilation - 1) // stride + 1 == o


def test_same_pads_per_dim_and_explicit_pads() -> None:
    assert resolve_pads("SAME_UPPER", [9, 9, 9, 9], (10, 9), (4, 3), (3, 2), (1, 1)) == ((1, 1), (2, 1))
    assert resolve_pads("SAME_LOWER", None, (10, 9), (4, 3), (3, 2), (1, 1)) == ((2, 1), (1, 1))
    assert resolve_pads("VALID", [1, 2, 3, 4], (10, 9), (3, 3), (1, 1), (1, 1)) == ((0, 0), (0, 0))
    assert resolve_pads("NOTSET", [1, 2, 3, 4], (10, 9), (3, 3), (1, 1), (1, 1)) == ((1, 2), (3, 4))
    assert resolve_pads("NOTSET", None, (10, 9), (3, 3), (1, 1), (1, 1)) == ((0, 0), (0, 0))


def test_activation_defaults_are_onnx_schema_defaults() -> None:
    for name, activation in ACTIVATIONS.items():
        if activation.domain:
            continue
        schema = onnx.defs.get_schema(name)
        for attr, default in activation.params:
            assert schema.attributes[attr].default_value.f == pytest.approx(default), (name, attr)
    assert activation_params("HardSigmoid", [0.3]) == [0.3, 0.5]


def test_cpu_epilogues_cover_the_table() -> None:
    assert set(activations.ACTIVATIONS) == set(ACTIVATIONS)
    assert DLA_ACTIVATIONS == {"", "Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "SiLU"}
