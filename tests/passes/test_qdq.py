"""Q/DQ folding: int8 weights become float constants with their integers in meta; activation
Q->DQ pairs become INT8 scales on the tensor."""

from __future__ import annotations

import numpy as np
from onnx import helper

from edge.frontend.onnx_import import load_onnx
from edge.passes.qdq import fold_qdq
from edge.runtime.interpreter import run_graph
from tests.models import qdq_cnn, random_feeds
from tests.passes.helpers import const, model_of, ops, run_pass


def test_weight_dequantize_folds_into_a_constant_that_remembers_int8() -> None:
    w_int = np.arange(-12, 12, dtype=np.int8).reshape(4, 3, 1, 2)
    scale = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "s", "zp"], ["w"], axis=0),
        helper.make_node("Conv", ["x", "w"], ["y"]),
    ]
    inits = [const("wq", w_int), const("s", scale), const("zp", np.zeros(4, np.int8))]
    graph, fired = run_pass(model_of(nodes, {"x": [1, 3, 4, 4]}, {"y": [1, 4, 4, 3]}, inits), fold_qdq)
    assert fired == 1 and ops(graph) == ["Conv"]
    weight = graph.nodes[0].inputs[1]
    np.testing.assert_array_equal(weight.const, w_int.astype(np.float32) * scale.reshape(4, 1, 1, 1))
    np.testing.assert_array_equal(weight.meta["int8_weight"], w_int)
    np.testing.assert_array_equal(weight.meta["int8_scale"], scale)
    assert weight.meta["int8_axis"] == 0


def test_activation_pair_becomes_tensor_meta() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "s", "zp"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["d"]),
        helper.make_node("Neg", ["d"], ["y"]),
    ]
    inits = [const("s", np.float32(0.05)), const("zp", np.int8(0))]
    graph = load_onnx(model_of(nodes, {"x": [8]}, {"y": [8]}, inits))
    assert fold_qdq(graph) == 1
    from edge.passes.dce import eliminate_dead_code

    eliminate_dead_code(graph)
    assert ops(graph) == ["Relu", "Neg"]
    relu_out = graph.nodes[0].outputs[0]
    assert float(relu_out.meta["int8_scale"]) == np.float32(0.05) and int(relu_out.meta["int8_zero_point"]) == 0


def test_pair_with_different_scales_is_kept() -> None:
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s1", "zp"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s2", "zp"], ["y"]),
    ]
    inits = [const("s1", np.float32(0.05)), const("s2", np.float32(0.1)), const("zp", np.int8(0))]
    graph, fired = run_pass(model_of(nodes, {"x": [8]}, {"y": [8]}, inits), fold_qdq)
    assert fired == 0 and ops(graph) == ["QuantizeLinear", "DequantizeLinear"]


def test_qdq_model_matches_its_dequantized_twin() -> None:
    """After folding, the fp32 graph equals the model with activation Q/DQ pairs deleted, and
    stays within a few quantization steps of the quantized original."""
    model = qdq_cnn()
    feeds = random_feeds(model)
    graph = load_onnx(model)
    original = run_graph(graph, feeds)["logits"]
    assert fold_qdq(graph) == 4
    folded = run_graph(graph, feeds)["logits"]

    twin = load_onnx(model)
    for node in list(twin.nodes):
        if (
            node.op_type == "DequantizeLinear"
            and node.inputs[0].producer is not None
            and not node.inputs[0].producer.inputs[0].is_const
        ):
            source = node.inputs[0].producer.inputs[0]
            for user, index in list(node.outputs[0].uses):
                user.set_input(index, source)
    np.testing.assert_allclose(folded, run_graph(twin, feeds)["logits"], rtol=1e-5, atol=1e-5)
    assert np.abs(folded - original).max() < 0.2
