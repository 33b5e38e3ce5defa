"""Live samplers.

The tegrastats sampler runs against a stand-in ``tegrastats`` executable written into tmp_path
and put first on PATH (the ``replay`` fixture in conftest.py): it replays a recorded log
(tests/data/tegrastats/orin_nano.log, real Orin Nano output) line by line at the ``--interval``
it is given, as the real tool would. The psutil sampler runs for real; the NVML sampler runs for real when an NVIDIA GPU is present.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge.errors import TelemetryError
from edge.power.samplers import (
    NvmlSampler,
    PsutilSampler,
    TegrastatsSampler,
    _jtop_sample,
    make_sampler,
)
from edge.power.tegrastats import parse_line

DATA = Path(__file__).resolve().parents[1] / "data" / "tegrastats"


def _wait_for(predicate, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_tegrastats_sampler_replays_a_recorded_log(replay, tmp_path):
    expected = [parse_line(l) for l in (DATA / "orin_nano.log").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert TegrastatsSampler.available()
    sampler = TegrastatsSampler(interval_ms=20, logfile=tmp_path / "raw.log")
    t0 = time.perf_counter()
    sampler.start(t0)
    _wait_for(lambda: len(sampler.samples) >= 8)
    samples = sampler.stop()
    assert Path(str(replay) + ".args").read_text() == "--interval 20"
    assert sampler._process.poll() is not None  # the child is gone after stop()
    assert len(samples) >= 8 and sampler.malformed >= 1
    for index, sample in enumerate(samples):
        reference = expected[index % len(expected)]
        assert (sample.rails, sample.cpus, sample.temperatures_c) == (reference.rails, reference.cpus, reference.temperatures_c)
        assert sample.source == "tegrastats"
    times = [s.time_s for s in samples]
    assert times == sorted(times) and times[0] >= 0.0
    raw = (tmp_path / "raw.log").read_text().splitlines()
    assert len(raw) >= len(samples) and "NVPM WARN" in raw[2]


def test_tegrastats_sampler_without_binary(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not TegrastatsSampler.available()
    with pytest.raises(TelemetryError, match="not found on PATH"):
        TegrastatsSampler(interval_ms=100).start()


def test_psutil_sampler_reads_this_host():
    import psutil

    with PsutilSampler(interval_ms=20) as sampler:
        _wait_for(lambda: len(sampler.samples) >= 3)
    samples = sampler.samples
    assert len(samples) >= 3
    assert samples[0].ram_total_mb == pytest.approx(psutil.virtual_memory().total / 2**20)
    assert len(samples[0].cpus) == psutil.cpu_count()
    assert all(0.0 <= c.load_pct <= 100.0 for s in samples for c in s.cpus)
    assert samples[0].total_power_mw() is None  # no rails on a plain host


@pytest.mark.gpu
def test_nvml_sampler_reads_the_gpu():
    import pynvml

    with NvmlSampler(interval_ms=20) as sampler:
        _wait_for(lambda: len(sampler.samples) >= 3)
    assert sampler.error is None
    sample = sampler.samples[0]
    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        max_sm = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)
    finally:
        pynvml.nvmlShutdown()
    assert 0 < sample.gpu_freq_mhz <= max_sm
    assert 0.0 <= sample.gpu_load_pct <= 100.0
    assert "gpu" in sample.temperatures_c


def test_make_sampler_choices(replay):
    assert make_sampler("auto", 50).name == "tegrastats"  # the stand-in is on PATH
    assert make_sampler("psutil", 50).name == "psutil"
    with pytest.raises(TelemetryError, match="unknown sampler"):
        make_sampler("oscilloscope")
    with pytest.raises(TelemetryError, match="positive"):
        PsutilSampler(interval_ms=0)


def test_jtop_stats_conversion():
    # Shapes of jtop's `stats` and `power` as documented in shared/reference/jetson.md section 6.
    stats = {"CPU1": 12, "CPU2": "OFF", "GPU": 55.0, "EMC": 20, "Temp tj": 51.5, "Temp gpu": 49.0, "Power TOT": 7000}
    power = {"rail": {"VDD_IN": {"power": 7000, "avg": 6500}, "VDD_SOC": {"power": 1500, "avg": 1400}}, "tot": {"power": 7000}}
    sample = _jtop_sample(stats, power)
    assert [(c.load_pct, c.online) for c in sample.cpus] == [(12, True), (None, False)]
    assert (sample.gpu_load_pct, sample.emc_load_pct) == (55.0, 20)
    assert sample.temperatures_c == {"tj": 51.5, "gpu": 49.0}
    assert sample.total_power_mw() == 7000 and sample.rails["VDD_SOC"].average_mw == 1400
