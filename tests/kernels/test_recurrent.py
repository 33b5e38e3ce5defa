"""LSTM/GRU/RNN CPU kernels against onnxruntime on random weights and inputs."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from edge.frontend import load_onnx
from edge.runtime.interpreter import run_graph

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
SEQ, BATCH, INPUT, HIDDEN = 5, 3, 4, 6


def _model(op: str, attrs: dict, *, bias=True, lens=None, initial=False, peepholes=False, seed=0):
    """A one-node recurrent model with random initializers; X is the only graph input."""
    rng = np.random.default_rng(seed)
    dirs = 2 if attrs.get("direction") == "bidirectional" else 1
    g = GATES[op]
    layout = attrs.get("layout", 0)
    inits = {
        "W": rng.uniform(-0.6, 0.6, (dirs, g * HIDDEN, INPUT)),
        "R": rng.uniform(-0.6, 0.6, (dirs, g * HIDDEN, HIDDEN)),
    }
    if bias:
        inits["B"] = rng.uniform(-0.4, 0.4, (dirs, 2 * g * HIDDEN))
    state_shape = (BATCH, dirs, HIDDEN) if layout else (dirs, BATCH, HIDDEN)
    if initial:
        inits["initial_h"] = rng.uniform(-1, 1, state_shape)
        if op == "LSTM":
            inits["initial_c"] = rng.uniform(-1, 1, state_shape)
    if peepholes:
        inits["P"] = rng.uniform(-0.5, 0.5, (dirs, 3 * HIDDEN))
    tensors = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()]
    if lens is not None:
        tensors.append(numpy_helper.from_array(np.array(lens, np.int32), "sequence_lens"))
    order = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"][: 8 if op == "LSTM" else 6]
    names = [n if n == "X" or n in inits or (n == "sequence_lens" and lens is not None) else "" for n in order]
    while names[-1] == "":
        names.pop()
    outputs = ["Y", "Y_h", "Y_c"][: 3 if op == "LSTM" else 2]
    node = helper.make_node(op, names, outputs, hidden_size=HIDDEN, **attrs)
    x_shape = [BATCH, SEQ, INPUT] if layout else [SEQ, BATCH, INPUT]
    graph = helper.make_graph(
        [node], op.lower(), [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None] * (4 if o == "Y" else 3)) for o in outputs], tensors,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    x = rng.standard_normal(x_shape).astype(np.float32)
    return model, x


def _check(model, x: np.ndarray, oracle: str = "ort") -> None:
    if oracle == "ort":
        want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x})
    else:
        want = ReferenceEvaluator(model).run(None, {"X": x})
    got = run_graph(load_onnx(model), {"X": x})
    for value, expected in zip(model.graph.output, want):
        np.testing.assert_allclose(got[value.name], expected, rtol=1e-4, atol=1e-5, err_msg=value.name)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("lens", [None, [5, 2, 4]])
def test_directions_and_sequence_lens(op: str, direction: str, lens) -> None:
    model, x = _model(op, {"direction": direction}, lens=lens, initial=True)
    _check(model, x)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_no_bias_no_initial_state(op: str) -> None:
    model, x = _model(op, {}, bias=False)
    _check(model, x)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_lstm_peepholes_clip_input_forget(direction: str) -> None:
    attrs = {"direction": direction, "clip": 0.7, "input_forget": 1}
    model, x = _model("LSTM", attrs, peepholes=True, initial=True, lens=[5, 3, 1])
    _check(model, x)


@pytest.mark.parametrize("linear_before_reset", [0, 1])
def test_gru_linear_before_reset(linear_before_reset: int) -> None:
    model, x = _model("GRU", {"linear_before_reset": linear_before_reset, "direction": "bidirectional"}, initial=True)
    _check(model, x)


@pytest.mark.parametrize(
    "op,activations,alpha,beta",
    [
        ("LSTM", ["HardSigmoid", "Tanh", "Softsign", "Sigmoid", "Relu", "Tanh"], [0.3], [0.4]),
        ("GRU", ["Sigmoid", "LeakyRelu", "HardSigmoid", "ScaledTanh"], [0.1, 0.25, 0.9], [0.55, 1.2]),
        ("RNN", ["Affine", "Elu"], [0.8, 0.5], [0.1]),
        ("RNN", ["ThresholdedRelu", "Softplus"], [0.2], []),
    ],
)
def test_activation_lists(op: str, activations: list[str], alpha: list[float], beta: list[float]) -> None:
    attrs = {"direction": "bidirectional", "activations": activations}
    if alpha:
        attrs["activation_alpha"] = alpha
    if beta:
        attrs["activation_beta"] = beta
    model, x = _model(op, attrs, initial=True)
    _check(model, x)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_batch_first_layout(op: str) -> None:
    """layout=1 (batch-first); onnxruntime's CPU kernels refuse it, so ONNX's reference judges."""
    model, x = _model(op, {"layout": 1, "direction": "bidirectional"}, initial=True, lens=None)
    _check(model, x, oracle="reference")


def test_pytorch_exported_lstm() -> None:
    """A two-layer bidirectional LSTM as PyTorch exports it (needs torch; skipped without)."""
    torch = pytest.importorskip("torch")
    import io

    torch.manual_seed(0)
    net = torch.nn.LSTM(INPUT, HIDDEN, num_layers=2, bidirectional=True).eval()
    x = torch.randn(SEQ, BATCH, INPUT)
    buffer = io.BytesIO()
    torch.onnx.export(net, (x,), buffer, input_names=["X"], output_names=["Y", "Y_h", "Y_c"], dynamo=False)
    graph = load_onnx(buffer.getvalue())
    got = run_graph(graph, {"X": x.numpy()})
    with torch.no_grad():
        y, (h, c) = net(x)
    np.testing.assert_allclose(got["Y"], y.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["Y_h"], h.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["Y_c"], c.numpy(), rtol=1e-4, atol=1e-5)
