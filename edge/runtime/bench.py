"""Benchmarking an engine in trtexec's spirit: warm-up, timed iterations over N concurrent
streams (one execution context per thread), latency percentiles, throughput, per-iteration
and per-layer exports.

Latency is end to end on the host: input checks, the run and the output copies. The CPU
backend has no host<->device transfers, so its compute time is its latency and the
transfer split is reported as not applicable. Per-layer times come from separate profiling
runs after the timed ones (as trtexec's separate profile run), so hooks never skew latency.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.errors import EdgeError
from edge.fileio import write_atomic
from edge.runtime.inputs import random_inputs
from edge.runtime.interpreter import Step

if TYPE_CHECKING:
    from edge.engine import Engine

__all__ = [
    "BenchConfig",
    "BenchResult",
    "LayerProfiler",
    "benchmark",
    "bench_inputs",
    "latency_stats",
    "write_times",
    "write_profile",
]

_DEFAULT_ITERATIONS = 10
_DEFAULT_DURATION_S = 3.0
PERCENTILES = (90, 95, 99)


@dataclass
class BenchConfig:
    """What to measure (trtexec's flags, Pythonic names).

    Attributes:
        warmup: untimed runs per stream before timing (the first run with new dynamic
            shapes also plans the arena, so keep at least one).
        iterations: timed runs per stream (at least this many).
        duration_s: keep running each stream at least this long. With neither given:
            at least 10 iterations and 3 seconds, like trtexec.
        streams: concurrent execution contexts, one thread each.
        shapes: input shapes for dynamic inputs, e.g. {"ids": (1, 128)}.
        batch: leading dim of inputs whose leading dim is dynamic (when ``shapes`` omits them).
        optimization_profile: pin every context to this profile (default: first that fits).
        seed: random inputs are seeded with ``seed + stream``.
        profile_layers: also time every layer over ``profile_runs`` separate runs.
        profile_runs: runs of the layer profile.
    """

    warmup: int = 2
    iterations: int | None = None
    duration_s: float | None = None
    streams: int = 1
    shapes: Mapping[str, tuple[int, ...]] | None = None
    batch: int | None = None
    optimization_profile: int | None = None
    seed: int = 0
    profile_layers: bool = False
    profile_runs: int = 10

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise EdgeError(f"warmup must be >= 0, got {self.warmup}")
        if self.iterations is not None and self.iterations < 1:
            raise EdgeError(f"iterations must be >= 1, got {self.iterations}")
        if self.duration_s is not None and self.duration_s < 0:
            raise EdgeError(f"duration must be >= 0 seconds, got {self.duration_s}")
        if self.streams < 1:
            raise EdgeError(f"streams must be >= 1, got {self.streams}")
        if self.profile_runs < 1:
            raise EdgeError(f"profile runs must be >= 1, got {self.profile_runs}")


def latency_stats(latencies_ms: np.ndarray) -> dict[str, float]:
    """min / mean / median / p90 / p95 / p99 / max of a latency sample, in ms."""
    sample = np.asarray(latencies_ms, dtype=np.float64)
    stats = {"min": float(sample.min()), "mean": float(sample.mean()), "median": float(np.median(sample))}
    stats.update({f"p{p}": float(np.percentile(sample, p)) for p in PERCENTILES})
    stats["max"] = float(sample.max())
    return stats


@dataclass
class BenchResult:
    """Measurements of one benchmark.

    Attributes:
        latencies_ms: per timed iteration (all streams), ordered by start time.
        start_times_s: each iteration's start, seconds since timing began.
        stream_ids: the stream each iteration ran on.
        wall_s: from the start of timing to the end of the last iteration.
        throughput: inferences per second over all streams.
        stats: :func:`latency_stats` of ``latencies_ms``.
        layers: per-layer profile rows (empty unless requested).
    """

    engine: str
    backend: str
    streams: int
    warmup: int
    shapes: dict[str, tuple[int, ...]]
    latencies_ms: np.ndarray
    start_times_s: np.ndarray
    stream_ids: np.ndarray
    wall_s: float
    layers: list[dict[str, Any]] = field(default_factory=list)
    profile_runs: int = 0

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.wall_s if self.wall_s > 0 else float("inf")

    @property
    def stats(self) -> dict[str, float]:
        return latency_stats(self.latencies_ms)

    @property
    def transfer(self) -> dict[str, Any]:
        """Host<->device copy times; the CPU backend has none."""
        return {"applicable": False, "h2d_ms": 0.0, "d2h_ms": 0.0, "note": f"{self.backend} backend: no host<->device copies"}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (what ``edgetrt bench --json`` prints)."""
        return {
            "engine": self.engine,
            "backend": self.backend,
            "streams": self.streams,
            "warmup": self.warmup,
            "iterations": len(self.latencies_ms),
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "wall_s": self.wall_s,
            "throughput": self.throughput,
            "latency_ms": self.stats,
            "compute_ms": self.stats,
            "transfer": self.transfer,
            "layers": self.layers,
        }


class LayerProfiler:
    """A step hook (``ExecutionContext.profiler``) that times every layer of every run.

    A layer's time runs from the end of the previous layer (or :meth:`start`) to the end of
    its own step, so the per-run totals add up to the run.
    """

    def __init__(self) -> None:
        self.times: dict[int, list[float]] = {}
        self.steps: dict[int, Step] = {}
        self.order: list[int] = []
        self._last = 0.0

    def start(self) -> None:
        """Mark the start of a run."""
        self._last = time.perf_counter()

    def __call__(self, step: Step, outputs: list[np.ndarray]) -> None:
        now = time.perf_counter()
        key = id(step)
        if key not in self.times:
            self.times[key], self.steps[key] = [], step
            self.order.append(key)
        self.times[key].append((now - self._last) * 1000.0)
        self._last = now

    def rows(self, runs: int) -> list[dict[str, Any]]:
        """One row per layer in execution order: name, op, origin, device, times, percent."""
        total = sum(sum(t) for t in self.times.values()) or 1.0
        rows = []
        for key in self.order:
            step, times = self.steps[key], self.times[key]
            node = step.node
            rows.append(
                {
                    "name": node.name,
                    "op": node.op_type if not node.domain else f"{node.domain}::{node.op_type}",
                    "origin": node.origin,
                    "device": step.plan.device,
                    "backend": step.plan.backend,
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
    return random_inputs(concrete, seed)


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
    """
    config = config or BenchConfig()
    iterations, duration = config.iterations, config.duration_s
    if iterations is None and duration is None:
        iterations, duration = _DEFAULT_ITERATIONS, _DEFAULT_DURATION_S
    feeds = [
        bench_inputs(engine, config.shapes, config.batch, config.seed + s, config.optimization_profile)
        for s in range(config.streams)
    ]
    contexts = [engine.create_context() for _ in range(config.streams)]
    for context in contexts:
        context.set_optimization_profile(config.optimization_profile)
    for context, feed in zip(contexts, feeds):
        for _ in range(config.warmup):
            context.run(feed)

    records: list[list[tuple[float, float]]] = [[] for _ in range(config.streams)]
    errors: list[BaseException] = []
    clock = {"start": 0.0}

    def begin() -> None:
        clock["start"] = time.perf_counter()

    barrier = threading.Barrier(config.streams, action=begin)

    def stream(index: int) -> None:
        context, feed, out = contexts[index], feeds[index], records[index]
        try:
            barrier.wait()
            start = clock["start"]
            while True:
                t0 = time.perf_counter()
                context.run(feed)
                t1 = time.perf_counter()
                out.append((t0 - start, (t1 - t0) * 1000.0))
                if on_iteration is not None:
                    on_iteration(index, len(out) - 1, out[-1][1])
                if (iterations is None or len(out) >= iterations) and (duration is None or t1 - start >= duration):
                    return
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=stream, args=(i,), name=f"edgetrt-bench-{i}") for i in range(config.streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]

    rows = sorted((start, latency, s) for s, out in enumerate(records) for start, latency in out)
    starts = np.array([r[0] for r in rows])
    latencies = np.array([r[1] for r in rows])
    wall = float(max(start + latency / 1000.0 for start, latency, _ in rows))
    result = BenchResult(
        engine=engine.name,
        backend="cpu",
        streams=config.streams,
        warmup=config.warmup,
        shapes={k: tuple(v.shape) for k, v in feeds[0].items()},
        latencies_ms=latencies,
        start_times_s=starts,
        stream_ids=np.array([r[2] for r in rows], dtype=np.int64),
        wall_s=wall,
    )
    if config.profile_layers:
        result.layers = _profile_layers(contexts[0], feeds[0], config.profile_runs)
        result.profile_runs = config.profile_runs
    return result


def _profile_layers(context, feeds: Mapping[str, np.ndarray], runs: int) -> list[dict[str, Any]]:
    profiler = LayerProfiler()
    context.profiler = profiler
    try:
        for _ in range(runs):
            profiler.start()
            context.run(feeds)
    finally:
        context.profiler = None
    return profiler.rows(runs)


def write_times(result: BenchResult, path: str | os.PathLike) -> None:
    """Per-iteration timings as a JSON list (trtexec ``--exportTimes`` in spirit)."""
    rows = [
        {
            "iteration": index,
            "stream": int(stream),
            "startMs": float(start * 1000.0),
            "endMs": float(start * 1000.0 + latency),
            "latencyMs": float(latency),
            "h2dMs": 0.0,
            "computeMs": float(latency),
            "d2hMs": 0.0,
        }
        for index, (start, latency, stream) in enumerate(zip(result.start_times_s, result.latencies_ms, result.stream_ids))
    ]
    _write_json(path, rows)


def write_profile(result: BenchResult, path: str | os.PathLike) -> None:
    """Per-layer times as JSON (trtexec ``--exportProfile`` in spirit)."""
    if not result.layers:
        raise EdgeError("no layer profile was recorded: benchmark with profile_layers=True (--export-profile)")
    total = sum(row["ms_per_run"] for row in result.layers)
    _write_json(path, {"engine": result.engine, "runs": result.profile_runs, "total_ms_per_run": total, "layers": result.layers})


def _write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write JSON atomically: a temp file in the target folder, then rename."""
    write_atomic(path, json.dumps(payload, indent=1))
