"""Constant folding: runs CPU kernels on all-constant nodes and on shapes that are static."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from edge.frontend.onnx_import import load_onnx
from edge.ir import Graph, Node, Value
from edge.passes.fold_constants import fold_constants
from tests.passes.helpers import const, model_of, ops, run_pass


def test_shape_gather_concat_chain_folds_into_a_constant_reshape() -> None:
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"], name="reshape"),
    ]
    inits = [
        const("zero", np.array(0, np.int64)),
        const("axes", np.array([0], np.int64)),
        const("minus1", np.array([-1], np.int64)),
    ]
    graph, folded = run_pass(model_of(nodes, {"x": [2, 3, 4]}, {"y": [2, 12]}, inits), fold_constants)
    assert folded == 4 and ops(graph) == ["Reshape"]
    assert graph.nodes[0].inputs[1].const.tolist() == [2, -1]


def test_constant_of_shape_weights_fold() -> None:
    nodes = [
        helper.make_node(
            "ConstantOfShape", ["shape"], ["w"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])
        ),
        helper.make_node("Mul", ["x", "w"], ["y"]),
    ]
    graph, folded = run_pass(
        model_of(nodes, {"x": [3, 2]}, {"y": [3, 2]}, [const("shape", np.array([3, 2], np.int64))]), fold_constants
    )
    assert folded == 1 and ops(graph) == ["Mul"]
    np.testing.assert_array_equal(graph.nodes[0].inputs[1].const, np.full((3, 2), 0.5, np.float32))


def test_shape_of_a_dynamic_input_is_not_folded() -> None:
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Reshape", ["x", "s"], ["y"])]
    graph = load_onnx(model_of(nodes, {"x": ["batch", 4]}, {"y": ["batch", 4]}))
    assert fold_constants(graph) == 0 and ops(graph) == ["Shape", "Reshape"]


def test_random_ops_and_graph_outputs_are_not_folded() -> None:
    c = Value("c", const=np.ones(2, np.float32))
    y = Value("y", np.float32, (2,))
    r = Value("r", np.float32, (2,))
    graph = Graph([Node("RandomNormal", [], [r], {"shape": [2]}), Node("Add", [c, c], [y])], outputs=[y, r])
    assert fold_constants(graph) == 0 and ops(graph) == ["RandomNormal", "Add"]


def _embedding_like_model():
    """x + Expand(y, shape), the shape computed as transformers' BERT export computes its
    token-type ids: ConstantOfShape -> Mul -> Equal -> Where, which onnx's data propagation
    does not follow, so the Add's batch dim is an invented symbol until folding."""
    nodes = [
        helper.make_node("ConstantOfShape", ["rank"], ["ones"], value=helper.make_tensor("v", TensorProto.INT64, [1], [1])),
        helper.make_node("Mul", ["ones", "minus1"], ["negated"]),
        helper.make_node("Equal", ["target", "negated"], ["keep"]),
        helper.make_node("Where", ["keep", "ones", "target"], ["shape"]),
        helper.make_node("Expand", ["y", "shape"], ["wide"]),
        helper.make_node("Add", ["x", "wide"], ["sum"]),
        helper.make_node("Relu", ["sum"], ["out"]),
    ]
    inits = [
        const("rank", np.array([3], np.int64)),
        const("minus1", np.array(-1, np.int64)),
        const("target", np.array([1, 4, 8], np.int64)),
        const("y", np.ones((1, 1, 8), np.float32)),
    ]
    return model_of(nodes, {"x": [1, 4, 8]}, {"out": ["n", "s", "c"]}, inits)


def test_folding_turns_dims_onnx_invented_into_numbers() -> None:
    from edge.frontend.onnx_import import import_model
    from edge.passes import optimize

    graph = import_model(_embedding_like_model())
    assert not graph.outputs[0].is_static  # onnx named the dim "unk__..."
    optimize(graph)
    assert graph.outputs[0].shape == (1, 4, 8)
    assert all(v.is_static for node in graph.nodes for v in node.outputs)


def test_a_reshape_by_a_computed_shape_is_not_evaluated_on_zeros() -> None:
    """A Reshape whose target shape is a runtime tensor keeps its symbolic dims: zeros would
    give it a wrong static shape."""
    from edge.frontend.shapes import infer_missing_shapes

    graph_proto = helper.make_graph(
        [helper.make_node("Reshape", ["x", "target"], ["y"])],
        "computed_reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]), helper.make_tensor_value_info("target", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])],
    )
    model = helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", 17)])
    graph = load_onnx(model.SerializeToString())
    infer_missing_shapes(graph)
    assert graph.outputs[0].shape is None or not graph.outputs[0].is_static
