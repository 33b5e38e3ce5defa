"""``edgetrt build``, ``run`` and ``inspect``: build an engine, execute it, describe it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.table import Table

import edge
from edge.cli.app import app, console, console_warning
from edge.cli.calibrate import CALIB_BATCH_HELP, CALIB_DATA_HELP, calibration_bar, preprocess_from
from edge.cli.calibrate import calib_batch as calib_batch_option
from edge.cli.text import terminal_text
from edge.cli.options import (
    BEST_SEARCH,
    BEST_TOLERANCE,
    DLA_CORE,
    DLA_OBJECTIVE,
    FP16,
    GPU_FALLBACK,
    INT8,
    LAYER_PRECISIONS,
    POWER_MODE,
    SAVED_DATA,
    SHAPES,
    ALLOW_MISMATCH,
    THREADS,
    load_engine,
    parse_backends,
    parse_best_tolerance,
    parse_input_files,
    parse_layer_precisions,
    parse_per_output,
    parse_shapes,
    precision_from_flags,
)
from edge.errors import EdgeError
from edge.fileio import atomic_path
from edge.inspect import describe
from edge.cli.saved import report_non_finite, saved_feeds
from edge.compare import compare_outputs, default_tolerances, per_output
from edge.runtime.feeds import guessed_shape_notes, iteration_feeds
from edge.saved_data import read_outputs, write_inputs, write_outputs
from edge.kernels.cpu.control import DEFAULT_MAX_LOOP_ITERATIONS, set_max_loop_iterations
from edge.quant import precision_label
from edge.runtime.profiles import profiles_from_shape_options

__all__ = ["build_command", "builder_config", "report_build", "run_command", "inspect_command"]


@app.command("build")
def build_command(
    model: Path = typer.Argument(..., help="ONNX model to build.", show_default=False),
    output: Path = typer.Option(None, "--output", "-o", "--saveEngine", help="Engine file to write \\[default: MODEL.engine]."),
    profile: str = typer.Option("cpu", "--profile", help="Device profile name or YAML path (see `edgetrt profiles list`)."),
    fp16: bool = FP16,
    int8: bool = INT8,
    best: bool = BEST_SEARCH,
    best_tolerance: str = BEST_TOLERANCE,
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
    calib_data: Path = typer.Option(None, "--calib-data", help=CALIB_DATA_HELP),
    calib_batch: str = typer.Option(None, "--calib-batch", help=CALIB_BATCH_HELP),
    calib_preprocess: Path = typer.Option(None, "--calib-preprocess", help="YAML file of image preprocessing for --calib-data images (see `edgetrt calibrate --help`)."),
    calib_cache: Path = typer.Option(None, "--calib", "--calib-cache", help="Calibration cache: read if it fits, else written after calibrating."),
    recalibrate: bool = typer.Option(False, "--recalibrate", help="Calibrate on --calib-data and rewrite a --calib cache that lacks tensors of the model (else it is refused)."),
    calibrator: str = typer.Option(None, "--calibrator", help="entropy2 (default), minmax, percentile or mse."),
    layer_precisions: str = LAYER_PRECISIONS,
    backends: str = typer.Option(None, "--backend", help="Backend per device, e.g. gpu=cuda,dla=cpu or gpu=tensorrt (the whole network as one TensorRT engine) \\[default: tensorrt on a Jetson where it imports, else cuda for the GPU where usable, else cpu emulation]."),
    timing_cache: Path = typer.Option(None, "--timing-cache", "--timingCacheFile", help="JSON timing cache: tactics found in it are not timed again; updated after the build."),
    optimization_level: int = typer.Option(3, "--builder-optimization-level", "--builderOptimizationLevel", min=0, max=5, help="0: each kernel's heuristic tactic; 1-5: time candidate tactics, more calls per candidate."),
) -> None:
    """Build an ONNX model into an engine file.

    Examples:

        edgetrt build resnet50.onnx -o resnet50.engine

        edgetrt build yolo.onnx --fp16 --shapes images:1x3x640x640

        edgetrt build model.onnx --int8 --dla 0 --gpu-fallback --profile agx-orin-64gb

        edgetrt build model.onnx --int8 --calib-data imgs/ --calib model.calib

        edgetrt build model.onnx --int8 --calib model.calib --layer-precisions head/Gemm:fp16

        edgetrt build model.onnx --best --calib-data imgs/ --best-tolerance 0.02

        edgetrt build bert.onnx --min-shapes ids:1x1 --opt-shapes ids:1x128 --max-shapes ids:8x512
    """
    config = builder_config(
        fp16=fp16,
        int8=int8,
        best=best,
        profile=profile,
        dla=dla,
        gpu_fallback=gpu_fallback,
        shapes=shapes,
        min_shapes=min_shapes,
        opt_shapes=opt_shapes,
        max_shapes=max_shapes,
        dla_objective=dla_objective,
        power_mode=power_mode,
        optimize=not no_optimize,
        verbose=verbose,
        calib_data=calib_data,
        calib_cache=calib_cache,
        recalibrate=recalibrate,
        calibrator=calibrator,
        calib_batch=calib_batch_option(calib_batch),
        calib_preprocess=preprocess_from(calib_preprocess),
        layer_precisions=parse_layer_precisions(layer_precisions),
        best_tolerance=parse_best_tolerance(best_tolerance, best),
        backends=parse_backends(backends),
        timing_cache=timing_cache,
        optimization_level=optimization_level,
    )
    with calibration_bar():
        engine = edge.build(model, config)
    report_build(engine, output or model.with_suffix(".engine"), verbose)


def builder_config(
    *,
    fp16: bool,
    int8: bool,
    best: bool,
    profile: str,
    dla: int | None,
    gpu_fallback: bool,
    shapes: str | None,
    min_shapes: list[str],
    opt_shapes: list[str],
    max_shapes: list[str],
    **options,
) -> edge.BuilderConfig:
    """The BuilderConfig of the flags `build` and `trtexec` share (``options``: the rest)."""
    profiles = profiles_from_shape_options(
        [parse_shapes(t) for t in min_shapes], [parse_shapes(t) for t in opt_shapes], [parse_shapes(t) for t in max_shapes]
    )
    return edge.BuilderConfig(
        precision=precision_from_flags(fp16, int8, best),
        best=best,
        profile=profile,
        dla_core=dla,
        gpu_fallback=gpu_fallback,
        input_shapes=parse_shapes(shapes) or None,
        optimization_profiles=profiles or None,
        **options,
    )


def report_build(engine: edge.Engine, target: Path | None, verbose: bool) -> None:
    """Print the build's notes (and with ``verbose`` its details), save to ``target`` if given."""
    for note in [*engine.build.get("notes", []), *engine.build.get("tactics", {}).get("notes", [])]:
        console.print(f"note: {note}", highlight=False)
    for warning in engine.build.get("warnings", []):
        console_warning(warning)
    if target is not None:
        engine.save(target)
    if verbose:
        _print_build_details(engine)
    best = engine.build.get("best")
    if best:
        console.print(_best_summary(best), highlight=False)
    where = "in memory" if target is None else f"[bold]{terminal_text(target)}[/bold] ({target.stat().st_size / 1e6:.2f} MB)"
    console.print(f"built {where}: {len(engine.graph.nodes)} layers, precision {engine.precision}{_precisions_used(engine)}, profile {engine.profile}")


