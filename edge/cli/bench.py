"""``edgetrt bench``: throughput and latency of an engine, trtexec style (a shell over
edge.runtime.bench). The options and the measuring step here are shared with ``edgetrt trtexec``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

import edge
from edge.cli.app import app, console
from edge.cli.options import ALLOW_MISMATCH, THREADS, load_engine, parse_shapes
from edge.cli.text import terminal_text
from edge.errors import EdgeError
from edge.runtime.bench import PERCENTILES, BenchConfig, BenchResult, benchmark
from edge.runtime.exports import write_layer_info, write_profile, write_times

__all__ = ["bench_command", "measure", "no_effect_notes", "parse_percentiles"]

# Options shared with `edgetrt trtexec` (trtexec's spelling next to edgetrt's where they differ).
ITERATIONS = typer.Option(None, "--iterations", min=1, help="Timed runs per stream (at least) (default: 10, with the 3 s duration).")
DURATION = typer.Option(None, "--duration", help="Time each stream at least this many seconds; -1: until Ctrl-C (default: 3, with 10 iterations).")
STREAMS = typer.Option(1, "--streams", min=1, help="Concurrent execution contexts, one thread each.")
AVG_RUNS = typer.Option(10, "--avgRuns", "--avg-runs", min=1, help="Runs per averaged row of the trace details.")
PERCENTILE = typer.Option(None, "--percentile", help="Latency percentiles to report, comma-separated (default: 90,95,99).")
NO_DATA_TRANSFERS = typer.Option(False, "--no-data-transfers", "--noDataTransfers", help="Do not copy inputs and outputs to and from the device (GPU backends).")
USE_SPIN_WAIT = typer.Option(False, "--use-spin-wait", "--useSpinWait", help="Busy-wait for the device instead of blocking (GPU backends).")
USE_CUDA_GRAPH = typer.Option(False, "--use-cuda-graph", "--useCudaGraph", help="Replay runs as a captured CUDA graph (GPU backends).")
EXPORT_TIMES = typer.Option(None, "--export-times", "--exportTimes", help="Write per-query timings (JSON, trtexec's layout).")
EXPORT_PROFILE = typer.Option(None, "--export-profile", "--exportProfile", help="Write per-layer times of separate profile runs (JSON, trtexec's layout).")
EXPORT_LAYER_INFO = typer.Option(None, "--export-layer-info", "--exportLayerInfo", help="Write the engine's layers (JSON, TensorRT's engine inspector layout).")
DUMP_PROFILE = typer.Option(False, "--dump-profile", "--dumpProfile", help="Print per-layer times of separate profile runs.")

# Flags of BenchConfig fields a backend may not honour: (bench spelling, trtexec spelling).
_FLAGS = {
    "data_transfers": ("--no-data-transfers", "--noDataTransfers"),
    "spin_wait": ("--use-spin-wait", "--useSpinWait"),
    "cuda_graph": ("--use-cuda-graph", "--useCudaGraph"),
}
_METRIC_LABELS = {"latency": "Latency", "enqueue": "Enqueue Time", "h2d": "H2D Latency", "compute": "Compute Time", "d2h": "D2H Latency", "host": "Host Walltime"}


@app.command("bench")
def bench_command(
    engine_path: Path = typer.Argument(..., metavar="ENGINE", help="Engine file to benchmark.", show_default=False),
    warmup_runs: int = typer.Option(2, "--warmup-runs", min=0, help="Untimed runs per stream before timing (at least)."),
    warmup_ms: float = typer.Option(0.0, "--warmUp", "--warmup-ms", min=0, help="And warm up each stream at least this many ms (trtexec's --warmUp)."),
    iterations: int = ITERATIONS,
    duration: float = DURATION,
    batch: int = typer.Option(None, "--batch", help="Leading dim of inputs whose leading dim is dynamic."),
    shapes: str = typer.Option(None, "--shapes", help="Shapes of dynamic inputs: name:1x128,other:1x128."),
    streams: int = STREAMS,
    optimization_profile: int = typer.Option(None, "--optimization-profile", "--profile-index", help="Run under this optimization profile."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for the random inputs (stream i uses seed+i)."),
    avg_runs: int = AVG_RUNS,
    percentile: str = PERCENTILE,
    no_data_transfers: bool = NO_DATA_TRANSFERS,
    use_spin_wait: bool = USE_SPIN_WAIT,
    use_cuda_graph: bool = USE_CUDA_GRAPH,
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    export_times: Path = EXPORT_TIMES,
    export_profile: Path = EXPORT_PROFILE,
    export_layer_info: Path = EXPORT_LAYER_INFO,
    dump_profile: bool = DUMP_PROFILE,
    profile_runs: int = typer.Option(10, "--profile-runs", min=1, help="Runs of the separate per-layer profile."),
    threads: int = THREADS,
    allow_mismatch: bool = ALLOW_MISMATCH,
) -> None:
    """Measure an engine's throughput and latency on seeded random inputs.

    Reports trtexec's Performance summary: throughput, latency, enqueue time, H2D / compute /
    D2H time, total host walltime and total compute time, and warns when compute time is
    unstable. Without --iterations or --duration it runs at least 10 iterations and 3
    seconds per stream. Ctrl-C prints the summary of the runs taken so far. Dynamic inputs
    take --shapes, else the optimization profile's opt shape. Per-layer times
    (--dump-profile, --export-profile) come from separate runs after the timed ones.

    Examples:

        edgetrt bench resnet50.engine --iterations 50

        edgetrt bench bert.engine --shapes ids:1x128 --streams 2 --duration 10 --json

        edgetrt bench yolo.engine --warmUp 200 --percentile 50,99 --export-times times.json

        edgetrt bench resnet50.engine --duration -1 --threads 1
    """
    if threads is not None:
        edge.set_intra_op_threads(threads)
    engine = load_engine(engine_path, allow_mismatch)
    config = BenchConfig(
        warmup=warmup_runs,
        warmup_ms=warmup_ms,
        iterations=iterations,
        duration_s=duration,
        streams=streams,
        shapes=parse_shapes(shapes) or None,
        batch=batch,
        optimization_profile=optimization_profile,
        seed=seed,
        profile_layers=export_profile is not None or dump_profile,
        profile_runs=profile_runs,
        percentiles=parse_percentiles(percentile),
        avg_runs=avg_runs,
        data_transfers=not no_data_transfers,
        spin_wait=use_spin_wait,
        cuda_graph=use_cuda_graph,
    )
    result = measure(engine, config, export_times, export_profile, export_layer_info, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_result(result, dump_profile)
        for path, what in ((export_times, "per-query times"), (export_profile, "layer profile"), (export_layer_info, "layer information")):
            if path is not None:
                console.print(f"{what} written to {terminal_text(path)}")
    if result.interrupted and not config.until_interrupted:
        raise typer.Exit(130)


def parse_percentiles(text: str | None) -> tuple[float, ...]:
    """``"90,95,99"`` -> ``(90.0, 95.0, 99.0)`` (trtexec's --percentile list)."""
    if not text:
        return PERCENTILES
    try:
        values = tuple(float(item) for item in text.split(","))
    except ValueError:
        raise EdgeError(f"--percentile '{text}' is not a comma-separated list of numbers (e.g. 90,95,99)") from None
    bad = [v for v in values if not 0 <= v <= 100]
    if bad:
        raise EdgeError(f"--percentile {bad[0]:g} is outside [0, 100]")
    return values


def measure(
    engine: edge.Engine,
    config: BenchConfig,
    export_times: Path | None = None,
    export_profile: Path | None = None,
    export_layer_info: Path | None = None,
    progress: bool = True,
) -> BenchResult:
    """Benchmark with a progress bar (on a terminal) and write the requested exports."""
    with _progress_bar(config, enabled=progress and console.is_terminal) as on_iteration:
        result = benchmark(engine, config, on_iteration=on_iteration)
    if export_times is not None:
        write_times(result, export_times)
    if export_profile is not None:
        write_profile(result, export_profile)
    if export_layer_info is not None:
        write_layer_info(engine, export_layer_info)
    return result


@contextmanager
def _progress_bar(config: BenchConfig, enabled: bool) -> Iterator[Callable[[int, int, float], None] | None]:
    """A rich bar with ETA, advanced from the streams' threads: done when every stream has
    both its iterations and its duration (no total when running until Ctrl-C)."""
    if not enabled:
        yield None
        return
    iterations, duration = config.stop_rule()
    columns = (TextColumn("benchmarking"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("bench", total=None if config.until_interrupted else 1.0)
        done = [0] * config.streams
        start = time.perf_counter()

        def on_iteration(stream: int, iteration: int, latency_ms: float) -> None:
            done[stream] = iteration + 1
            by_count = min(done) / iterations if iterations else 1.0
            by_time = (time.perf_counter() - start) / duration if duration else 1.0
            progress.update(task, completed=min(by_count, by_time, 1.0))

        yield on_iteration


def no_effect_notes(result: BenchResult, trtexec_spelling: bool = False) -> list[str]:
    """One line per flag this engine's backend ignores, in the spelling the user typed."""
    return [f"{_FLAGS[name][trtexec_spelling]}: no effect on this backend ({result.backend})" for name in result.no_effect]


def _print_result(result: BenchResult, dump_profile: bool) -> None:
    shapes = ", ".join(f"{terminal_text(name)} {'x'.join(map(str, shape))}" for name, shape in result.shapes.items())
    console.print(
        f"[bold]{terminal_text(result.engine)}[/bold]: {result.backend} backend, {result.streams} stream(s), "
        f"{result.iterations} iterations after {result.warmup_runs} warm-up runs ({result.warmup_ms:.0f} ms), inputs {shapes}"
    )
    if result.interrupted:
        console.print(f"[yellow]interrupted: the summary covers the {result.iterations} runs taken[/yellow]")
    for note in no_effect_notes(result):
        console.print(f"note: {note}")
    if result.emulation is not None:
        console.print(f"note: {terminal_text(result.emulation)}", soft_wrap=True)
    compute = result.total_compute_s
    console.print(
        f"throughput: {result.throughput:.2f} qps, total host walltime {result.wall_s:.3f} s, "
        f"total {'GPU ' if result.device else ''}compute time " + ("not measured" if compute is None else f"{compute:.3f} s")
    )
    columns = ["min", "max", "mean", "median", *(f"p{p:g}" for p in result.percentiles)]
    table = Table("ms", *columns, title="performance summary (per run)")
    unmeasured = {}
    for metric, label in _METRIC_LABELS.items():
        stats = result.metric_stats(metric)
        if metric == "compute" and result.device:
            label = "GPU " + label
        if stats is None:
            unmeasured.setdefault(_unmeasured(result, metric), []).append(label)
            table.add_row(label, *["-"] * len(columns))
        else:
            table.add_row(label, *(f"{stats[c]:.3f}" for c in columns))
    table.caption = "; ".join(f"{', '.join(labels)}: {why}" for why, labels in unmeasured.items()) or None
    console.print(table)
    for warning in result.warnings():
        console.print(f"[yellow]warning:[/yellow] {warning}", soft_wrap=True)
    if dump_profile:
        layers = Table("layer", "op", "device", "ms/run", "median ms", "%", title=f"per-layer times over {result.profile_runs} runs")
        for row in sorted(result.layers, key=lambda r: -r["ms_per_run"]):
            layers.add_row(
                terminal_text(row["name"]), row["op"], str(row["device"]), f"{row['ms_per_run']:.3f}", f"{row['median_ms']:.3f}", f"{row['percent']:.1f}"
            )
        console.print(layers)


def _unmeasured(result: BenchResult, metric: str) -> str:
    if metric in ("h2d", "d2h") and not result.device:
        return f"none, the {result.backend} backend has no host<->device copies"
    return f"not measured by the {result.backend} backend"
