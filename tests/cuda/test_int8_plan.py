"""GPU-free: the CUDA INT8 kernels as the registry, the planner and ``CudaBackend.prepare`` see
them (a stand-in device checks every kernel name against the real sm_90 cubins and records
launches): integer layers take them, the others are refused with a reason and run the float
kernel of the same precision between the INT8 conversions."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

import edge
from edge.inspect import layer_rows
from edge.ir import EDGETRT_DOMAIN, Node, Value
from edge.kernels import registry
from edge.kernels.backend import RunState, register_backend
from edge.kernels.cuda import cublaslt, cudnn_graphs
from edge.kernels.cuda.int8 import padded_depth
from edge.kernels.tactics import Tactic
from tests.cuda.conftest import FakeDevice, StandInGraph, stand_in_frontend
from tests.cuda.int8_cases import conv_case, gemm_case, gpu_spec, matmul_case
from tests.models import mobile_cnn, random_feeds, resnet_block_cnn

F16 = np.dtype(np.float16)


@pytest.fixture
def stand_in(cubins, without_libraries):
    from edge.kernels.cuda.backend import CudaBackend

    device = FakeDevice(cubins)
    backend = CudaBackend(device=device)
    register_backend("cuda", lambda: backend)
    yield device, backend
    register_backend("cuda", _unavailable)


def _unavailable():
    from edge.kernels.cuda import create_backend

    return create_backend()


def _calibration(tmp_path: Path, shape: tuple[int, ...]) -> Path:
    np.save(tmp_path / "batch.npy", np.random.default_rng(3).standard_normal((4, *shape[1:])).astype(np.float32))
    return tmp_path


@pytest.mark.parametrize("op,domain", [("Conv", ""), ("FusedConv", EDGETRT_DOMAIN), ("Gemm", ""), ("FusedGemm", EDGETRT_DOMAIN), ("MatMul", "")])
def test_int8_lookup_prefers_the_integer_kernel(op, domain):
    kernel = registry.lookup(op, domain, "cuda", 17, "int8")
    assert kernel.name.startswith("int8.imma_") and kernel.meta["quantizes"]
    assert not registry.lookup(op, domain, "cuda", 17, "fp16").name.startswith("int8.")


def _refused(node: Node, code: str) -> None:
    chosen = registry.resolve(node, 17, "cuda", "int8")
    assert not isinstance(chosen, registry.Refusal) and not chosen.name.startswith("int8."), chosen
    assert "int8" in chosen.precisions  # the float kernel serves INT8 layers between the conversions
    refusal = registry.passed_over(node, 17, "cuda", "int8", chosen)
    assert refusal is not None and refusal.code == code and node.name in refusal.detail


def test_grouped_convolution_is_refused():
    case = conv_case("grouped", (1, 8, 6, 6), (8, 4, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]})
    _refused(case.node, "int8.grouped_conv")


def test_nonzero_zero_point_is_refused():
    case = conv_case("zero-point", (1, 4, 6, 6), (8, 4, 3, 3))
    case.node.inputs[1].meta["int8_zero_point"] = np.full(8, 3, np.int8)
    _refused(case.node, "int8.zero_point")


def test_weight_scaled_along_another_axis_is_refused():
    case = conv_case("scale-axis", (1, 4, 6, 6), (8, 4, 3, 3))
    weight = case.node.inputs[1]
    weight.meta.update(int8_scale=np.full(4, 0.01, np.float32), int8_axis=1)
    _refused(case.node, "int8.scale_axis")


def test_activation_times_activation_matmul_is_refused():
    case = matmul_case("two-activations", (4, 8), (8, 5))
    b = Value("b", np.float32, (8, 5))
    b.meta.update(int8_scale=0.01, int8_zero_point=0)
    case.node.set_input(1, b)
    _refused(case.node, "int8.activation_weight")


def test_batched_matmul_weight_is_refused():
    case = matmul_case("batched", (2, 4, 8), (8, 5))
    weight = case.node.inputs[1]
    codes = np.stack([weight.meta["int8_weight"]] * 2)
    batched = Value("w3", const=np.stack([weight.const] * 2))
    batched.meta.update(weight.meta, int8_weight=codes)
    case.node.set_input(1, batched)
    _refused(case.node, "int8.weight_rank")


def test_gemm_constant_addend_varying_along_rows_is_refused():
    case = gemm_case("full-c", (4, 8), (8, 5))
    case.node.set_input(2, Value("c2", const=np.ones((4, 5), np.float32)))
    _refused(case.node, "int8.addend")


def test_prepared_conv_packs_weights_and_launches_im2col_then_gemm(fake_backend, monkeypatch):
    backend, device = fake_backend
    uploads = []
    for method in ("upload", "upload_derived"):  # the model's own constants, and what the builder derives
        original = getattr(backend, method)
        monkeypatch.setattr(backend, method, lambda array, original=original: uploads.append(array) or original(array))
    case = conv_case("conv", (2, 5, 9, 9), (12, 5, 3, 3), {"pads": [1, 1, 1, 1]}, residual=True, activation="Relu")
    spec, runtime = gpu_spec(case, F16, Tactic("imma128x128"))
    launch = backend.prepare(spec)
    packed = [a for a in uploads if a.dtype == np.int8]
    assert [a.shape for a in packed] == [(12, padded_depth(5 * 9))] and padded_depth(45) == 64
    assert not np.any(packed[0][:, 45:])
    assert all(a.dtype != F16 or a.shape != (12, 5, 3, 3) for a in uploads)  # the float weight is not uploaded
    state = RunState(scratch={"cuda": backend.new_state()})
    arena = backend.allocate(1 << 20)
    views = [None if a is None else backend.view(arena, 4096 * i, a.shape, a.dtype) for i, a in enumerate(runtime)]
    out = backend.view(arena, 1 << 19, spec.outputs[0].shape, F16)
    launch(views, [out], state)
    (pack, pack_grid, pack_block, _), (gemm, grid, block, _) = device.launches
    assert (pack, gemm) == ("im2col_quantize_f16", "imma_gemm_128x128_f16")
    assert block == (256, 1, 1) and grid == (-(-2 * 81 // 128), 1, 1)


@pytest.mark.parametrize("case", [
    gemm_case("gemm-transA", (33, 7), (33, 10), {"transA": 1}),
    gemm_case("gemm-activation-c", (7, 33), (10, 33), {"transB": 1, "beta": 0.5}, c="activation", activation="Relu"),
    matmul_case("matmul", (2, 3, 40), (40, 70)),
], ids=lambda c: c.id)
def test_prepared_products_launch_both_tactics(fake_backend, case):
    backend, device = fake_backend
    for tactic, threads in (("imma64x64", 128), ("imma128x128", 256)):
        device.launches.clear()
        spec, runtime = gpu_spec(case, F16, Tactic(tactic))
        state = RunState(scratch={"cuda": backend.new_state()})
        arena = backend.allocate(1 << 20)
        views = [None if a is None else backend.view(arena, 8192 * i, a.shape, a.dtype) for i, a in enumerate(runtime)]
        backend.prepare(spec)(views, [backend.view(arena, 1 << 19, spec.outputs[0].shape, F16)], state)
        assert [name for name, *_ in device.launches] == ["im2col_quantize_f16", f"imma_gemm_{tactic[4:]}_f16"]
        assert device.launches[1][2] == (threads, 1, 1)


def test_float_int8_layers_run_between_fake_quantizations(fake_backend):
    """An INT8 Add (no integer kernel): its input that no INT8 layer wrote is quantized into a
    copy, the float kernel runs, the output it writes as INT8 is requantized in place."""
    backend, device = fake_backend
    a, b, y = Value("a", np.float32, (2, 8)), Value("b", np.float32, (2, 8)), Value("y", np.float32, (2, 8))
    for value in (a, b, y):
        value.meta.update(int8_scale=0.05, int8_zero_point=0)
    b.meta["int8_output"] = y.meta["int8_output"] = True
    node = Node("Add", [a, b], [y], name="add_int8")
    node.meta["precision"] = "int8"
    from edge.kernels.backend import StepSpec, TensorInfo

    infos = [TensorInfo(v.name, F16, (2, 8)) for v in (a, b)]
    spec = StepSpec(node, 17, "int8", None, "nchw", infos, [TensorInfo("y", F16, (2, 8))], device="gpu")
    launch = backend.prepare(spec)
    arena = backend.allocate(1 << 12)
    views = [backend.view(arena, 256 * i, (2, 8), F16) for i in range(3)]
    state = RunState(scratch={"cuda": backend.new_state()})
    launch(views[:2], [views[2]], state)
    names = [name for name, *_ in device.launches]
    assert names == ["fake_quantize_f16", "binary_flat_f16", "fake_quantize_f16"]
    assert backend.converts(node) and not backend.converts(Node("Add", [a, b], [Value("z", np.float32, (2, 8))], name="plain"))


def test_cnn_int8_plans_the_integer_kernels_on_the_gpu(stand_in, tmp_path):
    """A calibrated INT8 build of the residual CNN for the GPU: every layer on the cuda
    backend, every Conv/Gemm with an integer kernel and tactic, nothing left to the CPU but
    the copies in and out; a context runs it on the stand-in (kernel names checked)."""
    device, _ = stand_in
    model = resnet_block_cnn()
    config = edge.BuilderConfig(profile="agx-orin-64gb", precision="int8", calib_data=_calibration(tmp_path, (1, 3, 16, 16)),
                                backends={"gpu": "cuda"}, optimization_level=0)
    engine = edge.build(model.SerializeToString(), config)
    kernels = [s for s in engine.plan.steps if s.kind == "kernel"]
    assert all(s.backend == "cuda" and s.fallback is None for s in kernels), [(s.node, s.backend, s.fallback) for s in kernels]
    products = [s for s in kernels if s.op.split("::")[-1] in ("Conv", "FusedConv", "Gemm")]
    assert len(products) == 7 and all(s.precision == "int8" and s.kernel.startswith("int8.imma_") for s in products)
    assert all(s.tactic is not None and s.tactic.name in ("imma64x64", "imma128x128") for s in products)
    rows = {row["name"]: row for row in layer_rows(engine.graph, engine.plan)}
    assert {rows[s.node]["kernel"] for s in products} == {"int8.imma_conv", "int8.imma_product"}
    context = engine.create_context()
    context.run(random_feeds(model))
    launched = {name for name, *_ in device.launches}
    assert {"im2col_quantize_f16", "imma_gemm_64x64_f16", "fake_quantize_f16"} <= launched


def test_depthwise_layers_fall_back_to_float_kernels_on_the_gpu_with_a_reason(stand_in, tmp_path):
    model = mobile_cnn()
    shape = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)
    config = edge.BuilderConfig(profile="agx-orin-64gb", precision="int8", calib_data=_calibration(tmp_path, shape),
                                backends={"gpu": "cuda"}, optimization_level=0)
    engine = edge.build(model.SerializeToString(), config)
    convs = [s for s in engine.plan.steps if s.kind == "kernel" and s.op.split("::")[-1] in ("Conv", "FusedConv") and s.precision == "int8"]
    grouped = [s for s in convs if s.fallback is not None]
    assert grouped and all(s.backend == "cuda" and s.fallback["code"] == "int8.grouped_conv" and s.kernel == "nn.conv" for s in grouped)
    assert any(s.kernel == "int8.imma_conv" for s in convs)


@pytest.mark.parametrize("faster", ["fp16", "int8"])
def test_int8_layers_take_the_cuda_fp16_kernels_where_those_time_faster(stand_in, tmp_path, monkeypatch, faster):
    """The auto-tuner on the CUDA backend's own builders (stand-in device, each precision's
    launches given a set time): INT8 layers whose FP16 kernels time faster plan and run
    those, with no INT8 conversions; otherwise they keep the integer kernels."""
    device, backend = stand_in
    seconds = {"int8": 1e-3, "fp16": 1e-4} if faster == "fp16" else {"int8": 1e-4, "fp16": 1e-3}
    prepare = backend.prepare

    def timed_prepare(spec):
        launch = prepare(spec)
        launch_seconds = seconds.get(spec.precision, 1e-3)

        def run(inputs, outputs, state):
            run.seconds = launch_seconds
            return launch(inputs, outputs, state)

        return run

    def time_launch(launch, inputs, outputs, state, repeat):
        launch(inputs, outputs, state)
        return [launch.seconds] * repeat

    monkeypatch.setattr(backend, "prepare", timed_prepare)
    monkeypatch.setattr(backend, "time_launch", time_launch)
    monkeypatch.setattr(backend, "device_signature", lambda: {"backend": "cuda", "gpu": "stand-in"})
    model = resnet_block_cnn()
    config = edge.BuilderConfig(profile="agx-orin-64gb", precision="int8", calib_data=_calibration(tmp_path, (1, 3, 16, 16)),
                                backends={"gpu": "cuda"}, optimization_level=1)
    engine = edge.build(model.SerializeToString(), config)
    products = [s for s in engine.plan.steps if s.kind == "kernel" and s.op.split("::")[-1] in ("Conv", "FusedConv", "Gemm")]
    switched = {e["node"] for e in engine.build["tactics"]["int8_faster_in_fp16"]}
    if faster == "fp16":
        assert switched == {s.node for s in products} and len(products) == 7
        assert all(s.precision == "fp16" and not s.kernel.startswith("int8.") for s in products)
    else:
        assert not switched and all(s.precision == "int8" and s.kernel.startswith("int8.imma_") for s in products)
    device.launches.clear()
    engine.create_context().run(random_feeds(model))
    launched = {name for name, *_ in device.launches}
    assert ("im2col_quantize_f16" in launched) == (faster == "int8")


def test_a_gemm_residual_beside_an_activation_addend_takes_the_float_kernel_between_int8_conversions():
    """The integer GEMM's epilogue adds a bias row and a residual, or a C matrix: a FusedGemm
    with an activation C and a Z is refused with its reason, and the float kernel serves it."""
    node = gemm_case("residual-c", (6, 16), (16, 8), c="activation", residual=True).node
    kernel = registry.resolve(node, 17, "cuda", "int8")
    assert not kernel.name.startswith("int8.")
    refusal = registry.lookup("FusedGemm", EDGETRT_DOMAIN, "cuda", 17, "int8").supports(node)
    assert refusal is not None and refusal.code == "int8.residual" and node.name in refusal.detail


@pytest.mark.parametrize("c", ["const", None])
def test_a_gemm_residual_reaches_the_integer_epilogue_in_rows(fake_backend, c):
    """A FusedGemm's Z (the output's shape) is the integer epilogue's residual, read row by
    row beside the bias row of a constant C."""
    from edge.kernels.cuda import int8
    from edge.kernels.cuda.launch import Step

    backend, device = fake_backend
    case = gemm_case("residual", (6, 16), (16, 8), c=c, residual=True, activation="Relu")
    assert registry.resolve(case.node, 17, "cuda", "int8").name.startswith("int8.imma_")
    spec, runtime = gpu_spec(case, F16, Tactic("imma64x64"))
    problem = int8._product_problem(Step(spec, backend), *int8._operands(Step(spec, backend)))
    assert (problem.residual, problem.z_strides, problem.z_beta) == (3, (8, 1, 0), 1.0)
    assert (problem.bias is not None) == (c == "const")
    _launch(backend, spec, runtime)
    assert [name for name, *_ in device.launches] == ["im2col_quantize_f16", "imma_gemm_64x64_f16"]


# -- channels-last INT8 convolutions: the NVRTC packing and cuDNN's INT8 plans ------------------


def _nhwc_case(**kwargs):
    options = {"residual": True, "residual_on_grid": True, "activation": "Relu", **kwargs}
    return conv_case("nhwc", (2, 16, 9, 9), (32, 16, 3, 3), {"pads": [1, 1, 1, 1]}, channels_last=True, **options)


def _offered(case) -> list[str]:
    spec, _ = gpu_spec(case, F16)
    return [t.name for t in registry.resolve(case.node, 17, "cuda", "int8").tactics(spec)]


CUDNN_FUSED = [f"cudnn_int8{i}" for i in range(4)]
CUDNN_UNFUSED = [f"cudnn_int8{i}c" for i in range(4)]


LT_INT8 = [f"lt_int8{i}" for i in range(4)]


@pytest.mark.parametrize("case, libraries", [
    (_nhwc_case(), CUDNN_FUSED + CUDNN_UNFUSED + LT_INT8),
    (_nhwc_case(residual_on_grid=False), CUDNN_UNFUSED + LT_INT8),  # fusing would skip rounding the residual to its grid
    (_nhwc_case(activation="SiLU"), CUDNN_UNFUSED + LT_INT8),  # no clamp expresses SiLU
    (conv_case("nhwc-3-channels", (1, 3, 8, 8), (8, 3, 3, 3), channels_last=True), LT_INT8),
    (conv_case("nhwc-6-filters", (1, 8, 8, 8), (6, 8, 3, 3), channels_last=True), []),  # int32 rows of 6 are not 16-byte aligned
    (conv_case("nchw", (2, 16, 9, 9), (32, 16, 3, 3), {"pads": [1, 1, 1, 1]}), []),  # output planes, not rows
    (gemm_case("gemm", (8, 40), (40, 64)), LT_INT8),
    (matmul_case("matmul", (2, 3, 40), (40, 70)), []),
], ids=["fused", "off-grid-residual", "silu", "3-channels", "6-filters", "nchw", "gemm", "matmul-70-columns"])
def test_library_int8_tactics_follow_the_nvrtc_kernels_where_the_library_takes_the_step(monkeypatch, case, libraries):
    monkeypatch.setattr(cudnn_graphs, "available", lambda: True)
    monkeypatch.setattr(cublaslt, "available", lambda: True)
    names = _offered(case)
    assert sorted(names[:2]) == ["imma128x128", "imma64x64"] and names[2:] == libraries


def _launch(backend, spec, runtime):
    arena = backend.allocate(1 << 22)
    views = [None if a is None else backend.view(arena, (1 << 18) * i, a.shape, a.dtype) for i, a in enumerate(runtime)]
    out = backend.view(arena, 1 << 21, spec.outputs[0].shape, F16)
    state = RunState(scratch={"cuda": backend.new_state()})
    state.scratch["cuda"].stream = 7  # the stand-in device names its stream; cuDNN is handed an integer
    backend.prepare(spec)(views, [out], state)
    return views, out, state.scratch["cuda"]


def _read_through(packed: np.ndarray, tensor) -> np.ndarray:
    """The graph tensor's logical (N, C, H, W) view of ``packed`` through its declared strides."""
    flat = np.ascontiguousarray(packed).ravel()
    return np.lib.stride_tricks.as_strided(flat, shape=tensor.dim, strides=[s * flat.itemsize for s in tensor.stride])


