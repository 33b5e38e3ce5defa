"""``edgetrt trtexec``: trtexec's command line over edgetrt's build and bench: build (or load)
an engine and benchmark it in one step, printing trtexec's log lines and Performance summary
so scripts that read trtexec's output read this one."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import typer

import edge
from edge.cli.app import app, console
from edge.cli.bench import (
    AVG_RUNS,
    DUMP_PROFILE,
    DURATION,
    EXPORT_LAYER_INFO,
    EXPORT_PROFILE,
    EXPORT_TIMES,
    ITERATIONS,
    NO_DATA_TRANSFERS,
    PERCENTILE,
    USE_CUDA_GRAPH,
    USE_SPIN_WAIT,
    measure,
    no_effect_notes,
    parse_percentiles,
)
from edge.cli.core import builder_config, report_build
from edge.cli.options import BEST, DLA_CORE, FP16, GPU_FALLBACK, INT8, LAYER_PRECISIONS, SHAPES, parse_layer_precisions, parse_shapes
from edge.errors import EdgeError
from edge.runtime.bench import BenchConfig, BenchResult
from edge.runtime.exports import write_layer_info
from edge.version import __version__

__all__ = ["trtexec_command", "performance_summary"]

# trtexec's defaults, each on its own: --iterations=100 still runs at least 3 s.
_DEFAULT_WARMUP_MS = 200.0
_DEFAULT_ITERATIONS = 10
_DEFAULT_DURATION_S = 3.0
# What each line of the summary means (printed with --verbose), in edgetrt's words.
_EXPLANATIONS = (
    "Throughput: queries finished per second of Total Host Walltime.",
    "Latency: H2D Latency + GPU Compute Time + D2H Latency of one query (host time on backends that do not split it).",
    "Enqueue Time: host time to launch one query; a synchronous backend (the CPU) does the whole query in it.",
    "H2D Latency / D2H Latency: copies of one query's inputs to the device and of its outputs back.",
    "GPU Compute Time: the layers' own time for one query; on the CPU backend, the CPU's.",
    "Total Host Walltime: from the first timed query's start to the last one's end.",
    "Total GPU Compute Time: the sum of every query's GPU Compute Time; far below Total Host Walltime means the device waits on the host.",
)


_PRECISION_CONSTRAINTS = ("none", "prefer", "obey")
"""trtexec's --precisionConstraints values."""


