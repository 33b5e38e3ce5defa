"""MatMul + Add -> Gemm (2-D and flattened), layout chains, Transpose folded into Gemm."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from edge.passes.fuse_matmul import fuse_matmul
from tests.passes.helpers import const, model_of, ops, run_pass

RNG = np.random.default_rng(5)


@pytest.mark.parametrize("bias_shape", [(5,), (1, 5), (3, 5), (3, 1), ()])
def test_2d_matmul_add_becomes_gemm(bias_shape: tuple) -> None:
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["b", "m"], ["y"])]
    inits = [const("w", RNG.standard_normal((4, 5))), const("b", RNG.standard_normal(bias_shape))]
    graph, fired = run_pass(model_of(nodes, {"x": [3, 4]}, {"y": [3, 5]}, inits), fuse_matmul)
    assert fired == 1 and ops(graph) == ["Gemm"]


def test_bias_that_grows_the_output_is_kept() -> None:
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
    inits = [const("w", RNG.standard_normal((4, 5))), const("b", RNG.standard_normal((2, 3, 5)))]
    graph, fired = run_pass(model_of(nodes, {"x": [3, 4]}, {"y": [2, 3, 5]}, inits), fuse_matmul)
    assert fired == 0 and ops(graph) == ["MatMul", "Add"]


def test_3d_matmul_add_is_flattened_into_gemm() -> None:
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
    inits = [const("w", RNG.standard_normal((4, 5))), const("b", RNG.standard_normal((1, 1, 5)))]
    graph, fired = run_pass(model_of(nodes, {"x": [2, 3, 4]}, {"y": [2, 3, 5]}, inits), fuse_matmul)
    assert fired == 1 and ops(graph) == ["Reshape", "Gemm", "Reshape"]


def test_3d_matmul_plus_residual_becomes_a_gemm_with_a_full_addend() -> None:
    """A bias-free projection + residual (transformers with zero-initialized, folded-away
    biases): the residual is Gemm's C, flattened like the input."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["r", "m"], ["y"])]
    inits = [const("w", RNG.standard_normal((4, 5)))]
    graph, fired = run_pass(model_of(nodes, {"x": [2, 3, 4], "r": [2, 3, 5]}, {"y": [2, 3, 5]}, inits), fuse_matmul)
    assert fired == 1 and ops(graph) == ["Reshape", "Reshape", "Gemm", "Reshape"]


@pytest.mark.parametrize("x_shape", [[3, 4], [2, 3, 4]])
def test_bias_free_matmul_before_an_activation_becomes_a_gemm(x_shape: list[int]) -> None:
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Sigmoid", ["m"], ["y"])]
    inits = [const("w", RNG.standard_normal((4, 5)))]
    graph, fired = run_pass(model_of(nodes, {"x": x_shape}, {"y": [*x_shape[:-1], 5]}, inits), fuse_matmul)
    assert fired == 1 and "MatMul" not in ops(graph) and ops(graph).count("Gemm") == 1


def test_matmul_before_a_non_activation_is_kept() -> None:
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Softmax", ["m"], ["y"])]
    inits = [const("w", RNG.standard_normal((4, 5)))]
    graph, fired = run_pass(model_of(nodes, {"x": [2, 3, 4]}, {"y": [2, 3, 5]}, inits), fuse_matmul)
    assert fired == 0 and ops(graph) == ["MatMul", "Softmax"]


def test_3d_matmul_with_dynamic_batch_is_kept() -> None:
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
    inits = [const("w", RNG.standard_normal((4, 5))), const("b", RNG.standard_normal(5))]
    graph, fired = run_pass(model_of(nodes, {"x": ["n", 3, 4]}, {"y": ["n", 3, 5]}, inits), fuse_matmul)
    assert fired == 0


def test_transpose_chain_collapses() -> None:
    nodes = [
        helper.make_node("Transpose", ["x"], ["t1"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["t1"], ["y"], perm=[0, 2, 1, 3]),
    ]
    graph, fired = run_pass(model_of(nodes, {"x": [1, 2, 3, 4]}, {"y": [1, 4, 3, 2]}), fuse_matmul)
    assert fired == 1 and ops(graph) == ["Transpose"] and graph.nodes[0].attrs["perm"] == [0, 3, 2, 1]


def test_reshape_chain_collapses_even_with_a_shared_inner_reshape() -> None:
    nodes = [
        helper.make_node("Reshape", ["x", "s1"], ["r1"]),
        helper.make_node("Reshape", ["r1", "s2"], ["y"]),
        helper.make_node("Neg", ["r1"], ["z"]),
    ]
    inits = [const("s1", np.array([6, 4], np.int64)), const("s2", np.array([3, 8], np.int64))]
    graph, fired = run_pass(model_of(nodes, {"x": [2, 3, 4]}, {"y": [3, 8], "z": [6, 4]}, inits), fuse_matmul)
    assert fired == 1 and ops(graph).count("Reshape") == 2
    final = [n for n in graph.nodes if n.outputs[0].name == "y"][0]
    assert final.inputs[0].name == "x"


@pytest.mark.parametrize("op_type", ["Gemm", "MatMul"])
@pytest.mark.parametrize("side", ["a", "b"])
def test_transpose_folds_into_gemm_flags(op_type: str, side: str) -> None:
    a_shape, b_shape = ([4, 3] if side == "a" else [3, 4]), ([5, 4] if side == "b" else [4, 5])
    first, second = ("ta", "b") if side == "a" else ("a", "ta")
    src = "a" if side == "a" else "b"
    nodes = [
        helper.make_node("Transpose", [src], ["ta"], perm=[1, 0]),
        helper.make_node(op_type, [first, second], ["y"]),
    ]
    graph, fired = run_pass(model_of(nodes, {"a": a_shape, "b": b_shape}, {"y": [3, 5]}), fuse_matmul)
    assert fired == 1 and ops(graph) == ["Gemm"]
    assert graph.nodes[0].attrs[f"trans{side.upper()}"] == 1
