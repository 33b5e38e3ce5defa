"""``serve --telemetry``: the newest telemetry sample as Prometheus gauges beside ``nv_inference_*``.

A sampler from :mod:`edge.power.samplers` (tegrastats, jtop, NVML or psutil, whichever runs
here) keeps only its last few samples; every scrape renders the newest one. Series (power in
watts, temperatures in °C, clocks in MHz, loads as 0-1 ratios) appear only for what the
source reports: a desktop has no DLA, a CPU host no power rails.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from edge.power.samplers import Sampler
from edge.power.tegrastats import Sample

__all__ = ["TelemetryCollector", "TELEMETRY_METRICS"]

# name -> help; the Grafana dashboard's telemetry panels use these names.
TELEMETRY_METRICS = {
    "edgetrt_module_power_watts": "Module power: the input rail, or the sum of the rails where the board has none",
    "edgetrt_power_watts": "Instantaneous power per rail",
    "edgetrt_temperature_celsius": "Temperature per sensor",
    "edgetrt_clock_mhz": "Clock per unit (gpu, emc, cpu = fastest core, fixed-function engines)",
    "edgetrt_utilization_ratio": "Load per unit, 0-1 (gpu, emc, cpu = mean of online cores, DLA/NVENC/... engines)",
    "edgetrt_ram_used_bytes": "RAM in use",
    "edgetrt_telemetry_sample_age_seconds": "Seconds since the telemetry sample these values come from",
}
_SAMPLES_KEPT = 4


class TelemetryCollector:
    """A prometheus-client collector over a running sampler's newest sample."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler.keep_last(_SAMPLES_KEPT)

    def collect(self) -> Iterable[Metric]:
        sample = self.sampler.latest
        if sample is None:
            return
        families = {name: GaugeMetricFamily(name, doc, labels=_labels(name)) for name, doc in TELEMETRY_METRICS.items()}
        total = sample.total_power_mw()
        if total is not None:
            families["edgetrt_module_power_watts"].add_metric([sample.source], total / 1e3)
        for rail, reading in sample.rails.items():
            families["edgetrt_power_watts"].add_metric([rail], reading.instant_mw / 1e3)
        for sensor, celsius in sample.temperatures_c.items():
            families["edgetrt_temperature_celsius"].add_metric([sensor], celsius)
        for unit, mhz, load_pct in _units(sample):
            if mhz is not None:
                families["edgetrt_clock_mhz"].add_metric([unit], mhz)
            if load_pct is not None:
                families["edgetrt_utilization_ratio"].add_metric([unit], load_pct / 100)
        if sample.ram_used_mb is not None:
            families["edgetrt_ram_used_bytes"].add_metric([sample.source], sample.ram_used_mb * 2**20)
        age = time.perf_counter() - self.sampler.t0 - sample.time_s
        families["edgetrt_telemetry_sample_age_seconds"].add_metric([sample.source], max(age, 0.0))
        yield from (family for family in families.values() if family.samples)


def _labels(name: str) -> list[str]:
    return {"edgetrt_power_watts": ["rail"], "edgetrt_temperature_celsius": ["sensor"], "edgetrt_clock_mhz": ["unit"],
            "edgetrt_utilization_ratio": ["unit"]}.get(name, ["source"])  # fmt: skip


def _units(sample: Sample) -> list[tuple[str, float | None, float | None]]:
    """(unit, clock MHz, load %) for the GPU, memory controller, CPU and every fixed-function engine."""
    units = [
        ("gpu", sample.gpu_freq_mhz, sample.gpu_load_pct),
        ("emc", sample.emc_freq_mhz, sample.emc_load_pct),
        ("cpu", sample.cpu_freq_max_mhz(), sample.cpu_load_mean_pct()),
    ]
    # An engine tegrastats reports "off" is power-gated: load 0, no clock.
    units += [(name, e.freq_mhz, e.load_pct) if e.online else (name, None, 0.0) for name, e in sample.engines.items()]
    return units
