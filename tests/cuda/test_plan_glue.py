"""GPU-free: ``CudaBackend.prepare`` and the launches it returns, on a stand-in device that
records launches and checks every kernel name against the real sm_90 cubins."""

from __future__ import annotations

import numpy as np
import pytest

from edge.kernels import registry
from edge.kernels.backend import RunState
from edge.kernels.cuda.launch import DeviceTensor
from edge.kernels.tactics import Tactic
from tests.cuda.conftest import make_step

F32, F16 = np.dtype(np.float32), np.dtype(np.float16)
RNG = np.random.default_rng(7)

STEPS = [
    ("Relu", [("x", F32, (2, 3))], [(F32, (2, 3))], {}, ""),
    ("Gelu", [("x", F16, (8,))], [(F16, (8,))], {"approximate": "tanh"}, ""),
    ("Add", [("a", F32, (2, 3)), ("b", F32, (3,))], [(F32, (2, 3))], {}, ""),
    ("Less", [("a", F16, (2, 3)), ("b", F16, (2, 3))], [(np.bool_, (2, 3))], {}, ""),
    ("Where", [("c", np.bool_, (2, 1)), ("a", F32, (2, 3)), ("b", F32, (1, 3))], [(F32, (2, 3))], {}, ""),
    ("IsNaN", [("x", F16, (2, 3))], [(np.bool_, (2, 3))], {}, ""),
    ("IsInf", [("x", F32, (2, 3))], [(np.bool_, (2, 3))], {"detect_negative": 0}, ""),
    ("Cast", [("x", np.int64, (4,))], [(F16, (4,))], {"to": 10}, ""),
    ("ReduceMean", [("x", F32, (2, 3, 4))], [(F32, (2, 1, 4))], {"axes": [1]}, ""),
    ("ArgMax", [("x", F32, (2, 5))], [(np.int64, (2, 1))], {"axis": 1}, ""),
    ("Softmax", [("x", F16, (4, 10))], [(F16, (4, 10))], {"axis": -1}, ""),
    ("LayerNormalization", [("x", F32, (2, 8)), np.ones(8, np.float32), np.zeros(8, np.float32)], [(F32, (2, 8))], {}, ""),
    ("GroupNormalization", [("x", F32, (2, 4, 3, 3)), np.ones(2, np.float32), np.zeros(2, np.float32)], [(F32, (2, 4, 3, 3))], {"num_groups": 2}, ""),
    ("MaxPool", [("x", F32, (1, 2, 8, 8))], [(F32, (1, 2, 4, 4))], {"kernel_shape": [2, 2], "strides": [2, 2]}, ""),
    ("GlobalAveragePool", [("x", F16, (1, 4, 7, 7))], [(F16, (1, 4, 1, 1))], {}, ""),
    ("Transpose", [("x", F32, (2, 3, 4))], [(F32, (4, 3, 2))], {}, ""),
    ("Concat", [("a", F32, (2, 3)), ("b", F32, (2, 5))], [(F32, (2, 8))], {"axis": 1}, ""),
    ("Split", [("x", F16, (2, 6)), np.array([2, 4])], [(F16, (2, 2)), (F16, (2, 4))], {"axis": 1}, ""),
    ("Pad", [("x", F32, (2, 3)), np.array([0, 1, 0, 2])], [(F32, (2, 6))], {"mode": "reflect"}, ""),
    ("Gather", [("x", F32, (5, 4)), np.array([0, -1, 2])], [(F32, (3, 4))], {"axis": 0}, ""),
    ("QuantizeLinear", [("x", F32, (1, 3, 2)), np.array([0.1, 0.2, 0.3], np.float32), np.zeros(3, np.int8)], [(np.int8, (1, 3, 2))], {"axis": 1}, ""),
    ("FusedConv", [("x", F16, (1, 3, 8, 8)), RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), np.zeros(4, np.float32)],
     [(F16, (1, 4, 8, 8))], {"pads": [1, 1, 1, 1], "activation": "Relu"}, "edgetrt"),
    ("FusedGemm", [("a", F16, (4, 8)), RNG.standard_normal((8, 16)).astype(np.float32), np.zeros(16, np.float32)],
     [(F16, (4, 16))], {"activation": "Relu"}, "edgetrt"),
    ("FusedGemm", [("a", F16, (4, 8)), RNG.standard_normal((8, 16)).astype(np.float32), np.zeros(16, np.float32), ("z", F16, (4, 16))],
     [(F16, (4, 16))], {"activation": "Relu"}, "edgetrt"),
    ("MatMul", [("a", F32, (2, 4, 8)), ("b", F32, (8, 3))], [(F32, (2, 4, 3))], {}, ""),
    ("Attention", [("q", F16, (2, 4, 9, 16)), ("k", F16, (2, 4, 9, 16)), ("v", F16, (2, 4, 9, 16)), ("m", F16, (2, 1, 1, 9))],
     [(F16, (2, 4, 9, 16))], {"scale": 0.25}, "edgetrt"),
    ("Attention", [("q", F16, (2, 9, 4, 16)), ("k", F16, (2, 7, 4, 16)), ("v", F16, (2, 7, 4, 8)), ("m", F16, (2, 1, 1, 7))],
     [(F16, (2, 9, 4, 8))], {"scale": 0.25, "bshd": 1}, "edgetrt"),
]