def _best_summary(record: dict) -> str:
    """One line of a ``--best`` build record: the precisions chosen, the engine's error and the cost."""
    counts = record["precisions"]
    chosen = ", ".join(f"{counts[p]} {p}" for p in ("int8", "fp16", "fp32") if p in counts) or "no layer to choose"
    verdict = "within" if record["error"] <= record["tolerance"] else "over"
    return (
        f"--best: {chosen}; output error {record['error']:.3g} {verdict} the tolerance {record['tolerance']:g} "
        f"(relative L2 vs FP32, worst output, on {record['samples']} calibration samples; {record['trials']} trial runs)"
    )


def _print_best_table(record: dict) -> None:
    """Each layer ``--best`` chose a precision for, and why (the model's error with each choice)."""
    table = Table("layer", "precision", "why (model output error vs FP32)", "from ONNX nodes", title="--best decisions")
    for layer in record["layers"]:
        table.add_row(terminal_text(layer["layer"]), layer["precision"], layer["reason"], terminal_text(", ".join(layer["onnx_nodes"])))
    console.print(table)


def _precisions_used(engine: edge.Engine) -> str:
    """`` (layers: 12 fp16, 3 fp32)`` when the layers do not all run the requested precision."""
    used = engine.build.get("layer_precisions") or {}
    if set(used) <= {engine.precision}:
        return ""
    return " (layers: " + ", ".join(f"{n} {p}" for p, n in sorted(used.items())) + ")"


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
            + ("the cache" if calibration["source"] == "cache" else f"{calibration['batches']} batches of {calibration['batch']}, peak memory {calibration['peak_memory'] / 2**20:.1f} MiB")
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
    if engine.build.get("best"):
        _print_best_table(engine.build["best"])


