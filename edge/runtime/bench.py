"""Benchmarking an engine as trtexec does: warm-up, timed iterations over N concurrent streams
(one execution context per thread), and trtexec's Performance summary.

Every run's split (enqueue, H2D, compute, D2H, host wall time) is what the runtime measured
(``ExecutionContext.last_times``), so a backend that times its copies and kernels with device
events reports them here unchanged; a part the backend cannot measure is reported as such,
never invented. Per-layer times come from separate profiling runs after the timed ones (as
trtexec's separate profile run), so hooks never skew latency. Ctrl-C (or ``duration_s < 0``
ended by Ctrl-C) stops the streams and returns the samples taken so far.
"""

from __future__ import annotations

import inspect
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.errors import EdgeError
from edge.inspect import emulation_note
from edge.plan import HOST
from edge.runtime.inputs import random_inputs
from edge.runtime.interpreter import Step
from edge.runtime.timing import RunTimes

if TYPE_CHECKING:
    from edge.engine import Engine, TensorSpec
    from edge.runtime.context import ExecutionContext

__all__ = [
    "BenchConfig",
    "BenchResult",
    "LayerProfiler",
    "METRICS",
    "PERCENTILES",
    "benchmark",
    "bench_inputs",
    "coefficient_of_variance",
    "latency_stats",
    "uses_device",
]

_DEFAULT_ITERATIONS = 10
_DEFAULT_DURATION_S = 3.0
PERCENTILES = (90.0, 95.0, 99.0)
# trtexec's thresholds: compute time unstable above 1 % CV; enqueue-bound when the median
# enqueue time exceeds 80 % of the median compute time; copy-bound when a copy's median
# reaches the compute median.
_UNSTABLE_CV_PERCENT = 1.0
_ENQUEUE_BOUND_RATIO = 0.8
# The per-run parts in trtexec's order, keyed as RunTimes names them.
METRICS = ("latency", "enqueue", "h2d", "compute", "d2h", "host")
# BenchConfig fields that reach the run as keyword arguments of ExecutionContext.run (when the
# context offers that keyword and the engine has device segments), with their default value.
_RUN_OPTIONS = {"data_transfers": ("transfers", True), "spin_wait": ("spin_wait", False), "cuda_graph": ("cuda_graph", False)}


@dataclass
class BenchConfig:
    """What to measure (trtexec's flags, Pythonic names).

    Attributes:
        warmup: untimed runs per stream before timing, at least (the first run with new
            dynamic shapes also plans the arena, so keep at least one).
        warmup_ms: and keep warming up each stream at least this long (trtexec's --warmUp).
        iterations: timed runs per stream (at least this many).
        duration_s: keep running each stream at least this long; negative: until Ctrl-C.
            With neither given: at least 10 iterations and 3 seconds, like trtexec.
        streams: concurrent execution contexts, one thread each.
        shapes: input shapes for dynamic inputs, e.g. {"ids": (1, 128)}.
        batch: leading dim of inputs whose leading dim is dynamic (when ``shapes`` omits them).
        optimization_profile: pin every context to this profile (default: first that fits).
        seed: random inputs are seeded with ``seed + stream``.
        profile_layers: also time every layer over ``profile_runs`` separate runs.
        profile_runs: runs of the layer profile.
        percentiles: latency percentiles to report (trtexec's --percentile).
        avg_runs: runs per averaged trace row (trtexec's --avgRuns).
        data_transfers: copy inputs to and outputs from the device on every run (False:
            trtexec's --noDataTransfers); only for backends whose context offers it.
        spin_wait: busy-wait on the device instead of blocking (--useSpinWait), likewise.
        cuda_graph: replay runs as a captured CUDA graph (--useCudaGraph), likewise.
    """

    warmup: int = 2
    warmup_ms: float = 0.0
    iterations: int | None = None
    duration_s: float | None = None
    streams: int = 1
    shapes: Mapping[str, tuple[int, ...]] | None = None
    batch: int | None = None
    optimization_profile: int | None = None
    seed: int = 0
    profile_layers: bool = False
    profile_runs: int = 10
    percentiles: tuple[float, ...] = PERCENTILES
    avg_runs: int = 10
    data_transfers: bool = True
    spin_wait: bool = False
    cuda_graph: bool = False

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise EdgeError(f"warmup must be >= 0 runs, got {self.warmup}")
        if self.warmup_ms < 0:
            raise EdgeError(f"warm-up time must be >= 0 ms, got {self.warmup_ms}")
        if self.iterations is not None and self.iterations < 1:
            raise EdgeError(f"iterations must be >= 1, got {self.iterations}")
        if self.streams < 1:
            raise EdgeError(f"streams must be >= 1, got {self.streams}")
        if self.profile_runs < 1:
            raise EdgeError(f"profile runs must be >= 1, got {self.profile_runs}")
        if self.avg_runs < 1:
            raise EdgeError(f"avgRuns must be >= 1, got {self.avg_runs}")
        bad = [p for p in self.percentiles if not 0 <= p <= 100]
        if bad or not self.percentiles:
            raise EdgeError(f"percentiles must be in [0, 100], got {list(self.percentiles)}")

    @property
    def until_interrupted(self) -> bool:
        """A negative duration: run until Ctrl-C (trtexec's --duration=-1)."""
        return self.duration_s is not None and self.duration_s < 0

    def stop_rule(self) -> tuple[int | None, float]:
        """(iterations, seconds) each stream runs at least: trtexec's 10 and 3 s when neither
        is given; no iteration count and an endless duration until Ctrl-C."""
        if self.until_interrupted:
            return None, float("inf")
        if self.iterations is None and self.duration_s is None:
            return _DEFAULT_ITERATIONS, _DEFAULT_DURATION_S
        return self.iterations, self.duration_s or 0.0


