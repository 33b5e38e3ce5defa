"""On a GPU: the INT8 kernels against the CPU's INT8 path (the oracle), per layer on random data
and for a whole calibrated CNN.

Per layer the GPU reads the same values the CPU does (float16 activations), so both compute the
same codes and int32 sums and the same float32 epilogue: a tensor written as INT8 must decode to
the CPU's codes (at most one step apart, on at most 0.1 % of values: a rounding boundary), a
float output must equal the CPU's up to its float16 storage. Sizes cover tile edges in M, N
and K; both tile tactics run. Layers the integer kernels refuse (grouped convolutions) and the
INT8 layers without one (an Add) run float kernels between fake quantizations, one step from the
CPU at most on a bounded share of values. The whole CNN, built INT8 for desktop-cuda, agrees
with the CPU INT8 engine to one step of its logits' scale on all but a few values (a code that
flips on a rounding boundary upstream moves what it feeds), and warm (graph-replayed) runs
repeat the first bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edge
from edge.ir import Node, Value
from edge.kernels import registry
from edge.kernels.backend import StepSpec, TensorInfo
from edge.kernels.cuda.int8 import TILES
from edge.kernels.tactics import Tactic
from tests.cuda.conftest import run_on
from tests.cuda.int8_cases import Int8Case, code_steps, conv_case, cpu_result, gemm_case, gpu_spec, matmul_case, quantization_steps
from tests.models import random_feeds, resnet_block_cnn

pytestmark = pytest.mark.gpu

F32, F16 = np.dtype(np.float32), np.dtype(np.float16)
FLIPS = 1e-3
"""Share of a layer's INT8 outputs allowed one step from the CPU's (inputs on a rounding boundary)."""
UNROUNDED_FLIPS = 0.02
"""The same for cuDNN's fused INT8 form, whose output is stored unrounded in float16: float16's
2^-11 relative error moves a value near a rounding boundary across it (0.6 % of codes spread
over ±40 steps in a numpy simulation)."""

EDGES = [(1, 1, 1), (5, 31, 7), (17, 33, 9), (130, 65, 129), (257, 100, 33), (64, 1000, 200)]
"""(M, K, N) of the GEMM cases: below, at and past the 64/128 tiles and the 32-deep steps."""

NHWC_CASES = [
    conv_case("nhwc-conv3x3-residual-relu", (2, 16, 9, 9), (32, 16, 3, 3), {"pads": [1, 1, 1, 1]}, residual=True,
              residual_on_grid=True, activation="Relu", channels_last=True),
    conv_case("nhwc-conv1x1-stride2", (2, 64, 14, 14), (128, 64, 1, 1), {"strides": [2, 2]}, channels_last=True),
    conv_case("nhwc-conv3x3-clip-float-out", (1, 8, 12, 12), (24, 8, 3, 3), {"pads": [1, 1, 1, 1]}, activation="Clip",
              params=(0.0, 6.0), requantize=False, channels_last=True),
    conv_case("nhwc-conv-ragged-channels", (1, 20, 7, 7), (36, 20, 3, 3), {"pads": [1, 1, 1, 1]}, channels_last=True),
    conv_case("nhwc-conv-silu-residual-off-grid", (1, 16, 8, 8), (16, 16, 3, 3), {"pads": [1, 1, 1, 1]}, residual=True,
              activation="SiLU", channels_last=True),
    conv_case("nhwc-pointwise-64", (2, 64, 7, 7), (96, 64, 1, 1), activation="Relu", channels_last=True),
]
"""Channels-last INT8 convolutions (the form a GPU build gives them): on the NVRTC kernels'
NHWC packing, and on cuDNN's INT8 plans where those take the step."""

