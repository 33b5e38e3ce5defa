"""Conv, ConvTranspose and pool kernels against onnxruntime on random shapes.

ONNX's node cases cover each attribute once on tiny inputs; these cases combine them
(groups with dilations, asymmetric pads with strides, depthwise multipliers, 1-D and 3-D,
ceil_mode with pads) on random data, one single-node model per case.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edge.frontend import load_onnx
from edge.kernels.cpu import nn
from edge.runtime.interpreter import run_graph
from tests.conftest import assert_close, ort_run

RNG = np.random.default_rng(11)


def _single_node(op: str, x: np.ndarray, weights: list[np.ndarray], attrs: dict, outputs: int = 1) -> onnx.ModelProto:
    names = [f"w{i}" for i in range(len(weights))]
    node = helper.make_node(op, ["x", *names], [f"y{i}" for i in range(outputs)], **attrs)
    inits = [helper.make_tensor(n, TensorProto.FLOAT, w.shape, w.ravel().tolist()) for n, w in zip(names, weights)]
    graph = helper.make_graph(
        [node],
        op.lower(),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info(f"y{i}", [TensorProto.FLOAT, TensorProto.INT64][i], None) for i in range(outputs)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)


def _compare(model: onnx.ModelProto, x: np.ndarray, what: str) -> None:
    expected = ort_run(model, {"x": x})
    for output, want in zip(model.graph.output, expected):  # the importer's checker wants output shapes
        output.CopyFrom(helper.make_tensor_value_info(output.name, output.type.tensor_type.elem_type, want.shape))
    got = run_graph(load_onnx(model), {"x": x})
    for index, want in enumerate(expected):
        assert_close(got[f"y{index}"], want, rtol=1e-4, atol=1e-4, what=f"{what} output {index}")


CONV_CASES = {
    "plain_3x3": ((2, 4, 9, 9), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 6),
    "strided_asym_pads": ((1, 3, 11, 8), dict(kernel_shape=[3, 2], strides=[2, 3], pads=[0, 1, 2, 1]), 5),
    "dilated_grouped": ((1, 6, 12, 12), dict(kernel_shape=[3, 3], dilations=[2, 3], group=3, pads=[2, 2, 2, 2]), 9),
    "pointwise": ((2, 8, 5, 7), dict(kernel_shape=[1, 1]), 12),
    "pointwise_strided": ((1, 8, 9, 9), dict(kernel_shape=[1, 1], strides=[2, 2]), 4),
    "depthwise": ((2, 6, 10, 10), dict(kernel_shape=[3, 3], group=6, pads=[1, 1, 1, 1], strides=[2, 2]), 6),
    "depthwise_multiplier": ((1, 4, 8, 8), dict(kernel_shape=[3, 3], group=4, dilations=[2, 2]), 8),
    "same_upper": ((1, 3, 10, 9), dict(kernel_shape=[4, 3], strides=[3, 2], auto_pad="SAME_UPPER"), 4),
    "same_lower": ((1, 3, 10, 9), dict(kernel_shape=[4, 3], strides=[3, 2], auto_pad="SAME_LOWER"), 4),
    "valid": ((1, 2, 9, 9), dict(kernel_shape=[4, 4], strides=[2, 2], auto_pad="VALID"), 3),
    "conv1d": ((2, 4, 17), dict(kernel_shape=[5], strides=[2], pads=[2, 1], group=2), 6),
    "conv3d": ((1, 2, 6, 7, 5), dict(kernel_shape=[3, 2, 3], strides=[1, 2, 1], pads=[1, 0, 1, 1, 1, 0]), 4),
    # large enough for the flat phase layouts: columns gathered as contiguous runs ("gather";
    # 2-D ones on the compiled kernels: read in place from shifted images, "shifted"), or
    # per-tap partial products summed shifted when outputs are few ("tap-sum")
    "gather_3x3": ((1, 8, 30, 30), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 16),
    "gather_strided": ((2, 8, 31, 30), dict(kernel_shape=[3, 3], pads=[1, 0, 1, 2], strides=[2, 2]), 12),
    "gather_dilated_grouped": ((1, 6, 30, 33), dict(kernel_shape=[3, 3], dilations=[2, 3], group=3, pads=[2, 2, 2, 2]), 12),
    "gather_depthwise_strided": ((1, 6, 40, 40), dict(kernel_shape=[3, 3], group=6, pads=[1, 1, 1, 1], strides=[2, 2]), 6),
    "gather_7x7_s2": ((1, 3, 50, 50), dict(kernel_shape=[7, 7], strides=[2, 2], pads=[3, 3, 3, 3]), 8),
    "gather_1d_s3": ((2, 4, 40), dict(kernel_shape=[5], strides=[3], pads=[2, 1]), 8),
    "tap_sum_3x3": ((1, 8, 30, 30), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 4),
    "tap_sum_strided": ((2, 8, 31, 30), dict(kernel_shape=[3, 3], pads=[1, 0, 1, 2], strides=[2, 2]), 3),
    "tap_sum_dilated_grouped": ((1, 6, 30, 33), dict(kernel_shape=[3, 3], dilations=[2, 3], group=3, pads=[2, 2, 2, 2]), 3),
    "tap_sum_1d_grouped": ((2, 4, 40), dict(kernel_shape=[5], strides=[2], pads=[2, 1], group=2), 2),
    "tap_sum_3d": ((1, 4, 12, 30, 30), dict(kernel_shape=[3, 2, 3], strides=[1, 2, 1], pads=[1, 0, 1, 1, 1, 0]), 2),
    "tap_sum_same_upper": ((1, 3, 50, 50), dict(kernel_shape=[4, 4], strides=[3, 2], auto_pad="SAME_UPPER"), 1),
    # 3x3 stride 1 with 32+ channels each way: Winograd F(2x2, 3x3) tiles (compiled kernels only)
    "winograd_3x3": ((1, 32, 14, 14), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 32),
    "winograd_odd_batch": ((2, 33, 9, 13), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 40),
    "winograd_asym_pads": ((1, 32, 11, 8), dict(kernel_shape=[3, 3], pads=[0, 2, 2, 0]), 32),
    "winograd_valid": ((1, 40, 7, 6), dict(kernel_shape=[3, 3]), 32),
    "winograd_same_lower": ((1, 32, 5, 6), dict(kernel_shape=[3, 3], auto_pad="SAME_LOWER"), 48),
    "winograd_tiny": ((1, 32, 3, 3), dict(kernel_shape=[3, 3], pads=[2, 2, 2, 2]), 32),
    "winograd_over_tap_sum": ((1, 128, 10, 10), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 64),
    "tap_sum_32_outputs": ((1, 128, 10, 10), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 32),  # DenseNet's
}
NO_BIAS = {"gather_strided", "tap_sum_3d", "tap_sum_strided", "winograd_valid"}
SHIFTED_WHEN_COMPILED = {"gather_3x3", "gather_strided", "gather_dilated_grouped", "gather_7x7_s2"}


@pytest.mark.parametrize("jit", ["1", "0"], ids=["compiled", "numpy"])
@pytest.mark.parametrize("case", list(CONV_CASES), ids=list(CONV_CASES))
def test_conv_matches_onnxruntime(case: str, jit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    shape, attrs, out_channels = CONV_CASES[case]
    monkeypatch.setenv("EDGETRT_JIT", jit)
    modes, plan = [], nn._conv_plan

    def recording_plan(*args):  # type: ignore[no-untyped-def]
        chosen = plan(*args)
        modes.append(chosen.mode)
        return chosen

    monkeypatch.setattr(nn, "_conv_plan", recording_plan)
    x = RNG.standard_normal(shape).astype(np.float32)
    w = RNG.standard_normal((out_channels, shape[1] // attrs.get("group", 1), *attrs["kernel_shape"])).astype(np.float32)
    b = RNG.standard_normal(out_channels).astype(np.float32)
    _compare(_single_node("Conv", x, [w] if case in NO_BIAS else [w, b], attrs), x, case)
    compiled_modes = ("winograd",) if jit == "1" else ()
    for mode in ("gather", "tap-sum", *compiled_modes):
        if case.startswith(mode.replace("-", "_")):
            expected = "shifted" if jit == "1" and case in SHIFTED_WHEN_COMPILED else mode
            assert set(modes) == {expected}, f"{case} ran as {modes}"


CONV_TRANSPOSE_CASES = {
    "plain": ((1, 3, 5, 5), dict(kernel_shape=[3, 3]), 2, 1),
    "strided_pads": ((2, 4, 4, 6), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 2]), 3, 1),
    "output_padding": ((1, 2, 5, 4), dict(kernel_shape=[3, 3], strides=[3, 2], output_padding=[1, 1]), 2, 1),
    "grouped_dilated": ((1, 4, 4, 4), dict(kernel_shape=[2, 3], dilations=[2, 2], group=2, strides=[2, 1]), 3, 2),
    "output_shape": ((1, 2, 4, 4), dict(kernel_shape=[3, 3], strides=[2, 2], output_shape=[9, 10]), 2, 1),
    "same_upper": ((1, 2, 3, 5), dict(kernel_shape=[3, 4], strides=[2, 2], auto_pad="SAME_UPPER"), 3, 1),
    "conv_transpose1d": ((2, 3, 7), dict(kernel_shape=[4], strides=[3], pads=[1, 2]), 2, 1),
    "conv_transpose3d": ((1, 2, 3, 4, 3), dict(kernel_shape=[2, 3, 2], strides=[2, 1, 2]), 2, 1),
}


@pytest.mark.parametrize("case", list(CONV_TRANSPOSE_CASES), ids=list(CONV_TRANSPOSE_CASES))
def test_conv_transpose_matches_onnxruntime(case: str) -> None:
    shape, attrs, out_per_group, group = CONV_TRANSPOSE_CASES[case]
    x = RNG.standard_normal(shape).astype(np.float32)
    w = RNG.standard_normal((shape[1], out_per_group, *attrs["kernel_shape"])).astype(np.float32)
    b = RNG.standard_normal(out_per_group * group).astype(np.float32)
    _compare(_single_node("ConvTranspose", x, [w, b], attrs), x, case)


POOL_CASES = {
    "max_3x3_s2": ("MaxPool", (2, 3, 11, 11), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), 1),
    "max_indices_ceil": ("MaxPool", (1, 2, 8, 7), dict(kernel_shape=[3, 2], strides=[2, 2], ceil_mode=1), 2),
    "max_indices_dilated": ("MaxPool", (2, 2, 9, 9), dict(kernel_shape=[2, 2], dilations=[2, 3], pads=[1, 0, 1, 1]), 2),
    "max_indices_col_major": ("MaxPool", (1, 2, 6, 5), dict(kernel_shape=[2, 2], storage_order=1), 2),
    "max_same_lower_1d": ("MaxPool", (1, 3, 10), dict(kernel_shape=[3], strides=[2], auto_pad="SAME_LOWER"), 1),
    "max_3d": ("MaxPool", (1, 2, 5, 6, 4), dict(kernel_shape=[2, 3, 2], strides=[2, 2, 1]), 1),
    "avg_include_pad": ("AveragePool", (1, 3, 7, 7), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1), 1),
    "avg_exclude_pad_ceil": (
        "AveragePool",
        (2, 2, 8, 9),
        dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 1], ceil_mode=1),
        1,
    ),
    "avg_include_pad_ceil": (
        "AveragePool",
        (1, 2, 6, 6),
        dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1),
        1,
    ),
    "avg_same_upper": ("AveragePool", (1, 2, 7, 6), dict(kernel_shape=[2, 3], strides=[2, 2], auto_pad="SAME_UPPER"), 1),
    "lp_p3": ("LpPool", (1, 2, 7, 7), dict(kernel_shape=[3, 3], p=3, strides=[2, 2], pads=[1, 1, 0, 0]), 1),
    "global_avg": ("GlobalAveragePool", (2, 5, 6, 7), {}, 1),
    "global_max": ("GlobalMaxPool", (2, 5, 6, 7), {}, 1),
    "global_lp": ("GlobalLpPool", (2, 3, 4, 5), dict(p=3), 1),
}


@pytest.mark.parametrize("case", list(POOL_CASES), ids=list(POOL_CASES))
def test_pool_matches_onnxruntime(case: str) -> None:
    op, shape, attrs, outputs = POOL_CASES[case]
    x = RNG.standard_normal(shape).astype(np.float32)
    _compare(_single_node(op, x, [], attrs, outputs), x, case)
