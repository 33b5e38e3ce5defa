"""Profiling reports: benchmark timings + telemetry samples -> summary, report.json and a self-contained report.html.

Energy per inference is the mean module power over the benchmark window times the window's
length, divided by the number of inferences. Samples and iterations must share one time origin
(seconds); :func:`align_bench` shifts a benchmark onto the samplers' clock.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from edge.power.tegrastats import CONSTANT_SENSORS, INPUT_RAILS, Sample

from edge.errors import TelemetryError
from edge.fileio import write_atomic

if TYPE_CHECKING:
    from edge.runtime.bench import BenchResult

__all__ = ["BenchData", "Throttling", "align_bench", "find_throttling", "summarize", "render_plots", "write_report", "format_summary"]

# A clock counts as dropped when it falls below this fraction of its typical busy clock (the 90th
# percentile, so one stray sample cannot set it) while the unit is busy (load at or above
# _BUSY_PCT) - an idle unit clocking down is not throttling - for at least _DROP_RUN busy samples
# in a row, so one stray low sample is not a warning either.
_DROP_FRACTION = 0.9
_BUSY_PCT = 50.0
_DROP_RUN = 2


@dataclass
class BenchData:
    """What the report needs from a benchmark: per-iteration start times (s) and latencies (ms)."""

    latencies_ms: np.ndarray
    start_times_s: np.ndarray
    throughput: float | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_result(cls, result: BenchResult) -> BenchData:
        """Take the timings of an ``edge.runtime.bench.BenchResult``; its summary goes in ``extra``."""
        return cls(
            latencies_ms=np.asarray(result.latencies_ms, dtype=np.float64),
            start_times_s=np.asarray(result.start_times_s, dtype=np.float64),
            throughput=result.throughput,
            extra=result.to_dict(),
        )

    @property
    def end_times_s(self) -> np.ndarray:
        return self.start_times_s + self.latencies_ms / 1000.0

    @property
    def window(self) -> tuple[float, float]:
        """First iteration start to last iteration end."""
        return float(self.start_times_s.min()), float(self.end_times_s.max())


def align_bench(bench: BenchData, finished_at_s: float) -> BenchData:
    """Shift a benchmark so its last iteration ends at ``finished_at_s`` on the samplers' clock.

    The benchmark reports times from its own start (after warm-up), which the caller cannot
    observe; it can observe when ``benchmark()`` returned, which is right after the last
    iteration ended.
    """
    offset = finished_at_s - float(bench.end_times_s.max())
    return BenchData(bench.latencies_ms, bench.start_times_s + offset, bench.throughput, dict(bench.extra))


def _series(samples: Sequence[Sample], getter) -> tuple[np.ndarray, np.ndarray]:
    points = [(s.time_s, getter(s)) for s in samples]
    points = [(t, v) for t, v in points if v is not None]
    if not points:
        return np.empty(0), np.empty(0)
    t, v = zip(*points)
    return np.asarray(t, dtype=np.float64), np.asarray(v, dtype=np.float64)


def _gapped(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Insert NaN where the recording has a gap (over 3x the median period) so plots break
    the line there instead of drawing a straight segment across unrecorded time."""
    if t.size < 3:
        return t, v
    steps = np.diff(t)
    gaps = np.flatnonzero(steps > 3.0 * np.median(steps)) + 1
    return np.insert(t, gaps, np.nan), np.insert(v, gaps, np.nan)


def _peak_temperature(samples: Sequence[Sample]) -> tuple[float | None, str | None]:
    best: tuple[float | None, str | None] = (None, None)
    for sample in samples:
        for name, value in sample.temperatures_c.items():
            if name not in CONSTANT_SENSORS and (best[0] is None or value > best[0]):
                best = (value, name)
    return best


