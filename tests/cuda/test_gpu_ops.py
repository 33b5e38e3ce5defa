"""On a GPU: every registered cuda op against the CPU kernel on random data, driven through
``CudaBackend.prepare`` and its launches directly (no runtime involved). FP32 within 1e-3
relative (no TF32 anywhere), FP16 within compare's FP16 tolerance (rtol = atol = 1e-2, atol
scaled by the reference's magnitude). Also: tactics agree, two contexts on two streams agree."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edge.ir import EDGETRT_DOMAIN
from edge.kernels import registry
from edge.kernels.backend import RunState
from edge.kernels.registry import OpContext
from edge.kernels.tactics import Tactic
from tests.cuda.conftest import make_step, run_on

pytestmark = pytest.mark.gpu

RNG = np.random.default_rng(2026)
F32, F16 = np.dtype(np.float32), np.dtype(np.float16)
TOLERANCE = {F32: 1e-3, F16: 1e-2}


def rand(*shape, low=-2.0, high=2.0) -> np.ndarray:
    return RNG.uniform(low, high, shape).astype(np.float32)


class Case:
    """One op on given inputs: arrays are activations; ``const(a)`` wraps constants."""

    def __init__(self, op, inputs, attrs=None, domain="", opset=18, floats=True, id=None, tactic=None):
        self.op, self.inputs, self.attrs, self.domain, self.opset = op, inputs, attrs or {}, domain, opset
        self.floats, self.tactic = floats, tactic
        self.id = id or op


class const:  # noqa: N801  (reads as a marker in the case table)
    def __init__(self, array):
        self.array = np.asarray(array)


def _cpu(case: Case, arrays: list) -> list[np.ndarray]:
    from edge.ir import Node, Value

    values = [None if a is None else Value(f"v{i}", const=a) for i, a in enumerate(arrays)]
    node = Node(case.op, values, [Value("y")], case.attrs, name=case.id, domain=case.domain)
    kernel = registry.lookup(case.op, case.domain, backend="cpu", opset=case.opset)
    result = kernel.fn(OpContext(node, case.opset), *arrays)
    results = list(result) if isinstance(result, tuple) else [np.asarray(result)]
    first = next((a for a in arrays if a is not None), None)
    if case.floats and first is not None and first.dtype == F16:  # the CPU SiLU gives float16 inputs a wider result
        results = [r.astype(F16) if r.dtype.kind == "f" else r for r in results]
    return results


def _spec(case: Case, dtype: np.dtype) -> tuple:
    """(the step's spec, its runtime inputs, the CPU's outputs) of ``case`` in ``dtype``."""
    arrays = []
    for item in case.inputs:
        if item is None:
            arrays.append(None)
            continue
        array = item.array if isinstance(item, const) else item
        if case.floats and array.dtype == np.float32:
            array = array.astype(dtype)
        arrays.append(array)
    expected = _cpu(case, arrays)
    spec_inputs = []
    for item, array in zip(case.inputs, arrays):
        if item is None:
            spec_inputs.append(None)
        elif isinstance(item, const):
            spec_inputs.append(array)
        else:
            spec_inputs.append((f"x{len(spec_inputs)}", array.dtype, array.shape))
    spec = make_step(case.op, spec_inputs, [(e.dtype, e.shape) for e in expected], case.attrs, case.domain, case.opset,
                     "fp16" if dtype == F16 else "fp32", case.tactic)
    runtime = [None if isinstance(item, const) or item is None else a for item, a in zip(case.inputs, arrays)]
    return spec, runtime, expected


def _check(case: Case, dtype: np.dtype, gpu) -> None:
    spec, runtime, expected = _spec(case, dtype)
    got = run_on(gpu, spec, runtime)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype, f"{case.id}: {g.dtype}{g.shape} != {e.dtype}{e.shape}"
        if e.dtype.kind in "iub":
            limit = 1 if case.op == "QuantizeLinear" else 0
            assert np.abs(g.astype(np.int64) - e.astype(np.int64)).max(initial=0) <= limit, case.id
            continue
        tol = TOLERANCE[dtype]
        e64, g64 = e.astype(np.float64), g.astype(np.float64)
        scale = 1.0 + np.nanmax(np.abs(e64[np.isfinite(e64)]), initial=0.0)
        np.testing.assert_allclose(g64, e64, rtol=tol, atol=tol * scale * (0.1 if dtype == F32 else 1.0), err_msg=case.id)


CASES = [
    *[Case(op, [rand(3, 33, 17)]) for op in ("Relu", "Sigmoid", "Tanh", "Erf", "HardSwish", "Softplus", "Abs", "Neg", "Softsign", "Mish")],
    *[Case(op, [rand(3, 40, low=-0.9, high=0.9)]) for op in ("Acos", "Asin", "Atan", "Atanh", "Sin", "Cos", "Tan", "Sinh", "Cosh", "Asinh")],
    *[Case(op, [rand(3, 40, low=-3, high=3)]) for op in ("Ceil", "Floor", "Round", "Sign", "Celu", "Selu", "Swish", "ThresholdedRelu")],
    Case("Acosh", [rand(3, 40, low=1.1, high=3)]),
    Case("Reciprocal", [rand(3, 40, low=0.5, high=2)]),
    Case("Exp", [rand(4, 100, low=-4, high=4)]),
    Case("Sqrt", [rand(4, 100, low=0.01, high=9)]),
    Case("Log", [rand(4, 100, low=0.01, high=9)]),
    Case("Gelu", [rand(2, 300)], opset=20),
    Case("Gelu", [rand(2, 300)], {"approximate": "tanh"}, opset=20, id="Gelu-tanh"),
    Case("LeakyRelu", [rand(5, 50)], {"alpha": 0.2}),
    Case("HardSigmoid", [rand(5, 50)], {"alpha": 0.3, "beta": 0.4}),
    Case("Elu", [rand(5, 50)], {"alpha": 0.7}),
    Case("Clip", [rand(5, 50), const(np.float32(-0.5)), const(np.float32(1.0))], opset=13),
    Case("SiLU", [rand(7, 77)], domain=EDGETRT_DOMAIN),
    Case("Add", [rand(2, 3, 4, 5), rand(3, 1, 5)], id="Add-broadcast"),
    Case("Add", [rand(64, 65), rand(64, 65)], id="Add-flat"),
    Case("Mul", [rand(2, 3, 4), const(rand(4))]),
    Case("Sub", [rand(1, 4), rand(6, 1)]),
    Case("Div", [rand(3, 40), rand(3, 40, low=0.5, high=2)]),
    Case("Pow", [rand(3, 40, low=0.1, high=2), const(np.float32(1.7))]),
    Case("Max", [rand(3, 40), rand(40)]),
    Case("Min", [rand(3, 40), rand(3, 1)]),
    Case("PRelu", [rand(2, 4, 5, 5), const(rand(4, 1, 1))]),
    Case("Less", [rand(3, 7), rand(7)]),
    Case("Equal", [RNG.integers(0, 3, (3, 7)).astype(np.float32), RNG.integers(0, 3, (7,)).astype(np.float32)]),
    Case("Greater", [rand(3, 7), rand(3, 7)]),
    Case("LessOrEqual", [RNG.integers(0, 3, (4, 5)).astype(np.float32), RNG.integers(0, 3, (4, 5)).astype(np.float32)]),
    Case("Mod", [rand(3, 40), rand(3, 40, low=0.5, high=2)], {"fmod": 1}),
    Case("Sum", [rand(3, 40), rand(40)]),
    Case("GreaterOrEqual", [rand(3, 7), rand(3, 1)]),
    Case("Where", [RNG.random((3, 1)) > 0.5, rand(3, 5), rand(5)]),
    Case("IsNaN", [np.array([[0.0, np.nan, -np.inf], [np.inf, 1.5, np.nan]], np.float32)], opset=20),
    Case("IsInf", [np.array([[0.0, np.nan, -np.inf], [np.inf, 1.5, -2.0]], np.float32)], opset=20),
    Case("IsInf", [np.array([[0.0, np.nan, -np.inf], [np.inf, 1.5, -2.0]], np.float32)], {"detect_positive": 0}, opset=20, id="IsInf-negative"),
    Case("Cast", [rand(3, 9)], {"to": 10}, floats=False, id="Cast-f32-f16"),
    Case("Cast", [rand(3, 9, low=-50, high=50)], {"to": 7}, floats=False, id="Cast-f32-i64"),
    Case("Cast", [RNG.integers(-100, 100, (4, 4))], {"to": 1}, floats=False, id="Cast-i64-f32"),
    Case("ReduceMean", [rand(2, 30, 7)], {"axes": [1]}, opset=13),
    Case("ReduceSum", [rand(2, 30, 7), const(np.array([0, 2]))], {"keepdims": 0}, opset=13),
    Case("ReduceMax", [rand(4, 5, 6), const(np.array([-1]))]),
    Case("ReduceL2", [rand(4, 5, 6), const(np.array([1, 2]))]),
    Case("ReduceLogSumExp", [rand(4, 600), const(np.array([1]))]),
    Case("ReduceL1", [rand(4, 5, 6), const(np.array([0]))]),
    Case("ReduceLogSum", [rand(4, 5, 6, low=0.1, high=2), const(np.array([2]))]),
    Case("ReduceMin", [rand(4, 5, 6), const(np.array([0, 1]))], {"keepdims": 0}),
    Case("ReduceProd", [rand(4, 8, low=0.8, high=1.25), const(np.array([1]))]),
    Case("ReduceSumSquare", [rand(4, 300), const(np.array([1]))]),
    Case("ArgMax", [rand(4, 37)], {"axis": 1}),
    Case("ArgMin", [rand(4, 5, 6)], {"axis": 1, "keepdims": 0, "select_last_index": 1}),
    Case("Softmax", [rand(4, 1000, low=-8, high=8)], {"axis": -1}, opset=13),
    Case("Softmax", [rand(2, 5, 6)], {"axis": 1}, opset=13, id="Softmax-mid-axis"),
    Case("Softmax", [rand(2, 5, 6)], {"axis": 1}, opset=11, id="Softmax-coerced"),
    Case("LogSoftmax", [rand(3, 50)], {"axis": -1}, opset=13),
    Case("LayerNormalization", [rand(2, 9, 768), const(rand(768)), const(rand(768))], {"axis": -1, "epsilon": 1e-5}),
    Case("GroupNormalization", [rand(2, 8, 5, 5), const(rand(8)), const(rand(8))], {"num_groups": 4}, opset=21),
    Case("InstanceNormalization", [rand(2, 3, 6, 6), const(rand(3)), const(rand(3))]),
    Case("BatchNormalization", [rand(2, 6, 5, 5), const(rand(6)), const(rand(6)), const(rand(6)), const(rand(6, low=0.5, high=2))]),
    Case("FusedBatchNormalization", [rand(2, 6, 5, 5), const(rand(6)), const(rand(6)), const(rand(6)), const(rand(6, low=0.5, high=2))],
         {"activation": "Relu"}, domain=EDGETRT_DOMAIN),
    Case("MaxPool", [rand(2, 3, 15, 15)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    Case("AveragePool", [rand(1, 3, 14, 14)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    Case("AveragePool", [rand(1, 3, 9, 9)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}, id="AveragePool-include-pad"),
    Case("GlobalAveragePool", [rand(2, 64, 7, 7)]),
    Case("GlobalMaxPool", [rand(2, 16, 5, 5)]),
    Case("Resize", [rand(1, 3, 8, 8), None, const(np.array([1, 1, 2, 2], np.float32))], {"mode": "nearest"}, opset=13),
    Case("Resize", [rand(1, 3, 8, 8), None, const(np.array([1, 1, 1.5, 0.5], np.float32))], {"mode": "linear"}, opset=13, id="Resize-linear"),
    Case("Resize", [rand(1, 2, 6, 6), None, None, const(np.array([1, 2, 9, 11]))], {"mode": "cubic"}, opset=13, id="Resize-cubic-sizes"),
    Case("Concat", [rand(2, 3, 4), rand(2, 5, 4), const(rand(2, 1, 4))], {"axis": 1}),
    Case("Split", [rand(3, 10), const(np.array([3, 7]))], {"axis": 1}, opset=13),
    Case("Slice", [rand(6, 7, 8), const(np.array([5, 1])), const(np.array([-100, 7])), const(np.array([0, 2])), const(np.array([-2, 3]))]),
    Case("Pad", [rand(2, 3, 4), const(np.array([0, 1, 2, 0, 2, 1]))], {"mode": "reflect"}),
    Case("Pad", [rand(2, 3, 4), const(np.array([0, 1, 2, 0, 2, 1])), const(np.float32(0.5))], {"mode": "constant"}, id="Pad-constant"),
    Case("Transpose", [rand(2, 3, 4, 5)], {"perm": [0, 2, 3, 1]}),
    Case("Gather", [rand(5, 6, 7), const(np.array([[0, -1], [2, 4]]))], {"axis": 1}),
    Case("Gather", [const(rand(50, 16)), RNG.integers(0, 50, (2, 9))], {"axis": 0}, id="Gather-embedding"),
    Case("Expand", [rand(3, 1), const(np.array([2, 3, 4]))]),
    Case("Reshape", [rand(2, 12), const(np.array([4, -1]))], opset=14),
    Case("Flatten", [rand(2, 3, 4)], {"axis": 2}),
    Case("Squeeze", [rand(2, 1, 4), const(np.array([1]))], opset=13),
    Case("Unsqueeze", [rand(2, 4), const(np.array([0, 3]))], opset=13),
    Case("Identity", [rand(3, 3)]),
    Case("Dropout", [rand(3, 5)], opset=13),
    Case("SpaceToDepth", [rand(1, 2, 4, 6)], {"blocksize": 2}),
    Case("Upsample", [rand(1, 2, 3, 4), const(np.array([1, 1, 2, 3], np.float32))], {"mode": "nearest"}, opset=9),
    Case("DepthToSpace", [rand(1, 8, 3, 3)], {"blocksize": 2, "mode": "CRD"}),
    Case("ChannelShuffle", [rand(2, 6, 4, 4)], {"groups": 3}, domain=EDGETRT_DOMAIN),
    Case("QuantizeLinear", [rand(2, 3, 4), const(np.array([0.02, 0.05, 0.1], np.float32)), const(np.array([1, -3, 0], np.int8))],
         {"axis": 1}, opset=13),
    Case("DequantizeLinear", [RNG.integers(0, 255, (2, 5)).astype(np.uint8), const(np.float32(0.03)), const(np.uint8(128))], opset=13),
    *[Case("Conv", [rand(2, 8, 13, 13), const(rand(16, 8, 3, 3, low=-0.3, high=0.3)), const(rand(16))],
           {"pads": [1, 1, 1, 1], "strides": [2, 2]}, tactic=Tactic(t), id=f"Conv-3x3-{t}") for t in ("direct", "igemm")],
    *[Case("Conv", [rand(1, 12, 9, 9), const(rand(12, 1, 3, 3))], {"group": 12, "pads": [1, 1, 1, 1]}, tactic=Tactic(t),
           id=f"Conv-depthwise-{t}") for t in ("direct", "igemm")],
    Case("Conv", [rand(1, 8, 10, 10), const(rand(6, 4, 3, 3, low=-0.3, high=0.3))], {"group": 2, "dilations": [2, 2]}, id="Conv-grouped-dilated"),
    Case("Conv", [rand(1, 70, 7, 7), const(rand(130, 70, 1, 1, low=-0.2, high=0.2))], id="Conv-1x1-ragged-tiles"),
    Case("Conv", [rand(2, 4, 20), const(rand(5, 4, 3))], {"pads": [1, 1]}, id="Conv-1d"),
    *[Case("FusedConv", [rand(1, 8, 9, 9), const(rand(8, 8, 3, 3, low=-0.3, high=0.3)), const(rand(8)), rand(1, 8, 9, 9)],
           {"pads": [1, 1, 1, 1], "activation": "Clip", "activation_params": [0.0, 6.0]}, domain=EDGETRT_DOMAIN, tactic=Tactic(t),
           id=f"FusedConv-residual-{t}") for t in ("direct", "igemm")],
    # channels-last (NHWC images, OIHW weights): cuDNN's plans, the direct kernel for depthwise, the NHWC pools
    Case("FusedConv", [rand(2, 9, 9, 16), const(rand(24, 16, 3, 3, low=-0.3, high=0.3)), const(rand(24)), rand(2, 5, 5, 24)],
         {"pads": [1, 1, 1, 1], "strides": [2, 2], "activation": "Relu", "channels_last": 1}, domain=EDGETRT_DOMAIN, id="FusedConv-nhwc-residual"),
    Case("FusedConv", [rand(1, 9, 9, 16), const(rand(16, 1, 3, 3)), const(rand(16))],
         {"group": 16, "pads": [1, 1, 1, 1], "channels_last": 1}, domain=EDGETRT_DOMAIN, tactic=Tactic("direct"), id="FusedConv-nhwc-depthwise-direct"),
    Case("MaxPool", [rand(2, 11, 11, 8)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "channels_last": 1},
         domain=EDGETRT_DOMAIN, id="MaxPool-nhwc"),
    Case("AveragePool", [rand(1, 7, 9, 5)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "channels_last": 1},
         domain=EDGETRT_DOMAIN, id="AveragePool-nhwc"),
    Case("Gemm", [rand(5, 70), const(rand(33, 70, low=-0.3, high=0.3)), const(rand(33))], {"transB": 1, "alpha": 0.5, "beta": 2.0}),
    Case("Gemm", [rand(70, 5), rand(70, 9), rand(5, 9)], {"transA": 1}, id="Gemm-transA"),
    Case("FusedGemm", [rand(4, 64), const(rand(64, 100, low=-0.3, high=0.3)), const(rand(100))], {"activation": "Relu"}, domain=EDGETRT_DOMAIN),
    Case("FusedGemm", [rand(128, 192, low=-1, high=1), const(rand(192, 384, low=-0.1, high=0.1)), const(rand(384))], {"activation": "Gelu"},
         domain=EDGETRT_DOMAIN, id="FusedGemm-gelu-bert-like"),
    Case("FusedGemm", [rand(128, 192, low=-1, high=1), const(rand(192, 96, low=-0.1, high=0.1)), const(rand(96)), rand(128, 96)],
         {"activation": "Relu"}, domain=EDGETRT_DOMAIN, id="FusedGemm-bias-residual-relu"),
    Case("MatMul", [rand(2, 3, 65, 40, low=-1, high=1), rand(3, 40, 66, low=-1, high=1)], id="MatMul-batched-broadcast"),
    Case("MatMul", [rand(128, 768, low=-1, high=1), const(rand(768, 96, low=-0.1, high=0.1))], id="MatMul-bert-like"),
    Case("Attention", [rand(2, 12, 128, 64, low=-1, high=1), rand(2, 12, 128, 64, low=-1, high=1), rand(2, 12, 128, 64), rand(2, 1, 1, 128, low=-4, high=0)],
         {"scale": 0.125}, domain=EDGETRT_DOMAIN, id="Attention-bert-like"),
    Case("Attention", [rand(3, 5, 8), rand(3, 7, 8), rand(3, 7, 4)], {"scale": 0.5}, domain=EDGETRT_DOMAIN, id="Attention-no-mask"),
    Case("Attention", [rand(2, 9, 3, 16, low=-1, high=1), rand(2, 11, 3, 16, low=-1, high=1), rand(2, 11, 3, 8), rand(2, 1, 1, 11, low=-4, high=0)],
         {"scale": 0.25, "bshd": 1}, domain=EDGETRT_DOMAIN, id="Attention-bshd"),
]

FLOAT_ONLY = {"Cast", "QuantizeLinear", "DequantizeLinear", "Gather"}


@pytest.mark.parametrize("dtype", [F32, F16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_op_matches_cpu(gpu, case, dtype):
    if dtype == F16 and not case.floats:
        pytest.skip("dtype fixed by the case")
    _check(case, dtype, gpu)


@pytest.mark.parametrize("case", [c for c in CASES if c.op in ("MatMul", "Gemm", "FusedGemm")], ids=lambda c: c.id)
def test_fp16_tensor_core_tactic(gpu, case):
    wmma = Case(case.op, case.inputs, case.attrs, case.domain, case.opset, tactic=Tactic("wmma"), id=f"{case.id}-wmma")
    _check(wmma, F16, gpu)


LIBRARY_OPS = ("MatMul", "Gemm", "FusedGemm", "Conv", "FusedConv")


@pytest.mark.parametrize("dtype", [F32, F16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", [c for c in CASES if c.op in LIBRARY_OPS], ids=lambda c: c.id)
def test_library_tactics_match_cpu(gpu, case, dtype):
    """Every cuBLASLt / cuDNN tactic the auto-tuner may pick computes what the CPU does."""
    spec, _, _ = _spec(case, dtype)
    kernel = registry.lookup(case.op, case.domain, "cuda", case.opset, spec.precision)
    offered = [t for t in kernel.tactics(spec) if t.params.get("source") != "nvrtc"]
    if not offered:
        pytest.skip("no cuBLASLt/cuDNN tactic applies (library not installed, or not this product)")
    for tactic in offered:
        try:
            _check(Case(case.op, case.inputs, case.attrs, case.domain, case.opset, tactic=tactic, id=f"{case.id}-{tactic.name}"), dtype, gpu)
        except ValueError as exc:  # a plan rank past the ones that build: the auto-tuner passes over it too
            assert "no cuDNN execution plan" in str(exc) or "no algorithm" in str(exc), exc


BERT_BASE = (1, 12, 128, 64)
KEY_MASK = np.where(RNG.random((1, 1, 1, 128)) < 0.25, -10000.0, 0.0).astype(np.float32)
"""BERT's additive padding mask: 0 for the keys kept, -10000 for about a quarter of them."""
ATTENTION_TACTIC_CASES = [
    (Case("Attention", [rand(*BERT_BASE, low=-1, high=1), rand(*BERT_BASE, low=-1, high=1), rand(*BERT_BASE)], {"scale": 0.125},
          domain=EDGETRT_DOMAIN, id="bert-base"), True),
    (Case("Attention", [rand(*BERT_BASE, low=-1, high=1), rand(*BERT_BASE, low=-1, high=1), rand(*BERT_BASE), KEY_MASK], {"scale": 0.125},
          domain=EDGETRT_DOMAIN, id="bert-base-key-mask"), True),
    (next(c for c in CASES if c.id == "Attention-bert-like"), True),  # batch 2, a mask per batch
    (Case("Attention", [rand(1, 128, 12, 64, low=-1, high=1), rand(1, 128, 12, 64, low=-1, high=1), rand(1, 128, 12, 64), KEY_MASK],
          {"scale": 0.125, "bshd": 1}, domain=EDGETRT_DOMAIN, id="bert-base-bshd"), True),  # heads on axis 2, as the projections write them
    (Case("Attention", [rand(1, 4, 64, 160, low=-1, high=1), rand(1, 4, 64, 160, low=-1, high=1), rand(1, 4, 64, 160)], {"scale": 0.08},
          domain=EDGETRT_DOMAIN, id="head-160"), False),
]


