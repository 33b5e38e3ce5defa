"""Epilogue fusion into FusedConv / FusedConvTranspose / FusedGemm / FusedBatchNormalization, and
where it must not fire."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from edge.frontend.onnx_import import load_onnx
from edge.passes.fuse_activation import FUSE_ACTIVATION_RULES, fuse_activations
from tests.passes.helpers import const, model_of, ops, run_pass

RNG = np.random.default_rng(11)

ACTIVATIONS = [
    ("Relu", [], {}, "Relu", []),
    ("Clip", ["lo", "hi"], {}, "Clip", [0.0, 6.0]),
    ("LeakyRelu", [], {"alpha": 0.2}, "LeakyRelu", [0.2]),
    ("Sigmoid", [], {}, "Sigmoid", []),
    ("HardSigmoid", [], {"alpha": 0.3, "beta": 0.4}, "HardSigmoid", [0.3, 0.4]),
    ("HardSwish", [], {}, "HardSwish", []),
    ("Tanh", [], {}, "Tanh", []),
]


def _act(op_type: str, extra: list[str], attrs: dict, src: str) -> helper.NodeProto:
    return helper.make_node(op_type, [src, *extra], ["y"], **attrs)


_BOUNDS = [const("lo", np.float32(0.0)), const("hi", np.float32(6.0))]


@pytest.mark.parametrize("op_type,extra,attrs,name,params", ACTIVATIONS)
def test_conv_activation_fuses(op_type, extra, attrs, name, params) -> None:
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), _act(op_type, extra, attrs, "c")]
    inits = [const("w", RNG.standard_normal((4, 3, 3, 3))), const("b", RNG.standard_normal(4)), *_BOUNDS[: len(extra)]]
    graph, fired = run_pass(model_of(nodes, {"x": [1, 3, 5, 5]}, {"y": [1, 4, 5, 5]}, inits), fuse_activations)
    assert fired == 1 and ops(graph) == ["FusedConv"]
    node = graph.nodes[0]
    assert node.domain == "edgetrt" and node.attrs["activation"] == name
    np.testing.assert_allclose(node.attrs["activation_params"], params, rtol=1e-6)


@pytest.mark.parametrize("op_type,extra,attrs,name,params", ACTIVATIONS)
def test_gemm_activation_fuses(op_type, extra, attrs, name, params) -> None:
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1), _act(op_type, extra, attrs, "g")]
    inits = [const("w", RNG.standard_normal((5, 4))), const("b", RNG.standard_normal(5)), *_BOUNDS[: len(extra)]]
    graph, fired = run_pass(model_of(nodes, {"x": [3, 4]}, {"y": [3, 5]}, inits), fuse_activations)
    assert fired == 1 and ops(graph) == ["FusedGemm"] and graph.nodes[0].attrs["activation"] == name


def _batch_norm(**attrs) -> helper.NodeProto:
    return helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["n"], **attrs)


_BN_PARAMS = [const(n, RNG.standard_normal(4)) for n in "sbm"] + [const("v", RNG.uniform(0.5, 2.0, 4))]


@pytest.mark.parametrize("op_type,extra,attrs,name,params", ACTIVATIONS)
def test_batch_norm_activation_fuses(op_type, extra, attrs, name, params) -> None:
    """A standing BatchNormalization (pre-activation blocks: BN -> act -> Conv) takes its activation."""
    nodes = [_batch_norm(epsilon=1e-3), _act(op_type, extra, attrs, "n")]
    graph, fired = run_pass(model_of(nodes, {"x": [1, 4, 5, 5]}, {"y": [1, 4, 5, 5]}, [*_BN_PARAMS, *_BOUNDS[: len(extra)]]), fuse_activations)
    assert fired == 1 and ops(graph) == ["FusedBatchNormalization"]
    node = graph.nodes[0]
    assert node.attrs["activation"] == name and node.attrs["epsilon"] == pytest.approx(1e-3)


def test_batch_norm_in_training_mode_keeps_its_activation() -> None:
    nodes = [_batch_norm(training_mode=1), helper.make_node("Relu", ["n"], ["y"])]
    model = model_of(nodes, {"x": [2, 4, 5, 5]}, {"y": [2, 4, 5, 5]}, _BN_PARAMS)
    graph = load_onnx(model)
    assert fuse_activations(graph) == 0 and ops(graph) == ["BatchNormalization", "Relu"]


def test_residual_add_then_relu_fuse_into_one_conv() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Add", ["skip", "c"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["y"], name="relu"),
    ]
    inits = [const("w", RNG.standard_normal((4, 3, 3, 3)))]
    graph, fired = run_pass(
        model_of(nodes, {"x": [1, 3, 5, 5], "skip": [1, 4, 5, 5]}, {"y": [1, 4, 5, 5]}, inits), fuse_activations
    )
    assert fired == 2 and ops(graph) == ["FusedConv"]
    node = graph.nodes[0]
    assert node.inputs[2] is None and node.inputs[3].name == "skip" and node.attrs["activation"] == "Relu"
    assert node.meta["origin"] == ["conv", "add", "relu"]


def test_conv_transpose_with_residual_fuses() -> None:
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w", "b"], ["c"], strides=[2, 2]),
        helper.make_node("Add", ["c", "skip"], ["a"]),
        helper.make_node("Sigmoid", ["a"], ["y"]),
    ]
    inits = [const("w", RNG.standard_normal((3, 2, 2, 2))), const("b", RNG.standard_normal(2))]
    graph, fired = run_pass(
        model_of(nodes, {"x": [1, 3, 4, 4], "skip": [1, 2, 8, 8]}, {"y": [1, 2, 8, 8]}, inits), fuse_activations
    )
    assert fired == 2 and ops(graph) == ["FusedConvTranspose"]


def test_broadcasting_add_is_not_a_residual() -> None:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Add", ["c", "row"], ["y"])]
    inits = [const("w", RNG.standard_normal((4, 3, 1, 1)))]
    graph = load_onnx(model_of(nodes, {"x": [1, 3, 5, 5], "row": [1, 1, 1, 5]}, {"y": [1, 4, 5, 5]}, inits))
    trace: list = []
    assert FUSE_ACTIVATION_RULES.apply(graph, trace) == 0
    assert "does not match" in trace[0].reason


def test_activation_before_the_residual_blocks_the_residual() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Add", ["r", "skip"], ["y"]),
    ]
    inits = [const("w", RNG.standard_normal((4, 3, 1, 1)))]
    graph, fired = run_pass(
        model_of(nodes, {"x": [1, 3, 5, 5], "skip": [1, 4, 5, 5]}, {"y": [1, 4, 5, 5]}, inits), fuse_activations
    )
    assert fired == 1 and ops(graph) == ["FusedConv", "Add"]


def test_no_fusion_across_a_graph_output() -> None:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
    inits = [const("w", RNG.standard_normal((4, 3, 1, 1)))]
    graph, fired = run_pass(
        model_of(nodes, {"x": [1, 3, 5, 5]}, {"c": [1, 4, 5, 5], "y": [1, 4, 5, 5]}, inits), fuse_activations
    )
    assert fired == 0 and ops(graph) == ["Conv", "Relu"]


def test_clip_with_dynamic_bounds_is_not_fused() -> None:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Clip", ["c", "lo"], ["y"])]
    inits = [const("w", RNG.standard_normal((4, 3, 1, 1)))]
    graph, fired = run_pass(
        model_of(nodes, {"x": [1, 3, 5, 5], "lo": []}, {"y": [1, 4, 5, 5]}, inits), fuse_activations
    )
    assert fired == 0


def test_gelu_through_the_reshape_after_a_flattened_gemm() -> None:
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["g"]),
        helper.make_node("Reshape", ["g", "shape"], ["r"]),
        helper.make_node("Gelu", ["r"], ["y"]),
    ]
    inits = [const("w", RNG.standard_normal((4, 6))), const("shape", np.array([2, 3, 6], np.int64))]
    graph, fired = run_pass(model_of(nodes, {"x": [6, 4]}, {"y": [2, 3, 6]}, inits, opset=20), fuse_activations)
    assert fired == 1 and ops(graph) == ["FusedGemm", "Reshape"] and graph.nodes[0].attrs["activation"] == "Gelu"


def test_residual_add_then_relu_fuse_into_one_gemm() -> None:
    """A biased Gemm, a residual of its output's shape, a Relu: FusedGemm(A, W, B, Z, Relu),
    equal to onnxruntime on the model as written."""
    import onnxruntime as ort

    from tests.passes.helpers import feeds_for
    from edge.runtime.interpreter import run_graph

    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["g"]),
        helper.make_node("Add", ["z", "g"], ["s"]),
        helper.make_node("Relu", ["s"], ["y"]),
    ]
    inits = [const("w", RNG.standard_normal((4, 6))), const("b", RNG.standard_normal(6))]
    model = model_of(nodes, {"x": [5, 4], "z": [5, 6]}, {"y": [5, 6]}, inits)
    graph, fired = run_pass(model, fuse_activations)
    assert fired == 2 and ops(graph) == ["FusedGemm"]
    node = graph.nodes[0]
    assert node.attrs["activation"] == "Relu" and [v.name for v in node.inputs] == ["x", "w", "b", "z"]
    feeds = feeds_for(graph, seed=4)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(run_graph(graph, feeds)["y"], expected, rtol=1e-5, atol=1e-6)


def test_residual_through_the_reshape_after_a_flattened_gemm() -> None:
    """A transformer block's projection: the bias Gemm on flattened rows, reshaped back, plus
    the residual; the residual flattens into the Gemm instead."""
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["g"]),
        helper.make_node("Reshape", ["g", "shape"], ["r"]),
        helper.make_node("Add", ["r", "z"], ["y"]),
    ]
    inits = [const("w", RNG.standard_normal((4, 6))), const("b", RNG.standard_normal(6)), const("shape", np.array([2, 3, 6], np.int64))]
    graph, fired = run_pass(model_of(nodes, {"x": [6, 4], "z": [2, 3, 6]}, {"y": [2, 3, 6]}, inits), fuse_activations)
    assert fired == 1 and ops(graph) == ["Reshape", "FusedGemm", "Reshape"] and len(graph.nodes[1].inputs) == 4


def test_broadcasting_add_after_a_gemm_is_not_a_residual() -> None:
    nodes = [helper.make_node("Gemm", ["x", "w"], ["g"]), helper.make_node("Add", ["g", "z"], ["y"])]
    graph, fired = run_pass(model_of(nodes, {"x": [5, 4], "z": [1, 6]}, {"y": [5, 6]}, [const("w", RNG.standard_normal((4, 6)))]), fuse_activations)
    assert fired == 0 and ops(graph) == ["Gemm", "Add"]
