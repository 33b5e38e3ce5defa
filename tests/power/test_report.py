"""Profiling report: numbers in report.json against independent arithmetic on the samples,
every plot embedded in report.html, warnings, and the telemetry-only report from a log."""

from __future__ import annotations

import base64
import json
import re
import statistics
from pathlib import Path

import numpy as np
import pytest

from edge.cli import main
from edge.errors import TelemetryError
from edge.power.report import BenchData, align_bench, summarize, write_report
from edge.power.tegrastats import CpuCore, Rail, Sample, read_log

DATA = Path(__file__).resolve().parents[1] / "data" / "tegrastats"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _samples() -> list[Sample]:
    """10 Hz telemetry over 0..3 s of an Orin-NX-like board (VDD_IN is the module input)."""
    samples = []
    for i in range(31):
        t = i * 0.1
        vdd_in = 5000.0 + 100.0 * i
        samples.append(
            Sample(
                time_s=t,
                cpus=[CpuCore(40.0, 1984.0), CpuCore(60.0, 1984.0), CpuCore(online=False)],
                gpu_load_pct=95.0,
                gpu_freq_mhz=918.0,
                emc_freq_mhz=3199.0,
                temperatures_c={"tj": 50.0 + i, "PMIC": 100.0},
                rails={"VDD_IN": Rail(vdd_in, vdd_in), "VDD_CPU_GPU_CV": Rail(2000.0, 2000.0), "VDD_SOC": Rail(1000.0, 1000.0)},
            )
        )
    return samples


def _bench() -> BenchData:
    rng = np.random.default_rng(0)
    latencies = rng.uniform(8.0, 12.0, size=150)
    starts = 0.5 + np.cumsum(np.r_[0.0, latencies[:-1]]) / 1000.0  # back to back from t=0.5 s
    return BenchData(latencies_ms=latencies, start_times_s=starts)


def test_report_numbers_match_independent_computation(tmp_path):
    samples, bench = _samples(), _bench()
    write_report(tmp_path, samples, bench, meta={"title": "unit"}, power_mode_requested="MAXN", power_mode_actual="MAXN")
    doc = json.loads((tmp_path / "report.json").read_text())
    summary = doc["summary"]

    latencies = [float(x) for x in bench.latencies_ms]
    start = float(bench.start_times_s[0])
    end = max(s + l / 1000.0 for s, l in zip(bench.start_times_s, bench.latencies_ms))
    duration = end - start
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    assert summary["inferences"] == 150
    assert summary["duration_s"] == pytest.approx(duration)
    assert summary["throughput_ips"] == pytest.approx(150 / duration)
    assert summary["latency_ms"]["p50"] == pytest.approx(statistics.median(latencies))
    assert summary["latency_ms"]["p90"] == pytest.approx(quantiles[89])
    assert summary["latency_ms"]["p99"] == pytest.approx(quantiles[98])

    inside = [s for s in samples if start <= s.time_s <= end]
    mean_mw = sum(s.rails["VDD_IN"].instant_mw for s in inside) / len(inside)  # VDD_IN only: the others are subsets
    assert summary["window_samples"] == len(inside)
    assert summary["avg_power_w"] == pytest.approx(mean_mw / 1000.0)
    energy = mean_mw / 1000.0 * duration
    assert summary["energy_j"] == pytest.approx(energy)
    assert summary["energy_per_inference_mj"] == pytest.approx(energy / 150 * 1000.0)
    assert summary["inferences_per_joule"] == pytest.approx(150 / energy)
    assert summary["peak_temperature_c"] == max(s.temperatures_c["tj"] for s in inside)  # PMIC@100C is not a reading
    assert summary["peak_temperature_sensor"] == "tj"
    assert summary["warnings"] == []
    assert doc["bench"]["latencies_ms"] == pytest.approx(latencies)
    assert len(doc["samples"]) == len(samples)


def test_html_embeds_every_plot(tmp_path):
    write_report(tmp_path, _samples(), _bench())
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["plots"] == ["latency", "throughput", "power", "temperature", "clocks", "utilization"]
    page = (tmp_path / "report.html").read_text()
    for name in doc["plots"]:
        match = re.search(rf'<img id="plot-{name}" alt="{name}" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
        assert match, name
        assert base64.b64decode(match.group(1)).startswith(PNG_MAGIC)
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing fetched
    assert "energy per inference" in page


def test_throttling_and_power_mode_warnings():
    samples = _samples()
    for sample in samples[15:]:
        sample.gpu_freq_mhz = 612.0  # clock falls while the GPU stays 95% busy
    summary = summarize(samples, _bench(), power_mode_requested="MAXN", power_mode_actual="MODE_15W")
    assert any("GPU clock dropped to 612 MHz" in w for w in summary["warnings"])
    assert any("power mode is MODE_15W, not the requested MAXN" in w for w in summary["warnings"])
    for sample in samples[15:]:
        sample.gpu_load_pct = 0.0  # an idle GPU clocking down is not throttling
    assert not any("GPU clock" in w for w in summarize(samples, _bench())["warnings"])


def test_short_run_between_samples_falls_back_to_all_samples():
    bench = BenchData(latencies_ms=np.array([1.0, 1.0]), start_times_s=np.array([0.101, 0.102]))
    summary = summarize(_samples(), bench)
    assert summary["window_samples"] == 31
    assert any("no telemetry sample fell inside" in w for w in summary["warnings"])


def test_align_bench_puts_the_last_iteration_end_at_the_return_time():
    bench = align_bench(_bench(), finished_at_s=42.0)
    assert float(bench.end_times_s.max()) == pytest.approx(42.0)
    assert np.allclose(np.diff(bench.start_times_s), np.diff(_bench().start_times_s))


def test_no_power_rails_means_no_energy_and_a_warning():
    samples = _samples()
    for sample in samples:
        sample.rails = {}
    summary = summarize(samples, _bench())
    assert summary["avg_power_w"] is None and "energy_per_inference_mj" not in summary
    assert any("no power rails" in w for w in summary["warnings"])


def test_nothing_to_report(tmp_path):
    with pytest.raises(TelemetryError, match="nothing to report"):
        write_report(tmp_path, [])


def test_telemetry_report_cli_from_a_recorded_log(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["telemetry", "report", str(DATA / "orin_nano.log"), "--report", str(out)]) == 0
    doc = json.loads((out / "report.json").read_text())
    assert doc["bench"] is None and "inferences" not in doc["summary"]
    assert doc["plots"] == ["power", "temperature", "clocks", "utilization", "memory"]
    samples = read_log(DATA / "orin_nano.log").samples
    assert doc["summary"]["avg_power_w"] == pytest.approx(np.mean([s.rails["VDD_IN"].instant_mw for s in samples]) / 1000.0)
    assert doc["summary"]["peak_temperature_c"] == max(max(s.temperatures_c.values()) for s in samples)
    assert "average power: 5.69 W" in capsys.readouterr().out


def test_telemetry_report_cli_rejects_a_non_tegrastats_file(tmp_path, capsys):
    junk = tmp_path / "junk.log"
    junk.write_text("not tegrastats\n")
    assert main(["telemetry", "report", str(junk), "--report", str(tmp_path / "r")]) == 1
    assert "no tegrastats line" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