@dataclass
class Throttling:
    """Where a unit's clock dropped while it was busy: (start, end) spans in seconds, the lowest
    clock and when it was seen, and the typical busy clock it is measured against (MHz)."""

    label: str
    spans: list[tuple[float, float]]
    low_mhz: float
    low_at_s: float
    typical_mhz: float

    def message(self) -> str:
        return (
            f"{self.label} clock dropped to {self.low_mhz:.0f} MHz at t={self.low_at_s:.1f} s while busy "
            f"(typical {self.typical_mhz:.0f} MHz): throttling"
        )


# (label, clock, load) of the units whose clock drops are checked.
_CHECKED_CLOCKS: tuple[tuple[str, Callable[[Sample], float | None], Callable[[Sample], float | None]], ...] = (
    ("GPU", lambda s: s.gpu_freq_mhz, lambda s: s.gpu_load_pct),
    ("CPU", Sample.cpu_freq_max_mhz, lambda s: max((c.load_pct or 0.0 for c in s.cpus), default=0.0)),
)


def find_throttling(samples: Sequence[Sample]) -> list[Throttling]:
    """Every unit whose clock stayed below ``_DROP_FRACTION`` of its typical busy clock for
    ``_DROP_RUN`` or more busy samples in a row (samples in time order)."""
    found = []
    for label, clock, load in _CHECKED_CLOCKS:
        busy = [(s.time_s, clock(s)) for s in samples if clock(s) is not None and (load(s) or 0.0) >= _BUSY_PCT]
        if len(busy) < _DROP_RUN:
            continue
        typical = float(np.percentile([c for _, c in busy], 90))
        runs: list[list[tuple[float, float]]] = [[]]
        for point in busy:
            if point[1] < _DROP_FRACTION * typical:
                runs[-1].append(point)
            elif runs[-1]:
                runs.append([])
        runs = [run for run in runs if len(run) >= _DROP_RUN]
        if typical > 0 and runs:
            low_at, low = min((point for run in runs for point in run), key=lambda point: point[1])
            found.append(Throttling(label, [(run[0][0], run[-1][0]) for run in runs], low, low_at, typical))
    return found


def summarize(
    samples: Sequence[Sample],
    bench: BenchData | None = None,
    *,
    window: tuple[float, float] | None = None,
    power_mode_requested: str | None = None,
    power_mode_actual: str | None = None,
) -> dict:
    """The report's numbers and warnings.

    Telemetry statistics use the samples inside the benchmark window (or ``window``, in
    seconds, for a recording without benchmark timings); all samples when there is neither,
    or when no sample fell inside a very short run - a warning says so.
    """
    warnings: list[str] = []
    summary: dict = {"samples": len(samples)}
    window_samples = list(samples)
    if bench is not None and len(bench.latencies_ms):
        lat = bench.latencies_ms
        start, end = bench.window
        duration = end - start
        count = int(lat.size)
        summary.update(
            inferences=count,
            duration_s=duration,
            throughput_ips=bench.throughput if bench.throughput else (count / duration if duration > 0 else None),
            latency_ms={
                "mean": float(lat.mean()),
                "min": float(lat.min()),
                "max": float(lat.max()),
                "p50": float(np.percentile(lat, 50)),
                "p90": float(np.percentile(lat, 90)),
                "p99": float(np.percentile(lat, 99)),
            },
        )
        window = (start, end)
    if window is not None:
        inside = [s for s in samples if window[0] <= s.time_s <= window[1]]
        if inside:
            window_samples = inside
        elif samples:
            warnings.append("no telemetry sample fell inside the benchmark window; statistics use the whole recording")
    summary["window_samples"] = len(window_samples)

    power = [p for p in (s.total_power_mw() for s in window_samples) if p is not None]
    summary["avg_power_w"] = float(np.mean(power)) / 1000.0 if power else None
    summary["peak_power_w"] = float(np.max(power)) / 1000.0 if power else None
    rails: dict[str, list[float]] = {}
    for sample in window_samples:
        for name, rail in sample.rails.items():
            rails.setdefault(name, []).append(rail.instant_mw)
    summary["rails_avg_mw"] = {name: float(np.mean(values)) for name, values in rails.items()}
    if summary["avg_power_w"] is not None and "duration_s" in summary and summary["duration_s"] > 0:
        energy_j = summary["avg_power_w"] * summary["duration_s"]
        summary["energy_j"] = energy_j
        summary["energy_per_inference_mj"] = energy_j / summary["inferences"] * 1000.0
        summary["inferences_per_joule"] = summary["inferences"] / energy_j if energy_j > 0 else None
    elif bench is not None and summary["avg_power_w"] is None:
        warnings.append("telemetry has no power rails here; energy per inference is unavailable")

    peak, sensor = _peak_temperature(window_samples)
    summary["peak_temperature_c"], summary["peak_temperature_sensor"] = peak, sensor
    gpu_t, gpu_f = _series(window_samples, lambda s: s.gpu_freq_mhz)
    summary["gpu_freq_mhz"] = {"min": float(gpu_f.min()), "max": float(gpu_f.max())} if gpu_f.size else None
    _, gpu_load = _series(window_samples, lambda s: s.gpu_load_pct)
    summary["gpu_load_mean_pct"] = float(gpu_load.mean()) if gpu_load.size else None
    _, cpu_load = _series(window_samples, Sample.cpu_load_mean_pct)
    summary["cpu_load_mean_pct"] = float(cpu_load.mean()) if cpu_load.size else None

    warnings.extend(throttling.message() for throttling in find_throttling(window_samples))
    if any(u.startswith("nvml_throttle_reasons") for s in window_samples for u in s.unknown):
        warnings.append("NVML reported clock throttle reasons during the run")
    summary["power_mode_requested"] = power_mode_requested
    summary["power_mode_actual"] = power_mode_actual
    if power_mode_requested is not None and power_mode_actual is not None and power_mode_requested != power_mode_actual:
        warnings.append(f"power mode is {power_mode_actual}, not the requested {power_mode_requested}")
    summary["warnings"] = warnings
    return summary


