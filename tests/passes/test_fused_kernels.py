"""CPU kernels and shape functions of the fused ops, against onnxruntime running the unfused ops."""

from __future__ import annotations

import numpy as np
import pytest
from edge.kernels.registry import OpContext, lookup_shape
from onnx import helper

from edge.ir import Node, Value
from edge.runtime.interpreter import evaluate_node
from tests.conftest import ort_run
from tests.passes.helpers import const, model_of

RNG = np.random.default_rng(21)

# (activation, params, ONNX node builder for the reference, opset)
CASES = [
    ("", [], None, 17),
    ("Relu", [], lambda s: [helper.make_node("Relu", [s], ["y"])], 17),
    ("Clip", [-0.5, 0.7], lambda s: [helper.make_node("Clip", [s, "lo", "hi"], ["y"])], 17),
    ("LeakyRelu", [0.3], lambda s: [helper.make_node("LeakyRelu", [s], ["y"], alpha=0.3)], 17),
    ("Sigmoid", [], lambda s: [helper.make_node("Sigmoid", [s], ["y"])], 17),
    ("HardSigmoid", [0.3, 0.6], lambda s: [helper.make_node("HardSigmoid", [s], ["y"], alpha=0.3, beta=0.6)], 17),
    ("HardSwish", [], lambda s: [helper.make_node("HardSwish", [s], ["y"])], 17),
    ("SiLU", [], lambda s: [helper.make_node("Sigmoid", [s], ["sg"]), helper.make_node("Mul", [s, "sg"], ["y"])], 17),
    ("Gelu", [], lambda s: [helper.make_node("Gelu", [s], ["y"])], 20),
    ("Tanh", [], lambda s: [helper.make_node("Tanh", [s], ["y"])], 17),
]
BOUNDS = [const("lo", np.float32(-0.5)), const("hi", np.float32(0.7))]


def _reference(head: list, act, opset: int, inputs: dict, inits: list, out_shape: list) -> np.ndarray:
    last = head[-1].output[0]
    tail = act(last) if act else [helper.make_node("Identity", [last], ["y"])]
    model = model_of(
        head + tail, {k: list(v.shape) for k, v in inputs.items()}, {"y": out_shape}, inits + BOUNDS, opset=opset
    )
    return ort_run(model, inputs)[0]


@pytest.mark.parametrize("activation,params,act,opset", CASES)
def test_fused_conv_with_residual(activation, params, act, opset) -> None:
    x = RNG.standard_normal((2, 4, 6, 6)).astype(np.float32)
    w = RNG.standard_normal((6, 2, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(6).astype(np.float32)
    z = RNG.standard_normal((2, 6, 3, 3)).astype(np.float32)
    attrs = {"pads": [1, 1, 1, 1], "strides": [2, 2], "group": 2, "activation": activation, "activation_params": params}
    values = [Value(n, np.float32, a.shape) for n, a in (("x", x), ("w", w), ("b", b), ("z", z))]
    node = Node("FusedConv", values, [Value("y")], attrs, domain="edgetrt")
    got = evaluate_node(node, [x, w, b, z], 1)[0]
    head = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2], group=2),
        helper.make_node("Add", ["c", "z"], ["a"]),
    ]
    expected = _reference(head, act, opset, {"x": x, "z": z}, [const("w", w), const("b", b)], [2, 6, 3, 3])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    dtype, shape = lookup_shape("FusedConv", "edgetrt")(OpContext(node, 1), *values)[0]
    assert shape == (2, 6, 3, 3) and dtype == np.float32


@pytest.mark.parametrize("activation,params,act,opset", CASES)
def test_fused_gemm(activation, params, act, opset) -> None:
    a = RNG.standard_normal((4, 3)).astype(np.float32)
    w = RNG.standard_normal((5, 4)).astype(np.float32)
    c = RNG.standard_normal(5).astype(np.float32)
    attrs = {"transA": 1, "transB": 1, "alpha": 0.5, "activation": activation, "activation_params": params}
    values = [Value(n, np.float32, v.shape) for n, v in (("a", a), ("w", w), ("c", c))]
    node = Node("FusedGemm", values, [Value("y")], attrs, domain="edgetrt")
    got = evaluate_node(node, [a, w, c], 1)[0]
    head = [helper.make_node("Gemm", ["a", "w", "c"], ["g"], transA=1, transB=1, alpha=0.5)]
    expected = _reference(head, act, opset, {"a": a}, [const("w", w), const("c", c)], [3, 5])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert lookup_shape("FusedGemm", "edgetrt")(OpContext(node, 1), *values)[0][1] == (3, 5)


