"""export-trt: the ONNX round-trips, trtexec lines per TensorRT release, the cache bit for bit, the Q/DQ ONNX."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import edge
from edge.cli import main
from edge.errors import EdgeError
from edge.quant import CalibrationCache, write_cache
from edge.trt import export_for_tensorrt, trt_target
from tests.conftest import LIGHT_DIR
from tests.models import mobile_cnn, random_feeds, resnet_block_cnn, transformer_encoder
from tests.test_light_models import randomize_weights

JETSON = "agx-orin-64gb"


def _ort(model: onnx.ModelProto | Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """onnxruntime without its own graph rewrites (which would fuse Q/DQ into integer kernels)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"]).run(None, feeds)


def _config(**kw) -> edge.BuilderConfig:
    kw.setdefault("profile", JETSON)
    return edge.BuilderConfig(optimization_level=0, **kw)


def _export(tmp_path: Path, model: onnx.ModelProto, version: str = "10.3", **kw):
    source = tmp_path / "model.onnx"
    onnx.save(model, source)
    return export_for_tensorrt(source, tmp_path / "out", trt_target(version), config=_config(**kw))


def _light(name: str) -> onnx.ModelProto:
    return randomize_weights(onnx.load(LIGHT_DIR / f"light_{name}.onnx"))


@pytest.mark.parametrize(
    "model",
    [resnet_block_cnn(), mobile_cnn(), transformer_encoder(), _light("squeezenet"), _light("shufflenet")],
    ids=["resnet_block", "mobile", "transformer", "light_squeezenet", "light_shufflenet"],
)
def test_exported_onnx_checks_and_keeps_outputs(tmp_path: Path, model: onnx.ModelProto) -> None:
    result = _export(tmp_path, model, precision="fp16", dla_core=0, gpu_fallback=True)
    exported = onnx.load(result.folder / "model.onnx")
    onnx.checker.check_model(exported, full_check=True)
    assert len(exported.graph.node) <= len(model.graph.node)
    feeds = random_feeds(model, seed=3)
    for got, want in zip(_ort(exported, feeds), _ort(model, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(np.abs(want).max()))
    names = {node.name for node in exported.graph.node}
    assert set(result.settings.devices()) <= names and len(names) == len(exported.graph.node)
    edge.load(result.folder / "model.engine", check_machine=False)  # its fused ops (Attention, Gelu, SiLU) load back


def _expected_lists(result) -> tuple[dict[str, str], dict[str, str]]:
    """Device and precision per exported node, read independently from the engine's layers."""
    engine = edge.load(result.folder / "model.engine", check_machine=False)
    devices, precisions = {}, {}
    for node in onnx.load(result.folder / "model.onnx").graph.node:
        layer = next(n for n in engine.graph.nodes if set(n.origin) & {node.name, *node.name.split("/")[:1]})
        devices[node.name] = layer.meta["device"].upper()
        precisions[node.name] = layer.meta["precision"]
    return devices, precisions


def _flag(argv: list[str], name: str) -> str | None:
    found = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    return found[0] if found else None


def _pairs(spec: str) -> dict[str, str]:
    return dict(item.rsplit(":", 1) for item in spec.split(","))


def _with_cache(folder: Path, model: onnx.ModelProto) -> tuple[Path, onnx.ModelProto, dict[str, float]]:
    """``model`` with a hand-written cache beside it: a scale for every ONNX tensor."""
    graph = edge.load_onnx(model)
    rng = np.random.default_rng(5)
    scales = {v.name: float(rng.uniform(0.005, 0.05)) for v in [*graph.inputs, *(o for n in graph.nodes for o in n.outputs)]}
    write_cache(folder / "edgetrt.calib", CalibrationCache("EntropyCalibration2", scales))
    return folder, model, scales


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, onnx.ModelProto, dict[str, float]]:
    return _with_cache(tmp_path_factory.mktemp("calibrated"), resnet_block_cnn())


@pytest.mark.parametrize("version", ["8.6", "10.3", "11"])
def test_trtexec_line_per_release(tmp_path: Path, calibrated, version: str) -> None:
    folder, model, _ = calibrated
    result = _export(tmp_path, model, version, precision="int8", dla_core=1, gpu_fallback=True, calib_cache=folder / "edgetrt.calib")
    argv = result.build
    devices, precisions = _expected_lists(result)
    assert argv[:3] == ["trtexec", f"--onnx={'model.qdq.onnx' if version == '11' else 'model.onnx'}", "--saveEngine=model.plan"]
    assert "--useDLACore=1" in argv and "--allowGPUFallback" in argv
    assert _pairs(_flag(argv, "layerDeviceTypes")) == devices
    assert {"DLA", "GPU"} == set(devices.values())
    pools = _flag(argv, "memPoolSize")
    if version == "8.6":
        assert pools == "workspace:4096,dlaSRAM:1,dlaLocalDRAM:1024,dlaGlobalDRAM:512"
    else:
        assert pools == "workspace:4096M,dlaSRAM:1M,dlaLocalDRAM:1024M,dlaGlobalDRAM:512M"
    assert _flag(argv, "inputIOFormats") == "fp32:chw" and _flag(argv, "outputIOFormats") == "fp32:chw"
    assert _flag(argv, "timingCacheFile") == "timing.cache"
    if version == "11":
        assert not {"--fp16", "--int8", "--precisionConstraints=obey"} & set(argv)
        assert _flag(argv, "calib") is None and _flag(argv, "layerPrecisions") is None
        assert not (result.folder / "model.calib").exists()
    else:
        assert {"--fp16", "--int8", "--precisionConstraints=obey"} <= set(argv) and _flag(argv, "calib") == "model.calib"
        assert _pairs(_flag(argv, "layerPrecisions")) == precisions
    script = (result.folder / "trtexec.sh").read_text()
    assert "--exportLayerInfo=layers.json" in script and "--exportProfile=profile.json" in script
    assert "FP16 and Int8" in (result.folder / "README.md").read_text()


