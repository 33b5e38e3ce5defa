"""``edgetrt export-trt``: hand edgetrt's plan to the board's TensorRT (ONNX, cache, trtexec lines, README)."""

from __future__ import annotations

from pathlib import Path

import typer

import edge
from edge.cli.app import app, console
from edge.cli.options import (
    BEST_SEARCH,
    BEST_TOLERANCE,
    DLA_CORE,
    DLA_OBJECTIVE,
    FP16,
    GPU_FALLBACK,
    INT8,
    POWER_MODE,
    SHAPES,
    parse_best_tolerance,
    parse_shapes,
    precision_from_flags,
)
from edge.cli.text import terminal_text
from edge.errors import EdgeError
from edge.inspect import is_engine_file
from edge.trt import TRT_TARGETS, export_for_tensorrt, trt_target

__all__ = ["export_trt_command"]


@app.command("export-trt")
def export_trt_command(
    source: Path = typer.Argument(..., metavar="MODEL.onnx|ENGINE", help="ONNX model to plan, or an edgetrt engine whose plan to export.", show_default=False),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write (replaced as a whole when the export succeeds)."),
    onnx_model: Path = typer.Option(None, "--onnx", help="With an ENGINE: the ONNX model it was built from."),
    target_trt: str = typer.Option("10.3", "--target-trt", help=f"TensorRT release on the board: {', '.join(TRT_TARGETS)}."),
    profile: str = typer.Option("agx-orin-64gb", "--profile", help="Device profile name or YAML path."),
    fp16: bool = FP16,
    int8: bool = INT8,
    best: bool = BEST_SEARCH,
    best_tolerance: str = BEST_TOLERANCE,
    dla: int = DLA_CORE,
    gpu_fallback: bool = GPU_FALLBACK,
    dla_objective: str = DLA_OBJECTIVE,
    power_mode: str = POWER_MODE,
    shapes: str = SHAPES,
    calib_data: Path = typer.Option(None, "--calib-data", help="Folder of .npy/.npz calibration inputs (INT8 scales)."),
    calib_cache: Path = typer.Option(None, "--calib", "--calib-cache", help="edgetrt/TensorRT calibration cache: read if it fits, else written after calibrating."),
    calibrator: str = typer.Option(None, "--calibrator", help="entropy2 (default), minmax or percentile."),
    workspace: int = typer.Option(None, "--workspace", min=1, help="TensorRT workspace pool in MiB \\[default: 1/8 of the board's memory, at most 4096]."),
    build_plan: bool = typer.Option(False, "--build-plan", help="Also build model.plan here with this machine's TensorRT (on the board, where `import tensorrt` works)."),
) -> None:
    """Write what the board's TensorRT needs to build exactly edgetrt's plan.

    The folder holds the optimized ONNX (node names = TensorRT layer names), the calibration
    cache for that ONNX and TensorRT release (or, for TensorRT 11, a Q/DQ ONNX), edgetrt's own
    engine, plan.json, trtexec.sh with the build and profile command lines, and a README.

    Examples:

        edgetrt export-trt resnet50.onnx --profile agx-orin-64gb --dla 0 --gpu-fallback --int8 --calib-data imgs/ -o resnet50-trt

        edgetrt export-trt yolo.onnx --profile orin-nx-16gb --fp16 --target-trt 8.6 -o yolo-trt

        edgetrt export-trt resnet50.engine --onnx resnet50.onnx --target-trt 11 -o resnet50-trt11
    """
    target = trt_target(target_trt)
    if not source.is_file():
        raise EdgeError(f"'{source}' does not exist")
    if is_engine_file(source):
        if onnx_model is None:
            raise EdgeError(f"'{source}' is an engine: give the ONNX model it was built from with --onnx MODEL.onnx")
        if fp16 or int8 or best or best_tolerance or dla is not None or gpu_fallback or calib_data or calib_cache or shapes or power_mode:
            raise EdgeError("build flags (--fp16/--int8/--dla/--calib/...) do not apply to an engine: its plan is exported as built")
        engine = edge.load(source, check_machine=False)
        result = export_for_tensorrt(onnx_model, output, target, engine=engine, workspace_mib=workspace, build_plan=build_plan)
    else:
        if onnx_model is not None:
            raise EdgeError("--onnx is for exporting an engine; the ONNX model is the argument here")
        config = edge.BuilderConfig(
            precision=precision_from_flags(fp16, int8, best), profile=profile, dla_core=dla, gpu_fallback=gpu_fallback,
            dla_objective=dla_objective, power_mode=power_mode, input_shapes=parse_shapes(shapes) or None,
            calib_data=calib_data, calib_cache=calib_cache, calibrator=calibrator,
            best=best, best_tolerance=parse_best_tolerance(best_tolerance, best),
        )
        result = export_for_tensorrt(source, output, target, config=config, workspace_mib=workspace, build_plan=build_plan)
    devices = result.settings.devices()
    dla_layers = sum(device == "DLA" for device in devices.values())
    console.print(
        f"wrote [bold]{terminal_text(result.folder)}[/bold]: {', '.join(result.files)} for TensorRT {target.name}; "
        f"{dla_layers} of {len(result.settings.layers)} layers on the DLA"
    )
    for note in result.settings.notes:
        console.print(f"[yellow]note:[/yellow] {terminal_text(note)}", highlight=False)
    console.print(f"on the board: cd {terminal_text(result.folder.name)} && ./trtexec.sh build && ./trtexec.sh profile", highlight=False)
