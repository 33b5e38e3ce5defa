"""``build --layer-precisions`` (trtexec's --layerPrecisions): per-layer precision pins honoured
by the build and shown by inspect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edge
from edge.cli import main
from edge.precision import PINNED
from tests.models import random_feeds, resnet_block_cnn


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pins") / "cnn.onnx"
    path.write_bytes(resnet_block_cnn().SerializeToString())
    np.save(path.parent / "calib.npy", np.random.default_rng(2).standard_normal((4, 3, 16, 16)).astype(np.float32))
    return path


def _first_conv() -> str:
    return next(node.name for node in resnet_block_cnn().graph.node if node.op_type == "Conv")


def test_everything_pinned_fp32_is_the_fp32_engine(model: Path) -> None:
    feeds = random_feeds(resnet_block_cnn(), seed=3)
    pinned = edge.build(model, edge.BuilderConfig(precision="fp16", layer_precisions={"*": "fp32"}))
    assert {n.meta["precision"] for n in pinned.graph.nodes} == {"fp32"}
    fp32 = edge.build(model).create_context().run(feeds)["probs"]
    fp16 = edge.build(model, edge.BuilderConfig(precision="fp16")).create_context().run(feeds)["probs"]
    assert not np.array_equal(fp16, fp32)
    np.testing.assert_array_equal(pinned.create_context().run(feeds)["probs"], fp32)


def test_one_layer_pinned_fp16_in_an_int8_build(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conv = _first_conv()
    engine = tmp_path / "m.engine"
    calib = ["--calib-data", str(model.parent), "--calib", str(tmp_path / "m.calib")]
    assert main(["build", str(model), "--int8", *calib, "--layerPrecisions", f"{conv}:fp16", "-o", str(engine)]) == 0
    built = edge.load(engine)
    layer = next(n for n in built.graph.nodes if conv in n.origin)
    assert layer.meta["precision"] == "fp16" and layer.meta["precision_note"] == PINNED
    others = {n.meta["precision"] for n in built.graph.nodes if n is not layer and n.op_type in ("FusedConv", "Gemm")}
    assert others == {"int8"}
    capsys.readouterr()
    assert main(["inspect", str(engine), "--json"]) == 0
    assert f'"{PINNED}"' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "pins", "message"),
    [
        (["--fp16"], "nosuchlayer:fp16", "names no layer of the model: nosuchlayer"),
        (["--fp16"], "CONV:int8", "needs a int8 build (add --int8)"),
        (["--int8"], "CONV:fp8", "precision is not one of"),
        (["--int8"], "CONV", "is not LAYER:PRECISION"),
    ],
)
def test_bad_pins_are_one_line_errors(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], pins: str, message: str) -> None:
    engine = tmp_path / "x.engine"
    assert main(["build", str(model), *flags, "--layer-precisions", pins.replace("CONV", _first_conv()), "-o", str(engine)]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not engine.exists()