def test_fused_cudnn_int8_graph_scales_biases_adds_and_clamps_on_our_pointers(fake_backend, monkeypatch):
    backend, device = fake_backend
    uploads = []
    monkeypatch.setattr(backend, "upload_derived", lambda array, original=backend.upload_derived: uploads.append(array) or original(array))
    graphs, _ = stand_in_frontend(monkeypatch)
    case = _nhwc_case()
    spec, runtime = gpu_spec(case, F16, Tactic("cudnn_int81", {"source": "cudnn", "plan": 1}))
    views, out, state = _launch(backend, spec, runtime)
    (graph,) = graphs
    assert (graph.config["io_data_type"], graph.config["intermediate_data_type"], graph.config["compute_data_type"]) == ("int8", "float", "int32")
    assert [op for op, _, _ in graph.ops] == ["conv_fprop", "mul", "add", "add", "relu"]
    x, w = graph.tensors["x"], graph.tensors["w"]
    assert (x.dim, x.stride, x.data_type) == ([2, 16, 9, 9], [9 * 9 * 16, 1, 9 * 16, 16], "int8")
    (packed,) = [a for a in uploads if a.dtype == np.int8]
    np.testing.assert_array_equal(_read_through(packed, w), case.node.inputs[1].meta["int8_weight"])  # KRSC, as declared
    y_scale = case.node.outputs[0].meta["int8_scale"]
    relu = graph.ops[-1][1]
    assert relu["lower_clip"] == 0.0 and relu["upper_clip"] == pytest.approx(127 * y_scale)
    y = graph.ops[-1][2]
    assert (y.output, y.data_type, y.dim, y.stride) == (True, "half", [2, 32, 9, 9], [9 * 9 * 32, 1, 9 * 32, 32])
    assert [name for name, *_ in device.launches] == ["quantize_codes_f16"]
    ((pack, _, index, _),) = graph.executed
    assert index == 1 and pack[y] == out.ptr and pack[graph.tensors["z"]] == views[3].ptr
    assert pack[x] == state.workspace(backend, 2 * 9 * 9 * 16, "int8_codes")  # the quantized input, in the context's scratch