@app.command("run")
def run_command(
    engine_path: Path = typer.Argument(..., metavar="ENGINE", help="Engine file to run.", show_default=False),
    inputs: list[str] = typer.Option([], "--input", "-i", help="NAME=FILE.npy; repeat per input. Missing inputs are random."),
    output: Path = typer.Option(None, "--output", "-o", help="Write all outputs to this .npz file (the last iteration's)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for random inputs (iteration i uses seed + i)."),
    shapes: str = typer.Option(None, "--shapes", help="Shapes of dynamic inputs: name:1x3x224x224,other:1x128 \\[default: the optimization profile's opt shape]."),
    batch: int = typer.Option(None, "--batch", min=1, help="Leading dim of random inputs whose leading dim is dynamic."),
    iterations: int = SAVED_DATA["iterations"],
    save_inputs: Path = SAVED_DATA["save_inputs"],
    load_inputs: Path = SAVED_DATA["load_inputs"],
    save_outputs: Path = SAVED_DATA["save_outputs"],
    load_outputs: Path = SAVED_DATA["load_outputs"],
    data_loader_script: str = SAVED_DATA["data_loader_script"],
    validate: bool = SAVED_DATA["validate"],
    rtol: list[str] = typer.Option([], "--rtol", help="With --load-outputs: relative tolerance, or OUTPUT:VALUE \\[default: by precision]."),
    atol: list[str] = typer.Option([], "--atol", help="With --load-outputs: absolute tolerance, or OUTPUT:VALUE \\[default: by precision]."),
    threads: int = THREADS,
    max_loop_iterations: int = typer.Option(
        DEFAULT_MAX_LOOP_ITERATIONS, "--max-loop-iterations", min=1, help="Refuse a Loop that runs longer than this."
    ),
    allow_mismatch: bool = ALLOW_MISMATCH,
) -> None:
    """Run an engine and print its outputs.

    Inputs not given with --input, --load-inputs or --data-loader-script are seeded random
    arrays (normal for floats); dynamic dims take --shapes, else the optimization profile's
    opt shape. NaN or inf in an output is warned about (--validate makes it an error).
    --load-outputs checks the outputs against saved ones (Polygraphy's workflow).

    Examples:

        edgetrt run resnet50.engine --seed 1

        edgetrt run resnet50.engine --input data=img.npy --output out.npz

        edgetrt run bert.engine --shapes ids:1x128,mask:1x128

        edgetrt run model.engine --load-inputs inputs.json --load-outputs onnx_outputs.json --atol 1e-3

        edgetrt run model.engine --data-loader-script data.py:load_data --save-outputs outputs.json --validate
    """
    if threads is not None:
        edge.set_intra_op_threads(threads)
    set_max_loop_iterations(max_loop_iterations)
    engine = load_engine(engine_path, allow_mismatch)
    given = parse_input_files(inputs)
    run_shapes = parse_shapes(shapes) or None
    feeds = iteration_feeds(engine, iterations, given, saved_feeds(load_inputs, data_loader_script, iterations), run_shapes, seed, batch)
    loaded = set(feeds[0]) if load_inputs or data_loader_script else set()
    for note in guessed_shape_notes(engine, feeds[0], set(given) | loaded, run_shapes):
        console_warning(terminal_text(note))
    context = engine.create_context()
    runs = []
    for feed in feeds:
        with np.errstate(all="ignore"):  # overflow is reported per output below, not as numpy's warning
            runs.append(context.run(feed))
    for index, results in enumerate(runs):
        title = terminal_text(engine.name) + (f", iteration {index}" if len(runs) > 1 else "")
        table = Table("output", "dtype", "shape", "first values", "mean", title=title)
        for name, array in results.items():
            flat = np.asarray(array).reshape(-1)
            head = ", ".join(f"{v:.5g}" if np.issubdtype(flat.dtype, np.floating) else str(v) for v in flat[:5])
            with np.errstate(all="ignore"):
                mean = f"{flat.astype(np.float64).mean():.6g}" if flat.size and np.issubdtype(flat.dtype, np.number) else "-"
            table.add_row(terminal_text(name), str(array.dtype), "x".join(map(str, array.shape)), head, mean)
        console.print(table)
    invalid = report_non_finite(runs, engine.precision)
    if save_inputs is not None:
        write_inputs(save_inputs, feeds)
        console.print(f"inputs written to {terminal_text(save_inputs)}")
    if save_outputs is not None:
        write_outputs(save_outputs, {"edgetrt-runner": runs})
        console.print(f"outputs written to {terminal_text(save_outputs)}")
    if output is not None:
        _save_npz(output, runs[-1])
        console.print(f"outputs written to {terminal_text(output)}")
    if load_outputs is not None:
        _check_saved_outputs(engine, runs, load_outputs, parse_per_output(rtol, "--rtol"), parse_per_output(atol, "--atol"))
    elif rtol or atol:
        raise EdgeError("--rtol/--atol apply to --load-outputs (or use `edgetrt compare`)")
    if validate and invalid:
        raise EdgeError(f"--validate: {invalid} output(s) hold NaN or inf")


