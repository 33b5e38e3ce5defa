"""A calibration cache must name every tensor the model calibrates: a partial or foreign one is
refused (missing names listed on one line) or rebuilt with --recalibrate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import edge
from edge.cli import main
from edge.errors import CalibrationError
from edge.quant import CalibrationCache, read_cache, write_cache
from tests.models import _Net, make_model, random_feeds, resnet_block_cnn


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fit") / "cnn.onnx"
    path.write_bytes(resnet_block_cnn().SerializeToString())
    return path


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fit-data")
    np.save(folder / "batch.npy", np.random.default_rng(3).standard_normal((4, 3, 16, 16)).astype(np.float32))
    return folder


@pytest.fixture(scope="module")
def full_cache(model: Path, calib_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> CalibrationCache:
    path = tmp_path_factory.mktemp("fit-cache") / "full.calib"
    edge.build(model, edge.BuilderConfig(precision="int8", calib_data=calib_dir, calib_cache=path))
    return read_cache(path)


def _float_tensors(model: Path) -> list[str]:
    """Float network inputs and node outputs, read from the ONNX with its own shape inference."""
    inferred = onnx.shape_inference.infer_shapes(onnx.load(model))
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]}
    names = [v.name for v in inferred.graph.input] + [out for node in inferred.graph.node for out in node.output]
    return [name for name in names if types.get(name) == onnx.TensorProto.FLOAT]


def test_a_cache_names_every_float_tensor_and_is_reused(model: Path, full_cache: CalibrationCache) -> None:
    assert set(full_cache.scales) == set(_float_tensors(model))
    engine = edge.build(model, edge.BuilderConfig(precision="int8", calib_cache=_written(full_cache, model.parent / "again.calib")))
    assert engine.build["calibration"]["source"] == "cache"


def _written(cache: CalibrationCache, path: Path) -> Path:
    write_cache(path, cache)
    return path


def _without(cache: CalibrationCache, names: list[str]) -> CalibrationCache:
    return CalibrationCache(cache.algorithm, {k: v for k, v in cache.scales.items() if k not in names}, cache.version)


def test_a_partial_cache_is_refused_naming_what_it_lacks(model: Path, full_cache: CalibrationCache, tmp_path: Path) -> None:
    dropped = _float_tensors(model)[1:3]
    path = _written(_without(full_cache, dropped), tmp_path / "partial.calib")
    with pytest.raises(CalibrationError) as raised:
        edge.build(model, edge.BuilderConfig(precision="int8", calib_cache=path))
    message = str(raised.value)
    assert "\n" not in message
    assert f"lacks 2 of the model's {len(full_cache.scales)} calibrated tensors ('{dropped[0]}', '{dropped[1]}')" in message
    assert "--recalibrate" in message


def test_a_foreign_cache_lists_five_names_and_a_count(model: Path, full_cache: CalibrationCache, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    renamed = CalibrationCache(full_cache.algorithm, {"other/" + k: v for k, v in full_cache.scales.items()})
    path = _written(renamed, tmp_path / "foreign.calib")
    engine = tmp_path / "x.engine"
    assert main(["build", str(model), "--int8", "--calib", str(path), "-o", str(engine)]) != 0
    err = capsys.readouterr().err
    names = _float_tensors(model)
    listed = ", ".join(f"'{n}'" for n in names[:5])
    assert f"({listed} and {len(names) - 5} more)" in err
    assert "Traceback" not in err and not engine.exists()
    assert read_cache(path).scales == renamed.scales  # refused, not overwritten


def test_recalibrate_rebuilds_the_cache(model: Path, full_cache: CalibrationCache, calib_dir: Path, tmp_path: Path) -> None:
    path = _written(_without(full_cache, _float_tensors(model)[:4]), tmp_path / "partial.calib")
    engine = tmp_path / "x.engine"
    args = ["build", str(model), "--int8", "--calib", str(path), "--calib-data", str(calib_dir), "-o", str(engine)]
    assert main([*args, "--recalibrate"]) == 0
    assert read_cache(path).scales == full_cache.scales  # same data, same calibrator: the same scales
    feeds = random_feeds(resnet_block_cnn(), seed=2)
    fresh = edge.build(model, edge.BuilderConfig(precision="int8", calib_data=calib_dir))
    np.testing.assert_array_equal(edge.load(engine).create_context().run(feeds)["probs"], fresh.create_context().run(feeds)["probs"])


def test_a_tensor_zero_on_every_batch_gets_a_placeholder_and_the_cache_fits(calib_dir: Path, tmp_path: Path) -> None:
    net = _Net(0)
    shifted = net.op("Sub", ["image", net.const(np.array(100.0, np.float32))])
    dead = net.op("Relu", [shifted])  # inputs are standard normal: always zero
    net.op("Add", [dead, "image"])
    path = tmp_path / "dead.onnx"
    path.write_bytes(make_model(net, [("image", [4, 3, 16, 16])], [(net.nodes[-1].output[0], [4, 3, 16, 16])]).SerializeToString())
    cache = tmp_path / "dead.calib"
    edge.build(path, edge.BuilderConfig(precision="int8", calib_data=calib_dir, calib_cache=cache))
    assert f"{dead}: 3c010204" in cache.read_text().splitlines()  # 1/127 as big-endian float32 bits
    again = edge.build(path, edge.BuilderConfig(precision="int8", calib_cache=cache))
    assert again.build["calibration"]["source"] == "cache"
