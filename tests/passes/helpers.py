"""Helpers for pass tests: build a one-graph model from onnx.helper pieces, run a pass, and
check that outputs (names, dtypes, shapes, values on random inputs) are unchanged."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge.frontend.onnx_import import load_onnx
from edge.ir import Graph, verify
from edge.runtime.interpreter import run_graph

__all__ = ["model_of", "feeds_for", "run_pass", "ops", "const"]


def const(name: str, array: np.ndarray | float | list) -> onnx.TensorProto:
    """An initializer (float values default to float32)."""
    array = np.asarray(array)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    return numpy_helper.from_array(array, name)


def model_of(
    nodes: Sequence[onnx.NodeProto],
    inputs: dict[str, Sequence[int | str]],
    outputs: dict[str, Sequence[int | str] | None],
    inits: Sequence[onnx.TensorProto] = (),
    opset: int = 17,
    dtype: int = TensorProto.FLOAT,
) -> onnx.ModelProto:
    """A checked model whose inputs/outputs are all of ``dtype``."""
    graph = helper.make_graph(
        list(nodes),
        "test",
        [helper.make_tensor_value_info(n, dtype, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, dtype, s) for n, s in outputs.items()],
        list(inits),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def feeds_for(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        v.name: rng.standard_normal(tuple(d if isinstance(d, int) else 2 for d in v.shape)).astype(v.dtype)
        for v in graph.inputs
    }


def ops(graph: Graph) -> list[str]:
    """Op types in graph order (the shape of the optimized graph, for assertions)."""
    return [n.op_type for n in graph.nodes]


def run_pass(
    model: onnx.ModelProto,
    pass_fn: Callable[[Graph], int],
    rtol: float = 1e-5,
    atol: float = 1e-6,
    seed: int = 0,
) -> tuple[Graph, int]:
    """Import ``model``, apply ``pass_fn``, verify the IR and compare outputs on random inputs.

    Returns the rewritten graph and the number of changes the pass reported.
    """
    graph = load_onnx(model)
    feeds = feeds_for(graph, seed)
    interface = [(v.name, v.dtype, v.shape) for v in graph.outputs]
    before = run_graph(graph, feeds)
    changes = pass_fn(graph)
    graph.sort()
    verify(graph)
    assert [(v.name, v.dtype, v.shape) for v in graph.outputs] == interface
    after = run_graph(graph, feeds)
    for name, expected in before.items():
        assert after[name].dtype == expected.dtype and after[name].shape == expected.shape, name
        np.testing.assert_allclose(after[name], expected, rtol=rtol, atol=atol, err_msg=name)
    return graph, changes
