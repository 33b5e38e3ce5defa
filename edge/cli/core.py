"""``edgetrt build``, ``run`` and ``inspect``: build an engine, execute it, describe it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.table import Table

import edge
from edge.cli.app import app, console
from edge.cli.text import terminal_text
from edge.cli.options import (
    BEST,
    DLA_CORE,
    DLA_OBJECTIVE,
    FP16,
    GPU_FALLBACK,
    INT8,
    POWER_MODE,
    SHAPES,
    ALLOW_MISMATCH,
    THREADS,
    load_engine,
    parse_backends,
    parse_input_files,
    parse_shapes,
    precision_from_flags,
)
from edge.errors import EdgeError
from edge.fileio import atomic_path
from edge.inspect import describe
from edge.kernels.cpu.control import DEFAULT_MAX_LOOP_ITERATIONS, set_max_loop_iterations
from edge.quant import precision_label
from edge.runtime.inputs import random_inputs
from edge.runtime.profiles import profiles_from_shape_options

__all__ = ["build_command", "run_command", "inspect_command"]


@app.command("build")
def build_command(
    model: Path = typer.Argument(..., help="ONNX model to build.", show_default=False),
    output: Path = typer.Option(None, "--output", "-o", "--saveEngine", help="Engine file to write [default: MODEL.engine]."),
    profile: str = typer.Option("cpu", "--profile", help="Device profile name or YAML path (see `edgetrt profiles list`)."),
    fp16: bool = FP16,
    int8: bool = INT8,
    best: bool = BEST,
    dla: int = DLA_CORE,
    gpu_fallback: bool = GPU_FALLBACK,
    dla_objective: str = DLA_OBJECTIVE,
    power_mode: str = POWER_MODE,
    shapes: str = SHAPES,
    min_shapes: list[str] = typer.Option([], "--min-shapes", "--minShapes", help="Optimization profile min shapes (repeat per profile)."),
    opt_shapes: list[str] = typer.Option([], "--opt-shapes", "--optShapes", help="Optimization profile opt shapes (repeat per profile)."),
    max_shapes: list[str] = typer.Option([], "--max-shapes", "--maxShapes", help="Optimization profile max shapes (repeat per profile)."),
    no_optimize: bool = typer.Option(False, "--no-optimize", help="Skip the graph optimizer."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print what each build stage did."),
    calib_data: Path = typer.Option(None, "--calib-data", help="Folder of .npy/.npz calibration inputs (INT8 scales)."),
    calib_cache: Path = typer.Option(None, "--calib", "--calib-cache", help="Calibration cache: read if it fits, else written after calibrating."),
    calibrator: str = typer.Option(None, "--calibrator", help="entropy2 (default), minmax or percentile."),
    backends: str = typer.Option(None, "--backend", help="Backend per device, e.g. gpu=cuda,dla=cpu [default: cuda for the GPU where usable, else cpu emulation]."),
    timing_cache: Path = typer.Option(None, "--timing-cache", "--timingCacheFile", help="JSON timing cache: tactics found in it are not timed again; updated after the build."),
    optimization_level: int = typer.Option(3, "--builder-optimization-level", "--builderOptimizationLevel", min=0, max=5, help="0: each kernel's heuristic tactic; 1-5: time candidate tactics, more calls per candidate."),
) -> None:
    """Build an ONNX model into an engine file.

    Examples:

        edgetrt build resnet50.onnx -o resnet50.engine

        edgetrt build yolo.onnx --fp16 --shapes images:1x3x640x640

        edgetrt build model.onnx --int8 --dla 0 --gpu-fallback --profile orin-agx-64gb

        edgetrt build model.onnx --int8 --calib-data imgs/ --calib model.calib

        edgetrt build bert.onnx --min-shapes ids:1x1 --opt-shapes ids:1x128 --max-shapes ids:8x512
    """
    precision = precision_from_flags(fp16, int8, best)
    config = edge.BuilderConfig(
        precision=precision,
        profile=profile,
        dla_core=dla,
        gpu_fallback=gpu_fallback,
        dla_objective=dla_objective,
        power_mode=power_mode,
        input_shapes=parse_shapes(shapes) or None,
        optimization_profiles=profiles_from_shape_options(
            [parse_shapes(t) for t in min_shapes], [parse_shapes(t) for t in opt_shapes], [parse_shapes(t) for t in max_shapes]
        )
        or None,
        optimize=not no_optimize,
        verbose=verbose,
        calib_data=calib_data,
        calib_cache=calib_cache,
        calibrator=calibrator,
        backends=parse_backends(backends),
        timing_cache=timing_cache,
        optimization_level=optimization_level,
    )
    engine = edge.build(model, config)
    for note in engine.build.get("tactics", {}).get("notes", []):
        console.print(f"note: {note}")
    target = output or model.with_suffix(".engine")
    engine.save(target)
    if verbose:
        _print_build_details(engine)
    size = target.stat().st_size
    console.print(
        f"built [bold]{terminal_text(target)}[/bold] ({size / 1e6:.2f} MB): {len(engine.graph.nodes)} layers, "
        f"precision {engine.precision}, profile {engine.profile}"
    )


def _print_build_details(engine: edge.Engine) -> None:
    timings = engine.build.get("timings_s", {})
    console.print("stage timings: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in timings.items()))
    optimizer = engine.build.get("optimizer")
    if optimizer:
        table = Table("pass", "runs", "changes", "fused", "removed", "ms", title="optimizer")
        for row in optimizer["passes"]:
            table.add_row(*(str(row[k]) for k in ("pass", "runs", "changes", "fused", "removed", "ms")))
        console.print(table)
        console.print(f"nodes {optimizer['nodes_before']} -> {optimizer['nodes_after']}")
    partition = engine.build.get("partition_summary")
    if partition:
        console.print("placement: " + ", ".join(f"{k.replace('_', ' ')} {v:.3g}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}" for k, v in partition.items()))
    calibration = engine.build.get("calibration")
    if calibration:
        console.print(
            f"calibration: {calibration['calibrator']} scales for {calibration['tensors']} tensors from "
            + ("the cache" if calibration["source"] == "cache" else f"{calibration['batches']} batches")
        )
    tactics = engine.build.get("tactics")
    if tactics:
        console.print(
            f"tactics (level {tactics['level']}): {tactics['timed']} layers timed ({tactics['timings']} timings), "
            f"{tactics['cached']} from the timing cache, {tactics['heuristic']} by heuristic"
        )
    table = Table("segment", "device", "backend", "steps", "inputs", "outputs", title="execution plan")
    for segment in engine.plan.segments:
        label = segment.backend + (" (emulated)" if segment.emulated else "")
        table.add_row(str(segment.index), segment.device, label, f"{segment.steps[1] - segment.steps[0]}", ", ".join(segment.inputs), ", ".join(segment.outputs))
    console.print(table)
    devices: dict[str, int] = {}
    for node in engine.graph.nodes:
        key = f"{node.meta.get('device', 'cpu')}/{precision_label(node.meta)}"
        devices[key] = devices.get(key, 0) + 1
    console.print("layers per device/precision: " + ", ".join(f"{k} {v}" for k, v in sorted(devices.items())))


@app.command("run")
def run_command(
    engine_path: Path = typer.Argument(..., metavar="ENGINE", help="Engine file to run.", show_default=False),
    inputs: list[str] = typer.Option([], "--input", "-i", help="NAME=FILE.npy; repeat per input. Missing inputs are random."),
    output: Path = typer.Option(None, "--output", "-o", help="Write all outputs to this .npz file."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for random inputs."),
    batch: int = typer.Option(1, "--batch", min=1, help="Size for symbolic dims of random inputs."),
    threads: int = THREADS,
    max_loop_iterations: int = typer.Option(
        DEFAULT_MAX_LOOP_ITERATIONS, "--max-loop-iterations", min=1, help="Refuse a Loop that runs longer than this."
    ),
    allow_mismatch: bool = ALLOW_MISMATCH,
) -> None:
    """Run an engine once and print its outputs.

    Inputs not given with --input are seeded random arrays (normal for floats).

    Examples:

        edgetrt run resnet50.engine --seed 1

        edgetrt run resnet50.engine --input data=img.npy --output out.npz

        edgetrt run resnet50.engine --threads 1
    """
    if threads is not None:
        edge.set_intra_op_threads(threads)
    set_max_loop_iterations(max_loop_iterations)
    engine = load_engine(engine_path, allow_mismatch)
    feeds = parse_input_files(inputs)
    missing = [s for s in engine.inputs if s.name not in feeds]
    feeds.update(random_inputs(missing, seed, symbolic=batch))
    results = engine.create_context().run(feeds)
    table = Table("output", "dtype", "shape", "first values", "mean", title=terminal_text(engine.name))
    for name, array in results.items():
        flat = np.asarray(array).reshape(-1)
        head = ", ".join(f"{v:.5g}" if np.issubdtype(flat.dtype, np.floating) else str(v) for v in flat[:5])
        mean = f"{flat.astype(np.float64).mean():.6g}" if flat.size and np.issubdtype(flat.dtype, np.number) else "-"
        table.add_row(terminal_text(name), str(array.dtype), "x".join(map(str, array.shape)), head, mean)
    console.print(table)
    if output is not None:
        _save_npz(output, results)
        console.print(f"outputs written to {terminal_text(output)}")


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz atomically."""
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        np.savez(handle, **arrays)


