"""Hostile or broken user input (models, data files, flags): a one-line EdgeError, never a
crash, a traceback, a memory bomb or a hang (issue 26)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edge
from edge.errors import ModelImportError


def window_model(op: str, **attrs: object) -> onnx.ModelProto:
    """One Conv/ConvTranspose/pooling node on a 1x2x8x8 input with the given attributes."""
    inits, inputs = [], ["x"]
    if "Conv" in op:
        inits = [numpy_helper.from_array(np.ones((2, 2, 3, 3), np.float32), "w")]
        inputs.append("w")
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["y"], name="layer", **attrs)],
        "window",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    ("op", "attrs", "match"),
    [
        ("MaxPool", {"kernel_shape": [-3, -3]}, r"kernel_shape=\[-3, -3\] must hold integers >= 1"),
        ("MaxPool", {"kernel_shape": [2, 2], "pads": [-4, -4, 0, 0]}, r"pads=\[-4, -4, 0, 0\] must hold integers >= 0"),
        ("AveragePool", {"kernel_shape": [2, 2], "strides": [0, 1]}, r"strides=\[0, 1\] must hold integers >= 1"),
        ("Conv", {"pads": [-2, -2, -2, -2]}, r"pads=\[-2, -2, -2, -2\]"),
        ("Conv", {"kernel_shape": [0, 3]}, r"kernel_shape=\[0, 3\]"),
        ("Conv", {"dilations": [-1, -1]}, r"dilations=\[-1, -1\]"),
        ("ConvTranspose", {"strides": [-2, 2]}, r"strides=\[-2, 2\]"),
        ("MaxPool", {"kernel_shape": [20, 20]}, r"window 20 .* larger than input 'x'"),
    ],
)
def test_bad_window_attributes_are_refused_at_import(op: str, attrs: dict, match: str) -> None:
    with pytest.raises(ModelImportError, match=rf"node 'layer' \({op}\): .*{match}"):
        edge.build(window_model(op, **attrs).SerializeToString())