CASES = [
    conv_case("conv3x3-stride2", (2, 8, 13, 13), (16, 8, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
    conv_case("conv1x1-ragged", (1, 70, 7, 7), (130, 70, 1, 1), bias=False),
    conv_case("conv-dilated-relu-float-out", (1, 6, 12, 12), (10, 6, 3, 3), {"dilations": [2, 2]}, activation="Relu", requantize=False),
    conv_case("fusedconv-residual-clip", (2, 16, 9, 9), (16, 16, 3, 3), {"pads": [1, 1, 1, 1]}, residual=True, activation="Clip", params=(0.0, 6.0)),
    conv_case("conv1d", (2, 4, 20), (5, 4, 3), {"pads": [1, 1]}),
    conv_case("conv7x7-stem", (1, 3, 40, 40), (64, 3, 7, 7), {"pads": [3, 3, 3, 3], "strides": [2, 2]}),
    *NHWC_CASES,
    *[gemm_case(f"gemm-{m}x{k}x{n}", (m, k), (n, k), {"transB": 1}) for m, k, n in EDGES],
    gemm_case("gemm-transA-alpha", (40, 9), (40, 70), {"transA": 1, "alpha": 0.75}, c=None),
    gemm_case("fusedgemm-activation-c-relu", (33, 64), (64, 96), {"beta": 0.5}, c="activation", activation="Relu"),
    gemm_case("gemm-float-out", (7, 200), (200, 11), requantize=False),
    gemm_case("fusedgemm-bias-residual", (40, 96), (96, 64), residual=True),
    gemm_case("fusedgemm-residual-gelu", (33, 64), (64, 48), c=None, residual=True, activation="Gelu"),
    *[matmul_case(f"matmul-{m}x{k}x{n}", (2, m, k), (k, n)) for m, k, n in EDGES[1:4]],
    matmul_case("matmul-vector", (48,), (48, 5), requantize=False),
]


def _check(case: Int8Case, got: np.ndarray, expected: np.ndarray, dtype: np.dtype, flips: float = FLIPS) -> None:
    out = case.node.outputs[0]
    assert got.shape == expected.shape, case.id
    if out.meta.get("int8_output"):
        steps = code_steps(got, expected, out.meta["int8_scale"])
        assert steps.max() <= 1, f"{case.id}: codes {steps.max():.0f} apart"
        assert np.count_nonzero(steps) <= flips * steps.size, f"{case.id}: {np.count_nonzero(steps)} of {steps.size} codes one apart"
        return
    scale = float(np.abs(expected).max()) or 1.0
    rtol = 1e-6 if dtype == F32 else 2e-3
    np.testing.assert_allclose(got.astype(np.float64), expected, rtol=rtol, atol=rtol * 1e-2 * scale, err_msg=case.id)


@pytest.mark.parametrize("tactic", sorted(TILES))
@pytest.mark.parametrize("dtype", [F16, F32], ids=["fp16", "fp32"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_integer_kernel_matches_the_cpu_int8_path(gpu, case, dtype, tactic):
    spec, runtime = gpu_spec(case, dtype, Tactic(tactic))
    assert registry.resolve(case.node, 17, "cuda", "int8").name.startswith("int8.imma_")
    (got,) = run_on(gpu, spec, runtime)
    _check(case, got, cpu_result(case), dtype)


@pytest.mark.parametrize("form", ["fused", "unfused"])
@pytest.mark.parametrize("case", NHWC_CASES, ids=lambda c: c.id)
def test_cudnn_int8_conv_matches_the_cpu_int8_path(gpu, case, form):
    """cuDNN's INT8 plans: the unfused form (int32 sums, the integer epilogue) computes the CPU's
    codes; the fused one leaves the output off its grid by less than half a step, so it decodes
    to the same codes but at rounding boundaries (and is not offered where it would move a
    residual that is not on its grid, or for activations it cannot clamp with)."""
    spec, runtime = gpu_spec(case, F16)
    offered = [t for t in registry.resolve(case.node, 17, "cuda", "int8").tactics(spec) if t.params.get("source") == "cudnn"]
    if not offered:
        pytest.skip("cuDNN is not available or takes none of these channel counts")
    wanted = [t for t in offered if (t.params.get("epilogue") == "nvrtc") == (form == "unfused")]
    if not wanted:
        assert form == "fused" and case.id.endswith("off-grid")
        return
    spec, runtime = gpu_spec(case, F16, wanted[0])
    (got,) = run_on(gpu, spec, runtime)
    _check(case, got, cpu_result(case), F16, FLIPS if form == "unfused" else UNROUNDED_FLIPS)


@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize("case", [c for c in CASES if c.node.op_type not in ("Conv", "FusedConv") or c.id.startswith("nhwc")], ids=lambda c: c.id)
def test_cublaslt_int8_gemm_matches_the_cpu_int8_path(gpu, case, rank):
    """cuBLASLt's INT8 GEMMs: the same packed rows and int32 sums as the NVRTC kernels, then
    their epilogue, so the CPU's codes (outputs whose columns do not fill 16-byte int32 rows
    are not offered)."""
    spec, runtime = gpu_spec(case, F16)
    offered = [t for t in registry.resolve(case.node, 17, "cuda", "int8").tactics(spec) if t.params.get("source") == "cublaslt"]
    if not offered:
        pytest.skip("cuBLASLt is not available or its INT8 GEMMs do not take these columns")
    spec, runtime = gpu_spec(case, F16, offered[rank])
    (got,) = run_on(gpu, spec, runtime)
    _check(case, got, cpu_result(case), F16)


INT8_IO = [(0,), ("y",), (0, "y"), (0, 3, "y"), (0, 3)]
"""Which of a layer's input, residual (3) and output the plan stores as INT8 codes."""


CODES_CASES = [(case, codes) for case in (NHWC_CASES[0], NHWC_CASES[-1]) for codes in INT8_IO
               if 3 not in codes or len(case.node.inputs) > 3]
"""(layer, what it stores as codes): the residual block conv and the pointwise conv, which has no residual."""


@pytest.mark.parametrize("tactic", ["imma64x64", "imma128x128", "cudnn_int80", "cudnn_int80c", "lt_int80"])
@pytest.mark.parametrize("case, codes", CODES_CASES, ids=[f"{c.id}-{'-'.join(map(str, k))}" for c, k in CODES_CASES])
def test_int8_codes_in_and_out_match_the_cpu_int8_path(gpu, case, codes, tactic):
    """Tensors stored as INT8 codes (edge.plan.int8_storage): the integer kernels read the
    codes as they are (a pointwise conv's rows of codes with no packing pass) and write the
    output's codes, the CPU's (one apart at most on a rounding boundary); a fused cuDNN graph
    writing codes folds the output scale into its factors."""
    params = ({"source": "cudnn", "plan": 0, **({"epilogue": "nvrtc"} if tactic.endswith("c") else {})} if tactic.startswith("cudnn")
              else {"source": "cublaslt", "rank": 0} if tactic.startswith("lt") else {})
    spec, runtime = gpu_spec(case, F16, Tactic(tactic, params), codes)
    offered = {t.name for t in registry.resolve(case.node, 17, "cuda", "int8").tactics(spec)}
    if tactic not in offered:
        pytest.skip(f"{tactic} is not offered here (its library is missing)")
    (got,) = run_on(gpu, spec, runtime)
    expected = cpu_result(case)
    scale = np.float32(case.node.outputs[0].meta["int8_scale"])
    if "y" in codes:
        assert got.dtype == np.int8
        got = got.astype(np.float32) * scale
    flips = UNROUNDED_FLIPS if tactic == "cudnn_int80" and "y" not in codes else FLIPS
    _check(case, got, expected, F16, flips)


def test_refused_grouped_conv_runs_the_float_kernel_within_a_step(gpu):
    case = conv_case("depthwise", (2, 12, 10, 10), (12, 1, 3, 3), {"group": 12, "pads": [1, 1, 1, 1]}, activation="Relu")
    assert not registry.resolve(case.node, 17, "cuda", "int8").name.startswith("int8.")
    spec, runtime = gpu_spec(case, F16)
    (got,) = run_on(gpu, spec, runtime)
    steps = code_steps(got, cpu_result(case), case.node.outputs[0].meta["int8_scale"])
    assert steps.max() <= 1 and np.count_nonzero(steps) <= 0.02 * steps.size, (steps.max(), np.count_nonzero(steps))


def test_float_int8_layer_quantizes_its_inputs_and_requantizes_its_output(gpu):
    """An INT8 Add: inputs put on their grids (one of them already an INT8 tensor), the float
    kernel, the sum requantized: the CPU's codes, one step apart on a bounded share."""
    rng = np.random.default_rng(4)
    a, b = (rng.standard_normal((4, 300)).astype(np.float16).astype(np.float32) for _ in range(2))
    values = [Value("a", F32, a.shape), Value("b", F32, b.shape), Value("y", F32, a.shape)]
    scales = (0.0213, 0.0317, 0.0411)  # calibrated-like: no simple ratios, whose sums would sit on rounding ties
    for value, scale in zip(values, scales):
        value.meta.update(int8_scale=scale, int8_zero_point=0)
    b = np.rint(b / np.float32(scales[1])).clip(-127, 127) * np.float32(scales[1])  # written by an INT8 layer: on its grid
    values[1].meta["int8_output"] = values[2].meta["int8_output"] = True
    node = Node("Add", values[:2], values[2:], name="add_int8")
    node.meta["precision"] = "int8"
    case = Int8Case("add", node, {0: a, 1: b.astype(np.float32)})
    spec = StepSpec(node, 17, "int8", None, "nchw", [TensorInfo(v.name, F16, a.shape) for v in values[:2]], [TensorInfo("y", F16, a.shape)], device="gpu")
    (got,) = run_on(gpu, spec, [a.astype(F16), b.astype(F16)])
    steps = code_steps(got, cpu_result(case), scales[2])
    assert steps.max() <= 1 and np.count_nonzero(steps) <= 0.01 * steps.size, (steps.max(), np.count_nonzero(steps))


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("int8-gpu-calib")
    np.save(folder / "batch.npy", np.random.default_rng(8).standard_normal((16, 3, 16, 16)).astype(np.float32))
    return folder


def _logits_cnn(batch: int):
    """The residual CNN without its Softmax: its output, the logits, is the last INT8 layer's
    (a saturated softmax turns a fraction of a logit step into a large change of probability)."""
    model = resnet_block_cnn(batch=batch)
    softmax = model.graph.node[-1]
    assert softmax.op_type == "Softmax"
    model.graph.node.remove(softmax)
    model.graph.output[0].name = softmax.input[0]
    return model


def test_calibrated_cnn_int8_on_the_gpu_matches_the_cpu_int8_engine(calibration):
    model = _logits_cnn(batch=8)
    data = model.SerializeToString()
    pinned = {"*": "int8"}  # every calibrated layer INT8, even where its FP16 kernel would time faster
    gpu = edge.build(data, edge.BuilderConfig(profile="desktop-cuda", precision="int8", calib_data=calibration, layer_precisions=pinned))
    cpu = edge.build(data, edge.BuilderConfig(precision="int8", calib_data=calibration, layer_precisions=pinned))
    products = [s for s in gpu.plan.steps if s.kind == "kernel" and s.op.split("::")[-1] in ("Conv", "FusedConv", "Gemm")]
    assert products and all(s.backend == "cuda" and s.kernel.startswith("int8.imma_") for s in products)
    feeds = random_feeds(model, seed=3)
    context = gpu.create_context()
    got = context.run(feeds)
    for _ in range(2):  # the second run captures a CUDA graph, the third replays it
        again = context.run(feeds)
        for key in got:
            np.testing.assert_array_equal(again[key], got[key], err_msg=f"{key}: a warm run differs from the first")
    want = cpu.create_context().run(feeds)
    for key, expected in want.items():
        scale = gpu.graph.outputs[[v.name for v in gpu.graph.outputs].index(key)].meta["int8_scale"]
        steps = quantization_steps(got[key], expected, scale)
        summary = f"{key}: {np.count_nonzero(steps > 1)} of {steps.size} over a step, largest {np.sort(steps.ravel())[-4:]}"
        assert np.count_nonzero(steps > 1) <= 0.05 * steps.size and steps.max() <= 3.0, summary