class _NoFusedEngine(StandInGraph):
    """A frontend with no engine for the fused INT8 epilogue."""

    def validate(self) -> None:
        if self.config["intermediate_data_type"] == "float":
            raise RuntimeError("no engine supports this fusion")
        super().validate()


@pytest.mark.parametrize("tactic, graph_type", [
    (Tactic("cudnn_int82c", {"source": "cudnn", "plan": 2, "epilogue": "nvrtc"}), StandInGraph),
    (Tactic("cudnn_int82", {"source": "cudnn", "plan": 2}), _NoFusedEngine),
], ids=["unfused", "fused-unsupported"])
def test_unfused_cudnn_int8_sums_reach_the_integer_epilogue(fake_backend, monkeypatch, tactic, graph_type):
    backend, device = fake_backend
    graphs, _ = stand_in_frontend(monkeypatch, graph_type)
    spec, runtime = gpu_spec(_nhwc_case(), F16, tactic)
    _, out, state = _launch(backend, spec, runtime)
    graph = graphs[-1]
    y = graph.ops[-1][2]
    assert [op for op, _, _ in graph.ops] == ["conv_fprop", "identity"] and y.data_type == "int32"
    (quantize, _, _, _), (epilogue, grid, _, _) = device.launches
    assert (quantize, epilogue) == ("quantize_codes_f16", "imma_rows_epilogue_f16")
    ((pack, _, _, _),) = graph.executed
    assert pack[y] == state.workspace(backend, 2 * 81 * 32 * 4, "int8_sums")


