"""``edgetrt compare``: an engine's outputs against onnxruntime on the same inputs (Polygraphy's ``run --onnxrt``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.table import Table

import edge
from edge.cli.app import app, console, console_warning
from edge.cli.options import (
    BEST,
    DLA_CORE,
    FP16,
    GPU_FALLBACK,
    INT8,
    SAVED_DATA,
    parse_input_files,
    parse_per_output,
    parse_shapes,
    precision_from_flags,
)
from edge.cli.saved import report_non_finite, saved_feeds
from edge.cli.text import terminal_text
from edge.compare import CompareResult, OutputComparison, compare
from edge.errors import EdgeError
from edge.runtime.profiles import profiles_from_shape_options
from edge.saved_data import read_outputs, write_inputs, write_outputs

__all__ = ["compare_command"]


@app.command("compare")
def compare_command(
    model: Path = typer.Argument(..., metavar="MODEL.onnx", help="ONNX model (the reference runs it as is).", show_default=False),
    engine_path: Path = typer.Option(None, "--engine", help="Engine to check \\[default: build one from MODEL with the flags below]."),
    profile: str = typer.Option(None, "--profile", help="Device profile to build for \\[default: cpu]."),
    fp16: bool = FP16,
    int8: bool = INT8,
    best: bool = BEST,
    dla: int = DLA_CORE,
    gpu_fallback: bool = GPU_FALLBACK,
    shapes: str = typer.Option(None, "--shapes", help="Input shapes: fixed at build, or with --engine the shapes of dynamic inputs to test."),
    min_shapes: list[str] = typer.Option([], "--min-shapes", "--minShapes", help="Optimization profile min shapes (build)."),
    opt_shapes: list[str] = typer.Option([], "--opt-shapes", "--optShapes", help="Optimization profile opt shapes (build; random inputs take them)."),
    max_shapes: list[str] = typer.Option([], "--max-shapes", "--maxShapes", help="Optimization profile max shapes (build)."),
    inputs: list[str] = typer.Option([], "--input", "-i", help="NAME=FILE.npy; repeat per input. Missing inputs are seeded random."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for random inputs (iteration i uses seed + i)."),
    rtol: list[str] = typer.Option([], "--rtol", help="Relative tolerance, or OUTPUT:VALUE per output (repeat or join with commas) \\[default: by precision, see below]."),
    atol: list[str] = typer.Option([], "--atol", help="Absolute tolerance, or OUTPUT:VALUE per output \\[default: by precision, see below]."),
    check_error_stat: list[str] = typer.Option([], "--check-error-stat", help="elemwise (default), max, mean or median; OUTPUT:STAT per output."),
    layerwise: bool = typer.Option(False, "--layerwise", help="Find the first engine layer whose output diverges."),
    iterations: int = SAVED_DATA["iterations"],
    save_inputs: Path = SAVED_DATA["save_inputs"],
    load_inputs: Path = SAVED_DATA["load_inputs"],
    save_outputs: Path = SAVED_DATA["save_outputs"],
    load_outputs: Path = SAVED_DATA["load_outputs"],
    data_loader_script: str = SAVED_DATA["data_loader_script"],
    validate: bool = SAVED_DATA["validate"],
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Compare an engine with onnxruntime (or, without it, edgetrt's unoptimized CPU reference).

    Both run the same inputs; each output gets max/mean absolute error, max relative error,
    the worst element, a histogram of its errors and PASS/FAIL for |engine - ref| <= atol +
    rtol * |ref| (or, with --check-error-stat max|mean|median, Polygraphy's rule on that
    statistic). Default tolerances (rtol / atol) follow the precision the layers really
    use: fp32 1e-4 / 1e-5, fp16 1e-2 / 1e-2, DLA 2e-2 / 2e-2, int8 1e-1 / 5e-2. Dynamic
    inputs take --shapes, else the optimization profile's opt shape. Exit status 1 when any
    output fails.

    Examples:

        edgetrt compare model.onnx

        edgetrt compare model.onnx --fp16 --shapes images:1x3x640x640

        edgetrt compare model.onnx --engine model.engine --input images=img.npy --atol 1e-3

        edgetrt compare model.onnx --fp16 --atol 1e-2 --atol logits:5e-2 --check-error-stat median

        edgetrt compare model.onnx --iterations 5 --save-inputs inputs.json --save-outputs outputs.json

        edgetrt compare model.onnx --engine model.engine --load-inputs inputs.json --load-outputs onnx_outputs.json

        edgetrt compare model.onnx --int8 --dla 0 --gpu-fallback --profile agx-orin-64gb --layerwise
    """
    if not model.is_file():
        raise EdgeError(f"model '{model}' does not exist")
    given_build = (("--profile", profile is not None), ("--fp16", fp16), ("--int8", int8), ("--best", best), ("--dla", dla is not None),
                   ("--gpu-fallback", gpu_fallback), ("--min-shapes", bool(min_shapes)), ("--opt-shapes", bool(opt_shapes)), ("--max-shapes", bool(max_shapes)))
    build_flags = [flag for flag, given in given_build if given]
    config = None
    engine = None
    run_shapes = None
    if engine_path is not None:
        if build_flags:
            raise EdgeError(f"{', '.join(build_flags)} only apply when building; --engine '{engine_path}' is already built")
        if not engine_path.is_file():
            raise EdgeError(f"engine '{engine_path}' does not exist")
        engine = engine_path
        run_shapes = parse_shapes(shapes) or None
    else:
        config = edge.BuilderConfig(
            precision=precision_from_flags(fp16, int8, best),
            profile=profile or "cpu",
            dla_core=dla,
            gpu_fallback=gpu_fallback,
            input_shapes=parse_shapes(shapes) or None,
            optimization_profiles=profiles_from_shape_options(
                [parse_shapes(t) for t in min_shapes], [parse_shapes(t) for t in opt_shapes], [parse_shapes(t) for t in max_shapes]
            )
            or None,
        )
    feeds = saved_feeds(load_inputs, data_loader_script, iterations)
    expected, label = None, "saved outputs"
    if load_outputs is not None:
        runs = read_outputs(load_outputs)
        runner, expected = next(iter(runs.items()))
        label = f"saved outputs '{load_outputs}' (runner {runner})"
    result = compare(
        model, engine=engine, config=config, inputs=parse_input_files(inputs), seed=seed,
        rtol=parse_per_output(rtol, "--rtol"), atol=parse_per_output(atol, "--atol"), layerwise=layerwise,
        shapes=run_shapes, iterations=iterations, feeds=feeds, expected=expected, expected_label=label,
        error_stat=parse_per_output(check_error_stat, "--check-error-stat", str) or "elemwise",
    )
    if save_inputs is not None:
        write_inputs(save_inputs, result.feeds)
    if save_outputs is not None:
        write_outputs(save_outputs, {"onnxrt-runner" if load_outputs is None else "loaded": result.runs["reference"], "edgetrt-runner": result.runs["engine"]})
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_result(result)
    for path, what in ((save_inputs, "inputs"), (save_outputs, "outputs")):
        if path is not None and not as_json:
            console.print(f"{what} written to {terminal_text(path)}", highlight=False)
    invalid = report_non_finite(result.runs["engine"], result.numerics)
    if not result.passed:
        raise EdgeError(f"{len(result.failed)} of {len(result.outputs)} outputs outside tolerance: {', '.join(result.failed)}")
    if validate and invalid:
        raise EdgeError(f"--validate: {invalid} output(s) hold NaN or inf")


