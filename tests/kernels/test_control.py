"""If/Loop/Scan CPU kernels against onnxruntime: trip-count/cond combinations, scan outputs,
outer-scope reads, scan axes and directions."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.frontend import load_onnx
from edge.runtime.interpreter import run_graph

F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _run_both(model, feeds: dict[str, np.ndarray]) -> None:
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = run_graph(load_onnx(model), feeds)
    for value, expected in zip(model.graph.output, want):
        assert got[value.name].shape == expected.shape, value.name
        np.testing.assert_allclose(got[value.name], expected, rtol=1e-6, err_msg=value.name)


def _loop_model(with_trip: bool, with_cond: bool, stop_at: int):
    """acc += x * (i + 1) each iteration, scan output = acc; body stops once i + 1 >= stop_at;
    ``x`` is read from the outer scope."""
    body = helper.make_graph(
        [
            helper.make_node("Cast", ["i"], ["i_f"], to=F),
            helper.make_node("Add", ["i_f", "one"], ["i1"]),
            helper.make_node("Mul", ["x", "i1"], ["step"]),
            helper.make_node("Add", ["acc_in", "step"], ["acc_out"]),
            helper.make_node("Identity", ["acc_out"], ["scan"]),
            helper.make_node("Less", ["i1", "stop"], ["cond_out"]),
        ],
        "body",
        [helper.make_tensor_value_info("i", I64, []), helper.make_tensor_value_info("c", B, []),
         helper.make_tensor_value_info("acc_in", F, [3])],
        [helper.make_tensor_value_info("cond_out", B, []), helper.make_tensor_value_info("acc_out", F, [3]),
         helper.make_tensor_value_info("scan", F, [3])],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one"),
         numpy_helper.from_array(np.array(float(stop_at), np.float32), "stop")],
    )
    node = helper.make_node("Loop", ["M" if with_trip else "", "C" if with_cond else "", "acc0"], ["acc", "scans"], body=body)
    inits = [numpy_helper.from_array(np.zeros(3, np.float32), "acc0")]
    if with_trip:
        inits.append(numpy_helper.from_array(np.array(4, np.int64), "M"))
    if with_cond:
        inits.append(numpy_helper.from_array(np.array(True), "C"))
    graph = helper.make_graph(
        [node], "loop", [helper.make_tensor_value_info("x", F, [3])],
        [helper.make_tensor_value_info("acc", F, [3]), helper.make_tensor_value_info("scans", F, [None, 3])], inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])


@pytest.mark.parametrize(
    "with_trip,with_cond,stop_at",
    [(True, False, 100), (False, True, 3), (True, True, 2), (True, True, 100)],
)
def test_loop_trip_count_and_condition(with_trip: bool, with_cond: bool, stop_at: int) -> None:
    x = np.array([1.0, -2.0, 0.5], np.float32)
    _run_both(_loop_model(with_trip, with_cond, stop_at), {"x": x})


def test_loop_false_initial_condition_runs_nothing() -> None:
    model = _loop_model(True, True, 100)
    for init in model.graph.initializer:
        if init.name == "C":
            init.CopyFrom(numpy_helper.from_array(np.array(False), "C"))
    got = run_graph(load_onnx(model), {"x": np.ones(3, np.float32)})
    np.testing.assert_array_equal(got["acc"], np.zeros(3, np.float32))
    assert got["scans"].shape == (0, 3)


@pytest.mark.parametrize("flag", [True, False])
def test_if_reads_outer_scope(flag: bool) -> None:
    then = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y_then"])], "then", [],
                             [helper.make_tensor_value_info("y_then", F, [2])])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["y_else"])], "else", [],
                              [helper.make_tensor_value_info("y_else", F, [2])])
    node = helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)
    graph = helper.make_graph(
        [node], "if", [helper.make_tensor_value_info("c", B, []), helper.make_tensor_value_info("x", F, [2])],
        [helper.make_tensor_value_info("y", F, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    _run_both(model, {"c": np.array(flag), "x": np.array([1.5, -3.0], np.float32)})


@pytest.mark.parametrize("in_axis,in_dir,out_axis,out_dir", [(0, 0, 0, 0), (1, 1, 1, 0), (1, 0, 0, 1)])
def test_scan_axes_and_directions(in_axis: int, in_dir: int, out_axis: int, out_dir: int) -> None:
    """Running sum over the scan axis; the state is [2], each slice [2]."""
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "xt"], ["s_out"]), helper.make_node("Mul", ["s_out", "xt"], ["yt"])],
        "body",
        [helper.make_tensor_value_info("s_in", F, [2]), helper.make_tensor_value_info("xt", F, [2])],
        [helper.make_tensor_value_info("s_out", F, [2]), helper.make_tensor_value_info("yt", F, [2])],
    )
    node = helper.make_node(
        "Scan", ["s0", "x"], ["s", "y"], body=body, num_scan_inputs=1,
        scan_input_axes=[in_axis], scan_input_directions=[in_dir],
        scan_output_axes=[out_axis], scan_output_directions=[out_dir],
    )
    x_shape = [4, 2] if in_axis == 0 else [2, 4]
    graph = helper.make_graph(
        [node], "scan",
        [helper.make_tensor_value_info("s0", F, [2]), helper.make_tensor_value_info("x", F, x_shape)],
        [helper.make_tensor_value_info("s", F, [2]), helper.make_tensor_value_info("y", F, [None, None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    rng = np.random.default_rng(3)
    _run_both(model, {"s0": rng.standard_normal(2).astype(np.float32), "x": rng.standard_normal(x_shape).astype(np.float32)})
