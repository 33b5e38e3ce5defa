"""``edgetrt calibrate``: INT8 scales for a model from calibration data, written as a TensorRT calibration cache."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from edge.cli.app import app, console
from edge.cli.options import parse_shapes
from edge.errors import EdgeError
from edge.frontend import load_onnx
from edge.quant import (
    CALIBRATORS,
    DEFAULT_PERCENTILE,
    TRT_VERSION,
    CalibrationCache,
    calibrate,
    load_calibration_data,
    scale_to_hex,
    write_cache,
)

__all__ = ["calibrate_command"]


@app.command("calibrate")
def calibrate_command(
    model: Path = typer.Argument(..., metavar="MODEL.onnx", help="ONNX model to calibrate.", show_default=False),
    calib_data: Path = typer.Option(..., "--calib-data", help="Folder of .npy/.npz inputs, samples stacked along axis 0.", show_default=False),
    output: Path = typer.Option(None, "--output", "-o", help="Cache file to write \\[default: MODEL.calib]."),
    calibrator: str = typer.Option("entropy2", "--calibrator", help="entropy2, minmax or percentile."),
    batches: int = typer.Option(None, "--batches", help="Use at most this many batches \\[default: all]."),
    percentile: float = typer.Option(DEFAULT_PERCENTILE, "--percentile", help="Percentile of |x| for --calibrator percentile."),
    trt_version: int = typer.Option(TRT_VERSION, "--trt-version", help="Version token of the cache header (8602 = TensorRT 8.6.2, 100300 = 10.3.0)."),
    shapes: str = typer.Option(None, "--shapes", help="Fixed input shapes: name:1x3x224x224 (the calibration batch shape)."),
) -> None:
    """Calibrate a model for INT8 and write a TensorRT calibration cache.

    The unfused model runs in FP32 on every batch; each float tensor (network inputs and
    every layer output, by ONNX name) gets a scale = threshold / 127. The cache uses
    TensorRT's text format, so `trtexec --int8 --calib=FILE` and `edgetrt build --int8
    --calib FILE` both read it. Prints each tensor's max |x|, threshold and scale.

    Examples:

        edgetrt calibrate resnet50.onnx --calib-data imgs/ -o resnet50.calib

        edgetrt calibrate yolo.onnx --calib-data imgs/ --calibrator minmax --batches 100

        edgetrt calibrate model.onnx --calib-data imgs/ --trt-version 100300 -o model.calib
    """
    if calibrator not in CALIBRATORS:
        raise EdgeError(f"--calibrator '{calibrator}' is not one of {list(CALIBRATORS)}")
    if batches is not None and batches < 1:
        raise EdgeError(f"--batches must be at least 1, got {batches}")
    if not 0 < percentile <= 100:
        raise EdgeError(f"--percentile must be in (0, 100], got {percentile}")
    if not model.is_file():
        raise EdgeError(f"model '{model}' does not exist")
    graph = load_onnx(model, input_shapes=parse_shapes(shapes) or None)
    data = load_calibration_data(calib_data, graph.inputs, batches)
    result = calibrate(graph, data, calibrator, percentile)
    target = output or model.with_suffix(".calib")
    write_cache(target, CalibrationCache(CALIBRATORS[calibrator], result.scales, trt_version))
    table = Table("tensor", "max |x|", "threshold", "scale", "cache hex", title=f"{calibrator} on {result.batches} batches")
    for name, found in (result.ranges or {}).items():
        if found.threshold > 0:
            table.add_row(name, f"{found.amax:.6g}", f"{found.threshold:.6g}", f"{found.scale:.6g}", scale_to_hex(found.scale))
        else:
            table.add_row(name, f"{found.amax:.6g}", "-", "no scale (zero on every batch)", "")
    console.print(table)
    console.print(f"wrote [bold]{target}[/bold]: {len(result.scales)} tensors")