@pytest.mark.parametrize("activation,params,act,opset", CASES)
def test_fused_batch_normalization(activation, params, act, opset) -> None:
    x = RNG.standard_normal((2, 5, 4, 3)).astype(np.float32)
    scale, bias, mean = (RNG.standard_normal(5).astype(np.float32) for _ in range(3))
    var = RNG.uniform(0.5, 2.0, 5).astype(np.float32)
    attrs = {"epsilon": 1e-3, "activation": activation, "activation_params": params}
    arrays = {"x": x, "s": scale, "b": bias, "m": mean, "v": var}
    values = [Value(n, np.float32, a.shape) for n, a in arrays.items()]
    node = Node("FusedBatchNormalization", values, [Value("y")], attrs, domain="edgetrt")
    got = evaluate_node(node, list(arrays.values()), 1)[0]
    head = [helper.make_node("BatchNormalization", list(arrays), ["n"], epsilon=1e-3)]
    expected = _reference(head, act, opset, {"x": x}, [const(n, a) for n, a in list(arrays.items())[1:]], [2, 5, 4, 3])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert lookup_shape("FusedBatchNormalization", "edgetrt")(OpContext(node, 1), *values)[0][1] == (2, 5, 4, 3)


def test_fused_conv_transpose() -> None:
    x = RNG.standard_normal((1, 4, 3, 3)).astype(np.float32)
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    attrs = {
        "strides": [2, 2],
        "pads": [1, 1, 0, 0],
        "output_padding": [1, 1],
        "activation": "Relu",
        "activation_params": [],
    }
    values = [Value("x", np.float32, x.shape), Value("w", np.float32, w.shape)]
    node = Node("FusedConvTranspose", values, [Value("y")], attrs, domain="edgetrt")
    got = evaluate_node(node, [x, w], 1)[0]
    head = [
        helper.make_node("ConvTranspose", ["x", "w"], ["c"], strides=[2, 2], pads=[1, 1, 0, 0], output_padding=[1, 1])
    ]
    expected = _reference(head, CASES[1][2], 17, {"x": x}, [const("w", w)], list(got.shape))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert lookup_shape("FusedConvTranspose", "edgetrt")(OpContext(node, 1), *values)[0][1] == got.shape


def test_attention_matches_softmax_formula() -> None:
    q, k, v = (RNG.standard_normal((2, 3, n, 4)).astype(np.float32) for n in (5, 7, 7))
    mask = np.where(RNG.random((2, 1, 1, 7)) < 0.3, -1e4, 0).astype(np.float32)
    values = [Value(n, np.float32, a.shape) for n, a in (("q", q), ("k", k), ("v", v), ("m", mask))]
    node = Node("Attention", values, [Value("y")], {"scale": 0.5}, domain="edgetrt")
    got = evaluate_node(node, [q, k, v, mask], 1)[0]
    scores = np.einsum("bhqd,bhkd->bhqk", q.astype(np.float64), k) * 0.5 + mask
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    np.testing.assert_allclose(got, probs @ v, rtol=1e-5, atol=1e-6)
    assert lookup_shape("Attention", "edgetrt")(OpContext(node, 1), *values)[0][1] == (2, 3, 5, 4)


def test_silu() -> None:
    x = np.linspace(-8, 8, 33, dtype=np.float32)
    node = Node("SiLU", [Value("x", np.float32, x.shape)], [Value("y")], domain="edgetrt")
    np.testing.assert_allclose(evaluate_node(node, [x], 1)[0], x / (1 + np.exp(-x.astype(np.float64))), rtol=1e-6)
