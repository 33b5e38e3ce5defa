"""The reference backend against independent oracles: onnxruntime on the light models (random
weights) and the test models, ONNX's node cases for the ops it reimplements; and a check
that no reference kernel reaches the compiled kernels."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import edge
from edge.frontend import load_onnx
from edge.kernels.reference import REIMPLEMENTED
from edge.kernels.registry import supported_ops
from edge.runtime.interpreter import run_graph
from tests import models
from tests.conftest import LIGHT_DIR, LIGHT_MODELS, assert_close, ort_run
from tests.test_light_models import randomize_weights


@pytest.fixture(autouse=True)
def no_compiled_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any reference kernel that would load the compiled (numba) kernels."""
    from edge.kernels.cpu import compiled

    def refuse():
        raise AssertionError("a reference kernel reached the compiled kernels")

    monkeypatch.delenv("EDGETRT_JIT", raising=False)
    monkeypatch.setattr(compiled, "_load", refuse)


def _run_reference(model: onnx.ModelProto, feeds: dict[str, np.ndarray], optimize: bool) -> dict[str, np.ndarray]:
    """The model run on the reference backend: as imported, or built (optimized) for it."""
    if optimize:
        engine = edge.build(model.SerializeToString(), edge.BuilderConfig(backends={"cpu": "reference"}))
        assert {s.backend for s in engine.plan.steps} == {"reference"}
        return engine.create_context().run(feeds)
    return run_graph(load_onnx(model), feeds, backend="reference")


def test_reference_registers_every_cpu_op() -> None:
    assert supported_ops("reference") == supported_ops("cpu")


# optimized too where the builder's fused ops (ChannelShuffle, FusedBatchNormalization) appear
# that the test models lack; the big ones run as imported, their build being most of the time
LIGHT_CASES = [(name, False) for name in LIGHT_MODELS] + [("shufflenet", True), ("densenet121", True)]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "optimize"), LIGHT_CASES, ids=[f"{n}-{'optimized' if o else 'plain'}" for n, o in LIGHT_CASES])
def test_light_model_random_weights_match_onnxruntime(name: str, optimize: bool) -> None:
    model = randomize_weights(onnx.load(LIGHT_DIR / f"light_{name}.onnx"))
    inits = {t.name for t in model.graph.initializer}
    (value,) = [v for v in model.graph.input if v.name not in inits]
    shape = tuple(d.dim_value for d in value.type.tensor_type.shape.dim)
    feeds = {value.name: np.random.default_rng(1).random((1, *shape[1:]), np.float32)}  # one sample
    expected = ort_run(model, feeds)
    outputs = _run_reference(model, feeds, optimize)
    for output, want in zip(model.graph.output, expected):
        assert_close(outputs[output.name], want, rtol=1e-4, atol=1e-5, what=name)


TEST_MODELS = {
    "resnet_block_cnn": lambda: models.resnet_block_cnn(batch=2),
    "mobile_cnn": lambda: models.mobile_cnn(batch=2),
    "transformer_encoder": models.transformer_encoder,
    "lstm": models.lstm_model,
    "qdq_cnn": models.qdq_cnn,
}


@pytest.mark.parametrize("optimize", [False, True], ids=["plain", "optimized"])
@pytest.mark.parametrize("name", sorted(TEST_MODELS))
def test_test_model_matches_onnxruntime(name: str, optimize: bool) -> None:
    model = TEST_MODELS[name]()
    feeds = models.random_feeds(model, seed=5)
    expected = ort_run(model, feeds)
    outputs = _run_reference(model, feeds, optimize)
    for output, want in zip(model.graph.output, expected):
        got = outputs[output.name]
        if want.dtype.kind in "iu":  # quantized outputs: one step of rounding apart at most
            assert np.abs(got.astype(np.int64) - want).max() <= 1, name
        else:
            assert_close(got, want, rtol=1e-4, atol=1e-5, what=f"{name}:{output.name}")


_HALF_ROUNDING = "1-ulp half-float differences against the stored outputs of the expanded Attention (rtol 1e-3 is finer than the type); the CPU backend lists them too"
XFAILS = {
    name: _HALF_ROUNDING
    for name in (
        "test_attention_3d_causal_bf16_expanded",
        "test_attention_4d_attn_mask_causal_bf16_expanded",
        "test_attention_4d_causal_bf16_expanded",
        "test_attention_4d_causal_fp16_expanded",
        "test_attention_4d_causal_padded_kv_bf16_expanded",
        "test_attention_4d_padded_kv_bf16_expanded",
    )
}


def _node_cases() -> list:
    """ONNX node cases using an op the reference backend reimplements (and only ops it has)."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    known = supported_ops("reference")
    own = {op for domain, op in REIMPLEMENTED if not domain}
    chosen = []
    for case in cases:
        ops = {node.op_type for node in case.model.graph.node}
        if ops & own and all(op == "Constant" or op in known[""] for op in ops):
            marks = [pytest.mark.xfail(reason=XFAILS[case.name], strict=True)] if case.name in XFAILS else []
            chosen.append(pytest.param(case, id=case.name, marks=marks))
    return chosen


def _array(value: object) -> np.ndarray:
    return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(value)


@pytest.mark.parametrize("case", _node_cases())
def test_node_case(case) -> None:
    graph = load_onnx(case.model)
    for inputs, expected in case.data_sets:
        feeds = {v.name: _array(x) for v, x in zip(graph.inputs, inputs)}
        outputs = run_graph(graph, feeds, backend="reference")
        for value, want in zip(graph.outputs, expected):
            got, want = outputs[value.name], _array(want)
            assert got.dtype == want.dtype and got.shape == want.shape, (value.name, got.dtype, got.shape)
            if want.dtype.kind == "V":  # bfloat16 and other ml_dtypes: compare as float32
                got, want = got.astype(np.float32), want.astype(np.float32)
            if want.dtype.kind == "f":
                np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol, err_msg=value.name)
            else:
                np.testing.assert_array_equal(got, want, err_msg=value.name)