@pytest.mark.parametrize("op,inputs,outputs,attrs,domain", STEPS, ids=[s[0] for s in STEPS])
def test_prepare_and_launch(fake_backend, op, inputs, outputs, attrs, domain):
    backend, device = fake_backend
    precision = "fp16" if any(np.dtype(d) == F16 for d, _ in outputs) else "fp32"
    spec = make_step(op, inputs, outputs, attrs, domain, opset=18, precision=precision)
    launch = backend.prepare(spec)
    state = RunState(scratch={"cuda": backend.new_state()})
    arena = backend.allocate(1 << 20)
    ins = [None if isinstance(item, np.ndarray) else backend.view(arena, 0, item[2], item[1]) for item in inputs]
    outs = [backend.view(arena, 4096 * (i + 1), shape, dtype) for i, (dtype, shape) in enumerate(outputs)]
    assert launch(ins, outs, state) is outs
    assert device.launches, f"{op}: nothing launched"
    for name, grid, block, _ in device.launches:
        assert 1 <= block[0] * block[1] * block[2] <= 1024, name
        assert all(g >= 1 for g in grid) and grid[1] <= 65535 and grid[2] <= 65535, name


def test_weights_upload_once_and_are_shared_by_contexts(fake_backend):
    backend, device = fake_backend
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    spec = make_step("Conv", [("x", F32, (1, 3, 8, 8)), w], [(F32, (1, 4, 6, 6))], {})
    first = backend.prepare(spec)
    uploads = device.uploads
    arena = backend.allocate(1 << 16)
    x, y = backend.view(arena, 0, (1, 3, 8, 8), F32), backend.view(arena, 1024, (1, 4, 6, 6), F32)
    for _ in range(2):
        first([x, None], [y], RunState(scratch={"cuda": backend.new_state()}))
    assert device.uploads == uploads == 1
    assert backend.upload(w) is backend.upload(w)


def test_derived_constants_upload_once_per_content(fake_backend):
    """A builder's derived constants (LayerNorm's float32 scale and bias) are fresh arrays at
    every prepare, as the auto-tuner prepares each tactic: the second prepare uploads nothing;
    other values upload anew."""
    backend, device = fake_backend
    gamma, beta = RNG.standard_normal(16).astype(np.float32), RNG.standard_normal(16).astype(np.float32)
    spec = make_step("LayerNormalization", [("x", F32, (2, 16)), gamma, beta], [(F32, (2, 16))], {"axis": -1})
    backend.prepare(spec)
    uploads = device.uploads
    assert uploads == 2  # the float32 scale and bias it launches with, not also the raw constants
    backend.prepare(make_step("LayerNormalization", [("x", F32, (2, 16)), gamma.copy(), beta.copy()], [(F32, (2, 16))], {"axis": -1}))
    assert device.uploads == uploads
    backend.prepare(make_step("LayerNormalization", [("x", F32, (2, 16)), gamma + 1, beta], [(F32, (2, 16))], {"axis": -1}))
    assert device.uploads > uploads


@pytest.mark.parametrize("tactic", ["direct", "igemm"])
def test_conv_tactics_pick_their_kernel(fake_backend, tactic):
    backend, device = fake_backend
    spec = make_step("Conv", [("x", F32, (1, 8, 8, 8)), np.zeros((16, 8, 3, 3), np.float32)], [(F32, (1, 16, 6, 6))], {},
                     tactic=Tactic(tactic))
    arena = backend.allocate(1 << 16)
    backend.prepare(spec)([backend.view(arena, 0, (1, 8, 8, 8), F32), None], [backend.view(arena, 4096, (1, 16, 6, 6), F32)],
                          RunState(scratch={"cuda": backend.new_state()}))
    assert device.launches[-1][0] == f"conv2d_{tactic}_f32"


def test_reshape_aliases_copy_only_when_not_planned_in_place(fake_backend):
    backend, device = fake_backend
    spec = make_step("Reshape", [("x", F32, (2, 6)), np.array([3, 4])], [(F32, (3, 4))], {}, opset=14)
    launch = backend.prepare(spec)
    arena = backend.allocate(1 << 12)
    state = RunState(scratch={"cuda": backend.new_state()})
    x = backend.view(arena, 0, (2, 6), F32)
    launch([x, None], [backend.view(arena, 0, (3, 4), F32)], state)
    assert device.copies == []
    launch([x, None], [backend.view(arena, 256, (3, 4), F32)], state)
    assert device.copies == [("d2d", x.ptr + 256, x.ptr, 48)]
    assert not device.launches


def test_copy_in_stages_each_copy_separately(fake_backend):
    backend, device = fake_backend
    state = RunState(scratch={"cuda": backend.new_state()})
    arena = backend.allocate(1 << 12)
    a, b = backend.view(arena, 0, (4,), F32), backend.view(arena, 256, (4,), F32)
    backend.copy_in(a, np.arange(4, dtype=np.float32), state)
    backend.copy_in(b, np.arange(4, 8, dtype=np.float32), state)
    (_, _, src_a, _), (_, _, src_b, _) = device.copies
    assert src_a != src_b
    staged = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_float * 4).from_address(src_b))
    assert staged.tolist() == [4, 5, 6, 7]


