"""Running calibration: per-tensor statistics of the unfused FP32 graph over calibration batches.

Like EntropyCalibrator2 and MinMax, edgetrt calibrates *before* fusion, on the imported ONNX
graph, so the scales are keyed by the ONNX tensor names and a cache fits any build of the
model (and trtexec). Every float network input and float node output gets a scale; a tensor
that is zero on every batch gets the placeholder scale 1/127 (amax 1: zero is exact on any
grid, and the cache still names it, so it fits this model next time).

Pass 1 records max |x| per tensor (all ``minmax`` needs); histogram calibrators run the
batches again to fill 2048 bins over [0, max |x|]. Batches stream through both passes: only
the batch being run, the live activations of one run and the histograms are ever held.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge.errors import CalibrationError
from edge.ir import Graph, Value
from edge.quant.cache import CalibrationCache, read_cache, write_cache
from edge.quant.calibrators import (
    CALIBRATORS,
    HISTOGRAM_BINS,
    entropy_threshold,
    mse_threshold,
    percentile_threshold,
)
from edge.quant.data import CalibrationData, CalibrationSource, SampleData, load_calibration_data, model_batch
from edge.quant.images import Preprocess
from edge.quant.memory import AUTO_PROBE, CALIBRATION_MEMORY_SHARE, auto_batch, measure_peak, resident_bytes
from edge.quant.numerics import SYMMETRIC_MAX

if TYPE_CHECKING:
    from edge.runtime.interpreter import Step

__all__ = [
    "DEFAULT_PERCENTILE",
    "Calibration",
    "ProgressFn",
    "TensorRange",
    "calibrate",
    "calibrated_tensors",
    "calibration_for",
    "calibration_progress",
    "missing_tensors",
]

DEFAULT_PERCENTILE = 99.99
ZERO_TENSOR_AMAX = 1.0
"""The threshold given to a tensor that is zero on every calibration batch."""
_LISTED = 5
"""How many missing tensor names a refused cache's error lists before giving the count."""


@dataclass
class TensorRange:
    """One tensor's calibration result: the largest |x| seen and the chosen threshold."""

    amax: float
    threshold: float

    @property
    def scale(self) -> float:
        """threshold / 127, or the placeholder's for a tensor that was zero on every batch."""
        return (self.threshold if self.threshold > 0 else ZERO_TENSOR_AMAX) / SYMMETRIC_MAX


@dataclass
class Calibration:
    """Scales for a model, where they came from, and (after calibrating) each tensor's range,
    the batches run, their size, the peak bytes allocated and how an auto batch was sized."""

    calibrator: str
    scales: dict[str, float]
    source: str  # "calibrated" or "cache"
    ranges: dict[str, TensorRange] | None = None
    batches: int = 0
    batch: int | None = None
    peak_memory: int = 0
    sizing: dict[str, int] = field(default_factory=dict)


def _is_float(value: Value) -> bool:
    return value.dtype is not None and np.issubdtype(value.dtype, np.floating) and not value.meta.get("omitted")


def calibrated_tensors(graph: Graph) -> list[str]:
    """The tensors calibration gives a scale: float network inputs and float node outputs, in graph order."""
    values = [v for v in graph.inputs if _is_float(v)] + [v for node in graph.nodes for v in node.outputs if _is_float(v)]
    return list(dict.fromkeys(v.name for v in values))


def missing_tensors(graph: Graph, cache: CalibrationCache) -> list[str]:
    """The tensors of ``graph`` calibration scales that ``cache`` has no line for."""
    return [name for name in calibrated_tensors(graph) if name not in cache.scales]


class _Statistics:
    """Accumulates max |x| (pass 1) or |x| histograms (pass 2) per tensor name."""

    def __init__(self, amax: dict[str, float] | None = None) -> None:
        self.amax: dict[str, float] = {}
        self.limits = amax
        self.hist: dict[str, np.ndarray] = {}

    def add(self, name: str, array: np.ndarray) -> None:
        if array.size == 0:
            return
        magnitude = np.abs(array)
        if self.limits is None:
            peak = float(magnitude.max())
            if not np.isfinite(peak):
                raise CalibrationError(f"tensor '{name}' is not finite on the calibration data")
            self.amax[name] = max(self.amax.get(name, 0.0), peak)
            return
        limit = self.limits.get(name, 0.0)
        if limit > 0:
            counts, _ = np.histogram(magnitude, bins=HISTOGRAM_BINS, range=(0.0, limit))
            self.hist[name] = self.hist.get(name, 0) + counts

    def on_step(self, step: Step, results: list[np.ndarray]) -> None:
        for value, array in zip(step.node.outputs, results):
            if _is_float(value):
                self.add(value.name, array)


