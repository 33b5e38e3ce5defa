"""``edgetrt bench``: throughput and latency of an engine, trtexec style (a shell over edge.runtime.bench)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

import edge
from edge.cli.app import app, console
from edge.cli.options import ALLOW_MISMATCH, THREADS, load_engine, parse_shapes
from edge.runtime.bench import BenchConfig, BenchResult, benchmark, write_profile, write_times

__all__ = ["bench_command"]


@app.command("bench")
def bench_command(
    engine_path: Path = typer.Argument(..., metavar="ENGINE", help="Engine file to benchmark.", show_default=False),
    warmup: int = typer.Option(2, "--warmup", "--warmUp", help="Untimed runs per stream before timing."),
    iterations: int = typer.Option(None, "--iterations", help="Timed runs per stream (at least)."),
    duration: float = typer.Option(None, "--duration", help="Time each stream at least this many seconds."),
    batch: int = typer.Option(None, "--batch", help="Leading dim of inputs whose leading dim is dynamic."),
    shapes: str = typer.Option(None, "--shapes", help="Shapes of dynamic inputs: name:1x128,other:1x128."),
    streams: int = typer.Option(1, "--streams", help="Concurrent execution contexts, one thread each."),
    optimization_profile: int = typer.Option(None, "--optimization-profile", "--profile-index", help="Run under this optimization profile."),
    seed: int = typer.Option(0, "--seed", help="Seed for the random inputs (stream i uses seed+i)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    export_times: Path = typer.Option(None, "--export-times", "--exportTimes", help="Write per-iteration timings (JSON)."),
    export_profile: Path = typer.Option(None, "--export-profile", "--exportProfile", help="Write per-layer times (JSON)."),
    dump_profile: bool = typer.Option(False, "--dump-profile", "--dumpProfile", help="Print per-layer times."),
    profile_runs: int = typer.Option(10, "--profile-runs", help="Runs of the separate per-layer profile."),
    threads: int = THREADS,
    allow_mismatch: bool = ALLOW_MISMATCH,
) -> None:
    """Measure an engine's throughput and latency on seeded random inputs.

    Without --iterations or --duration it runs at least 10 iterations and 3 seconds per
    stream. Dynamic inputs take --shapes, else the optimization profile's opt shape.
    Per-layer times (--dump-profile, --export-profile) come from separate runs after the
    timed ones.

    Examples:

        edgetrt bench resnet50.engine --iterations 50

        edgetrt bench bert.engine --shapes ids:1x128 --streams 2 --duration 10 --json

        edgetrt bench yolo.engine --export-times times.json --export-profile layers.json

        edgetrt bench resnet50.engine --threads 1
    """
    if threads is not None:
        edge.set_intra_op_threads(threads)
    engine = load_engine(engine_path, allow_mismatch)
    config = BenchConfig(
        warmup=warmup,
        iterations=iterations,
        duration_s=duration,
        streams=streams,
        shapes=parse_shapes(shapes) or None,
        batch=batch,
        optimization_profile=optimization_profile,
        seed=seed,
        profile_layers=export_profile is not None or dump_profile,
        profile_runs=profile_runs,
    )
    result = benchmark(engine, config)
    if export_times is not None:
        write_times(result, export_times)
    if export_profile is not None:
        write_profile(result, export_profile)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    _print_result(result, dump_profile)
    for path, what in ((export_times, "per-iteration times"), (export_profile, "layer profile")):
        if path is not None:
            console.print(f"{what} written to {path}")


def _print_result(result: BenchResult, dump_profile: bool) -> None:
    shapes = ", ".join(f"{name} {'x'.join(map(str, shape))}" for name, shape in result.shapes.items())
    console.print(
        f"[bold]{result.engine}[/bold]: {result.backend} backend, {result.streams} stream(s), "
        f"{len(result.latencies_ms)} iterations after {result.warmup} warm-up, inputs {shapes}"
    )
    console.print(f"throughput: {result.throughput:.2f} inferences/s over {result.wall_s:.3f} s")
    table = Table(*result.stats, title="latency (ms, end to end on the host)")
    table.add_row(*(f"{v:.3f}" for v in result.stats.values()))
    console.print(table)
    console.print(f"host<->device transfer: not applicable ({result.transfer['note']}); compute time = latency")
    if dump_profile:
        layers = Table("layer", "op", "device", "ms/run", "%", title=f"per-layer times over {result.profile_runs} runs")
        for row in sorted(result.layers, key=lambda r: -r["ms_per_run"]):
            layers.add_row(row["name"], row["op"], str(row["device"]), f"{row['ms_per_run']:.3f}", f"{row['percent']:.1f}")
        console.print(layers)
