"""Kernels writing into planned arena buffers and reusing workspace scratch, vs onnxruntime.

Each model runs three times through one execution context, so the second and third runs
reuse the workspace (stale im2col columns and padded borders) and the planned buffers.
The compiled kernels are switched off (``EDGETRT_JIT=0``): with numba installed they would
take the depthwise convs and pools, and the numpy paths named below would never run here
(tests/kernels/test_jit.py covers the compiled ones).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import edge
from tests.conftest import assert_close, ort_run

# (channels, out channels, height, width, kernel, group, stride, pads, dilation, bias, batch)
CONVS = [
    (8, 8, 9, 7, (3, 3), 8, 1, [1, 1, 1, 1], 1, True, 1),  # depthwise, stride 1: shifted path
    (8, 8, 9, 7, (3, 3), 8, 1, [1, 1, 1, 1], 1, False, 2),
    (8, 8, 10, 10, (3, 3), 8, 1, [2, 2, 2, 2], 2, True, 2),  # dilated depthwise
    (8, 16, 9, 7, (3, 3), 8, 1, [1, 1, 1, 1], 1, True, 1),  # depthwise multiplier 2: im2col
    (8, 8, 9, 7, (3, 3), 8, 2, [1, 1, 1, 1], 1, True, 1),  # depthwise, stride 2
    (4, 4, 6, 6, (3, 3), 4, 1, [0, 1, 2, 0], 1, True, 1),  # asymmetric pads
    (6, 4, 7, 7, (3, 3), 2, 1, [1, 1, 1, 1], 1, True, 2),  # grouped im2col with bias row
    (8, 12, 8, 6, (1, 1), 4, 1, [0, 0, 0, 0], 1, True, 1),  # grouped pointwise with bias row
    (5, 7, 8, 6, (1, 1), 1, 1, [0, 0, 0, 0], 1, False, 2),
    (4, 6, 6, 6, (3, 1), 1, 1, [1, 0, 1, 0], 1, True, 2),
]


@pytest.fixture(autouse=True)
def _numpy_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGETRT_JIT", "0")


def _model(nodes, x_shape, inits):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _check(model, x):
    expected = ort_run(model, {"x": x})[0]
    context = edge.build(model.SerializeToString()).create_context()
    for run in range(3):
        assert_close(context.run({"x": x})["z"], expected, 1e-4, 1e-4, f"run {run}")


@pytest.mark.parametrize("case", CONVS, ids=[f"conv{i}" for i in range(len(CONVS))])
def test_conv_relu_into_planned_buffers(case) -> None:
    c, m, h, w, kernel, group, stride, pads, dilation, bias, batch = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, c, h, w), dtype=np.float32)
    weight = rng.standard_normal((m, c // group, *kernel), dtype=np.float32)
    inits = [numpy_helper.from_array(weight, "w")]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(m, dtype=np.float32), "b"))
    conv = helper.make_node(
        "Conv", ["x", "w"] + (["b"] if bias else []), ["y"],
        kernel_shape=list(kernel), group=group, strides=[stride] * 2, pads=pads, dilations=[dilation] * 2,
    )
    _check(_model([conv, helper.make_node("Relu", ["y"], ["z"])], x.shape, inits), x)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("pads,ceil", [([1, 1, 1, 1], 0), ([0, 0, 1, 1], 1), ([0, 0, 0, 0], 0)])
def test_pool_concat_add_into_planned_buffers(op: str, pads: list[int], ceil: int) -> None:
    """A pool (padded in the workspace), then Concat and Add written into their buffers."""
    x = np.random.default_rng(1).standard_normal((2, 3, 9, 8), dtype=np.float32)
    nodes = [
        helper.make_node(op, ["x"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=pads, ceil_mode=ceil),
        helper.make_node("Relu", ["p"], ["r"]),
        helper.make_node("Concat", ["p", "r"], ["c"], axis=1),
        helper.make_node("Add", ["c", "c"], ["z"]),
    ]
    _check(_model(nodes, x.shape, []), x)


def test_same_bytes_tells_a_result_already_in_place_from_one_to_copy() -> None:
    from edge.kernels.registry import same_bytes

    whole = np.zeros((1, 6, 4, 4), np.float32)
    piece = whole[:, 2:4]  # a Concat slice: strides of the length-1 batch axis differ
    fresh = np.lib.stride_tricks.as_strided(whole[0, 2], (1, 2, 4, 4), (4, 64, 16, 4))
    assert piece.strides[0] != fresh.strides[0] and same_bytes(fresh, piece)
    assert not same_bytes(whole[:, 3:5], piece)  # other bytes
    assert not same_bytes(whole[0, 2:4].transpose(0, 2, 1)[None], piece)  # same start, other layout
    assert not same_bytes(piece.astype(np.float64), piece)
