"""Whole models on the GPU against the CPU reference (GPU tests: skipped without a GPU).

All 9 light models of the onnx wheel (random weights) and the repo's test models (CNN with
residuals, transformer encoder, LSTM, a BERT-base-sized encoder) are built for the CUDA
backend and for the CPU, and run on the same inputs (the CPU side on the numpy reference
backend): FP32 within 1e-3 relative (no TF32 anywhere), FP16 with cosine >= 0.999 and the
FP16 tolerance of ``compare``; warm runs (CUDA graph captured, then replayed) give the first
run's outputs bit for bit. A model whose FP32 activations pass FP16's range (the build's FP16
overflow warning) must carry the same warning on both builds and show it in both outputs.
Two contexts on two streams agree with one.
"""

from __future__ import annotations

import threading

import numpy as np
import onnx
import pytest

import edge
from tests.conftest import LIGHT_DIR, LIGHT_MODELS
from tests.models import lstm_model, random_feeds, resnet_block_cnn, transformer_encoder
from tests.test_light_models import randomize_weights

pytestmark = pytest.mark.gpu

TEST_MODELS = {
    "resnet_block_cnn": resnet_block_cnn,
    "transformer_encoder": transformer_encoder,
    "lstm": lstm_model,
    # BERT-base's size: 12 layers, 768 wide, 12 heads, 128 tokens (85M weights, recognized Attention)
    "bert_base_sized_encoder": lambda: transformer_encoder(batch=1, seq=128, d_model=768, heads=12, layers=12),
}


def _model(name: str) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    if name in TEST_MODELS:
        model = TEST_MODELS[name]()
        return model, random_feeds(model)
    model = randomize_weights(onnx.load(LIGHT_DIR / f"light_{name}.onnx"))
    rng = np.random.default_rng(1)
    feeds = {}
    for value in model.graph.input:
        if value.name in {t.name for t in model.graph.initializer}:
            continue
        shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        feeds[value.name] = rng.random(shape, np.float32)
    return model, feeds


def _engines(model: onnx.ModelProto, precision: str) -> tuple[edge.Engine, edge.Engine]:
    data = model.SerializeToString()
    gpu = edge.build(data, edge.BuilderConfig(profile="desktop-cuda", precision=precision))
    cpu = edge.build(data, edge.BuilderConfig(precision=precision, backends={"cpu": "reference"}))  # numpy: no JIT warm-up
    return gpu, cpu


def _compare(actual: np.ndarray, expected: np.ndarray, precision: str, what: str) -> None:
    a, b = actual.astype(np.float64).ravel(), expected.astype(np.float64).ravel()
    if precision == "fp32":
        scale = max(float(np.max(np.abs(b))), 1e-6)
        assert float(np.max(np.abs(a - b))) <= 1e-3 * scale, f"{what}: max abs err {np.max(np.abs(a - b)):.3g} vs scale {scale:.3g}"
        return
    cosine = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))
    assert cosine >= 0.999, f"{what}: cosine {cosine:.6f}"
    np.testing.assert_allclose(actual, expected, rtol=1e-2, atol=1e-2 * max(1.0, float(np.max(np.abs(b)))), err_msg=what)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", [*LIGHT_MODELS, *TEST_MODELS])
def test_model_on_gpu_matches_cpu(name: str, precision: str) -> None:
    model, feeds = _model(name)
    gpu, cpu = _engines(model, precision)
    assert any(s.backend == "cuda" for s in gpu.plan.steps), "nothing was placed on the GPU"
    context = gpu.create_context()
    got = context.run(feeds)
    want = cpu.create_context().run(feeds)
    replayed = [context.run(feeds) for _ in range(2)]  # the second run captures a CUDA graph, the third replays it
    for again in replayed:
        for key in got:
            np.testing.assert_array_equal(again[key], got[key], err_msg=f"{name} {precision} {key}: a warm run differs from the first")
    overflow = [w for w in cpu.build.get("warnings", []) if w.startswith("FP16 overflow")]
    if overflow:  # random weights grow past FP16's range (resnet50, shufflenet): both builds say so, both outputs show it
        assert any(w.startswith("FP16 overflow") for w in gpu.build.get("warnings", [])), f"{name}: the GPU build does not warn"
        for key, expected in want.items():
            assert not np.isfinite(expected).all() and not np.isfinite(got[key]).all(), f"{name} {key}: overflow warned but not seen"
        return
    for key, expected in want.items():
        if np.issubdtype(expected.dtype, np.floating):
            _compare(got[key], expected, precision, f"{name} {precision} {key}")
        else:
            np.testing.assert_array_equal(got[key], expected)


def test_two_contexts_on_two_streams_agree() -> None:
    model, feeds = _model("resnet_block_cnn")
    engine, _ = _engines(model, "fp16")
    other = {k: v[::-1].copy() + 0.5 for k, v in feeds.items()}
    single = engine.create_context()
    expected = [single.run(feeds), single.run(other)]
    results: dict[int, list] = {}

    def work(index: int, inputs: dict) -> None:
        context = engine.create_context()
        results[index] = [context.run(inputs) for _ in range(20)]

    threads = [threading.Thread(target=work, args=(i, f)) for i, f in enumerate((feeds, other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for index in (0, 1):
        for run in results[index]:
            for key, value in expected[index].items():
                np.testing.assert_array_equal(run[key], value)


def test_bad_input_on_the_gpu_is_a_one_line_error_and_the_context_stays_usable() -> None:
    model, feeds = _model("resnet_block_cnn")
    engine, _ = _engines(model, "fp32")
    context = engine.create_context()
    name, array = next(iter(feeds.items()))
    with pytest.raises(edge.errors.InputError, match=name):
        context.run({name: array[..., :-1]})
    with pytest.raises(edge.errors.InputError, match="dtype"):
        context.run({name: array.astype(np.float64)})
    assert np.isfinite(next(iter(context.run(feeds).values()))).all()