def test_view_outside_the_buffer_is_refused(fake_backend):
    from edge.errors import KernelError

    backend, _ = fake_backend
    with pytest.raises(KernelError, match="outside"):
        backend.view(backend.allocate(64), 32, (16,), F32)


def test_device_tensor_sizes():
    t = DeviceTensor(1024, (2, 3), F16)
    assert (t.size, t.nbytes) == (6, 12)


def test_static_refusal_keeps_dynamic_shapes_on_the_cpu():
    from edge.ir import Node, Value

    node = Node("Relu", [Value("x", F32, ("batch", 3))], [Value("y", F32, ("batch", 3))])
    refusal = registry.resolve(node, 17, "cuda", "fp32")
    assert refusal.code == "cuda.dynamic_shape" and "'x'" in refusal.detail


def test_tactics_of_every_source_are_offered_and_built(fake_backend, monkeypatch):
    from edge.kernels.cuda import sources

    backend, device = fake_backend
    spec = make_step("Conv", [("x", F16, (1, 32, 8, 8)), np.zeros((32, 32, 1, 1), np.float32)], [(F16, (1, 32, 8, 8))], {},
                     precision="fp16")
    kernel = registry.lookup("Conv", backend="cuda", precision="fp16")
    assert [(t.name, t.params["source"]) for t in kernel.tactics(spec)] == [("igemm", "nvrtc"), ("direct", "nvrtc")]

    built = []
    monkeypatch.setitem(sources._SOURCES, "conv", list(sources._SOURCES["conv"]))
    sources.add_source("conv", sources.TacticSource("other", lambda s: [Tactic("plan", {"index": 3})],
                                                    lambda step, tactic, *args: built.append(tactic) or (lambda i, o, s: None)))
    offered = kernel.tactics(spec)
    assert offered[-1] == Tactic("plan", {"index": 3, "source": "other"})
    spec.tactic = offered[-1]
    backend.prepare(spec)
    assert built == [offered[-1]]
    spec.tactic = Tactic("plan", {"source": "missing"})
    with pytest.raises(ValueError, match="source 'missing'"):
        backend.prepare(spec)


@pytest.mark.parametrize(
    "op,inputs,why",
    [
        ("Pow", [("x", F32, (3,)), ("e", np.int64, (1,))], "cuda.dtype"),
        ("Relu", [("x", np.float64, (3,))], "cuda.dtype"),
        ("Transpose", [("x", np.complex128, (3, 2))], "cuda.dtype"),
        ("Relu", [("x", F32, (1,) * 9)], "cuda.rank"),
        ("Clip", [("x", F32, (3,)), ("lo", F32, ())], "cuda.dynamic_attribute"),
    ],
)
def test_unhandled_nodes_are_refused_with_a_code(op, inputs, why):
    from edge.ir import Node, Value

    node = Node(op, [Value(n, d, s) for n, d, s in inputs], [Value("y", inputs[0][1], inputs[0][2])], name="n")
    refusal = registry.resolve(node, 17, "cuda", "fp32")
    assert getattr(refusal, "code", None) == why, refusal


def test_embedded_cubins_load_without_compiling(fake_backend, cubins, monkeypatch):
    from edge.kernels.cuda import compiler

    backend, device = fake_backend
    backend.add_cubins({"pool.sm_90": cubins[("pool", "sm_90")]})

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled although the engine carries the cubin")

    monkeypatch.setattr(compiler, "compile_module", no_compile)
    spec = make_step("MaxPool", [("x", F32, (1, 1, 4, 4))], [(F32, (1, 1, 2, 2))], {"kernel_shape": [2, 2], "strides": [2, 2]})
    backend.prepare(spec)
    assert backend.function("pool", "pool2d_nhwc_f16").name == "pool2d_nhwc_f16"


def test_a_gemm_residual_runs_after_the_product_with_the_activation(fake_backend):
    """The NVRTC GEMM takes one addend (the bias): a FusedGemm's residual and its activation
    come after it in one epilogue pass, and the GEMM itself applies no activation."""
    backend, device = fake_backend
    inputs = [("a", F16, (4, 8)), RNG.standard_normal((8, 16)).astype(np.float32), np.zeros(16, np.float32), ("z", F16, (4, 16))]
    spec = make_step("FusedGemm", inputs, [(F16, (4, 16))], {"activation": "Relu"}, "edgetrt", precision="fp16", tactic=Tactic("wmma"))
    launch = backend.prepare(spec)
    arena = backend.allocate(1 << 20)
    device.launches.clear()
    launch([backend.view(arena, 0, (4, 8), F16), None, None, backend.view(arena, 4096, (4, 16), F16)],
           [backend.view(arena, 8192, (4, 16), F16)], RunState(scratch={"cuda": backend.new_state()}))
    assert [name for name, *_ in device.launches] == ["gemm_wmma_f16", "conv_epilogue_f16"]
