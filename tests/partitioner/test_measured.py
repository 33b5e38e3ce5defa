"""Measured vs predicted (partition --measured) and cost-model calibration from trtexec profiles.

The trtexec files are written here in trtexec's layout and naming (DLA subgraphs as
``{ForeignNode[first...last]}``, GPU layers by ONNX name, inserted reformats) from per-layer
times of a board whose constants are known: calibrating must recover them, so predictions
then match the measurements.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import yaml

import edge
from edge.cli import main
from edge.partitioner import PartitionOptions, plan_partition
from edge.partitioner.cost import CostModel
from edge.partitioner.fit import with_values
from edge.partitioner.partition import Analysis
from edge.profiles import load_profile
from edge.profiles.schema import CostSpec
from tests.partitioner.models import yolo_detector


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables printed at a fixed, wide width: names are not cut whatever the terminal is."""
    from edge.cli.app import console

    monkeypatch.setattr(console, "width", 400)


OPTIONS = PartitionOptions(dla_core=0, gpu_fallback=True, precision="int8", objective="latency", algorithm="greedy")
FLAGS = ["--dla", "0", "--gpu-fallback", "--int8", "--no-optimize", "--power-mode", "MAXN"]


def board_profile(graph: edge.ir.Graph, cost: CostSpec) -> list[dict]:
    """A trtexec --exportProfile list for the greedy plan, timed with the constants ``cost``."""
    profile = load_profile("agx-orin-64gb")
    mode = profile.power_mode("MAXN")
    options = PartitionOptions(**{**OPTIONS.__dict__, "power_mode": "MAXN"})
    plan = plan_partition(graph, profile, options)
    an = Analysis(graph, profile, mode, options)
    an.reprice(CostModel(profile, mode, cost))
    index = {n.name: i for i, n in enumerate(an.layers)}
    rows: list[dict] = [{"count": 50}]

    def row(name: str, ms: float) -> None:
        rows.append({"name": name, "timeMs": ms * 50, "averageMs": ms, "medianMs": ms, "percentage": 1.0})

    for sub in plan.subgraphs:
        members = [index[name] for name in sub.layers]
        first, last = an.layers[members[0]].origin[0], an.layers[members[-1]].origin[-1]
        row(f"{{ForeignNode[{first}...{last}]}}", sum(an.dla_ms[i] for i in members) + an.cost.dla_subgraph_ms(1))
    for layer in plan.layers:
        if layer.device == "gpu":
            row(" + ".join(layer.origin), float(an.gpu_ms[index[layer.name]]))
    groups = {name: sub.index for sub in plan.subgraphs for name in sub.layers}
    for edge_ in an.edges:
        source = groups.get(an.layers[edge_.producer].name, -1) if edge_.producer >= 0 else -1
        targets = {groups.get(an.layers[c].name, -1) for c in edge_.consumers} | ({-1} if edge_.is_output else set())
        for _ in [t for t in targets if t != source]:
            row(f"Reformatting CopyNode for Input Tensor 0 to {edge_.value.name}", edge_.transition_ms)
    return rows


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "yolo.onnx"
    onnx.save(yolo_detector(resize_mode="cubic"), path)
    return path


def test_measured_matches_predicted_per_layer_and_segment(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = board_profile(edge.load_onnx(model_file), load_profile("agx-orin-64gb").cost)
    rows.append({"name": "mystery_plugin", "timeMs": 5.0, "averageMs": 0.1, "medianMs": 0.1, "percentage": 1.0})
    measured = tmp_path / "run.json"
    measured.write_text(json.dumps(rows))
    assert main(["partition", str(model_file), *FLAGS, "--measured", str(measured), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["measured"]
    kinds = [r["kind"] for r in data["layers"]]
    assert kinds.count("dla") == 2 and kinds.count("unmatched") == 1 and "transition" in kinds
    assert all(r["ratio"] == pytest.approx(1.0, abs=2e-3) for r in data["layers"] if r["kind"] in ("dla", "gpu"))
    segments = {s["segment"]: s for s in data["segments"]}
    assert set(segments) == {"DLA subgraph 0", "DLA subgraph 1", "GPU layers", "transitions", "unmatched trtexec layers", "total"}
    assert segments["transitions"]["ratio"] == pytest.approx(1.0, abs=2e-3)
    assert segments["total"]["measured_ms"] == pytest.approx(sum(r["averageMs"] for r in rows[1:]), rel=1e-4)
    assert data["unmatched_ir_layers"] == []
    assert main(["partition", str(model_file), *FLAGS, "--measured", str(measured)]) == 0
    out = capsys.readouterr().out
    assert "{ForeignNode[stem...lat.silu]}" in out and "Measured vs predicted per segment" in out


def test_calibrate_recovers_a_boards_constants(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = load_profile("agx-orin-64gb").cost
    board = with_values(base, {"gpu.launch_ms": 3 * base.gpu.launch_ms.value, "dla.layer_ms": 4 * base.dla.layer_ms.value,
                               "dla.transition_sync_ms": 0.05}, "test board")
    measured = tmp_path / "run.json"
    measured.write_text(json.dumps(board_profile(edge.load_onnx(model_file), board)))
    out = tmp_path / "my-board.yaml"
    argv = ["partition", "calibrate", str(measured), "--model", str(model_file), "--profile", "agx-orin-64gb", "-o", str(out),
            "--dla", "0", "--gpu-fallback", "--int8", "--no-optimize", "--power-mode", "MAXN"]
    assert main(argv) == 0
    assert f"wrote {out}" in " ".join(capsys.readouterr().out.split())
    calibrated = load_profile(str(out))
    assert calibrated.cost.gpu.launch_ms.value == pytest.approx(board.gpu.launch_ms.value, rel=0.1)
    assert calibrated.cost.dla.transition_sync_ms.value == pytest.approx(0.05, rel=0.1)
    assert calibrated.cost.gpu.launch_ms.source.startswith("calibrate: edgetrt partition calibrate run.json")
    assert calibrated.cost.gpu.eff_depthwise == base.gpu.eff_depthwise  # not timed: kept with its source
    text = out.read_text()
    assert text.startswith("# Jetson AGX Orin 64GB") and yaml.safe_load(text)["name"] == "agx-orin-64gb"
    assert main(["partition", str(model_file), *FLAGS, "--profile", str(out), "--measured", str(measured), "--json"]) == 0
    total = {s["segment"]: s for s in json.loads(capsys.readouterr().out)["measured"]["segments"]}["total"]
    assert total["ratio"] == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "a.onnx", "--model", "b.onnx"], "--model given 2 times for 1 profiles"),
        (["--model", "{model}"], "no trtexec layer matched a layer of"),
    ],
)
def test_calibrate_errors(model_file: Path, tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    measured = tmp_path / "run.json"
    measured.write_text(json.dumps([{"count": 1}, {"name": "other_net_conv", "timeMs": 1, "averageMs": 1, "medianMs": 1, "percentage": 100}]))
    args = [a.replace("{model}", str(model_file)) for a in argv]
    assert main(["partition", "calibrate", str(measured), *args, "-o", str(tmp_path / "o.yaml")]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o.yaml").exists()