def _figure():
    # The object-oriented API renders without pyplot, so no GUI backend or global state is touched.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 3.0), dpi=100, layout="constrained")
    return figure, figure.add_subplot()


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# Engines whose load the report plots over time: DLA, PVA, video encode/decode, JPEG, VIC, OFA.
_ACCELERATOR_PREFIXES = ("NVDLA", "DLA", "PVA", "NVENC", "NVDEC", "MSENC", "NVJPG", "VIC", "OFA")


@dataclass
class _Marks:
    """What every telemetry plot marks: the benchmark window (shaded grey) and the spans where a
    clock dropped while busy (shaded red)."""

    window: tuple[float, float] | None
    throttling: list[Throttling]

    def draw(self, ax) -> None:
        if self.window is not None:
            ax.axvspan(*self.window, color="0.88", zorder=0, label="benchmark")
        for throttling in self.throttling:
            for index, span in enumerate(throttling.spans):
                ax.axvspan(*span, color="red", alpha=0.25, zorder=0, label=f"{throttling.label} throttling" if index == 0 else None)


def _lines_plot(
    samples: Sequence[Sample],
    getters: dict[str, Callable[[Sample], float | None]],
    title: str,
    ylabel: str,
    marks: _Marks,
    styles: dict[str, str] | None = None,
    **limits: object,
) -> bytes | None:
    """One line per getter that has data over time, labelled by its key, over the marks; None
    when no getter has data."""
    series = {label: _series(samples, getter) for label, getter in getters.items()}
    if not any(v.size for _, v in series.values()):
        return None
    fig, ax = _figure()
    marks.draw(ax)
    for label, (t, v) in series.items():
        if v.size:
            ax.plot(*_gapped(t, v), (styles or {}).get(label, "-"), label=label)
    ax.set(title=title, xlabel="time (s)", ylabel=ylabel, **limits)
    ax.legend(fontsize="small", ncol=2 if len(getters) > 4 else 1, loc="best")
    return _png(fig)


