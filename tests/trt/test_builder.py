"""The TensorRT build recipe (plain data), its application to TensorRT's API, and the no-TensorRT path."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest

import edge
from edge.cli import main
from edge.errors import EdgeError
from edge.kernels.backend import BackendUnavailable
from edge.trt import export_for_tensorrt, trt_target
from edge.trt.builder import build_recipe, build_trt_engine, import_tensorrt
from tests.models import resnet_block_cnn

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _settings(tmp_path: Path, **kw):
    onnx.save(resnet_block_cnn(), tmp_path / "m.onnx")
    config = edge.BuilderConfig(profile="agx-orin-64gb", optimization_level=0, **kw)
    return export_for_tensorrt(tmp_path / "m.onnx", tmp_path / "out", trt_target("10.3"), config=config).settings


def test_recipe_for_a_dla_int8_plan(tmp_path: Path) -> None:
    settings = _settings(tmp_path, precision="int8", dla_core=1, gpu_fallback=True)
    settings.scales = {"image": 0.01}
    recipe = build_recipe(settings, "TRT-100300-EntropyCalibration2\nimage: 3c23d70a\n")
    assert recipe.flags == ("FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS", "GPU_FALLBACK")
    assert (recipe.default_device, recipe.dla_core) == ("DLA", 1)
    assert recipe.devices == settings.devices() and {"DLA", "GPU"} == set(recipe.devices.values())
    expected = {"int8": "INT8", "fp16": "HALF", "fp32": "FLOAT"}
    assert recipe.precisions == {name: expected[p] for name, p in settings.precisions().items()}
    assert recipe.pools == {"WORKSPACE": 4 << 30, "DLA_MANAGED_SRAM": 1 << 20, "DLA_LOCAL_DRAM": 1 << 30, "DLA_GLOBAL_DRAM": 512 << 20}
    assert recipe.calibration_cache.startswith("TRT-100300-")


def test_recipe_for_a_gpu_fp32_plan(tmp_path: Path) -> None:
    recipe = build_recipe(_settings(tmp_path), None)
    assert (recipe.flags, recipe.default_device, recipe.dla_core, recipe.devices, recipe.precisions) == ((), "GPU", None, {}, {})


class _Layer:
    def __init__(self, name: str) -> None:
        self.name, self.precision = name, None


class _FakeTensorRT:
    """The slice of TensorRT's Python API build_trt_engine calls, recording what it was told."""

    def __init__(self, names: list[str]) -> None:
        self.layers = [_Layer(n) for n in names]
        self.config = SimpleNamespace(flags=[], devices={}, pools={}, default_device_type=None, DLA_core=None, int8_calibrator=None, profiling_verbosity=None)
        self.config.set_flag = self.config.flags.append
        self.config.set_device_type = lambda layer, device: self.config.devices.__setitem__(layer.name, device)
        self.config.set_memory_pool_limit = self.config.pools.__setitem__
        names_ns = lambda *items: SimpleNamespace(**{i: i for i in items})  # noqa: E731
        self.BuilderFlag = names_ns("FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS", "GPU_FALLBACK")
        self.DeviceType, self.DataType = names_ns("DLA", "GPU"), names_ns("FLOAT", "HALF", "INT8")
        self.MemoryPoolType = names_ns("WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM", "DLA_GLOBAL_DRAM")
        self.ProfilingVerbosity = names_ns("DETAILED")
        self.NetworkDefinitionCreationFlag = SimpleNamespace()
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, level: None})
        self.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {"__init__": lambda s: None})
        fake = self
        network = SimpleNamespace(num_layers=len(self.layers), get_layer=lambda i: fake.layers[i])
        self.Builder = lambda logger: SimpleNamespace(
            create_network=lambda flags: network, create_builder_config=lambda: fake.config,
            build_serialized_network=lambda net, config: b"plan")
        self.OnnxParser = lambda net, logger: SimpleNamespace(parse=lambda data: True, num_errors=0)


def test_build_applies_the_recipe_by_layer_name(tmp_path: Path) -> None:
    settings = _settings(tmp_path, precision="int8", dla_core=0, gpu_fallback=True)
    settings.scales = {"image": 0.01}
    recipe = build_recipe(settings, "TRT-100300-EntropyCalibration2\nimage: 3c23d70a\n")
    fake = _FakeTensorRT([layer.name for layer in settings.layers] + ["(Unnamed Layer* 40) [Constant]"])
    assert build_trt_engine(b"onnx", recipe, fake) == b"plan"
    config = fake.config
    assert config.flags == list(recipe.flags) and config.default_device_type == "DLA" and config.DLA_core == 0
    assert config.devices == recipe.devices and config.pools == recipe.pools
    assert {layer.name: layer.precision for layer in fake.layers if layer.precision} == recipe.precisions
    assert config.int8_calibrator.read_calibration_cache() == recipe.calibration_cache.encode()
    assert config.int8_calibrator.get_batch(["image"]) is None
    fake = _FakeTensorRT(["something_else"])
    with pytest.raises(EdgeError, match="has no layer named"):
        build_trt_engine(b"onnx", recipe, fake)


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
def test_without_tensorrt_the_error_points_to_export_trt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(BackendUnavailable, match="edgetrt export-trt"):
        import_tensorrt()
    onnx.save(resnet_block_cnn(), tmp_path / "m.onnx")
    assert main(["export-trt", str(tmp_path / "m.onnx"), "--build-plan", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "TensorRT is not installed here" in err and len(err.strip().splitlines()) <= 3
    assert not (tmp_path / "out").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TENSORRT, reason="tensorrt is not installed")
def test_tensorrt_builds_and_loads_the_plan(tmp_path: Path) -> None:
    import tensorrt as trt

    onnx.save(resnet_block_cnn(), tmp_path / "m.onnx")
    target = trt_target({"8": "8.6", "10": "10.3"}.get(trt.__version__.split(".")[0], "11"))
    config = edge.BuilderConfig(profile="desktop-cuda", precision="fp16", optimization_level=0)
    result = export_for_tensorrt(tmp_path / "m.onnx", tmp_path / "out", target, config=config, build_plan=True)
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine((result.folder / "model.plan").read_bytes())
    assert engine is not None and engine.num_layers > 0