ProgressFn = Callable[[int, "int | None"], None]
"""``fn(batches run, total or None)``, called after every calibration batch of every pass."""

_PROGRESS: ContextVar[ProgressFn | None] = ContextVar("calibration_progress", default=None)


@contextmanager
def calibration_progress(report: ProgressFn | None) -> Iterator[None]:
    """Calibrations run inside the block report their progress to ``report`` (the CLI's bar; None: nowhere)."""
    token = _PROGRESS.set(report)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def _run(graph: Graph, batches: Iterable[list[np.ndarray]], stats: _Statistics, tick: Callable[[], None] = lambda: None) -> int:
    """Run every batch through ``graph`` into ``stats``; returns the number of batches."""
    # imported here: the runtime itself imports edge.quant.numerics
    from edge.runtime.interpreter import Schedule

    schedule = Schedule(graph)
    count = 0
    for batch in batches:
        for value, array in zip(graph.inputs, batch):
            if _is_float(value):
                stats.add(value.name, array)
        schedule.run(batch, on_step=stats.on_step)
        count += 1
        tick()
    return count


def calibrate(
    graph: Graph,
    batches: Iterable[list[np.ndarray]],
    calibrator: str = "entropy2",
    percentile: float = DEFAULT_PERCENTILE,
) -> Calibration:
    """Calibrate the (unfused, FP32) ``graph`` on input batches given in ``graph.inputs`` order.

    ``batches`` is iterated once per pass (twice for histogram calibrators), so only one
    batch and the per-tensor statistics are in memory at a time; the result records the
    peak bytes allocated while calibrating.
    """
    if calibrator not in CALIBRATORS:
        raise CalibrationError(f"calibrator '{calibrator}' is not one of {list(CALIBRATORS)}")
    passes = 1 if calibrator == "minmax" else 2
    total = passes * len(batches) if isinstance(batches, Sized) else None
    report = _PROGRESS.get()
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if report is not None:
            report(done, total)

    with measure_peak() as memory:
        first = _Statistics()
        count = _run(graph, batches, first, tick)
        if count == 0:
            raise CalibrationError("calibration needs at least one batch")
        amax = first.amax
        thresholds = dict(amax)
        memory.mark("max pass")
        if calibrator != "minmax":
            second = _Statistics(amax)
            _run(graph, batches, second, tick)
            memory.mark("histogram pass")
            thresholds = {}
            for name, peak in amax.items():
                if name not in second.hist:
                    continue
                width = peak / HISTOGRAM_BINS
                if calibrator == "entropy2":
                    thresholds[name] = entropy_threshold(second.hist[name], width)
                elif calibrator == "mse":
                    thresholds[name] = mse_threshold(second.hist[name], width)
                else:
                    thresholds[name] = percentile_threshold(second.hist[name], width, percentile)
    ranges = {name: TensorRange(amax.get(name, 0.0), thresholds.get(name, 0.0)) for name in calibrated_tensors(graph)}
    scales = {name: r.scale for name, r in ranges.items()}
    return Calibration(calibrator, scales, "calibrated", ranges, count, getattr(batches, "batch", None), memory.peak)


