"""Dead-code elimination, identity removal and common-subexpression elimination."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from edge.frontend.onnx_import import load_onnx
from edge.passes.cse import eliminate_common_subexpressions
from edge.passes.dce import eliminate_dead_code
from edge.passes.identity import remove_identities
from tests.passes.helpers import const, model_of, ops, run_pass


def test_dce_removes_dead_chains_and_keeps_inputs() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["y"]),
        helper.make_node("Neg", ["x"], ["d1"]),
        helper.make_node("Exp", ["d1"], ["d2"]),
    ]
    graph, removed = run_pass(model_of(nodes, {"x": [3], "unused": [3]}, {"y": [3]}), eliminate_dead_code)
    assert removed == 2 and ops(graph) == ["Relu"] and [v.name for v in graph.inputs] == ["x", "unused"]


NOOPS = [
    ("Identity", [], {}, True, [4, 6]),
    ("Dropout", [], {}, True, [4, 6]),
    ("Cast", [], {"to": TensorProto.FLOAT}, True, [4, 6]),
    ("Transpose", [], {"perm": [0, 1]}, True, [4, 6]),
    ("Transpose", [], {"perm": [1, 0]}, False, [6, 4]),
    ("Reshape", [np.array([4, 6], np.int64)], {}, True, [4, 6]),
    ("Reshape", [np.array([6, 4], np.int64)], {}, False, [6, 4]),
    ("Pad", [np.zeros(4, np.int64)], {}, True, [4, 6]),
    ("Pad", [np.array([0, 1, 0, 0], np.int64)], {}, False, [4, 7]),
    ("Slice", [np.array([0], np.int64), np.array([99], np.int64)], {}, True, [4, 6]),
    ("Slice", [np.array([1], np.int64), np.array([99], np.int64)], {}, False, [3, 6]),
    ("Expand", [np.array([1, 6], np.int64)], {}, True, [4, 6]),
    ("Expand", [np.array([2, 4, 6], np.int64)], {}, False, [2, 4, 6]),
    ("Add", [np.zeros((1, 6), np.float32)], {}, True, [4, 6]),
    ("Add", [np.zeros((3, 4, 6), np.float32)], {}, False, [3, 4, 6]),  # broadcasts x up: kept
    ("Add", [np.full((1, 6), 1e-30, np.float32)], {}, False, [4, 6]),
    ("Sub", [np.zeros(6, np.float32)], {}, True, [4, 6]),
    ("Mul", [np.ones((4, 1), np.float32)], {}, True, [4, 6]),
    ("Mul", [np.full((4, 1), -1.0, np.float32)], {}, False, [4, 6]),
    ("Div", [np.ones((), np.float32)], {}, True, [4, 6]),
]


@pytest.mark.parametrize("op_type,extra,attrs,removed,out_shape", NOOPS)
def test_identity_removal(op_type: str, extra: list, attrs: dict, removed: bool, out_shape: list[int]) -> None:
    names = [f"k{i}" for i in range(len(extra))]
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node(op_type, ["a", *names], ["b"], **attrs),
        helper.make_node("Neg", ["b"], ["y"]),
    ]
    model = model_of(nodes, {"x": [4, 6]}, {"y": out_shape}, [const(n, e) for n, e in zip(names, extra)])
    graph, changes = run_pass(model, remove_identities)
    assert changes == int(removed)
    assert (op_type in ops(graph)) != removed


def test_zero_minus_x_is_kept() -> None:
    nodes = [helper.make_node("Sub", ["zero", "x"], ["y"])]
    graph, changes = run_pass(model_of(nodes, {"x": [4, 6]}, {"y": [4, 6]}, [const("zero", np.zeros(6))]), remove_identities)
    assert changes == 0 and ops(graph) == ["Sub"]


def test_cast_to_another_dtype_is_kept() -> None:
    nodes = [
        helper.make_node("Cast", ["x"], ["d"], to=TensorProto.DOUBLE),
        helper.make_node("Cast", ["d"], ["y"], to=TensorProto.FLOAT),
    ]
    graph, changes = run_pass(model_of(nodes, {"x": [3]}, {"y": [3]}), remove_identities)
    assert changes == 0 and ops(graph) == ["Cast", "Cast"]


def test_identity_between_input_and_output_is_kept() -> None:
    graph = load_onnx(model_of([helper.make_node("Identity", ["x"], ["y"])], {"x": [2]}, {"y": [2]}))
    assert remove_identities(graph) == 0 and graph.outputs[0].name == "y" and graph.inputs[0].name == "x"


def test_dropout_in_training_mode_is_kept() -> None:
    nodes = [helper.make_node("Dropout", ["x", "ratio", "train"], ["y"])]
    inits = [const("ratio", np.float32(0.0)), const("train", np.array(True))]
    graph = load_onnx(model_of(nodes, {"x": [3]}, {"y": [3]}, inits))
    assert remove_identities(graph) == 0


def test_cse_merges_equal_nodes_and_constants() -> None:
    nodes = [
        helper.make_node("Add", ["x", "c1"], ["a"]),
        helper.make_node("Add", ["x", "c2"], ["b"]),
        helper.make_node("Mul", ["a", "b"], ["y"]),
    ]
    inits = [const("c1", np.arange(3.0)), const("c2", np.arange(3.0))]
    graph, merged = run_pass(model_of(nodes, {"x": [3]}, {"y": [3]}, inits), eliminate_common_subexpressions)
    assert merged == 2 and ops(graph) == ["Add", "Mul"]
    assert graph.nodes[1].inputs[0] is graph.nodes[1].inputs[1]


def test_cse_keeps_nodes_with_different_attributes() -> None:
    nodes = [
        helper.make_node("LeakyRelu", ["x"], ["a"], alpha=0.1),
        helper.make_node("LeakyRelu", ["x"], ["b"], alpha=0.2),
        helper.make_node("Add", ["a", "b"], ["y"]),
    ]
    graph, merged = run_pass(model_of(nodes, {"x": [3]}, {"y": [3]}), eliminate_common_subexpressions)
    assert merged == 0 and ops(graph) == ["LeakyRelu", "LeakyRelu", "Add"]


def test_cse_of_two_graph_outputs_keeps_both_names() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["y1"]), helper.make_node("Relu", ["x"], ["y2"])]
    graph, _ = run_pass(model_of(nodes, {"x": [3]}, {"y1": [3], "y2": [3]}), eliminate_common_subexpressions)
    assert [v.name for v in graph.outputs] == ["y1", "y2"]
