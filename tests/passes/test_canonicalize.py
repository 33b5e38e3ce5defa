"""Canonicalization rules: each fires on its form and keeps values; refusals where unsafe."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from edge.passes.canonicalize import canonicalize
from tests.passes.helpers import const, model_of, ops, run_pass


@pytest.mark.parametrize(
    "node,inits,out_shape",
    [
        (helper.make_node("Flatten", ["x"], ["y"], axis=2), [], [6, 20]),
        (helper.make_node("Squeeze", ["x", "ax"], ["y"]), [const("ax", np.array([0], np.int64))], [3, 4, 5]),
        (helper.make_node("Unsqueeze", ["x", "ax"], ["y"]), [const("ax", np.array([1], np.int64))], [2, 1, 3, 4, 5]),
    ],
)
def test_shape_ops_become_reshape(node, inits, out_shape) -> None:
    shape = [1, 3, 4, 5] if node.op_type == "Squeeze" else [2, 3, 4, 5]
    graph, fired = run_pass(model_of([node], {"x": shape}, {"y": out_shape}, inits), canonicalize)
    assert fired == 1 and ops(graph) == ["Reshape"]


def test_flatten_of_dynamic_batch_is_kept() -> None:
    graph, fired = run_pass(
        model_of([helper.make_node("Flatten", ["x"], ["y"])], {"x": ["n", 3, 4]}, {"y": ["n", 12]}), canonicalize
    )
    assert fired == 0 and ops(graph) == ["Flatten"]


def test_sub_and_div_by_constants_become_add_and_mul() -> None:
    nodes = [helper.make_node("Sub", ["x", "m"], ["a"]), helper.make_node("Div", ["a", "s"], ["y"])]
    inits = [const("m", np.array([0.5, -1.0, 2.0])), const("s", np.array([0.25, 2.0, 3.0]))]
    graph, fired = run_pass(model_of(nodes, {"x": [2, 3]}, {"y": [2, 3]}, inits), canonicalize)
    assert fired == 2 and ops(graph) == ["Add", "Mul"]
    np.testing.assert_allclose(graph.nodes[1].inputs[1].const, [4.0, 0.5, 1 / 3], rtol=1e-7)


def test_integer_division_is_not_a_multiplication() -> None:
    nodes = [helper.make_node("Div", ["x", "s"], ["y"])]
    model = model_of(
        nodes, {"x": [3]}, {"y": [3]}, [const("s", np.array([2, 3, 4], np.int32))], dtype=TensorProto.INT32
    )
    graph, fired = run_pass(model, canonicalize)
    assert fired == 0 and ops(graph) == ["Div"]


def test_sum_of_two_becomes_add_and_of_three_stays() -> None:
    graph, fired = run_pass(
        model_of([helper.make_node("Sum", ["a", "b"], ["y"])], {"a": [3], "b": [3]}, {"y": [3]}), canonicalize
    )
    assert fired == 1 and ops(graph) == ["Add"]
    model = model_of([helper.make_node("Sum", ["a", "b", "c"], ["y"])], {"a": [3], "b": [3], "c": [3]}, {"y": [3]})
    assert run_pass(model, canonicalize)[1] == 0


def _pad_model(target: helper.NodeProto, pads: list[int], value: float = 0.0, mode: str = "constant"):
    nodes = [helper.make_node("Pad", ["x", "pads", "value"], ["p"], mode=mode), target]
    inits = [
        const("pads", np.array(pads, np.int64)),
        const("value", np.float32(value)),
        const("w", np.random.default_rng(0).standard_normal((4, 3, 3, 3))),
    ]
    return nodes, inits


def test_pad_folds_into_conv() -> None:
    nodes, inits = _pad_model(helper.make_node("Conv", ["p", "w"], ["y"], pads=[1, 0, 1, 0]), [0, 0, 1, 2, 0, 0, 3, 1])
    graph, fired = run_pass(model_of(nodes, {"x": [1, 3, 8, 8]}, {"y": [1, 4, 12, 9]}, inits), canonicalize)
    assert fired == 1 and ops(graph) == ["Conv"] and graph.nodes[0].attrs["pads"] == [2, 2, 4, 1]


def test_pad_folds_into_average_pool_counting_the_padding() -> None:
    nodes, inits = _pad_model(
        helper.make_node("AveragePool", ["p"], ["y"], kernel_shape=[3, 3]), [0, 0, 1, 1, 0, 0, 1, 1]
    )
    graph, fired = run_pass(model_of(nodes, {"x": [1, 3, 6, 6]}, {"y": [1, 3, 6, 6]}, inits[:2]), canonicalize)
    assert fired == 1 and ops(graph) == ["AveragePool"] and graph.nodes[0].attrs["count_include_pad"] == 1


@pytest.mark.parametrize(
    "why,target,pads,value,mode",
    [
        ("reflect mode", "Conv", [0, 0, 1, 1, 0, 0, 1, 1], 0.0, "reflect"),
        ("nonzero value", "Conv", [0, 0, 1, 1, 0, 0, 1, 1], 1.0, "constant"),
        ("channel pad", "Conv", [0, 1, 1, 1, 0, 0, 1, 1], 0.0, "constant"),
        ("zero pad before max", "MaxPool", [0, 0, 1, 1, 0, 0, 1, 1], 0.0, "constant"),
    ],
)
def test_pad_is_kept_where_folding_would_change_values(why, target, pads, value, mode) -> None:
    inputs = ["p", "w"] if target == "Conv" else ["p"]
    attrs = {"kernel_shape": [3, 3]} if target == "MaxPool" else {}
    nodes, inits = _pad_model(helper.make_node(target, inputs, ["y"], **attrs), pads, value, mode)
    channels = 4 if pads[1] else 3
    w_shape = (4, channels, 3, 3)
    inits[2] = const("w", np.random.default_rng(0).standard_normal(w_shape))
    out = [1, 4, 6, 6] if target == "Conv" else [1, 3, 6, 6]
    graph, fired = run_pass(
        model_of(nodes, {"x": [1, 3, 6, 6]}, {"y": out}, inits if target == "Conv" else inits[:2]), canonicalize
    )
    assert fired == 0 and ops(graph) == ["Pad", target], why


def test_upsample_becomes_resize_with_the_same_values() -> None:
    nodes = [helper.make_node("Upsample", ["x", "scales"], ["y"], mode="nearest")]
    model = model_of(
        nodes, {"x": [1, 2, 3, 3]}, {"y": [1, 2, 6, 9]}, [const("scales", np.array([1, 1, 2, 3], np.float32))], opset=9
    )
    graph, fired = run_pass(model, canonicalize)
    assert fired == 1 and ops(graph) == ["Resize"]
