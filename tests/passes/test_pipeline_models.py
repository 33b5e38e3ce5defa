"""The full pipeline on every model of the test set: optimized and unoptimized outputs agree
within 1e-4 relative on random inputs, the interface is unchanged, and the graph shrinks.

Models: the 9 light architectures from the onnx wheel (their ConstantOfShape weights are
replaced by seeded random constants in the IR, so the numbers are real) and the builders in
tests/models.py (ResNet-style CNN, mobile CNN, transformer encoder, LSTM, Q/DQ CNN).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from edge.kernels.registry import supported_ops

from edge.frontend.onnx_import import load_onnx
from edge.ir import Graph, verify
from edge.passes import optimize
from edge.runtime.interpreter import Schedule
from tests.conftest import LIGHT_DIR, LIGHT_MODELS
from tests.models import ALL_BUILDERS, qdq_cnn, randomize_constant_of_shape

# what each model must at least come down to (fused node counts after optimization)
EXPECTED_FUSED = {
    "resnet50": ("FusedConv", 49),
    "resnet_block_cnn": ("FusedConv", 5),
    "mobile_cnn": ("FusedConv", 3),
    "transformer_encoder": ("Attention", 2),
}


def _check(graph: Graph, expected_fused: tuple[str, int] | None = None) -> None:
    rng = np.random.default_rng(1)
    inputs = [
        rng.standard_normal(tuple(d if isinstance(d, int) else 1 for d in v.shape)).astype(v.dtype)
        for v in graph.inputs
    ]
    interface = [(v.name, v.dtype, v.shape) for v in graph.outputs]
    before = Schedule(graph).run(inputs)
    nodes_before = len(graph.nodes)
    report = optimize(graph, check=True)
    verify(graph)
    assert [(v.name, v.dtype, v.shape) for v in graph.outputs] == interface
    assert report.nodes_after == len(graph.nodes) <= nodes_before
    after = Schedule(graph).run(inputs)
    for value, got, want in zip(graph.outputs, after, before):
        assert got.shape == want.shape and got.dtype == want.dtype, value.name
        scale = float(np.abs(want).max()) or 1.0
        assert float(np.abs(got - want).max()) <= 1e-4 * scale, f"{value.name}: optimized output drifted"
    for node in graph.nodes:
        assert node.meta.get("origin"), f"node '{node.name}' lost its origin"
    if expected_fused is not None:
        op_type, count = expected_fused
        assert graph.op_types().get(op_type, 0) >= count, graph.op_types()


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model(name: str) -> None:
    graph = load_onnx(onnx.load(LIGHT_DIR / f"light_{name}.onnx"))
    randomize_constant_of_shape(graph)
    _check(graph, EXPECTED_FUSED.get(name))


@pytest.mark.parametrize("name", sorted(set(ALL_BUILDERS) - {"qdq_cnn"}))
def test_builder_model(name: str) -> None:
    model = ALL_BUILDERS[name]()
    missing = {n.op_type for n in model.graph.node} - supported_ops().get("", set())
    if missing:
        pytest.skip(f"CPU kernels not available yet: {sorted(missing)}")
    _check(load_onnx(model), EXPECTED_FUSED.get(name))


def test_qdq_model_keeps_its_interface_and_int8_facts() -> None:
    """Q/DQ removal is a deliberate precision change (see test_qdq.py for the numbers); here:
    interface, fusion, and the INT8 facts the precision stage reads."""
    graph = load_onnx(qdq_cnn())
    interface = [(v.name, v.dtype, v.shape) for v in graph.outputs]
    optimize(graph, check=True)
    assert [(v.name, v.dtype, v.shape) for v in graph.outputs] == interface
    assert [n.op_type for n in graph.nodes] == ["FusedConv", "Conv"]
    assert "int8_scale" in graph.inputs[0].meta and "int8_weight" in graph.nodes[0].inputs[1].meta
    assert "int8_scale" in graph.nodes[0].outputs[0].meta
