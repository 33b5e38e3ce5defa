"""The TensorRT backend: build through TensorRT's API (a recording test double here), the plan
as a blob of the engine file, bindings on edgetrt's buffers, version refusal, the no-TensorRT path."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import edge
from edge.cli import main
from edge.errors import EdgeError, EngineFormatError, EngineMismatchError
from edge.kernels import backend as backends
from edge.kernels.backend import BackendUnavailable
from edge.kernels.tensorrt.backend import TensorRTBackend
from edge.kernels.tensorrt.step import plan_bytes
from edge.serve.batcher import BatchingConfig, DynamicBatcher
from edge.serve.metrics import ModelStats
from edge.serve.model import ServedModel
from edge.quant import CalibrationCache, read_cache, write_cache
from edge.trt import export_for_tensorrt, trt_target
from edge.trt.versions import cache_version
from tests.models import random_feeds, resnet_block_cnn
from tests.trt.fake_tensorrt import FakeDeviceMemory, FakeTensorRT

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
PROFILE = "agx-orin-64gb"


def _install(monkeypatch: pytest.MonkeyPatch, version: str) -> tuple[FakeTensorRT, FakeDeviceMemory]:
    """``tensorrt`` is the double of ``version``; the tensorrt backend runs it on fake device memory."""
    fake, memory = FakeTensorRT(version), FakeDeviceMemory()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(backends, "_INSTANCES", {})
    monkeypatch.setattr(backends, "_FACTORIES", {**backends._FACTORIES, "tensorrt": lambda: TensorRTBackend(fake, memory)})
    return fake, memory


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeTensorRT, FakeDeviceMemory]:
    return _install(monkeypatch, "10.3.0.30")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.onnx"
    onnx.save(resnet_block_cnn(), path)
    return path


def _config(**kw) -> edge.BuilderConfig:
    return edge.BuilderConfig(profile=PROFILE, backends={"gpu": "tensorrt"}, **kw)


def test_builder_gets_the_plan_trtexec_reproduces(fake_trt, model_file: Path, tmp_path: Path) -> None:
    fake, _ = fake_trt
    graph = edge.load_onnx(model_file)
    rng = np.random.default_rng(3)
    scales = {v.name: float(rng.uniform(0.005, 0.05)) for v in [*graph.inputs, *(o for n in graph.nodes for o in n.outputs)]}
    write_cache(tmp_path / "edgetrt.calib", CalibrationCache("EntropyCalibration2", scales))
    settings = dict(precision="int8", dla_core=1, gpu_fallback=True, calib_cache=tmp_path / "edgetrt.calib")
    engine = edge.build(model_file, _config(**settings))
    (built,) = fake.built
    assert built["flags"] == ["FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS", "GPU_FALLBACK"]
    assert (built["default_device"], built["dla_core"]) == ("DLA", 1)
    # the same layers, devices and precisions as the trtexec line export-trt writes for 10.3
    export = export_for_tensorrt(model_file, tmp_path / "out", trt_target("10.3"), config=edge.BuilderConfig(profile=PROFILE, optimization_level=0, **settings))
    argv = dict(arg.lstrip("-").split("=", 1) for arg in export.build if "=" in arg)
    pairs = lambda spec: dict(item.rsplit(":", 1) for item in spec.split(","))  # noqa: E731
    assert built["devices"] == pairs(argv["layerDeviceTypes"]) and {"DLA", "GPU"} <= set(built["devices"].values())
    names = {"int8": "INT8", "fp16": "HALF", "fp32": "FLOAT"}
    assert built["precisions"] == {layer: names[p] for layer, p in pairs(argv["layerPrecisions"]).items()}
    assert built["pools"]["DLA_MANAGED_SRAM"] == 1 << 20
    # the calibrator serves edgetrt's scales under this TensorRT's header
    served = built["calibration_cache"]
    assert served.splitlines()[0] == f"TRT-{cache_version('10.3.0.30')}-EntropyCalibration2" == "TRT-100300-EntropyCalibration2"
    (tmp_path / "served.calib").write_text(served)
    assert read_cache(tmp_path / "served.calib").scales == pytest.approx(export.settings.scales, rel=1e-6)
    record = engine.build["tensorrt"]
    assert record["version"] == "10.3.0.30" and record["network"]["dla_core"] == 1
    assert engine.header["provenance"]["built_with"]["tensorrt"] == "10.3.0.30"
    assert [s.backend for s in engine.plan.segments] == ["tensorrt"]


@pytest.mark.parametrize("version, api", [("10.3.0.30", "v3"), ("8.6.2.3", "v2")])
def test_run_binds_the_engine_buffers(monkeypatch: pytest.MonkeyPatch, model_file: Path, tmp_path: Path, version: str, api: str) -> None:
    fake, memory = _install(monkeypatch, version)
    edge.build(model_file, _config()).save(tmp_path / "m.engine")
    engine = edge.load(tmp_path / "m.engine")
    context = engine.create_context()
    feeds = random_feeds(resnet_block_cnn())
    out = context.run(feeds)
    expected = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(out["probs"], expected, rtol=1e-5, atol=1e-6)
    context.run(feeds)
    (dla_core, trt_engine), = fake.engines
    (trt_context,) = trt_engine.contexts  # one TensorRT context per edgetrt context, kept across runs
    assert dla_core == -1 and [call[0] for call in trt_context.enqueued] == [api, api]
    assert memory.synchronized == 2
    if api == "v3":  # bound: edgetrt's device arena, where the copies in and out read and write
        arena = context._device_views[context._schedule.slot["probs"]]
        assert trt_context.addresses["probs"] == arena.ctypes.data
        assert set(trt_context.addresses) == {"image", "probs"}


def test_dla_plan_is_deserialized_on_its_core(fake_trt, model_file: Path) -> None:
    fake, _ = fake_trt
    engine = edge.build(model_file, _config(precision="fp16", dla_core=1, gpu_fallback=True))
    engine.create_context().run(random_feeds(resnet_block_cnn()))
    assert [core for core, _ in fake.engines] == [1]


def test_plan_is_a_checksummed_blob_of_the_engine_file(fake_trt, model_file: Path, tmp_path: Path) -> None:
    engine = edge.build(model_file, _config())
    plan = plan_bytes(engine.graph.nodes[0])
    engine.save(tmp_path / "m.engine")
    data = (tmp_path / "m.engine").read_bytes()
    at = data.find(plan)
    assert at > 0 and b"pickle" not in data
    assert plan_bytes(edge.load(tmp_path / "m.engine").graph.nodes[0]) == plan
    (tmp_path / "bad.engine").write_bytes(data[:at + 20] + bytes([data[at + 20] ^ 1]) + data[at + 21:])
    with pytest.raises(EngineFormatError, match="checksum mismatch"):
        edge.load(tmp_path / "bad.engine")


def test_load_refuses_a_plan_of_another_tensorrt(monkeypatch: pytest.MonkeyPatch, model_file: Path, tmp_path: Path) -> None:
    _install(monkeypatch, "10.3.0.30")
    edge.build(model_file, _config()).save(tmp_path / "m.engine")
    _install(monkeypatch, "10.3.0.26")
    with pytest.raises(EngineMismatchError, match=r"TensorRT 10\.3\.0\.30 plan, but this machine has TensorRT 10\.3\.0\.26"):
        edge.load(tmp_path / "m.engine", allow_mismatch=True)


def test_commands_run_the_engine(fake_trt, model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine_file = tmp_path / "m.engine"
    assert main(["build", str(model_file), "--profile", PROFILE, "--backend", "gpu=tensorrt", "-o", str(engine_file)]) == 0
    np.save(tmp_path / "image.npy", random_feeds(resnet_block_cnn())["image"])
    assert main(["run", str(engine_file), "--input", f"image={tmp_path / 'image.npy'}", "-o", str(tmp_path / "out")]) == 0
    assert main(["bench", str(engine_file), "--iterations", "3", "--warmup-runs", "1", "--warmUp", "0"]) == 0
    assert main(["profile", str(engine_file), "--duration", "0.3", "--interval", "20", "--sampler", "psutil", "--report", str(tmp_path / "report")]) == 0
    assert main(["inspect", str(engine_file)]) == 0
    assert "tensorrt" in capsys.readouterr().out


def test_serve_runs_the_engine(fake_trt, model_file: Path, tmp_path: Path) -> None:
    edge.build(model_file, _config()).save(tmp_path / "m.engine")
    config = BatchingConfig(max_batch=1, max_queue_delay_s=0.0, instances=1, max_queue=4)
    model = ServedModel.from_engine(edge.load(tmp_path / "m.engine"), "m", config)
    feeds = random_feeds(resnet_block_cnn())

    async def infer() -> dict[str, np.ndarray]:
        batcher = DynamicBatcher(model, config, ModelStats("m", "1"))
        await batcher.start()
        try:
            return await batcher.submit(feeds)
        finally:
            await batcher.stop()

    expected = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(asyncio.run(infer())["probs"], expected, rtol=1e-5, atol=1e-6)


def test_tensorrt_holds_gpu_and_dla_together(fake_trt, model_file: Path) -> None:
    with pytest.raises(EdgeError, match="drop dla=cpu"):
        edge.build(model_file, edge.BuilderConfig(profile=PROFILE, backends={"gpu": "tensorrt", "dla": "cpu"}))


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
def test_without_tensorrt_build_and_load_point_to_export_trt(monkeypatch: pytest.MonkeyPatch, model_file: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    engine_file = tmp_path / "m.engine"
    assert main(["build", str(model_file), "--profile", PROFILE, "--backend", "gpu=tensorrt", "-o", str(engine_file)]) == 1
    err = capsys.readouterr().err.strip()
    assert "TensorRT is not installed here" in err and "edgetrt export-trt" in err and len(err.splitlines()) == 1
    assert not engine_file.exists()
    with monkeypatch.context() as patch:
        _install(patch, "10.3.0.30")
        edge.build(model_file, _config()).save(engine_file)
    with pytest.raises(BackendUnavailable, match="edgetrt export-trt"):
        edge.load(engine_file)
    assert main(["run", str(engine_file)]) == 1
    err = capsys.readouterr().err.strip()
    assert "TensorRT is not installed here" in err and len(err.splitlines()) == 1


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TENSORRT, reason="tensorrt is not installed")
def test_real_tensorrt_runs_the_engine(model_file: Path, tmp_path: Path) -> None:
    edge.build(model_file, edge.BuilderConfig(profile="desktop-cuda", backends={"gpu": "tensorrt"})).save(tmp_path / "m.engine")
    feeds = random_feeds(resnet_block_cnn())
    out = edge.load(tmp_path / "m.engine").create_context().run(feeds)
    expected = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(out["probs"], expected, rtol=1e-3, atol=1e-4)


def test_on_a_jetson_where_tensorrt_runs_it_is_the_default(fake_trt, model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.trt import embed

    assert not embed.uses_tensorrt(edge.BuilderConfig(profile=PROFILE))  # not a Jetson (no /etc/nv_tegra_release)
    (tmp_path / "nv_tegra_release").write_text("# R36 (release), REVISION: 4.3\n")
    monkeypatch.setattr(embed, "_TEGRA_RELEASE", tmp_path / "nv_tegra_release")
    assert [s.backend for s in edge.build(model_file, edge.BuilderConfig(profile=PROFILE)).plan.segments] == ["tensorrt"]
    assert not embed.uses_tensorrt(edge.BuilderConfig(profile=PROFILE, backends={"gpu": "cpu"}))
    assert not embed.uses_tensorrt(edge.BuilderConfig(profile="cpu"))


def test_a_plan_tensorrt_cannot_deserialize_is_a_clear_error(fake_trt, model_file: Path) -> None:
    engine = edge.build(model_file, _config())
    node = engine.graph.nodes[0]
    node.attrs["plan"] = node.attrs["plan"][:8].copy()  # the right version, but no plan
    with pytest.raises(EdgeError, match="could not deserialize its plan"):
        engine.create_context().run(random_feeds(resnet_block_cnn()))


def test_tensorrt_86_int64_io_is_named_not_misread(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ids = onnx.helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [1, 4])
    out = onnx.helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [1, 4])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Cast", ["ids"], ["out"], to=onnx.TensorProto.FLOAT, name="cast")], "g", [ids], [out])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), tmp_path / "ids.onnx")
    _install(monkeypatch, "8.6.2.3")
    engine = edge.build(tmp_path / "ids.onnx", _config())
    with pytest.raises(EdgeError, match=r"binds 'ids' as int32, edgetrt's engine as int64"):
        engine.create_context().run({"ids": np.arange(4, dtype=np.int64).reshape(1, 4)})
    _install(monkeypatch, "10.3.0.30")
    result = edge.build(tmp_path / "ids.onnx", _config()).create_context().run({"ids": np.arange(4, dtype=np.int64).reshape(1, 4)})
    np.testing.assert_array_equal(result["out"], [[0.0, 1.0, 2.0, 3.0]])