@pytest.mark.parametrize("case, cudnn", ATTENTION_TACTIC_CASES, ids=[c.id for c, _ in ATTENTION_TACTIC_CASES])
def test_attention_tactics_match_cpu(gpu, case, cudnn):
    """In FP16 every Attention tactic the auto-tuner may pick computes what the CPU does: the
    NVRTC path, and cuDNN's fused attention where it is offered (not for head size 160)."""
    from edge.kernels.cuda import cudnn_graphs

    if cudnn and not cudnn_graphs.available():
        pytest.skip("nvidia-cudnn-frontend or libcudnn is not installed")
    spec, _, _ = _spec(case, F16)
    tactics = registry.lookup(case.op, case.domain, "cuda", case.opset, spec.precision).tactics(spec)
    assert [t.name for t in tactics] == (["nvrtc", "cudnn_sdpa"] if cudnn else ["nvrtc"])
    for tactic in tactics:
        _check(Case(case.op, case.inputs, case.attrs, case.domain, case.opset, tactic=tactic, id=f"{case.id}-{tactic.name}"), F16, gpu)


def test_every_cuda_op_has_a_case():
    covered = {c.op for c in CASES}
    registered = {op for ops in registry.supported_ops("cuda").values() for op in ops}
    assert registered - covered == set()