@app.command("inspect")
def inspect_command(
    path: Path = typer.Argument(..., metavar="MODEL.onnx|ENGINE", help="ONNX model or engine file.", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Describe a model or engine: header, inputs/outputs, and every layer.

    For engines each layer shows its device, precision and the original ONNX nodes it
    came from (fusions merge several).

    Examples:

        edgetrt inspect model.onnx

        edgetrt inspect model.engine --json > layers.json
    """
    if not path.is_file():
        raise EdgeError(f"'{path}' does not exist")
    info = describe(path)
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    if info["header"]:
        header = Table("field", "value", title="engine header")
        for key, value in info["header"].items():
            if key == "provenance":
                for part, record in value.items():
                    for field, item in record.items():
                        header.add_row(terminal_text(f"{part}.{field}"), terminal_text("-" if item is None else item))
                continue
            header.add_row(terminal_text(key), terminal_text(value))
        console.print(header)
    memory = info["build"].get("memory")
    if memory and memory.get("arena_bytes") is not None:
        console.print(
            f"activation memory: arena {_size(memory['arena_bytes'])}, naive {_size(memory['naive_bytes'])} "
            f"(one buffer per tensor), lower bound {_size(memory['lower_bound_bytes'])} (peak live tensors)"
            + ("" if memory.get("static") else f", largest of {len(memory.get('profiles', []))} optimization profile(s)")
        )
    io = Table("kind", "name", "dtype", "shape", title="inputs / outputs")
    for kind in ("inputs", "outputs"):
        for value in info[kind]:
            io.add_row(kind[:-1], terminal_text(value["name"]), str(value["dtype"]), terminal_text(_shape(value["shape"])))
    console.print(io)
    is_engine = info["kind"] == "engine"
    columns = ["#", "layer", "op", "inputs", "outputs", "dtype"] + (
        ["device", "precision", "backend", "kernel / tactic", "from ONNX nodes"] if is_engine else []
    )
    layers = Table(*columns, title=f"{len(info['layers'])} layers")
    for index, row in enumerate(info["layers"]):
        ins = ", ".join(_shape(v["shape"]) for v in row["inputs"] if v is not None and not v["const"])
        outs = ", ".join(_shape(v["shape"]) for v in row["outputs"])
        dtype = row["outputs"][0]["dtype"] if row["outputs"] else "-"
        cells = [str(index), row["name"], row["op"], ins, outs, str(dtype)]
        if is_engine:
            origin = row["origin"]
            backend = (row["backend"] or "cpu") + (" (emulated)" if row["emulated"] else "")
            if row["fallback"]:
                backend += f" (fallback: {row['fallback']['backend']} {row['fallback']['code']})"
            kernel = (row["kernel"] or "-") + (f" / {row['tactic']}" if row["tactic"] else "")
            cells += [str(row["device"] or "cpu"), precision_label(row), backend, kernel, ", ".join(origin) if origin != [row["name"]] else ""]
        layers.add_row(*(terminal_text(cell) for cell in cells))
    console.print(layers)


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e6:.2f} MB" if nbytes >= 1e6 else f"{nbytes / 1e3:.1f} KB"


def _shape(shape: list | None) -> str:
    return "?" if shape is None else "x".join("?" if d is None else str(d) for d in shape) or "scalar"
