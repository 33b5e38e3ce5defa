"""`serve --telemetry`: a sampler's newest sample rendered as Prometheus gauges (values from a real tegrastats line),
and the command itself exporting a stand-in tegrastats' numbers beside ``nv_inference_*``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families

import edge
from edge.power.samplers import Sampler
from edge.power.tegrastats import parse_line
from edge.serve.metrics import render_text
from edge.serve.telemetry import TelemetryCollector
from tests.power.conftest import REPLAY
from tests.serve.conftest import mlp_model

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


def _busy_agx_orin_line() -> str:
    """The AGX Orin line with the GPU and DLA 0 busy, written as tegrastats writes busy engines."""
    line = agx_orin_line().replace("GR3D_FREQ 0%@[0,0]", "GR3D_FREQ 87%@[1300,1300]").replace("NVDLA0 off", "NVDLA0 62%@1369")
    assert "GR3D_FREQ 87%" in line and "NVDLA0 62%" in line
    return line


def _metrics(port: int) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as reply:
        text = reply.read().decode()
    return {(s.name, ",".join(s.labels.values())): s.value for family in text_string_to_metric_families(text) for s in family.samples}


def test_serve_telemetry_exports_tegrastats_beside_the_inference_metrics(tmp_path):
    log = tmp_path / "busy.log"
    log.write_text(_busy_agx_orin_line() + "\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    stand_in = bindir / "tegrastats"  # first on PATH: what `serve --telemetry` finds as tegrastats
    stand_in.write_text(f"#!{sys.executable}\nREPLAY_LOG = {str(log)!r}\n" + textwrap.dedent(REPLAY))
    stand_in.chmod(0o755)
    engine = tmp_path / "mlp.engine"
    edge.build(mlp_model()).save(engine)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    cli = "import sys; from edge.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", cli, "serve", f"mlp={engine}", "--port", "0", "--telemetry"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        assert "; telemetry from tegrastats;" in line, line
        port = int(line.split("http://127.0.0.1:")[1].split(";")[0])
        with triton.InferenceServerClient(f"127.0.0.1:{port}") as client:
            tensor = triton.InferInput("x", [1, 16], "FP32")
            tensor.set_data_from_numpy(np.zeros((1, 16), np.float32))
            client.infer("mlp", [tensor])
        metrics = _metrics(port)
        for _ in range(600):  # the stand-in prints a line a second; wait for the first one parsed
            if ("edgetrt_power_watts", "VDD_GPU_SOC") in metrics:
                break
            time.sleep(0.1)
            metrics = _metrics(port)
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    assert stand_in.with_name("tegrastats.args").read_text() == "--interval 1000"
    assert metrics[("nv_inference_request_success_total", "mlp,1")] == 1
    # The line's own numbers: VDD_GPU_SOC 2412mW, tj@52.562C, GR3D_FREQ 87%@[1300,1300], NVDLA0 62%@1369, RAM 18207MB.
    assert metrics[("edgetrt_power_watts", "VDD_GPU_SOC")] == pytest.approx(2.412)
    assert metrics[("edgetrt_temperature_celsius", "tj")] == pytest.approx(52.562)
    assert metrics[("edgetrt_utilization_ratio", "gpu")] == pytest.approx(0.87) and metrics[("edgetrt_clock_mhz", "gpu")] == 1300
    assert metrics[("edgetrt_utilization_ratio", "NVDLA0")] == pytest.approx(0.62) and metrics[("edgetrt_clock_mhz", "NVDLA0")] == 1369
    assert metrics[("edgetrt_ram_used_bytes", "tegrastats")] == 18207 * 2**20