def test_two_contexts_on_two_streams_agree(gpu):
    x = rand(4, 16, 32, 32)
    w = rand(32, 16, 3, 3, low=-0.2, high=0.2)
    spec = make_step("Conv", [("x", F32, x.shape), w], [(F32, (4, 32, 32, 32))], {"pads": [1, 1, 1, 1]})
    launch = gpu.prepare(spec)
    results = {}

    def run(name: str) -> None:
        state = RunState(scratch={"cuda": gpu.new_state()})
        arena = gpu.allocate(x.nbytes + 4 * 32 * 32 * 32 * 4)
        xin = gpu.view(arena, 0, x.shape, F32)
        out = gpu.view(arena, x.nbytes, (4, 32, 32, 32), F32)
        gpu.copy_in(xin, x, state)
        for _ in range(20):
            launch([xin, None], [out], state)
        results[name] = gpu.copy_out(out, state)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    single = run_on(gpu, spec, [x, None])[0]
    assert np.array_equal(results["a"], results["b"]) and np.array_equal(results["a"], single)


def test_out_of_memory_is_one_line_and_recoverable(gpu):
    from edge.kernels.cuda.driver import OutOfDeviceMemory

    free, total = gpu.device.memory_info()
    with pytest.raises(OutOfDeviceMemory, match="asked for"):
        gpu.allocate(total * 4)
    assert gpu.allocate(1 << 20).nbytes == 1 << 20


def test_time_launch_gives_event_timings(gpu):
    spec = make_step("Relu", [("x", F32, (1 << 20,))], [(F32, (1 << 20,))])
    launch = gpu.prepare(spec)
    arena = gpu.allocate(8 << 20)
    state = RunState(scratch={"cuda": gpu.new_state()})
    x, y = gpu.view(arena, 0, (1 << 20,), F32), gpu.view(arena, 4 << 20, (1 << 20,), F32)
    from edge.kernels.cuda.backend import TIMED_REPLAYS

    times = gpu.time_launch(launch, [x], [y], state, 5)
    assert len(times) == TIMED_REPLAYS and all(t > 8e6 / 20e12 for t in times)  # 8 MB moved, under 20 TB/s
    signature = gpu.device_signature()
    assert signature["compute_capability"] and signature["sm_count"] > 0 and signature["nvrtc"]
