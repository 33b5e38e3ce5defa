"""trtexec --exportLayerInfo: the reader on hand-made files in the engine inspector's layout, and
``partition --layer-info`` (measured device and precision per engine layer against the plan)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

import edge
from edge.cli import main
from edge.errors import TrtexecProfileError
from edge.partitioner import PartitionOptions, plan_partition
from edge.partitioner.trtexec_layers import read_trtexec_layer_info
from edge.profiles import load_profile
from tests.partitioner.models import yolo_detector

FORMATS = {"int8": "Thirty-two wide channel vectorized row major Int8 format", "fp16": "Channel major FP16 format where channel % 8 == 0",
           "fp32": "Row major linear FP32"}
FLAGS = ["--dla", "0", "--gpu-fallback", "--int8", "--no-optimize", "--power-mode", "MAXN"]


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.cli.app import console

    monkeypatch.setattr(console, "width", 400)


def tensor(name: str, precision: str) -> dict:
    return {"Name": name, "Location": "Device", "Dimensions": [1, 16, 8, 8], "Format/Datatype": FORMATS[precision]}


def layer(name: str, layer_type: str, precision: str, **extra: str) -> dict:
    return {"Name": name, "LayerType": layer_type, "Inputs": [tensor(f"{name}_in", precision)], "Outputs": [tensor(f"{name}_out", precision)], **extra}


def write(tmp_path: Path, layers: list) -> Path:
    path = tmp_path / "layers.json"
    path.write_text(json.dumps({"Layers": layers, "Bindings": ["images", "output"]}))
    return path


def test_reader_takes_device_and_precision(tmp_path: Path) -> None:
    info = read_trtexec_layer_info(write(tmp_path, [
        layer("{ForeignNode[stem...lat.silu]}", "DLA", "int8"),
        layer("{ForeignNode[/attn/MatMul.../attn/Softmax]}", "Myelin", "fp16"),
        layer("head.conv + head.relu", "CaskConvolution", "fp32", ParameterType="Convolution", TacticName="sm87_xmma_fprop"),
        layer("Reformatting CopyNode for Input Tensor 0 to head.conv", "Reformat", "fp16"),
    ]))
    assert [(l.device, l.precision) for l in info.layers] == [("dla", "int8"), ("gpu", "fp16"), ("gpu", "fp32"), ("gpu", "fp16")]
    assert info.layers[2].tactic == "sm87_xmma_fprop" and info.layers[0].tactic is None


@pytest.mark.parametrize(
    "content, message",
    [
        ({"Layers": ["conv1", "relu1"], "Bindings": []}, "built without --profilingVerbosity=detailed"),
        ([{"count": 10}], "expected an object with a 'Layers' list"),
        ({"Layers": [{"Name": "x", "LayerType": "Reformat", "Inputs": [{"Name": "t"}], "Outputs": []}]}, "a tensor without 'Format/Datatype'"),
        ({"Layers": [{"Name": "x", "Inputs": [], "Outputs": []}]}, "layer 0: 'LayerType' missing"),
        ({"Layers": []}, "'Layers' is empty"),
    ],
)
def test_reader_refuses_other_layouts(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(TrtexecProfileError, match=message.replace("(", r"\(").replace("[", r"\[")):
        read_trtexec_layer_info(path)


def board_layers(graph: edge.ir.Graph, gpu_precision: str) -> list[dict]:
    """Layer info as the board would export it for the greedy plan: DLA subgraphs in INT8."""
    options = PartitionOptions(dla_core=0, gpu_fallback=True, precision="int8", objective="latency", algorithm="greedy", power_mode="MAXN")
    plan = plan_partition(graph, load_profile("agx-orin-64gb"), options)
    layers = [layer(f"{{ForeignNode[{sub.layers[0]}...{sub.layers[-1]}]}}", "DLA", "int8") for sub in plan.subgraphs]
    layers += [layer(" + ".join(l.origin), "CaskConvolution", gpu_precision if l.precision == "int8" else l.precision)
               for l in plan.layers if l.device == "gpu"]
    return layers


def test_partition_reports_measured_against_planned_placement(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "yolo.onnx"
    onnx.save(yolo_detector(resize_mode="cubic"), model)
    graph = edge.load_onnx(model)
    path = write(tmp_path, board_layers(graph, "int8"))
    assert main(["partition", str(model), *FLAGS, "--layer-info", str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["measured"]["placement"]
    assert len(rows) == len(board_layers(graph, "int8")) and all(row["agrees"] for row in rows)
    assert [row["measured_device"] for row in rows].count("dla") == 2
    path = write(tmp_path, board_layers(graph, "fp32"))  # the board ran the GPU layers in FP32
    assert main(["partition", str(model), *FLAGS, "--layer-info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "vs planned device and precision" in out and "ran elsewhere or in another precision than planned" in out