# -- INT8 storage between layers ---------------------------------------------------------------


def _int8_build(tmp_path, **options):
    config = edge.BuilderConfig(profile="agx-orin-64gb", precision="int8", calib_data=_calibration(tmp_path, (1, 3, 16, 16)),
                                backends={"gpu": "cuda"}, optimization_level=0, **options)
    return edge.build(resnet_block_cnn().SerializeToString(), config)


def test_tensors_only_integer_kernels_read_are_stored_as_int8_codes(stand_in, tmp_path):
    """The residual CNN's conv -> conv tensors (the block's inner ones and its shortcut conv's)
    are stored as INT8 codes; tensors a pool, the global pool or the network output read stay
    float16, and the kernels launched take and give codes where the plan says so."""
    device, _ = stand_in
    engine = _int8_build(tmp_path)
    stored = set(engine.build["int8_storage"]["names"])
    writers = {s.outputs[0]: s for s in engine.plan.steps if s.kind == "kernel"}
    assert len(stored) == 4 and all(engine.plan.storage[name] == "int8" for name in stored)
    for name in stored:
        assert writers[name].kernel == "int8.imma_conv"
        readers = [s for s in engine.plan.steps if name in s.inputs]
        assert readers and all(s.kernel == "int8.imma_conv" for s in readers), name
    pooled = [s.outputs[0] for s in engine.plan.steps if s.op in ("MaxPool", "GlobalAveragePool")]
    assert pooled and all(engine.plan.storage[name] == "float16" for name in pooled)
    assert engine.plan.storage[engine.graph.outputs[0].name] == "float16"
    device.launches.clear()
    engine.create_context().run(random_feeds(resnet_block_cnn()))
    launched = {name for name, *_ in device.launches}
    assert {"im2col_quantize_i8", "imma_gemm_64x64_i8", "imma_gemm_64x64_i8_f16", "imma_gemm_64x64_f16_i8"} <= launched


