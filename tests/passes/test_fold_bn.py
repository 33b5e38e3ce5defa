"""BatchNormalization and per-channel Mul/Add folding into Conv / ConvTranspose / Gemm / MatMul."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from edge.frontend.onnx_import import load_onnx
from edge.passes.fold_bn import FOLD_BN_RULES, fold_batchnorm
from tests.passes.helpers import const, model_of, ops, run_pass

RNG = np.random.default_rng(7)


def _bn_inits(c: int) -> list:
    return [
        const("gamma", RNG.uniform(0.5, 1.5, c)),
        const("beta", RNG.standard_normal(c)),
        const("mean", RNG.standard_normal(c)),
        const("var", RNG.uniform(0.5, 1.5, c)),
    ]


def _bn(src: str, out: str = "y") -> helper.NodeProto:
    return helper.make_node("BatchNormalization", [src, "gamma", "beta", "mean", "var"], [out], epsilon=1e-3)


def test_batchnorm_folds_into_conv_with_bias() -> None:
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"), _bn("c")]
    inits = [const("w", RNG.standard_normal((4, 3, 3, 3))), const("b", RNG.standard_normal(4)), *_bn_inits(4)]
    graph, fired = run_pass(model_of(nodes, {"x": [2, 3, 5, 5]}, {"y": [2, 4, 5, 5]}, inits), fold_batchnorm)
    assert (
        fired == 1
        and ops(graph) == ["Conv"]
        and graph.nodes[0].meta["origin"] == ["conv", nodes[1].name or "BatchNormalization_1"]
    )


def test_batchnorm_folds_into_grouped_conv_transpose() -> None:
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["c"], group=2, strides=[2, 2]), _bn("c")]
    inits = [const("w", RNG.standard_normal((4, 3, 2, 2))), *_bn_inits(6)]
    graph, fired = run_pass(model_of(nodes, {"x": [1, 4, 3, 3]}, {"y": [1, 6, 6, 6]}, inits), fold_batchnorm)
    assert fired == 1 and ops(graph) == ["ConvTranspose"]


@pytest.mark.parametrize("trans_b", [0, 1])
def test_batchnorm_folds_into_gemm(trans_b: int) -> None:
    w = RNG.standard_normal((5, 4) if trans_b else (4, 5))
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=trans_b, alpha=0.5, beta=2.0), _bn("g")]
    inits = [const("w", w), const("b", RNG.standard_normal(5)), *_bn_inits(5)]
    graph, fired = run_pass(model_of(nodes, {"x": [3, 4]}, {"y": [3, 5]}, inits), fold_batchnorm)
    assert fired == 1 and ops(graph) == ["Gemm"]


def test_batchnorm_after_2d_matmul_becomes_gemm() -> None:
    nodes = [helper.make_node("MatMul", ["x", "w"], ["g"]), _bn("g")]
    graph, fired = run_pass(
        model_of(nodes, {"x": [3, 4]}, {"y": [3, 5]}, [const("w", RNG.standard_normal((4, 5))), *_bn_inits(5)]),
        fold_batchnorm,
    )
    assert fired == 1 and ops(graph) == ["Gemm"]


def test_batchnorm_is_kept_when_the_conv_output_has_another_consumer() -> None:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), _bn("c"), helper.make_node("Relu", ["c"], ["r"])]
    inits = [const("w", RNG.standard_normal((4, 3, 1, 1))), *_bn_inits(4)]
    graph = load_onnx(model_of(nodes, {"x": [1, 3, 4, 4]}, {"y": [1, 4, 4, 4], "r": [1, 4, 4, 4]}, inits))
    trace: list = []
    assert FOLD_BN_RULES.apply(graph, trace) == 0
    assert "consumer outside the pattern" in trace[0].reason


def test_batchnorm_is_kept_when_weights_are_an_input() -> None:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), _bn("c")]
    graph, fired = run_pass(
        model_of(nodes, {"x": [1, 3, 4, 4], "w": [4, 3, 1, 1]}, {"y": [1, 4, 4, 4]}, _bn_inits(4)), fold_batchnorm
    )
    assert fired == 0 and ops(graph) == ["Conv", "BatchNormalization"]


@pytest.mark.parametrize("op_type", ["Mul", "Add"])
@pytest.mark.parametrize("shape", [(1, 4, 1, 1), (4, 1, 1), (1,), ()])
def test_per_channel_constants_fold_into_conv(op_type: str, shape: tuple) -> None:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node(op_type, ["k", "c"], ["y"])]
    inits = [const("w", RNG.standard_normal((4, 3, 1, 1))), const("k", RNG.uniform(0.5, 1.5, shape))]
    graph, fired = run_pass(model_of(nodes, {"x": [1, 3, 4, 4]}, {"y": [1, 4, 4, 4]}, inits), fold_batchnorm)
    assert fired == 1 and ops(graph) == ["Conv"]


@pytest.mark.parametrize("shape", [(1, 1, 1, 4), (1, 4, 4, 4), (2, 1, 1, 1), (1, 1, 4, 1, 1)])
def test_constants_that_are_not_per_channel_are_kept(shape: tuple) -> None:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Add", ["c", "k"], ["y"])]
    inits = [const("w", RNG.standard_normal((4, 3, 1, 1))), const("k", RNG.standard_normal(shape))]
    out = list(np.broadcast_shapes((1, 4, 4, 4), shape))
    graph, fired = run_pass(model_of(nodes, {"x": [1, 3, 4, 4]}, {"y": out}, inits), fold_batchnorm)
    assert fired == 0 and ops(graph) == ["Conv", "Add"]


def test_gemm_bias_add_per_column_folds() -> None:
    nodes = [helper.make_node("Gemm", ["x", "w"], ["g"]), helper.make_node("Add", ["g", "k"], ["y"])]
    inits = [const("w", RNG.standard_normal((4, 5))), const("k", RNG.standard_normal((1, 5)))]
    graph, fired = run_pass(model_of(nodes, {"x": [3, 4]}, {"y": [3, 5]}, inits), fold_batchnorm)
    assert fired == 1 and ops(graph) == ["Gemm"]


def test_per_channel_mul_add_after_a_standalone_batchnorm_merge_into_it() -> None:
    nodes = [
        _bn("x", "n"),
        helper.make_node("Mul", ["n", "k1"], ["m"]),
        helper.make_node("Add", ["k2", "m"], ["a"]),
        helper.make_node("Relu", ["a"], ["y"]),
    ]
    inits = [
        *_bn_inits(4),
        const("k1", RNG.uniform(0.5, 1.5, (4, 1, 1))),
        const("k2", RNG.standard_normal((1, 4, 1, 1))),
    ]
    graph, fired = run_pass(model_of(nodes, {"x": [2, 4, 3, 3]}, {"y": [2, 4, 3, 3]}, inits), fold_batchnorm)
    assert fired == 2 and ops(graph) == ["BatchNormalization", "Relu"]