def _print_result(result: CompareResult) -> None:
    console.print(
        f"engine [bold]{result.engine}[/bold] ({result.numerics}) vs {result.reference}; "
        f"rtol {result.rtol:g}, atol {result.atol:g}; inputs "
        + ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in result.inputs.items())
        + f" (seed {result.seed} for random ones)",
        highlight=False,
    )
    for note in result.notes:
        console_warning(terminal_text(note))
    several = result.iterations > 1
    columns = ["iteration"] * several + ["output", "shape", "max abs", "max rel", "mean abs", "median abs", "worst at", "engine / ref there", "tolerance", "result"]
    table = Table(*columns, title="outputs" + (f" over {result.iterations} iterations" if several else ""))
    for row in result.outputs:
        table.add_row(*([str(row.iteration)] * several), *_cells(row))
    console.print(table)
    _print_histograms(result)
    if result.layerwise is None:
        return
    layers = result.layerwise
    first = layers.first_divergence
    if first is None:
        console.print(f"layerwise: all {layers.compared} layers with an ONNX counterpart are within tolerance")
        return
    c = first.comparison
    console.print(
        f"layerwise: first divergence at layer [bold]{first.layer}[/bold] ({first.op_type}, {first.device}/{first.precision}), "
        f"from ONNX nodes {', '.join(first.origin)}; output '{first.tensor}' vs '{first.reference_tensor}': "
        f"max abs {c.max_abs:.3g}, max rel {c.max_rel:.3g}, {c.mismatches} elements outside tolerance "
        f"({layers.compared} layers compared up to it)",
        highlight=False,
    )


def _cells(row: OutputComparison) -> list[str]:
    shape = "x".join(map(str, row.shape)) or "scalar"
    name = terminal_text(row.name)
    if row.note:
        return [name, shape, "-", "-", "-", "-", "-", terminal_text(row.note), "-", "[red]FAIL[/red]"]
    worst = "-" if row.worst_index is None else "\\[" + ",".join(map(str, row.worst_index)) + "]"
    there = "-" if row.worst_actual is None else f"{row.worst_actual:.6g} / {row.worst_expected:.6g}"
    stat = "" if row.error_stat == "elemwise" else f" ({row.error_stat})"
    verdict = "[green]PASS[/green]" if row.passed else f"[red]FAIL[/red] ({row.mismatches} el.)"
    return [name, shape, f"{row.max_abs:.3g}", f"{row.max_rel:.3g}", f"{row.mean_abs:.3g}", f"{row.median_abs:.3g}", worst, there,
            f"rtol {row.rtol:g}, atol {row.atol:g}{stat}", verdict]


def _print_histograms(result: CompareResult) -> None:
    """Polygraphy's error histogram: for each output, the iteration with the largest error."""
    worst: dict[str, OutputComparison] = {}
    for row in result.outputs:
        if row.histogram and (row.name not in worst or (row.max_abs or 0) > (worst[row.name].max_abs or 0)):
            worst[row.name] = row
    for name, row in worst.items():
        total = sum(count for _, _, count in row.histogram) or 1
        table = Table("|engine - ref|", "count", "", title=f"error histogram of '{terminal_text(name)}'" + (f", iteration {row.iteration}" if result.iterations > 1 else ""))
        for low, high, count in row.histogram:
            span = "NaN/inf on one side" if np.isinf(low) else f"{low:.3g} .. {high:.3g}"
            table.add_row(span, str(count), "#" * round(40 * count / total))
        console.print(table)