@pytest.mark.parametrize("version, token", [("8.6", 8602), ("10.3", 100300)])
def test_cache_is_trtexec_format_bit_for_bit(tmp_path: Path, calibrated, version: str, token: int) -> None:
    folder, model, scales = calibrated
    result = _export(tmp_path, model, version, precision="int8", dla_core=0, gpu_fallback=True, calib_cache=folder / "edgetrt.calib")
    text = (result.folder / "model.calib").read_bytes().decode("ascii")
    lines = text.split("\n")
    assert lines[0] == f"TRT-{token}-EntropyCalibration2" and lines[-1] == "" and "\r" not in text
    exported = onnx.load(result.folder / "model.onnx")
    tensors = {v.name for v in exported.graph.input} | {o for n in exported.graph.node for o in n.output}
    body = dict(line.rsplit(": ", 1) for line in lines[1:-1])
    assert set(body) <= tensors and len(body) >= len(exported.graph.node)
    for name in set(body) & set(scales):  # tensors the optimizer kept carry their own scale, bit for bit
        assert body[name] == format(struct.unpack(">I", struct.pack(">f", scales[name]))[0], "08x")


@pytest.mark.parametrize("builder", [resnet_block_cnn, mobile_cnn])
def test_qdq_onnx_matches_the_int8_engine(tmp_path: Path, builder) -> None:
    folder, model, _ = _with_cache(tmp_path, builder())
    result = _export(tmp_path, model, "11", precision="int8", calib_cache=folder / "edgetrt.calib")
    qdq = onnx.load(result.folder / "model.qdq.onnx")
    onnx.checker.check_model(qdq, full_check=True)
    ops = [n.op_type for n in qdq.graph.node]
    assert ops.count("QuantizeLinear") == len(result.settings.quantized) and "DequantizeLinear" in ops
    produced = {o: n.op_type for n in qdq.graph.node for o in n.output}
    int8 = result.settings.precisions()
    convs = [n for n in qdq.graph.node if n.op_type == "Conv" and int8[n.name] == "int8"]
    assert convs and all(produced.get(n.input[1]) == "DequantizeLinear" for n in convs)  # INT8 weights behind a DQ
    feeds = random_feeds(model, seed=11)
    engine = edge.load(result.folder / "model.engine", check_machine=False)
    got = engine.create_context().run(feeds)
    for output, want in zip(qdq.graph.output, _ort(qdq, feeds)):
        step = result.settings.scales[output.name]
        np.testing.assert_allclose(got[output.name], want, rtol=0, atol=2 * step)  # two steps of the output's INT8 grid


def test_engine_export_reproduces_the_onnx_export(tmp_path: Path, calibrated) -> None:
    folder, model, _ = calibrated
    first = _export(tmp_path, model, "10.3", precision="int8", dla_core=0, gpu_fallback=True, calib_cache=folder / "edgetrt.calib")
    engine = edge.load(first.folder / "model.engine", check_machine=False)
    again = export_for_tensorrt(tmp_path / "model.onnx", tmp_path / "again", trt_target("10.3"), engine=engine)
    assert again.settings.devices() == first.settings.devices()
    assert again.settings.precisions() == first.settings.precisions()
    image = model.graph.input[0]
    other = onnx.helper.make_model(onnx.helper.make_graph([onnx.helper.make_node("Relu", [image.name], ["y"], name="other")], "other", [image],
                                                          [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)]))
    onnx.save(other, tmp_path / "other.onnx")
    with pytest.raises(EdgeError, match="was not built from this model"):
        export_for_tensorrt(tmp_path / "other.onnx", tmp_path / "bad", trt_target("10.3"), engine=engine)
    assert not (tmp_path / "bad").exists()


def test_a_failed_export_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    _export(tmp_path, resnet_block_cnn(), precision="fp16")
    before = sorted(p.name for p in (tmp_path / "out").iterdir())
    (tmp_path / "out" / "stale.txt").write_text("x")
    with pytest.raises(EdgeError, match="has no GPU"):
        _export(tmp_path, resnet_block_cnn(), profile="cpu")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([*before, "stale.txt"])
    _export(tmp_path, resnet_block_cnn(), precision="fp16")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == before  # replaced as a whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx.save(resnet_block_cnn(), tmp_path / "m.onnx")
    assert main(["export-trt", str(tmp_path / "m.onnx"), "--target-trt", "9", "-o", str(tmp_path / "o")]) == 1
    assert "--target-trt 9: expected one of 8.6, 10.3, 11" in capsys.readouterr().err
    edge.build(str(tmp_path / "m.onnx"), _config()).save(tmp_path / "m.engine")
    assert main(["export-trt", str(tmp_path / "m.engine"), "-o", str(tmp_path / "o")]) == 1
    assert "give the ONNX model it was built from with --onnx" in capsys.readouterr().err
    assert main(["export-trt", str(tmp_path / "m.engine"), "--onnx", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "trtexec.sh").stat().st_mode & 0o100


def test_dynamic_inputs_and_xavier_are_called_out(tmp_path: Path) -> None:
    model = resnet_block_cnn()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    with pytest.raises(EdgeError, match="has dynamic dims: give fixed shapes with --shapes"):
        _export(tmp_path, model)
    result = _export(tmp_path, resnet_block_cnn(), "10.3", profile="agx-xavier", precision="fp16", dla_core=0, gpu_fallback=True)
    assert any("TensorRT 8.5.2" in note for note in result.settings.notes)
    assert "TensorRT 8.5.2" in (result.folder / "README.md").read_text()