def test_int8_storage_is_left_where_a_step_cannot_prepare_with_codes(stand_in, tmp_path, monkeypatch):
    _, backend = stand_in
    prepare = backend.prepare

    def no_codes(spec):
        if any(info is not None and info.dtype == np.int8 and info.const is None for info in (*spec.inputs, *spec.outputs)):
            raise ValueError("no kernel for INT8 codes here")
        return prepare(spec)

    monkeypatch.setattr(backend, "prepare", no_codes)
    engine = _int8_build(tmp_path)
    assert engine.build["int8_storage"]["names"] == [] and "int8" not in engine.plan.storage.values()


def test_int8_storage_off_keeps_float16_between_layers(stand_in, tmp_path):
    engine = _int8_build(tmp_path, int8_storage=False)
    assert "int8_storage" not in engine.build and "int8" not in engine.plan.storage.values()


def test_fused_cudnn_int8_graph_on_int8_codes_folds_the_output_scale(fake_backend, monkeypatch):
    """Input, residual and output stored as INT8 codes: no quantize pass, the residual's codes
    scaled by s_z / s_y, the channel factors and bias divided by s_y, the clamp in codes, and
    cuDNN writes INT8."""
    backend, device = fake_backend
    uploads = []
    monkeypatch.setattr(backend, "upload_derived", lambda array, original=backend.upload_derived: uploads.append(array) or original(array))
    graphs, _ = stand_in_frontend(monkeypatch)
    case = _nhwc_case()
    spec, runtime = gpu_spec(case, F16, Tactic("cudnn_int81", {"source": "cudnn", "plan": 1}), codes=(0, 3, "y"))
    views, out, _ = _launch(backend, spec, runtime)
    (graph,) = graphs
    assert [op for op, _, _ in graph.ops] == ["conv_fprop", "mul", "add", "mul", "add", "relu"]
    y = graph.ops[-1][2]
    assert y.data_type == "int8" and graph.tensors["z"].data_type == "int8"
    assert graph.ops[-1][1] == {"input": graph.ops[-2][2], "lower_clip": 0.0, "upper_clip": 127.0}
    s_z, s_y = (np.float32(v.meta["int8_scale"]) for v in (case.node.inputs[3], case.node.outputs[0]))
    factors = [a for a in uploads if a.dtype == np.float32 and a.shape == (32,)]
    np.testing.assert_allclose(factors[-1], s_z / s_y, rtol=1e-6)  # the residual's factor
    assert device.launches == []  # the input is already codes
    ((pack, _, _, _),) = graph.executed
    assert pack[graph.tensors["x"]] == views[0].ptr and pack[graph.tensors["z"]] == views[3].ptr and pack[y] == out.ptr


