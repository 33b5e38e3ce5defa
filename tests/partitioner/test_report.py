"""Partition report and CLI: rows with original names, summary, suggestions, JSON/HTML, errors."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

import edge
from edge.cli import main
from edge.partitioner import PartitionOptions
from edge.partitioner.report import build_report
from tests.partitioner.models import resnet50, yolo_detector

OPTIONS = PartitionOptions(objective="latency", dla_core=0, gpu_fallback=True, precision="int8")


def test_yolo_report_suggests_nearest_resize() -> None:
    report = build_report(edge.load_onnx(yolo_detector(resize_mode="cubic")), "agx-orin-64gb", OPTIONS, "yolo.onnx")
    # hand check: with nearest, up1 joins the neck subgraph and cat1, n1 (3), down (3), cat2, n2 (3), det1, det2
    # (13 layers downstream of it) stay on the DLA; subgraphs 2 -> 1, transitions 7 -> 3.
    assert report.suggestions == [
        "Resize 'up1' uses cubic mode; with nearest it and the 13 layers after it could stay on the DLA "
        "(DLA subgraphs 2 -> 1, transitions 7 -> 3)"
    ]
    up1 = next(r for r in report.rows if r["layer"] == "up1")
    assert up1 == {"layer": "up1", "op": "Resize", "device": "gpu", "precision": "int8",
                   "reason": "Resize 'up1': uses cubic mode; DLA resizes with nearest or bilinear only", "code": "dla.resize_mode"}
    assert [row["mode"] for row in report.per_mode] == ["0 MAXN", "1 MODE_15W", "2 MODE_30W", "3 MODE_50W"]
    assert all(row["optimized"] <= row["greedy"] + 1e-9 for row in report.per_mode)


def test_rows_use_original_onnx_names_after_fusion() -> None:
    g = edge.load_onnx(yolo_detector())
    from edge.passes import optimize

    optimize(g)
    report = build_report(g, "agx-orin-64gb", PartitionOptions(objective="latency", dla_core=0, gpu_fallback=True, precision="int8", algorithm="greedy"))
    stem = report.rows[0]
    assert stem["layer"] == "stem+stem.sigmoid+stem.silu" and stem["op"] == "FusedConv" and stem["device"] == "dla"
    assert report.summary["DLA layers"] == 19 and report.summary["DLA subgraphs"] == 1 and report.summary["transitions"] == 3


def test_resnet_report_summary_and_average_pool_hint() -> None:
    report = build_report(edge.load_onnx(resnet50()), "agx-orin-64gb", PartitionOptions(objective="latency", dla_core=0, gpu_fallback=True, precision="int8", power_mode="MODE_30W"))
    s = report.summary
    assert (s["DLA layers"], s["GPU layers"], s["DLA subgraphs"], s["transitions"]) == (119, 3, 1, 2)
    assert s["latency optimized (ms)"] < s["latency greedy (ms)"] < s["latency gpu-only (ms)"]
    assert report.suggestions == [
        "GlobalAveragePool 'avgpool' is a mean Reduce in TensorRT; as an AveragePool with a 7x7 window it could run on the DLA "
        "(DLA subgraphs 2 -> 2, transitions 4 -> 4)"
    ]
    data = json.loads(report.to_json())
    assert data["summary"]["DLA layers"] == 119 and len(data["layers"]) == 122 and data["plan"]["dla_core"] == 0
    page = report.to_html()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "src=" not in page
    assert "GlobalAveragePool &#x27;avgpool&#x27;" in page and "MODE_15W" in page


def test_missed_budget_is_a_note_not_a_suggestion(yolo_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    options = PartitionOptions(objective="offload", dla_core=0, gpu_fallback=True, precision="int8", latency_budget_ms=0.001)
    report = build_report(edge.load_onnx(yolo_detector(resize_mode="cubic")), "agx-orin-64gb", options, "yolo.onnx")
    best = report.plan.estimates["optimized"].latency_ms
    assert report.notes == [f"no placement found within the 0.001 ms budget; best estimate {best:.3f} ms"]
    assert report.suggestions and not any("budget" in s for s in report.suggestions)
    data = report.to_dict()
    assert data["notes"] == report.notes and data["suggestions"] == report.suggestions
    assert "<h2>Notes</h2><ul><li>no placement found within the 0.001 ms budget" in report.to_html()
    assert "<h2>Notes</h2>" not in build_report(edge.load_onnx(yolo_detector()), "agx-orin-64gb", OPTIONS).to_html()
    assert main(["partition", str(yolo_file), "--dla", "0", "--gpu-fallback", "--int8", "--latency-budget-ms", "0.001"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "note: no placement found within the 0.001 ms budget" in out and "suggestion: Resize 'up1'" in out


@pytest.fixture()
def yolo_file(tmp_path: Path) -> Path:
    path = tmp_path / "yolo.onnx"
    onnx.save(yolo_detector(resize_mode="cubic"), path)
    return path


def test_cli_partition_json_and_html(yolo_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html_path = tmp_path / "out" / "report.html"
    argv = ["partition", str(yolo_file), "--profile", "agx-orin-64gb", "--dla", "0", "--gpu-fallback", "--int8", "--greedy",
            "--no-optimize", "--json", "--html", str(html_path)]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["summary"]["DLA layers"], data["summary"]["DLA subgraphs"], data["summary"]["transitions"]) == (38, 2, 7)
    assert "Resize 'up1' uses cubic mode" in data["suggestions"][0]
    assert html_path.read_text().count("<tr class='dla'>") == 38
    assert [p.name for p in html_path.parent.iterdir()] == ["report.html"]


def test_cli_partition_tables(yolo_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["partition", str(yolo_file), "--profile", "xavier-nx", "--dla", "1", "--gpu-fallback", "--power-mode", "MODE_10W_4CORE"]) == 0
    out = capsys.readouterr().out
    assert "Summary" in out and "MODE_10W_4CORE" in out and "suggestion:" in out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--profile", "orin-nano-8gb", "--dla", "0"], "profile 'orin-nano-8gb' (Jetson Orin Nano 8GB) has no DLA"),
        (["--profile", "orin-nx-8gb", "--dla", "1", "--gpu-fallback"], "--dla 1: profile 'orin-nx-8gb' has 1 DLA core"),
        (["--profile", "agx-orin-64gb", "--dla", "0"], "Resize 'up1': uses cubic mode"),
        (["--profile", "no-such-board"], "unknown profile 'no-such-board'"),
        (["--dla", "0", "--gpu-fallback", "--dla-objective", "fastest"], "--dla-objective 'fastest' is not one of"),
        (["--power-mode", "99"], "no power mode '99'"),
    ],
)
def test_cli_partition_errors(yolo_file: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["partition", str(yolo_file), *extra]) == 1
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Traceback" not in err


def test_cli_profiles(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["profiles", "list"]) == 0
    out = capsys.readouterr().out
    assert "agx-orin-64gb" in out and "xavier-nx" in out
    assert main(["profiles", "show", "agx-xavier"]) == 0
    out = capsys.readouterr().out
    assert "MODE_30W_ALL" in out and "VDDRQ" in out and "(default)" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    assert main(["profiles", "show", str(bad)]) == 1
    assert "malformed YAML" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["partition"], ["profiles", "list"], ["profiles", "show"]])
def test_help_has_examples(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    assert "Examples" in capsys.readouterr().out


def test_cli_batch_shapes_and_throughput(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "resnet50.onnx"
    onnx.save(resnet50(), path)
    assert main(["partition", str(path), "--batch", "4", "--dla", "0", "--gpu-fallback", "--int8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["batch"] == 4 and data["summary"]["batch"] == 4
    rows = {r["deployment"]: r for r in data["throughput"]}
    assert list(rows) == ["GPU", "DLA0 + GPU fallback", "2xDLA", "GPU + 2xDLA"]
    gpu_only = data["plan"]["estimates"]["gpu_only"]["latency_ms"]
    assert rows["GPU"]["images_per_s"] == pytest.approx(4000 / gpu_only, rel=1e-3)
    assert rows["GPU + 2xDLA"]["images_per_s"] > max(rows["GPU"]["images_per_s"], rows["2xDLA"]["images_per_s"])
    dynamic = tmp_path / "resnet50-dynamic.onnx"
    onnx.save(resnet50(batch="N"), dynamic)
    assert main(["partition", str(dynamic), "--shapes", "input:2x3x224x224", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["batch"] == 2
    assert main(["partition", str(path), "--batch", "2"]) == 0
    assert "Estimated throughput at batch 2" in capsys.readouterr().out