def latency_stats(latencies_ms: np.ndarray, percentiles: tuple[float, ...] = PERCENTILES) -> dict[str, float]:
    """min / max / mean / median / pN of a sample in ms, in trtexec's order.

    A percentile is trtexec's (nearest rank): the smallest sample with at least N % of the
    samples at or below it, so p99 of 100 runs is a measured run, not a blend of two. The
    rank is computed exactly (99.9 % of 1000 runs is rank 999, not 1000 by rounding).
    """
    sample = np.asarray(latencies_ms, dtype=np.float64)
    ordered = np.sort(sample)
    stats = {"min": float(ordered[0]), "max": float(ordered[-1]), "mean": float(sample.mean()), "median": float(np.median(sample))}
    for p in percentiles:
        rank = math.ceil(Fraction(str(p)) * len(ordered) / 100)
        stats[_percentile_key(p)] = float(ordered[max(rank - 1, 0)])
    return stats


def _percentile_key(percentile: float) -> str:
    return f"p{percentile:g}"


def coefficient_of_variance(sample: np.ndarray) -> float:
    """Standard deviation over mean, in percent (trtexec's stability measure)."""
    mean = float(np.mean(sample))
    return float(np.std(sample) / mean * 100.0) if mean > 0 else float("inf")


@dataclass
class BenchResult:
    """Measurements of one benchmark.

    Attributes:
        times_ms: per metric of :data:`METRICS`, one value per timed iteration (all streams,
            ordered by start time); NaN throughout for a part the backend did not measure.
        start_times_s: each iteration's start, seconds since timing began.
        stream_ids: the stream each iteration ran on.
        wall_s: from the start of timing to the end of the last iteration.
        warmup_runs / warmup_ms: warm-up done, over all streams.
        device: whether the engine has segments in device memory (a GPU's).
        interrupted: stopped by Ctrl-C; the samples are those taken until then.
        no_effect: BenchConfig fields set to a non-default value the backend ignores.
        layers: per-layer profile rows (empty unless requested).
        emulation: which layers this machine only emulates (so the times are not the
            target's), or None when it runs the engine as built.
    """

    engine: str
    backend: str
    streams: int
    shapes: dict[str, tuple[int, ...]]
    times_ms: dict[str, np.ndarray]
    start_times_s: np.ndarray
    stream_ids: np.ndarray
    wall_s: float
    warmup_runs: int = 0
    warmup_ms: float = 0.0
    device: bool = False
    percentiles: tuple[float, ...] = PERCENTILES
    avg_runs: int = 10
    interrupted: bool = False
    no_effect: list[str] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)
    profile_runs: int = 0
    emulation: str | None = None

    @property
    def latencies_ms(self) -> np.ndarray:
        """trtexec's Latency per iteration: H2D + compute + D2H, or host time where unsplit."""
        return self.times_ms["latency"]

    @property
    def iterations(self) -> int:
        return len(self.start_times_s)

    @property
    def throughput(self) -> float:
        """Queries per second over all streams (iterations / total host walltime)."""
        return self.iterations / self.wall_s if self.wall_s > 0 else float("inf")

    def measured(self, metric: str) -> bool:
        return bool(np.isfinite(self.times_ms[metric]).any())

    def metric_stats(self, metric: str) -> dict[str, float] | None:
        """:func:`latency_stats` of one metric, None where the backend does not measure it."""
        return latency_stats(self.times_ms[metric], self.percentiles) if self.measured(metric) else None

    @property
    def stats(self) -> dict[str, float]:
        """Latency statistics (see :meth:`metric_stats`)."""
        return latency_stats(self.latencies_ms, self.percentiles)

    @property
    def total_compute_s(self) -> float | None:
        """trtexec's Total GPU Compute Time: the sum of every iteration's compute time."""
        return float(np.sum(self.times_ms["compute"])) / 1000.0 if self.measured("compute") else None

    @property
    def compute_cv_percent(self) -> float | None:
        return coefficient_of_variance(self.times_ms["compute"]) if self.measured("compute") else None

    def averages(self) -> list[dict[str, float]]:
        """Means of every ``avg_runs`` consecutive iterations (trtexec's trace details);
        a last, incomplete group is left out, as trtexec does."""
        rows = []
        for first in range(0, self.iterations - self.avg_runs + 1, self.avg_runs):
            block = slice(first, first + self.avg_runs)
            rows.append({f"{m}_ms": float(np.mean(self.times_ms[m][block])) for m in ("compute", "latency", "enqueue")})
        return rows

    def warnings(self) -> list[str]:
        """What trtexec would warn about, in our words: unstable compute time, throughput
        bound by enqueueing or by copies."""
        notes = []
        compute = self.metric_stats("compute")
        if compute is None:
            return notes
        cv = self.compute_cv_percent
        if cv is not None and cv > _UNSTABLE_CV_PERCENT:
            what = "GPU compute time" if self.device else "Compute time"
            hint = "lock the GPU clocks or try --use-spin-wait" if self.device else "pin the CPU clocks and threads (--threads) and keep the machine quiet"
            notes.append(
                f"{what} is unstable: its coefficient of variance is {cv:.2f} %, above {_UNSTABLE_CV_PERCENT:g} %; {hint} for steadier numbers."
            )
        enqueue = self.metric_stats("enqueue")
        if self.device and enqueue is not None and enqueue["median"] > _ENQUEUE_BOUND_RATIO * compute["median"]:
            notes.append(
                f"Launching a run takes {enqueue['median']:.4g} ms (median), close to its compute time of {compute['median']:.4g} ms: "
                "the host may be what limits throughput, not the GPU; --use-cuda-graph may help."
            )
        for metric, direction in (("h2d", "host-to-device copies of the inputs"), ("d2h", "device-to-host copies of the outputs")):
            copy = self.metric_stats(metric)
            if copy is not None and copy["median"] >= compute["median"]:
                notes.append(
                    f"The {direction} take {copy['median']:.4g} ms (median), no less than compute ({compute['median']:.4g} ms): "
                    "throughput may be bound by them; --no-data-transfers measures without them."
                )
        return notes

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (what ``edgetrt bench --json`` prints)."""
        return {
            "engine": self.engine,
            "backend": self.backend,
            "streams": self.streams,
            "warmup": {"runs": self.warmup_runs, "ms": self.warmup_ms},
            "iterations": self.iterations,
            "interrupted": self.interrupted,
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "throughput_qps": self.throughput,
            "total_host_walltime_s": self.wall_s,
            "total_compute_s": self.total_compute_s,
            "compute_cv_percent": self.compute_cv_percent,
            **{f"{metric}_ms": self.metric_stats(metric) for metric in METRICS},
            "averages": {"runs": self.avg_runs, "rows": self.averages()},
            "warnings": self.warnings(),
            "no_effect": list(self.no_effect),
            "emulation": self.emulation,
            "layers": self.layers,
        }


class LayerProfiler:
    """Every layer's time over the runs an execution context makes while it is the context's
    ``layer_profiler``: device events per step on a GPU schedule (kernels stay queued, no
    host sync between them), the host clock per step otherwise; per-run totals add up to the
    run's compute."""

    def __init__(self) -> None:
        self.times: dict[int, list[float]] = {}
        self.steps: dict[int, Step] = {}

    def add(self, steps: Sequence[Step], step_times: Mapping[int, float]) -> None:
        """Record one run's milliseconds per step index."""
        for index, ms in step_times.items():
            self.steps.setdefault(index, steps[index])
            self.times.setdefault(index, []).append(ms)

    def rows(self, runs: int) -> list[dict[str, Any]]:
        """One row per layer in execution order: name, op, origin, device, times, percent."""
        total = sum(sum(t) for t in self.times.values()) or 1.0
        rows = []
        for index in sorted(self.times):
            step, times = self.steps[index], self.times[index]
            node = step.node
            rows.append(
                {
                    "name": node.name,
                    "op": node.op_type if not node.domain else f"{node.domain}::{node.op_type}",
                    "origin": node.origin,
                    "device": step.plan.device,
                    "backend": step.plan.backend,
                    "kernel": step.plan.kernel,
                    "tactic": None if step.plan.tactic is None else step.plan.tactic.name,
                    "precision": step.plan.precision,
                    "total_ms": float(sum(times)),
                    "ms_per_run": float(sum(times)) / runs,
                    "median_ms": float(np.median(times)),
                    "percent": 100.0 * sum(times) / total,
                }
            )
        return rows