def test_profiler_hooks_see_int8_stored_tensors_as_their_values(stand_in, tmp_path):
    """Layerwise compare and profilers read a tensor stored as INT8 codes as its float32
    values ``q · s``, like every other tensor (the stand-in device's memory holds zeros)."""
    engine = _int8_build(tmp_path)
    seen: dict[str, np.ndarray] = {}
    context = engine.create_context()
    context.profiler = lambda step, results: seen.update(zip(step.plan.outputs, results))
    context.run(random_feeds(resnet_block_cnn()))
    stored = engine.build["int8_storage"]["names"]
    assert stored and all(seen[name].dtype == np.float32 for name in stored)
    assert all(seen[name].dtype == np.float16 for name in seen if engine.plan.storage.get(name) == "float16")


@pytest.mark.parametrize("codes, x, attrs, packs", [
    ((0,), (2, 64, 7, 7), {}, False),  # its rows of 64 codes are the GEMM's rows
    ((), (2, 64, 7, 7), {}, True),  # float16: quantized as it is packed
    ((0,), (2, 48, 7, 7), {}, True),  # 48 channels do not fill whole 32-deep steps
    ((0,), (2, 64, 7, 7), {"strides": [2, 2]}, True),
])
def test_pointwise_conv_on_int8_codes_skips_the_packing_pass(fake_backend, codes, x, attrs, packs):
    backend, device = fake_backend
    case = conv_case("pointwise", x, (96, x[1], 1, 1), attrs, channels_last=True)
    spec, runtime = gpu_spec(case, F16, Tactic("imma64x64"), codes)
    _launch(backend, spec, runtime)
    names = [name for name, *_ in device.launches]
    assert names[-1].startswith("imma_gemm_64x64") and (len(names) == 2) == packs, names