def _check_saved_outputs(engine: edge.Engine, runs: list[dict[str, np.ndarray]], path: Path, rtol: dict | None, atol: dict | None) -> None:
    """Polygraphy's ``run --load-outputs``: every iteration's outputs against the saved ones."""
    runner, expected = next(iter(read_outputs(path).items()))
    label = f"'{path}' (runner {runner})"
    _, default_rtol, default_atol = default_tolerances(engine)
    rows = compare_outputs(runs, expected, label, per_output(rtol, default_rtol), per_output(atol, default_atol))
    for row in rows:
        console.print(
            terminal_text(row.name) + (f" (iteration {row.iteration})" if len(runs) > 1 else "")
            + f" vs {terminal_text(label)}: max abs {row.max_abs:.3g}, max rel {row.max_rel:.3g}, rtol {row.rtol:g}, atol {row.atol:g}: "
            + ("[green]PASS[/green]" if row.passed else f"[red]FAIL[/red] ({row.mismatches} el.)"),
            highlight=False,
        )
    failed = list(dict.fromkeys(row.name for row in rows if not row.passed))
    if failed:
        raise EdgeError(f"{len(failed)} output(s) differ from {label}: {', '.join(failed)}")


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
    profiles = info["build"].get("optimization_profiles") or []
    if profiles:  # trtexec's --dumpOptimizationProfile
        ranges = Table("profile", "input", "min", "opt", "max", title="optimization profiles")
        for index, profile in enumerate(profiles):
            for name, bounds in profile.items():
                ranges.add_row(str(index), terminal_text(name), *(_shape(bounds[k]) for k in ("min", "opt", "max")))
        console.print(ranges)
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
    if info["build"].get("best"):
        _print_best_table(info["build"]["best"])
        console.print(_best_summary(info["build"]["best"]), highlight=False)
    if info["emulation"]:
        console.print(f"note: {info['emulation']}", highlight=False)


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e6:.2f} MB" if nbytes >= 1e6 else f"{nbytes / 1e3:.1f} KB"


def _shape(shape: list | None) -> str:
    return "?" if shape is None else "x".join("?" if d is None else str(d) for d in shape) or "scalar"