def bench_inputs(
    engine: Engine,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    batch: int | None = None,
    seed: int = 0,
    optimization_profile: int | None = None,
) -> dict[str, np.ndarray]:
    """Seeded random inputs; dynamic dims from ``shapes``, else the profile's opt shape, else 1.

    ``batch`` replaces a dynamic leading dim not fixed by ``shapes``.
    """
    from edge.engine import TensorSpec
    from edge.runtime.profiles import profiles_from_record

    shapes = dict(shapes or {})
    unknown = [n for n in shapes if n not in {s.name for s in engine.inputs}]
    if unknown:
        raise EdgeError(f"--shapes names '{unknown[0]}', not an input of the engine ({[s.name for s in engine.inputs]})")
    profiles = profiles_from_record(engine.build.get("optimization_profiles"))
    opt = profiles[optimization_profile or 0].shapes("opt") if profiles else {}
    concrete = []
    for spec in engine.inputs:
        if spec.name in shapes:
            shape = tuple(shapes[spec.name])
        else:
            shape = tuple(opt.get(spec.name, [d if isinstance(d, int) else 1 for d in spec.shape]))
            if batch is not None and spec.shape and not isinstance(spec.shape[0], int):
                shape = (batch, *shape[1:])
        concrete.append(TensorSpec(spec.name, spec.dtype, shape))
    _refuse_oversized(concrete)
    return random_inputs(concrete, seed)