@app.command("trtexec", context_settings={"allow_interspersed_args": True})
def trtexec_command(
    onnx: Path = typer.Option(None, "--onnx", help="ONNX model to build.", show_default=False),
    save_engine: Path = typer.Option(None, "--saveEngine", help="Write the built engine here."),
    load_engine: Path = typer.Option(None, "--loadEngine", help="Benchmark this engine file instead of building one."),
    fp16: bool = FP16,
    int8: bool = INT8,
    best: bool = BEST,
    dla: int = DLA_CORE,
    gpu_fallback: bool = GPU_FALLBACK,
    shapes: str = SHAPES,
    min_shapes: str = typer.Option(None, "--minShapes", help="Optimization profile min shapes: name:1x3x224x224,..."),
    opt_shapes: str = typer.Option(None, "--optShapes", help="Optimization profile opt shapes."),
    max_shapes: str = typer.Option(None, "--maxShapes", help="Optimization profile max shapes."),
    device_profile: str = typer.Option("cpu", "--deviceProfile", help="edgetrt device profile to build for, as build's --profile NAME takes it."),
    timing_cache: Path = typer.Option(None, "--timingCacheFile", help="JSON timing cache, read and updated by the build."),
    calib_cache: Path = typer.Option(None, "--calib", help="INT8 calibration cache (TensorRT's text format)."),
    layer_precisions: str = LAYER_PRECISIONS,
    precision_constraints: str = typer.Option(
        "none", "--precisionConstraints",
        help="none, prefer or obey: how --layerPrecisions binds. edgetrt always obeys the pins (TensorRT may override them under none and prefer); a pin that cannot be met is an error.",
    ),
    optimization_level: int = typer.Option(3, "--builderOptimizationLevel", min=0, max=5, help="0: each kernel's heuristic tactic; 1-5: time candidate tactics."),
    iterations: int = ITERATIONS,
    duration: float = DURATION,
    warmup_ms: float = typer.Option(_DEFAULT_WARMUP_MS, "--warmUp", min=0, help="Warm up each stream for this many ms."),
    avg_runs: int = AVG_RUNS,
    percentile: str = PERCENTILE,
    streams: int = typer.Option(1, "--infStreams", "--streams", min=1, help="Concurrent execution contexts, one thread each (--streams: TensorRT 8.6's name)."),
    no_data_transfers: bool = NO_DATA_TRANSFERS,
    use_spin_wait: bool = USE_SPIN_WAIT,
    use_cuda_graph: bool = USE_CUDA_GRAPH,
    export_times: Path = EXPORT_TIMES,
    export_profile: Path = EXPORT_PROFILE,
    export_layer_info: Path = EXPORT_LAYER_INFO,
    dump_profile: bool = DUMP_PROFILE,
    separate_profile_run: bool = typer.Option(False, "--separateProfileRun", help="Accepted: layer profiles always come from runs apart from the timed ones."),
    skip_inference: bool = typer.Option(False, "--skipInference", help="Build (and save) only."),
    verbose: bool = typer.Option(False, "--verbose", help="Print the build's details and what each summary line means."),
    independent_threads: bool = typer.Option(False, "--threads", help="Accepted: every stream always runs on its own thread."),
    cpu_threads: int = typer.Option(None, "--cpuThreads", min=1, help="CPU threads per layer (edgetrt's --threads of run and bench) (default: all cores)."),
) -> None:
    """Build and benchmark in one step, with trtexec's flags and output.

    Takes trtexec's --flag=value spelling and defaults (at least 10 iterations and at
    least 3 s, 200 ms of warm-up). Layer profiles (--exportProfile, --dumpProfile)
    come from separate runs after the timed ones. GPU-only flags (--useCudaGraph,
    --noDataTransfers, --useSpinWait) say "no effect on this backend" on the CPU.

    Examples:

        edgetrt trtexec --onnx=resnet50.onnx --saveEngine=resnet50.engine --fp16

        edgetrt trtexec --loadEngine=resnet50.engine --iterations=100 --percentile=50,99 --exportTimes=times.json

        edgetrt trtexec --onnx=bert.onnx --shapes=ids:1x128 --exportProfile=prof.json --exportLayerInfo=layers.json
    """
    if precision_constraints not in _PRECISION_CONSTRAINTS:
        raise EdgeError(f"--precisionConstraints={precision_constraints}: expected one of {', '.join(_PRECISION_CONSTRAINTS)}")
    if (onnx is None) == (load_engine is None):
        raise EdgeError("give one of --onnx=MODEL.onnx (build, then benchmark) or --loadEngine=FILE.engine")
    if cpu_threads is not None:
        edge.set_intra_op_threads(cpu_threads)
    build = None
    if onnx is not None:
        build = builder_config(
            fp16=fp16,
            int8=int8 or best,  # trtexec's --best: every precision allowed, none chosen by measured error
            best=False,
            profile=device_profile,
            dla=dla,
            gpu_fallback=gpu_fallback,
            shapes=shapes,
            min_shapes=[min_shapes] if min_shapes else [],
            opt_shapes=[opt_shapes] if opt_shapes else [],
            max_shapes=[max_shapes] if max_shapes else [],
            verbose=verbose,
            timing_cache=timing_cache,
            calib_cache=calib_cache,
            layer_precisions=parse_layer_precisions(layer_precisions),
            optimization_level=optimization_level,
        )
    bench = BenchConfig(
        warmup=0,
        warmup_ms=warmup_ms,
        iterations=_DEFAULT_ITERATIONS if iterations is None else iterations,
        duration_s=_DEFAULT_DURATION_S if duration is None else duration,
        streams=streams,
        shapes=parse_shapes(shapes) or None,
        profile_layers=export_profile is not None or dump_profile,
        profile_runs=_DEFAULT_ITERATIONS if iterations is None else iterations,
        percentiles=parse_percentiles(percentile),
        avg_runs=avg_runs,
        data_transfers=not no_data_transfers,
        spin_wait=use_spin_wait,
        cuda_graph=use_cuda_graph,
    )
    _log(f"&&&& RUNNING edgetrt.trtexec [edgetrt v{__version__}]", prefix=False)
    if layer_precisions and precision_constraints != "obey":
        _log(f"--precisionConstraints={precision_constraints}: edgetrt obeys --layerPrecisions all the same (TensorRT could choose otherwise)")
    try:
        engine = _engine(onnx, build, load_engine, save_engine, verbose)
        if export_layer_info is not None:
            write_layer_info(engine, export_layer_info)
        if skip_inference:
            _log("Skipped inference phase since --skipInference was added.")
        else:
            _log("Starting inference")
            result = measure(engine, bench, export_times, export_profile)
            _report(result, verbose, dump_profile)
            if result.interrupted and not bench.until_interrupted:
                raise typer.Exit(130)
    except EdgeError:
        _log("&&&& FAILED edgetrt.trtexec", prefix=False)
        raise
    _log("&&&& PASSED edgetrt.trtexec", prefix=False)