def _accelerators(samples: Sequence[Sample]) -> list[str]:
    """Engine names with a load reading that belong to the DLA/PVA/video/JPEG family."""
    names = {name for s in samples for name, e in s.engines.items() if e.load_pct is not None}
    return sorted(name for name in names if name.startswith(_ACCELERATOR_PREFIXES))


def render_plots(samples: Sequence[Sample], bench: BenchData | None = None, window: tuple[float, float] | None = None) -> dict[str, bytes]:
    """PNG images keyed by plot name; a plot is made only when its data exists.

    Names: latency, throughput (benchmark); power, temperature, clocks, utilization,
    accelerators (DLA/PVA/NVENC/NVDEC... load), memory (RAM, swap) (telemetry). Telemetry plots
    shade the benchmark window (``bench``'s, else ``window``) grey and the spans where a clock
    dropped while busy red.
    """
    plots: dict[str, bytes] = {}
    if bench is not None and bench.latencies_ms.size:
        fig, ax = _figure()
        ax.plot(bench.start_times_s, bench.latencies_ms, ".", markersize=2)
        ax.set(title="Latency per inference", xlabel="time (s)", ylabel="latency (ms)")
        plots["latency"] = _png(fig)
        fig, ax = _figure()
        start, end = bench.window
        edges = np.arange(start, end + 1.0, 1.0)
        if edges.size >= 2:
            counts, _ = np.histogram(bench.end_times_s, bins=edges)
            ax.step(edges[:-1], counts, where="post")
        ax.set(title="Throughput (completed per 1 s bin)", xlabel="time (s)", ylabel="inferences/s")
        plots["throughput"] = _png(fig)
    marks = _Marks(bench.window if bench is not None and bench.latencies_ms.size else window, find_throttling(samples))
    rail_names = sorted({name for s in samples for name in s.rails})
    power = {name: (lambda s, n=name: s.rails[n].instant_mw / 1000.0 if n in s.rails else None) for name in rail_names}
    if len(rail_names) > 1 and not set(rail_names) & set(INPUT_RAILS):
        # Boards without an input rail: the module total is the sum, worth its own line.
        power["module total (sum)"] = lambda s: s.total_power_mw() / 1000.0 if s.rails else None
    sensors = sorted({name for s in samples for name in s.temperatures_c if name not in CONSTANT_SENSORS})
    clocks = {
        "GPU": lambda s: s.gpu_freq_mhz,
        "EMC": lambda s: s.emc_freq_mhz,
        "CPU (fastest core)": Sample.cpu_freq_max_mhz,
    }
    loads = {"GPU": lambda s: s.gpu_load_pct, "CPU (mean)": Sample.cpu_load_mean_pct, "EMC": lambda s: s.emc_load_pct}
    engines = {name: (lambda s, n=name: s.engines[n].load_pct if n in s.engines else None) for name in _accelerators(samples)}
    memory = {"RAM used": lambda s: s.ram_used_mb, "swap used": lambda s: s.swap_used_mb}
    ram_total = max((s.ram_total_mb for s in samples if s.ram_total_mb), default=None)
    for key, png in (
        ("power", _lines_plot(samples, power, "Power per rail", "W", marks, {"module total (sum)": "k--"})),
        ("temperature", _lines_plot(samples, {n: (lambda s, n=n: s.temperatures_c.get(n)) for n in sensors}, "Temperatures", "°C", marks)),
        ("clocks", _lines_plot(samples, clocks, "Clocks", "MHz", marks)),
        ("utilization", _lines_plot(samples, loads, "Utilization", "%", marks, ylim=(0, 105))),
        ("accelerators", _lines_plot(samples, engines, "DLA, PVA and video engines: load", "%", marks, ylim=(0, 105))),
        ("memory", _lines_plot(samples, memory, f"Memory (RAM total {ram_total:.0f} MB)" if ram_total else "Memory", "MB", marks, ylim=(0, ram_total * 1.05 if ram_total else None))),
    ):
        if png is not None:
            plots[key] = png
    return plots