def _refuse_oversized(specs: Sequence[TensorSpec]) -> None:
    """Refuse a random input larger than RAM before drawing it (numpy draws in float64)."""
    from edge.frontend.budget import format_bytes, physical_memory

    ram = physical_memory()
    for spec in specs:
        nbytes = math.prod(spec.shape) * max(np.dtype(spec.dtype).itemsize, 8)
        if nbytes > ram:
            dims = "x".join(map(str, spec.shape))
            raise EdgeError(
                f"random input '{spec.name}' of shape {dims} would need {format_bytes(nbytes)}, more than this machine's "
                f"{format_bytes(ram)} of RAM; give smaller --shapes"
            )


def uses_device(engine: Engine) -> bool:
    """Whether the engine has segments in device memory (where copies and device timing exist)."""
    return engine.plan is not None and any(segment.space != HOST for segment in engine.plan.segments)


def _backend_label(engine: Engine) -> str:
    if engine.plan is None:
        return "cpu"
    return "+".join(dict.fromkeys(s.backend + (" (emulated)" if s.emulated else "") for s in engine.plan.segments)) or "cpu"


def _run_options(engine: Engine, context: ExecutionContext, config: BenchConfig) -> tuple[dict[str, Any], list[str]]:
    """Keyword arguments for ``context.run`` from the config, and the options asked for that
    this engine's backend cannot honour (no device segments, or a context without the keyword)."""
    offered = inspect.signature(context.run).parameters
    kwargs, ignored = {}, []
    for name, (keyword, default) in _RUN_OPTIONS.items():
        value = getattr(config, name)
        if value == default:
            continue
        if uses_device(engine) and keyword in offered:
            kwargs[keyword] = value
        else:
            ignored.append(name)
    return kwargs, ignored