# -- cuBLASLt's INT8 GEMMs -----------------------------------------------------------------------


class StandInLt:
    """cuBLASLt as the INT8 product calls it: descriptors record their settings, the heuristic
    finds one algorithm without workspace, and ``matmul`` calls are recorded."""

    MatmulDescAttribute = SimpleNamespace(TRANSA="trans_a", TRANSB="trans_b")
    MatmulPreferenceAttribute = SimpleNamespace(MAX_WORKSPACE_BYTES="workspace")
    matmul_heuristic_result_dtype = np.dtype([("algo", np.uint64, 8), ("workspace_size", np.uint64)])

    def __init__(self) -> None:
        self.objects: list[dict] = []
        self.calls: list[tuple] = []

    def _new(self, **fields) -> int:
        self.objects.append(fields)
        return len(self.objects) - 1

    def create(self) -> int:
        return 99

    def matmul_desc_create(self, compute: int, scale: int) -> int:
        return self._new(compute=compute, scale=scale)

    def matrix_layout_create(self, dtype: int, rows: int, cols: int, ld: int) -> int:
        return self._new(dtype=dtype, rows=rows, cols=cols, ld=ld)

    def matmul_preference_create(self) -> int:
        return self._new()

    def get_matmul_desc_attribute_dtype(self, attribute) -> type:
        return np.int32

    get_matmul_preference_attribute_dtype = get_matrix_layout_attribute_dtype = get_matmul_desc_attribute_dtype

    def matmul_desc_set_attribute(self, obj: int, attribute, address: int, nbytes: int) -> None:
        self.objects[obj][attribute] = int(np.frombuffer(ctypes.string_at(address, nbytes), np.int32)[0])

    matmul_preference_set_attribute = matmul_desc_set_attribute

    def matmul_algo_get_heuristic(self, handle, desc, a, b, c, d, preference, wanted, results, found) -> None:
        ctypes.c_int32.from_address(found).value = 1

    def matmul(self, *args) -> None:
        self.calls.append(args)

    def matmul_preference_destroy(self, obj) -> None:
        pass

    matrix_layout_destroy = matmul_desc_destroy = matmul_preference_destroy