def _fmt(value: object, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def format_summary(summary: dict) -> list[str]:
    """Human-readable summary lines (the CLI prints them; the HTML shows them as a table)."""
    lines = []
    if "inferences" in summary:
        lat = summary["latency_ms"]
        lines += [
            f"throughput: {_fmt(summary['throughput_ips'], ' inf/s', 1)} ({summary['inferences']} inferences in {_fmt(summary['duration_s'], ' s', 1)})",
            f"latency: p50 {_fmt(lat['p50'], ' ms', 3)}, p90 {_fmt(lat['p90'], ' ms', 3)}, p99 {_fmt(lat['p99'], ' ms', 3)}",
        ]
    lines.append(f"average power: {_fmt(summary['avg_power_w'], ' W')} (peak {_fmt(summary['peak_power_w'], ' W')})")
    if "inferences" in summary:
        lines.append(
            f"energy per inference: {_fmt(summary.get('energy_per_inference_mj'), ' mJ', 3)}, "
            f"inferences per joule: {_fmt(summary.get('inferences_per_joule'), '', 1)}"
        )
    sensor = summary.get("peak_temperature_sensor")
    lines.append(f"peak temperature: {_fmt(summary['peak_temperature_c'], ' °C', 1)}" + (f" ({sensor})" if sensor else ""))
    if summary.get("power_mode_actual"):
        lines.append(f"power mode: {summary['power_mode_actual']}")
    return lines


def _html(summary: dict, plots: dict[str, bytes], meta: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(line.split(':', 1)[0])}</td><td>{html.escape(line.split(':', 1)[1].strip())}</td></tr>" for line in format_summary(summary))
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in summary["warnings"])
    images = "".join(
        f'<figure><img id="plot-{name}" alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"></figure>'
        for name, png in plots.items()
    )
    meta_rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in meta.items())
    title = html.escape(str(meta.get("title", "edgetrt profile")))
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}"
        "td{padding:2px 12px}.warn{color:#a40}img{max-width:100%}</style></head><body>"
        f"<h1>{title}</h1><table>{rows}</table>"
        + (f"<h2>Warnings</h2><ul class='warn'>{warnings}</ul>" if warnings else "")
        + f"<h2>Plots</h2>{images}<h2>Run</h2><table>{meta_rows}</table></body></html>"
    )


def _finite(value: object) -> object:
    """``value`` with every NaN/inf float replaced by None: JSON has no such numbers, and a bare
    ``Infinity`` breaks strict readers (jq, browsers' JSON.parse, most languages)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def write_report(
    out_dir: str | Path,
    samples: Sequence[Sample],
    bench: BenchData | None = None,
    *,
    meta: dict | None = None,
    window: tuple[float, float] | None = None,
    power_mode_requested: str | None = None,
    power_mode_actual: str | None = None,
) -> dict:
    """Write ``report.json`` and ``report.html`` into ``out_dir``; returns the summary
    (``window``: see :func:`summarize`).

    Raises:
        TelemetryError: there is neither a sample nor a benchmark to report.
    """
    if not samples and (bench is None or not bench.latencies_ms.size):
        raise TelemetryError("nothing to report: no telemetry samples and no benchmark results")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TelemetryError(f"report directory '{out}' is a file")
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(samples, bench, window=window, power_mode_requested=power_mode_requested, power_mode_actual=power_mode_actual)
    plots = render_plots(samples, bench, window)
    meta = dict(meta or {})
    document = {
        "summary": summary,
        "meta": meta,
        "plots": list(plots),
        "samples": [s.to_dict() for s in samples],
        "bench": None
        if bench is None
        else {**bench.extra, "latencies_ms": bench.latencies_ms.tolist(), "start_times_s": bench.start_times_s.tolist()},
    }
    text = json.dumps(_finite(document), indent=1, default=str, allow_nan=False)
    write_atomic(out / "report.json", text.encode("utf-8"))
    write_atomic(out / "report.html", _html(summary, plots, meta).encode("utf-8"))
    return summary
