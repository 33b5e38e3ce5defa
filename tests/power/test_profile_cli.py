"""``edgetrt profile``: a real benchmark of a small engine while a sampler runs, then the report.

Telemetry comes from the stand-in tegrastats (``replay`` fixture: real Orin Nano lines at the
requested interval) or from psutil for real; the energy numbers are checked against the samples
the report itself stored, recomputed independently here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper

import edge
from edge.cli import main


@pytest.fixture
def engine_file(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "relu.engine"
    edge.build(model.SerializeToString()).save(path)
    return path


def test_profile_with_tegrastats_reports_energy_per_inference(engine_file, replay, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["profile", str(engine_file), "--duration", "0.5", "--interval", "20", "--sampler", "tegrastats", "--report", str(out)])
    assert code == 0
    doc = json.loads((out / "report.json").read_text())
    summary, bench = doc["summary"], doc["bench"]
    assert summary["inferences"] == len(bench["latencies_ms"]) > 0
    assert summary["latency_ms"]["p50"] == pytest.approx(float(np.median(bench["latencies_ms"])))
    start = min(bench["start_times_s"])
    end = max(s + l / 1000.0 for s, l in zip(bench["start_times_s"], bench["latencies_ms"]))
    inside = [s for s in doc["samples"] if start <= s["time_s"] <= end] or doc["samples"]
    watts = np.mean([s["rails"]["VDD_IN"]["instant_mw"] for s in inside]) / 1000.0
    assert summary["avg_power_w"] == pytest.approx(watts)
    assert summary["energy_per_inference_mj"] == pytest.approx(watts * summary["duration_s"] / summary["inferences"] * 1000.0)
    assert doc["meta"]["sampler"] == "tegrastats"
    assert "energy per inference" in capsys.readouterr().out
    page = (out / "report.html").read_text()
    assert all(f'id="plot-{name}"' in page for name in doc["plots"])
    assert {"latency", "throughput", "power"} <= set(doc["plots"])


def test_profile_with_psutil_has_no_energy(engine_file, tmp_path):
    out = tmp_path / "report"
    assert main(["profile", str(engine_file), "--duration", "0.3", "--interval", "20", "--sampler", "psutil", "--report", str(out)]) == 0
    summary = json.loads((out / "report.json").read_text())["summary"]
    assert summary["avg_power_w"] is None and summary["inferences"] > 0
    assert any("no power rails" in w for w in summary["warnings"])


def test_profile_power_mode_off_jetson_is_refused(engine_file, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["profile", str(engine_file), "--power-mode", "MAXN", "--sampler", "psutil", "--report", str(out)]) == 1
    assert "need a Jetson" in capsys.readouterr().err
    assert not out.exists()


def test_profile_shows_a_progress_bar_on_a_terminal(engine_file, tmp_path, monkeypatch):
    import edge.runtime.bench as bench_module
    from edge.cli.app import console

    real, updates = bench_module.benchmark, []

    def recording(engine, config, on_iteration=None):
        def counted(stream, iteration, latency_ms):
            updates.append(iteration)
            on_iteration(stream, iteration, latency_ms)

        return real(engine, config, on_iteration=None if on_iteration is None else counted)

    monkeypatch.setattr("edge.cli.bench.benchmark", recording)
    monkeypatch.setattr(console, "_force_terminal", True)
    argv = ["profile", str(engine_file), "--duration", "0.2", "--interval", "20", "--sampler", "psutil", "--report", str(tmp_path / "r")]
    assert main(argv) == 0
    inferences = json.loads((tmp_path / "r" / "report.json").read_text())["summary"]["inferences"]
    assert len(updates) == inferences > 0  # the bar advanced on every timed run
