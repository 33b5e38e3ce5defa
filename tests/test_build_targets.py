"""Building for Jetson targets: placement stored in the engine, DLA layers emulated in FP16."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import edge
from edge.cli import main
from tests import models


@pytest.fixture(scope="module")
def cnn() -> onnx.ModelProto:
    return models.resnet_block_cnn(batch=1)


def test_dla_build_places_layers_and_emulates_fp16(cnn: onnx.ModelProto, tmp_path: Path) -> None:
    feeds = models.random_feeds(cnn, seed=2)
    reference = edge.build(cnn.SerializeToString()).create_context().run(feeds)
    config = edge.BuilderConfig(profile="agx-orin-64gb", dla_core=0, gpu_fallback=True, power_mode="MODE_15W")
    engine = edge.build(cnn.SerializeToString(), config)
    engine.save(tmp_path / "dla.engine")
    loaded = edge.load(tmp_path / "dla.engine")
    devices = {n.meta["device"] for n in loaded.graph.nodes}
    assert "dla" in devices
    assert all(n.meta["precision"] in ("fp16", "int8") for n in loaded.graph.nodes if n.meta["device"] == "dla")
    assert loaded.graph.meta["partition"]["dla_core"] == 0
    outputs = loaded.create_context().run(feeds)
    for name, expected in reference.items():
        assert not np.array_equal(outputs[name], expected), "DLA layers must not compute in FP32"
        np.testing.assert_allclose(outputs[name], expected, rtol=2e-2, atol=2e-2)


def test_fp16_build_is_close_but_not_fp32(cnn: onnx.ModelProto) -> None:
    feeds = models.random_feeds(cnn, seed=3)
    fp32 = edge.build(cnn.SerializeToString()).create_context().run(feeds)
    fp16 = edge.build(cnn.SerializeToString(), edge.BuilderConfig(precision="fp16")).create_context().run(feeds)
    for name in fp32:
        assert not np.array_equal(fp16[name], fp32[name])
        np.testing.assert_allclose(fp16[name], fp32[name], rtol=2e-2, atol=2e-2)
        assert np.array_equal(fp16[name], fp16[name].astype(np.float16).astype(np.float32))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--profile", "orin-nano-8gb", "--dla", "0"], "has no DLA"),
        (["--profile", "orin-nx-8gb", "--dla", "1"], "has 1 DLA core"),
        (["--profile", "cpu", "--dla", "0"], "has no DLA"),
        (["--profile", "no-such-board"], "no-such-board"),
    ],
)
def test_bad_target_flags(cnn: onnx.ModelProto, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    path = tmp_path / "cnn.onnx"
    onnx.save(cnn, path)
    assert main(["build", str(path), "-o", str(tmp_path / "x.engine"), *args]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.engine").exists()


def test_dla_without_fallback_names_the_first_ineligible_layer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = models.transformer_encoder()
    path = tmp_path / "enc.onnx"
    onnx.save(model, path)
    assert main(["build", str(path), "-o", str(tmp_path / "e.engine"), "--profile", "agx-orin-64gb", "--dla", "0"]) != 0
    err = capsys.readouterr().err
    assert "--gpu-fallback" in err and "'" in err and "Traceback" not in err


def test_inspect_shows_devices(cnn: onnx.ModelProto, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cnn.onnx"
    onnx.save(cnn, path)
    engine = tmp_path / "cnn.engine"
    assert main(["build", str(path), "-o", str(engine), "--profile", "agx-orin-64gb", "--dla", "0", "--gpu-fallback", "--int8"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(engine), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["layers"]
    assert {r["device"] for r in rows} <= {"dla", "gpu"} and any(r["device"] == "dla" for r in rows)
    assert all(r["origin"] for r in rows)