def _column_major(values: np.ndarray, layout: dict) -> np.ndarray:
    """The (rows, cols) matrix a column-major cuBLASLt layout reads from ``values``' storage."""
    flat = np.ascontiguousarray(values).ravel()
    return flat[: layout["ld"] * layout["cols"]].reshape(layout["cols"], layout["ld"]).T[: layout["rows"]]


@pytest.mark.parametrize("case", [
    gemm_case("gemm", (8, 40), (40, 64)),
    conv_case("nhwc-conv3x3", (2, 16, 5, 5), (32, 16, 3, 3), {"pads": [1, 1, 1, 1]}, residual=True, channels_last=True),
], ids=lambda c: c.id)
def test_cublaslt_int8_product_is_the_packed_rows_times_the_weight_codes(fake_backend, monkeypatch, case):
    """The cuBLASLt call, replayed in numpy by its column-major layouts, is packed rows · weight
    codesᵀ in int32, row-major in the sums scratch that the integer epilogue then reads."""
    backend, device = fake_backend
    lt = StandInLt()
    monkeypatch.setattr(cublaslt, "_library", lambda: lt)
    for name, module in {"nvmath": ModuleType("nvmath"), "nvmath.bindings": ModuleType("nvmath.bindings"),
                         "nvmath.bindings.cublas": SimpleNamespace(ComputeType=SimpleNamespace(COMPUTE_32I=72))}.items():
        monkeypatch.setitem(sys.modules, name, module)
    placed = []
    monkeypatch.setattr(backend, "upload_derived", lambda array, original=backend.upload_derived: placed.append((array, original(array))) or placed[-1][1])
    spec, runtime = gpu_spec(case, F16, Tactic("lt_int81", {"source": "cublaslt", "rank": 1}))
    _, _, state = _launch(backend, spec, runtime)
    ((weight, weight_tensor),) = [(a, t) for a, t in placed if a.dtype == np.int8]
    rows = np.prod(spec.outputs[0].shape[:-1])
    cols, depth = weight.shape
    assert [name for name, *_ in device.launches] == ["im2col_quantize" + ("_nhwc" if case.id.startswith("nhwc") else "") + "_f16", "imma_rows_epilogue_f16"]
    ((_, desc, _, a, a_desc, b, b_desc, _, c, _, d, d_desc, *_),) = lt.calls
    assert lt.objects[desc] == {"compute": 72, "scale": 10, "trans_a": 1, "trans_b": 0}  # int32 sums; "TN"
    assert (a, b) == (weight_tensor.ptr, state.workspace(backend, rows * depth, "int8_codes"))
    assert c == d == state.workspace(backend, rows * cols * 4, "int8_sums")
    assert [lt.objects[i]["dtype"] for i in (a_desc, b_desc, d_desc)] == [3, 3, 10]
    codes = np.random.default_rng(0).integers(-127, 128, (rows, depth)).astype(np.int8)
    product = _column_major(weight, lt.objects[a_desc]).T.astype(np.int32) @ _column_major(codes, lt.objects[b_desc]).astype(np.int32)
    sums = product.T  # column-major (cols, rows) with ld cols is row-major (rows, cols)
    assert lt.objects[d_desc] == {"dtype": 10, "rows": cols, "cols": rows, "ld": cols}
    np.testing.assert_array_equal(sums, codes.astype(np.int32) @ weight.astype(np.int32).T)
