"""AveragePool moved behind the narrowing 1x1 conv after it, and where that would change results."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import edge
from edge.frontend.onnx_import import load_onnx
from edge.passes.pool_order import move_pools_after_pointwise_convs
from tests.passes.helpers import const, model_of, ops, run_pass

RNG = np.random.default_rng(5)


def _pool_then_conv(pool: dict, cout: int = 4, kernel: int = 1, **conv) -> tuple:
    nodes = [
        helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[3, 3], **pool),
        helper.make_node("Conv", ["p", "w", "b"], ["y"], **conv),
    ]
    group = conv.get("group", 1)
    inits = [const("w", RNG.standard_normal((cout, 8 // group, kernel, kernel))), const("b", RNG.standard_normal(cout))]
    return nodes, inits


@pytest.mark.parametrize(
    "pool, size",
    [
        (dict(strides=[1, 1], pads=[1, 1, 1, 1]), 9),  # Inception's pool projection: pads left out of the count
        (dict(strides=[2, 2], pads=[0, 1, 1, 0], ceil_mode=1), 5),
        (dict(strides=[1, 1], count_include_pad=1), 7),  # no padding: counting it changes nothing
        (dict(strides=[2, 2], auto_pad="SAME_UPPER"), 5),
    ],
)
def test_pool_moves_behind_a_narrowing_pointwise_conv(pool: dict, size: int) -> None:
    nodes, inits = _pool_then_conv(pool)
    model = model_of(nodes, {"x": [2, 8, 9, 9]}, {"y": [2, 4, size, size]}, inits)
    graph, fired = run_pass(model, move_pools_after_pointwise_convs)
    assert fired == 1 and ops(graph) == ["Conv", "AveragePool"]
    assert graph.nodes[0].outputs[0].shape == (2, 4, 9, 9)


@pytest.mark.parametrize(
    "pool, conv, out, reason",
    [
        (dict(pads=[1, 1, 1, 1], count_include_pad=1), {}, [1, 4, 7, 7], "divisor"),
        (dict(pads=[1, 1, 1, 1]), dict(cout=8), [1, 8, 7, 7], "does not narrow"),
        (dict(pads=[1, 1, 1, 1]), dict(kernel=3), [1, 4, 5, 5], "not 1x1"),
        (dict(pads=[1, 1, 1, 1]), dict(strides=[2, 2]), [1, 4, 4, 4], "not 1x1 with stride 1"),
        (dict(pads=[1, 1, 1, 1]), dict(group=2), [1, 4, 7, 7], "grouped"),
    ],
)
def test_pool_stays_where_moving_it_would_change_the_result(pool: dict, conv: dict, out: list, reason: str) -> None:
    nodes, inits = _pool_then_conv(pool, **conv)
    graph = load_onnx(model_of(nodes, {"x": [1, 8, 7, 7]}, {"y": out}, inits))
    trace: list = []
    from edge.passes.pool_order import POOL_ORDER_RULES

    assert POOL_ORDER_RULES.apply(graph, trace=trace) == 0 and ops(graph) == ["AveragePool", "Conv"]
    assert any(reason in str(refusal) for refusal in trace), trace


def test_optimizer_leaves_the_activation_after_the_moved_pool() -> None:
    """In the default pipeline the conv's Relu ends after the pool (it does not commute with
    averaging), and the engine matches onnxruntime."""
    from tests.conftest import ort_run

    nodes, inits = _pool_then_conv(dict(pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("Relu", ["y"], ["z"]))
    model = model_of(nodes, {"x": [1, 8, 7, 7]}, {"z": [1, 4, 7, 7]}, inits)
    engine = edge.build(model.SerializeToString())
    assert [n.op_type for n in engine.graph.nodes] == ["Conv", "AveragePool", "Relu"]
    x = RNG.standard_normal((1, 8, 7, 7)).astype(np.float32)
    np.testing.assert_allclose(engine.create_context().run({"x": x})["z"], ort_run(model, {"x": x})[0], rtol=1e-5, atol=1e-5)