def _engine(onnx: Path | None, build: edge.BuilderConfig | None, load_engine: Path | None, save_engine: Path | None, verbose: bool) -> edge.Engine:
    """Load --loadEngine, or build --onnx (and save it to --saveEngine)."""
    started = time.perf_counter()
    if load_engine is not None:
        engine = edge.load(load_engine)
        _log(f"Engine loaded in {time.perf_counter() - started:.5g} sec.")
        return engine
    engine = edge.build(onnx, build)
    report_build(engine, save_engine, verbose)
    _log(f"Engine built in {time.perf_counter() - started:.5g} sec.")
    return engine


def _report(result: BenchResult, verbose: bool, dump_profile: bool) -> None:
    for note in no_effect_notes(result, trtexec_spelling=True):
        _log(note, level="W")
    if result.emulation is not None:
        _log(result.emulation, level="W")
    if result.interrupted:
        _log(f"Interrupted: the summary covers the {result.iterations} queries taken.", level="W")
    for line in performance_summary(result):
        _log(line)
    for warning in result.warnings():
        _log(f"* {warning}", level="W")
    for line in _EXPLANATIONS if verbose else ():
        _log(line, level="V")
    if dump_profile:
        _print_profile(result)


def performance_summary(result: BenchResult) -> list[str]:
    """trtexec's prolog, trace averages and "=== Performance summary ===" lines (no log prefix).

    Numbers print as trtexec prints them (six significant digits). A copy the backend does
    not have (the CPU's H2D and D2H) is 0 ms, as trtexec shows with --noDataTransfers; a
    part the backend has but does not measure says so.
    """
    lines = [
        f"Warmup completed {result.warmup_runs} queries over {result.warmup_ms:g} ms",
        f"Timing trace has {result.iterations} queries over {result.wall_s:g} s",
        "",
        "=== Trace details ===",
        f"Trace averages of {result.avg_runs} runs:",
    ]
    for row in result.averages():
        lines.append(
            f"Average on {result.avg_runs} runs - GPU latency: {row['compute_ms']:g} ms - Host latency: {row['latency_ms']:g} ms (enqueue {row['enqueue_ms']:g} ms)"
        )
    lines += ["", "=== Performance summary ===", f"Throughput: {result.throughput:g} qps"]
    for metric, label in (("latency", "Latency"), ("enqueue", "Enqueue Time"), ("h2d", "H2D Latency"), ("compute", "GPU Compute Time"), ("d2h", "D2H Latency")):
        lines.append(f"{label}: {_stats_text(result, metric)}")
    compute = result.total_compute_s
    lines.append(f"Total Host Walltime: {result.wall_s:g} s")
    lines.append(f"Total GPU Compute Time: {'not measured' if compute is None else f'{compute:g} s'}")
    return lines


def _stats_text(result: BenchResult, metric: str) -> str:
    stats = result.metric_stats(metric)
    if stats is None:
        if metric in ("h2d", "d2h") and not result.device:
            stats = dict.fromkeys(("min", "max", "mean", "median", *(f"p{p:g}" for p in result.percentiles)), 0.0)
        else:
            return f"not measured by the {result.backend} backend"
    text = f"min = {stats['min']:g} ms, max = {stats['max']:g} ms, mean = {stats['mean']:g} ms, median = {stats['median']:g} ms"
    return text + "".join(f", percentile({p:g}%) = {stats[f'p{p:g}']:g} ms" for p in result.percentiles)


def _print_profile(result: BenchResult) -> None:
    """trtexec's --dumpProfile table: time, average, median and share per layer."""
    width = max(len("Layer"), *(len(row["name"]) + 1 for row in result.layers))
    _log(f"=== Profile ({result.profile_runs} iterations ) ===")
    _log(f"{'Layer':>{width}}   Time (ms)   Avg. Time (ms)   Median Time (ms)   Time %")
    for row in result.layers:
        _log(f"{row['name']:>{width}}{row['total_ms']:12.2f}{row['ms_per_run']:17.4f}{row['median_ms']:19.4f}{row['percent']:9.1f}")
    total = sum(row["total_ms"] for row in result.layers)
    _log(f"{'Total':>{width}}{total:12.2f}{total / result.profile_runs:17.4f}{'':19}{100.0:9.1f}")


def _log(message: str, level: str = "I", prefix: bool = True) -> None:
    """One trtexec-style log line: ``[MM/DD/YYYY-HH:MM:SS] [I] message``."""
    stamp = f"[{datetime.now():%m/%d/%Y-%H:%M:%S}] [{level}] " if prefix else ""
    console.print(stamp + message, markup=False, highlight=False, soft_wrap=True)