def benchmark(
    engine: Engine,
    config: BenchConfig | None = None,
    on_iteration: Callable[[int, int, float], None] | None = None,
) -> BenchResult:
    """Time ``engine`` as configured; see :class:`BenchConfig`.

    Args:
        engine: a built or loaded engine.
        config: what to measure.
        on_iteration: called as ``fn(stream, iteration, latency_ms)`` after each timed run
            (from the stream's thread), e.g. for progress output.

    Raises:
        InputError: shapes outside the engine's optimization profiles.
        KeyboardInterrupt: Ctrl-C before the first timed run ended (after it, the result
            holds the runs taken, with ``interrupted`` set).
    """
    config = config or BenchConfig()
    iterations, duration = config.stop_rule()
    feeds = [
        bench_inputs(engine, config.shapes, config.batch, config.seed + s, config.optimization_profile)
        for s in range(config.streams)
    ]
    contexts = [engine.create_context() for _ in range(config.streams)]
    kwargs, ignored = _run_options(engine, contexts[0], config)
    for context in contexts:
        context.set_optimization_profile(config.optimization_profile)
    warm_start = time.perf_counter()
    warmup_runs = sum(_warm_up(context, feed, kwargs, config) for context, feed in zip(contexts, feeds))
    warmup_ms = (time.perf_counter() - warm_start) * 1000.0

    records: list[list[tuple[float, RunTimes, float]]] = [[] for _ in range(config.streams)]  # (start, times, end)
    errors: list[BaseException] = []
    stop = threading.Event()
    clock = {"start": 0.0}

    def begin() -> None:
        clock["start"] = time.perf_counter()

    barrier = threading.Barrier(config.streams, action=begin)

    def stream(index: int) -> None:
        context, feed, out = contexts[index], feeds[index], records[index]
        try:
            barrier.wait()
            start = clock["start"]
            while not stop.is_set():
                t0 = time.perf_counter()
                context.run(feed, **kwargs)
                done = time.perf_counter() - start
                out.append((t0 - start, context.last_times, done))
                if on_iteration is not None:
                    on_iteration(index, len(out) - 1, context.last_times.latency_ms)
                if (iterations is None or len(out) >= iterations) and done >= duration:
                    return
        except threading.BrokenBarrierError:
            return  # another stream failed, or Ctrl-C came, before timing began
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
            stop.set()
            barrier.abort()

    threads = [threading.Thread(target=stream, args=(i,), name=f"edgetrt-bench-{i}") for i in range(config.streams)]
    interrupted = _run_streams(threads, stop, barrier)
    if errors:
        raise errors[0]
    if not any(records):
        raise KeyboardInterrupt
    result = _result(engine, config, feeds[0], records, interrupted)
    result.warmup_runs, result.warmup_ms, result.no_effect = warmup_runs, warmup_ms, ignored
    if config.profile_layers:
        result.layers = _profile_layers(contexts[0], feeds[0], config.profile_runs, kwargs)
        result.profile_runs = config.profile_runs
    return result


def _warm_up(context: ExecutionContext, feed: Mapping[str, np.ndarray], kwargs: dict[str, Any], config: BenchConfig) -> int:
    """Run untimed until both ``warmup`` runs and ``warmup_ms`` are done; returns the runs."""
    runs, start = 0, time.perf_counter()
    while runs < config.warmup or (time.perf_counter() - start) * 1000.0 < config.warmup_ms:
        context.run(feed, **kwargs)
        runs += 1
    return runs


def _run_streams(threads: list[threading.Thread], stop: threading.Event, barrier: threading.Barrier) -> bool:
    """Start the streams and wait for them; on Ctrl-C tell them to stop after their current
    run (or not to begin, if some had not started) and wait for that. Returns whether it was
    interrupted."""
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return False
    except KeyboardInterrupt:
        stop.set()
        barrier.abort()
        for thread in threads:
            if thread.ident is not None:
                thread.join()
        return True


def _result(
    engine: Engine, config: BenchConfig, feed: Mapping[str, np.ndarray], records: list[list[tuple[float, RunTimes, float]]], interrupted: bool
) -> BenchResult:
    rows = sorted(((start, s, times) for s, out in enumerate(records) for start, times, _ in out), key=lambda r: (r[0], r[1]))
    times_ms = {metric: np.array([_ms(getattr(t, f"{metric}_ms")) for _, _, t in rows]) for metric in METRICS}
    starts = np.array([r[0] for r in rows])
    return BenchResult(
        engine=engine.name,
        backend=_backend_label(engine),
        streams=config.streams,
        shapes={k: tuple(v.shape) for k, v in feed.items()},
        times_ms=times_ms,
        start_times_s=starts,
        stream_ids=np.array([r[1] for r in rows], dtype=np.int64),
        wall_s=max(end for out in records for _, _, end in out),
        device=uses_device(engine),
        percentiles=tuple(config.percentiles),
        avg_runs=config.avg_runs,
        interrupted=interrupted,
        emulation=emulation_note(engine),
    )


def _ms(value: float | None) -> float:
    return np.nan if value is None else float(value)


def _profile_layers(context, feeds: Mapping[str, np.ndarray], runs: int, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    profiler = LayerProfiler()
    context.layer_profiler = profiler
    try:
        for _ in range(runs):
            context.run(feeds, **kwargs)
    finally:
        context.layer_profiler = None
    return profiler.rows(runs)
