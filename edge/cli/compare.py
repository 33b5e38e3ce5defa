"""``edgetrt compare``: an engine's outputs against onnxruntime on the same inputs (Polygraphy's ``run --onnxrt``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

import edge
from edge.cli.app import app, console
from edge.cli.options import (
    BEST,
    DLA_CORE,
    FP16,
    GPU_FALLBACK,
    INT8,
    SHAPES,
    parse_input_files,
    parse_shapes,
    precision_from_flags,
)
from edge.compare import CompareResult, OutputComparison, compare
from edge.errors import EdgeError

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
    shapes: str = SHAPES,
    inputs: list[str] = typer.Option([], "--input", "-i", help="NAME=FILE.npy; repeat per input. Missing inputs are seeded random."),
    seed: int = typer.Option(0, "--seed", help="Seed for random inputs."),
    rtol: float = typer.Option(None, "--rtol", help="Relative tolerance \\[default: by precision, see below]."),
    atol: float = typer.Option(None, "--atol", help="Absolute tolerance \\[default: by precision, see below]."),
    layerwise: bool = typer.Option(False, "--layerwise", help="Find the first engine layer whose output diverges."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Compare an engine with onnxruntime (or, without it, edgetrt's unoptimized CPU reference).

    Both run the same inputs; each output gets max/mean absolute error, max relative error,
    the worst element and PASS/FAIL for |engine - ref| <= atol + rtol * |ref|. Default
    tolerances (rtol / atol): fp32 1e-4 / 1e-5, fp16 1e-2 / 1e-2, DLA 2e-2 / 2e-2,
    int8 1e-1 / 5e-2. Exit status 1 when any output fails.

    Examples:

        edgetrt compare model.onnx

        edgetrt compare model.onnx --fp16 --shapes images:1x3x640x640

        edgetrt compare model.onnx --engine model.engine --input images=img.npy --atol 1e-3

        edgetrt compare model.onnx --int8 --dla 0 --gpu-fallback --profile agx-orin-64gb --layerwise
    """
    if not model.is_file():
        raise EdgeError(f"model '{model}' does not exist")
    build_flags = [flag for flag, given in (("--profile", profile is not None), ("--fp16", fp16), ("--int8", int8), ("--best", best), ("--dla", dla is not None), ("--gpu-fallback", gpu_fallback), ("--shapes", shapes is not None)) if given]
    config = None
    engine = None
    if engine_path is not None:
        if build_flags:
            raise EdgeError(f"{', '.join(build_flags)} only apply when building; --engine '{engine_path}' is already built")
        if not engine_path.is_file():
            raise EdgeError(f"engine '{engine_path}' does not exist")
        engine = engine_path
    else:
        config = edge.BuilderConfig(
            precision=precision_from_flags(fp16, int8, best),
            profile=profile or "cpu",
            dla_core=dla,
            gpu_fallback=gpu_fallback,
            input_shapes=parse_shapes(shapes) or None,
        )
    result = compare(
        model, engine=engine, config=config, inputs=parse_input_files(inputs), seed=seed, rtol=rtol, atol=atol, layerwise=layerwise
    )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_result(result)
    if not result.passed:
        raise EdgeError(f"{len(result.failed)} of {len(result.outputs)} outputs outside tolerance: {', '.join(result.failed)}")


def _print_result(result: CompareResult) -> None:
    console.print(
        f"engine [bold]{result.engine}[/bold] ({result.numerics}) vs {result.reference}; "
        f"rtol {result.rtol:g}, atol {result.atol:g}; inputs "
        + ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in result.inputs.items())
        + f" (seed {result.seed} for random ones)",
        highlight=False,
    )
    table = Table("output", "shape", "max abs", "max rel", "mean abs", "worst at", "engine / ref there", "result", title="outputs")
    for row in result.outputs:
        table.add_row(*_cells(row))
    console.print(table)
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
    if row.note:
        return [row.name, shape, "-", "-", "-", "-", row.note, "[red]FAIL[/red]"]
    worst = "-" if row.worst_index is None else "[" + ",".join(map(str, row.worst_index)) + "]"
    there = "-" if row.worst_actual is None else f"{row.worst_actual:.6g} / {row.worst_expected:.6g}"
    verdict = "[green]PASS[/green]" if row.passed else f"[red]FAIL[/red] ({row.mismatches} el.)"
    return [row.name, shape, f"{row.max_abs:.3g}", f"{row.max_rel:.3g}", f"{row.mean_abs:.3g}", worst, there, verdict]