def _auto_batch(
    graph: Graph, data: CalibrationData, memory_bytes: float | None, calibrator: str, percentile: float
) -> tuple[CalibrationData, dict[str, int]]:
    """``data`` re-cut into the largest batch whose calibration peak fits the device (see
    edge.quant.memory), and how it was chosen; a source with a fixed batch is kept. The
    probe is a whole calibration of the first samples, after one unmeasured warm-up run of
    the same size: first runs compile kernels (at 8 samples, parallel builds a 1-sample run
    does not use), and tracemalloc counts the compiler's allocations as calibration memory."""
    if not isinstance(data, SampleData) or model_batch(graph.inputs) is not None:
        return data, {}
    device = memory_bytes if memory_bytes is not None else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    share, resident = int(CALIBRATION_MEMORY_SHARE * device), resident_bytes()
    budget = share - resident
    if budget <= 0:
        raise CalibrationError(
            f"--calib-batch auto: this process already holds {resident >> 20} MiB, the whole {share >> 20} MiB "
            f"calibration share ({CALIBRATION_MEMORY_SHARE:.0%}) of the profile's {int(device) >> 20} MiB; give --calib-batch N"
        )

    def probe(samples: int) -> int:
        return calibrate(graph, [data.read(0, samples)], calibrator, percentile).peak_memory

    with calibration_progress(None):
        probe(min(data.samples, AUTO_PROBE))
        batch, per_sample, predicted = auto_batch(probe, budget, data.samples)
    return data.with_batch(batch), {"budget": budget, "per_sample": per_sample, "predicted_peak": predicted}


def _lacking(cache: str | os.PathLike, found: CalibrationCache, graph: Graph) -> str | None:
    """The one-line refusal of a cache that lacks tensors of ``graph`` (a few named, then a count), or None."""
    missing = missing_tensors(graph, found)
    if not missing:
        return None
    listed = ", ".join(f"'{name}'" for name in missing[:_LISTED])
    more = f" and {len(missing) - _LISTED} more" if len(missing) > _LISTED else ""
    total = len(calibrated_tensors(graph))
    return f"calibration cache '{cache}' lacks {len(missing)} of the model's {total} calibrated tensors ({listed}{more}): it was made for another model or version"


def calibration_for(
    graph: Graph,
    data: CalibrationSource | None = None,
    cache: str | os.PathLike | None = None,
    calibrator: str | None = None,
    max_batches: int | None = None,
    batch: int | str | None = None,
    memory_bytes: float | None = None,
    preprocess: Preprocess | None = None,
    percentile: float = DEFAULT_PERCENTILE,
    recalibrate: bool = False,
) -> Calibration:
    """Scales for ``graph`` from a cache when it exists and fits, else by calibrating on ``data``.

    A cache fits when its algorithm is ``calibrator``'s (any algorithm when ``calibrator`` is
    None) and it names every tensor calibration scales (extra names are ignored). One of
    another algorithm is recalibrated when there is data (TensorRT does the same); one that
    lacks tensors was made for another model and is refused, listing them, unless
    ``recalibrate``. After calibrating, the cache is (re)written. ``batch`` is the calibration batch
    of a model whose batch dim is symbolic: a number, or "auto" for the largest that fits
    ``memory_bytes`` (the device profile's memory; None: this machine's).

    Raises:
        CalibrationError: a cache that does not fit (without ``recalibrate``), no usable cache
            and no data, or bad data (see load_calibration_data).
    """
    reason = "no calibration data or cache given"
    if cache is not None and Path(cache).is_file():
        found = read_cache(cache)
        lacking = _lacking(cache, found, graph)
        if calibrator is not None and found.calibrator != calibrator:
            reason = f"calibration cache '{cache}' was written by {found.algorithm}, not {CALIBRATORS[calibrator]}"
        elif lacking is None:
            return Calibration(found.calibrator or found.algorithm, found.scales, "cache")
        elif not recalibrate:
            raise CalibrationError(f"{lacking}; rebuild it with --recalibrate and calibration data (--calib-data)")
        else:
            reason = lacking
    elif cache is not None:
        reason = f"calibration cache '{cache}' does not exist"
    if data is None:
        raise CalibrationError(f"{reason}; give calibration data (--calib-data DIR) to calibrate")
    if batch is not None and batch != "auto" and (not isinstance(batch, int) or batch < 1):
        raise CalibrationError(f"calibration batch must be a positive number or 'auto', got {batch!r}")
    batches = load_calibration_data(data, graph.inputs, max_batches, None if batch == "auto" else batch, preprocess)
    sizing: dict[str, int] = {}
    if batch == "auto":
        batches, sizing = _auto_batch(graph, batches, memory_bytes, calibrator or "entropy2", percentile)
    result = calibrate(graph, batches, calibrator or "entropy2", percentile)
    result.sizing = sizing
    if cache is not None:
        write_cache(cache, CalibrationCache(CALIBRATORS[result.calibrator], result.scales))
    return result
