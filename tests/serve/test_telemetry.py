"""`serve --telemetry`: a sampler's newest sample rendered as Prometheus gauges (values from a real tegrastats line)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.power.samplers import Sampler
from edge.power.tegrastats import parse_line
from edge.serve.metrics import render_text
from edge.serve.telemetry import TelemetryCollector

_DATA = Path(__file__).resolve().parents[1] / "data" / "tegrastats"


def agx_orin_line() -> str:
    """The first AGX Orin line with NVENC busy and both DLAs off."""
    lines = (_DATA / "orin_agx.log").read_text().splitlines()
    return next(line for line in lines if not line.startswith("#") and "NVENC 79%@166" in line)


class LineSampler(Sampler):
    """Replays tegrastats lines as samples, as TegrastatsSampler would parse them on a Jetson."""

    name = "tegrastats"

    def __init__(self, lines: list[str]) -> None:
        super().__init__(interval_ms=10)
        self.lines = lines
        self.fed = threading.Event()

    @classmethod
    def available(cls) -> bool:
        return True

    def _collect(self) -> None:
        for line in self.lines:
            self._add(parse_line(line))
        self.fed.set()
        self._stop.wait()


def _gauges(collector: TelemetryCollector) -> dict[tuple[str, str], float]:
    text = render_text(collector.collect()).decode()
    return {
        (s.name, next(iter(s.labels.values()), "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_power_temperature_clocks_and_engine_load_of_the_newest_sample():
    sampler = LineSampler([agx_orin_line()]).start()
    try:
        collector = TelemetryCollector(sampler)
        sampler.fed.wait()
        gauges = _gauges(collector)
    finally:
        sampler.stop()
    # VDD_GPU_SOC 2412mW, VDD_CPU_CV 1607mW, VIN_SYS_5V0 4707mW; AGX Orin has no input rail: the sum.
    assert gauges[("edgetrt_power_watts", "VDD_GPU_SOC")] == pytest.approx(2.412)
    assert gauges[("edgetrt_module_power_watts", "tegrastats")] == pytest.approx(2.412 + 1.607 + 4.707)
    assert gauges[("edgetrt_temperature_celsius", "tj")] == pytest.approx(52.562)
    assert gauges[("edgetrt_clock_mhz", "emc")] == 2133 and gauges[("edgetrt_utilization_ratio", "emc")] == pytest.approx(0.03)
    assert gauges[("edgetrt_clock_mhz", "cpu")] == 2201  # the fastest core
    assert gauges[("edgetrt_utilization_ratio", "NVENC")] == pytest.approx(0.79) and gauges[("edgetrt_clock_mhz", "NVENC")] == 166
    assert gauges[("edgetrt_utilization_ratio", "NVDLA0")] == 0.0 and ("edgetrt_clock_mhz", "NVDLA0") not in gauges
    assert gauges[("edgetrt_ram_used_bytes", "tegrastats")] == 18207 * 2**20
    assert len(sampler.samples) <= 4  # a server keeps only the newest samples


def test_no_sample_yet_exports_nothing():
    sampler = LineSampler([])
    assert _gauges(TelemetryCollector(sampler)) == {}
