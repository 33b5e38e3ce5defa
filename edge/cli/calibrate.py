"""``edgetrt calibrate``: INT8 scales for a model from calibration data, written as a TensorRT calibration cache."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console

import edge
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from edge.builder import precision_probe
from edge.cli.app import app, console
from edge.cli.options import parse_shapes
from edge.errors import EdgeError
from edge.fileio import write_atomic
from edge.frontend import load_onnx
from edge.profiles import load_profile
from edge.quant import (
    CALIBRATORS,
    DEFAULT_PERCENTILE,
    TRT_VERSION,
    CalibrationCache,
    Preprocess,
    calibration_for,
    calibration_progress,
    load_calibration_data,
    scale_to_hex,
    write_cache,
)
from edge.quant.accuracy import top1_agreement
from edge.quant.calibration import Calibration
from edge.quant.sensitivity import LayerSensitivity, keep_fp16, layer_sensitivity
from edge.trt.export import qdq_model

__all__ = ["calib_batch", "calibrate_command", "calibration_bar", "describe_memory"]

CALIB_DATA_HELP = "Calibration inputs: a folder of .npy/.npz files or .jpg/.png images, or module:function / file.py:function giving batches."
CALIB_BATCH_HELP = "Samples per calibration batch for a dynamic batch dim: a number or 'auto' (largest that fits the profile's memory)."


def calib_batch(text: str | None) -> int | str | None:
    """``--calib-batch``: a positive number or "auto"."""
    if text is None or text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise EdgeError(f"--calib-batch must be a positive number or 'auto', got '{text}'")
    return int(text)


@contextmanager
def calibration_bar() -> Iterator[None]:
    """A progress bar with ETA (on stderr) for calibrations run inside the block."""
    columns = (TextColumn("calibrating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("calibrating", total=None)

        def report(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        with calibration_progress(report):
            yield


def describe_memory(result: Calibration) -> str:
    """``peak memory 123.4 MiB, batch 8`` (+ how auto sized it) for a calibration."""
    batch = result.batch if result.batch is not None else "of the callable"
    text = f"peak memory {result.peak_memory / 2**20:.1f} MiB, batch {batch}"
    if result.sizing:
        text += (
            f" (auto: {result.sizing['per_sample'] / 2**20:.2f} MiB per sample, predicted peak "
            f"{result.sizing['predicted_peak'] / 2**20:.1f} MiB, budget {result.sizing['budget'] / 2**20:.0f} MiB)"
        )
    return text


def preprocess_from(yaml_file: Path | None, **flags: object) -> Preprocess | None:
    """Image preprocessing from a YAML file, overridden by the flags given."""
    base = Preprocess.from_yaml(yaml_file) if yaml_file is not None else Preprocess()
    given = {k: v for k, v in flags.items() if v is not None}
    if not given:
        return base if yaml_file is not None else None
    settings = {k: getattr(base, k) for k in base.__dataclass_fields__} | given
    return Preprocess.from_mapping(settings, "preprocessing flags")


SENSITIVITY_BATCHES = 4
"""Batches ``--sensitivity`` runs every single-layer INT8 trial on."""


def _report_sensitivity(ranking: list[LayerSensitivity], keep: int | None, cache: Path) -> None:
    table = Table(
        "rank", "layer", "ONNX nodes", "relative L2 error", "output cosine", "max |error|",
        title="INT8 sensitivity (each layer quantized alone, outputs vs FP32), worst first",
    )
    for rank, entry in enumerate(ranking, start=1):
        found = entry.deviation
        table.add_row(str(rank), entry.layer, ", ".join(entry.onnx_nodes), f"{found.relative:.4g}", f"{found.cosine:.6f}", f"{found.max_error:.4g}")
    console.print(table)
    if keep is not None:
        target = cache.with_suffix(".precisions")
        write_atomic(target, keep_fp16(ranking, keep) + "\n")
        console.print(f"wrote [bold]{target}[/bold]: the worst {min(keep, len(ranking))} layers as fp16 (build --int8 --layer-precisions @{target})")


@app.command("calibrate")
def calibrate_command(
    model: Path = typer.Argument(..., metavar="MODEL.onnx", help="ONNX model to calibrate.", show_default=False),
    calib_data: Path = typer.Option(..., "--calib-data", help=CALIB_DATA_HELP, show_default=False),
    output: Path = typer.Option(None, "--output", "-o", help="Cache file to write \\[default: MODEL.calib]."),
    calibrator: str = typer.Option("entropy2", "--calibrator", help="entropy2, minmax, percentile or mse."),
    batches: int = typer.Option(None, "--batches", help="Use at most this many batches \\[default: all]."),
    batch: str = typer.Option(None, "--calib-batch", help=CALIB_BATCH_HELP),
    profile: str = typer.Option(None, "--profile", help="Device profile whose memory bounds --calib-batch auto \\[default: this machine]."),
    percentile: float = typer.Option(DEFAULT_PERCENTILE, "--percentile", help="Percentile of |x| for --calibrator percentile."),
    trt_version: int = typer.Option(TRT_VERSION, "--trt-version", help="Version token of the cache header (8602 = TensorRT 8.6.2, 100300 = 10.3.0)."),
    shapes: str = typer.Option(None, "--shapes", help="Fixed input shapes: name:1x3x224x224 (the calibration batch shape)."),
    preprocess: Path = typer.Option(None, "--preprocess", help="YAML file of image preprocessing (resize, crop, mean, std, channels, layout)."),
    resize: int = typer.Option(None, "--resize", help="Images: resize the shorter side to this many pixels \\[default: the crop's longer side]."),
    crop: str = typer.Option(None, "--crop", help="Images: center crop, SIZE or HxW \\[default: the model's]."),
    mean: str = typer.Option(None, "--mean", help="Images: per-channel mean of [0, 1] pixels, e.g. 0.485,0.456,0.406."),
    std: str = typer.Option(None, "--std", help="Images: per-channel std, e.g. 0.229,0.224,0.225."),
    channels: str = typer.Option(None, "--channels", help="Images: rgb or bgr \\[default: rgb]."),
    layout: str = typer.Option(None, "--layout", help="Images: nchw or nhwc \\[default: from the input shape]."),
    export_qdq: Path = typer.Option(None, "--export-qdq", help="Also write the model as explicit Q/DQ ONNX at the cache's scales (for TensorRT 10+/11 and onnxruntime)."),
    sensitivity: bool = typer.Option(False, "--sensitivity", help="Rank the INT8 layers by how far quantizing each alone moves the outputs from FP32 (relative L2 error, cosine, max error) on --eval-data, else --calib-data."),
    keep_fp16: int = typer.Option(None, "--keep-fp16", min=1, help="With --sensitivity: write the worst K layers as a --layer-precisions value to MODEL.precisions (build --layer-precisions @MODEL.precisions)."),
    eval_data: Path = typer.Option(None, "--eval-data", help="After calibrating, build FP32 and INT8 engines and report their top-1 agreement and output cosine on this data (same forms as --calib-data)."),
) -> None:
    """Calibrate a model for INT8 and write a TensorRT calibration cache.

    The unfused model runs in FP32 on every batch; each float tensor (network inputs and
    every layer output, by ONNX name) gets a scale = threshold / 127. The cache uses
    TensorRT's text format, so `trtexec --int8 --calib=FILE` and `edgetrt build --int8
    --calib FILE` both read it. Prints each tensor's max |x|, threshold and scale, and the
    calibration's peak memory; batches stream, so only one is held at a time.

    Examples:

        edgetrt calibrate resnet50.onnx --calib-data imgs/ --resize 256 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 -o resnet50.calib

        edgetrt calibrate resnet50.onnx --calib-data imgs/ --calib-batch auto --profile orin-nano-4gb

        edgetrt calibrate yolo.onnx --calib-data data.py:batches --calibrator minmax --batches 100

        edgetrt calibrate model.onnx --calib-data arrays/ --trt-version 100300 -o model.calib

        edgetrt calibrate classifier.onnx --calib-data train/ --eval-data test/

        edgetrt calibrate model.onnx --calib-data arrays/ --export-qdq model.qdq.onnx

        edgetrt calibrate model.onnx --calib-data arrays/ --sensitivity --keep-fp16 2
    """
    if keep_fp16 is not None and not sensitivity:
        raise EdgeError("--keep-fp16 ranks layers: add --sensitivity")
    if calibrator not in CALIBRATORS:
        raise EdgeError(f"--calibrator '{calibrator}' is not one of {list(CALIBRATORS)}")
    if batches is not None and batches < 1:
        raise EdgeError(f"--batches must be at least 1, got {batches}")
    if not 0 < percentile <= 100:
        raise EdgeError(f"--percentile must be in (0, 100], got {percentile}")
    if not model.is_file():
        raise EdgeError(f"model '{model}' does not exist")
    sizes = None if crop is None else crop.lower().split("x")
    settings = preprocess_from(preprocess, resize=resize, crop=sizes, mean=mean, std=std, channels=channels, layout=layout)
    memory = None if profile is None else load_profile(profile).memory_gb * 1e9
    graph = load_onnx(model, input_shapes=parse_shapes(shapes) or None)
    with calibration_bar():
        result = calibration_for(graph, calib_data, None, calibrator, batches, calib_batch(batch), memory, settings, percentile)
    target = output or model.with_suffix(".calib")
    write_cache(target, CalibrationCache(CALIBRATORS[calibrator], result.scales, trt_version))
    table = Table("tensor", "max |x|", "threshold", "scale", "cache hex", title=f"{calibrator} on {result.batches} batches")
    for name, found in (result.ranges or {}).items():
        threshold = f"{found.threshold:.6g}" if found.threshold > 0 else "- (zero on every batch)"
        table.add_row(name, f"{found.amax:.6g}", threshold, f"{found.scale:.6g}", scale_to_hex(found.scale))
    console.print(table)
    console.print(describe_memory(result))
    console.print(f"wrote [bold]{target}[/bold]: {len(result.scales)} tensors")
    config = {"input_shapes": parse_shapes(shapes) or None}
    if sensitivity:
        data = load_calibration_data(eval_data or calib_data, graph.inputs, SENSITIVITY_BATCHES, result.batch, settings)
        probe = precision_probe(model, edge.BuilderConfig(precision="int8", calib_cache=target, **config), list(data))
        _report_sensitivity(layer_sensitivity(probe), keep_fp16, target)
    if export_qdq is None and eval_data is None:
        return
    int8 = edge.build(model, edge.BuilderConfig(precision="int8", calib_cache=target, **config))
    if export_qdq is not None:
        write_atomic(export_qdq, qdq_model(model, int8, result.scales).SerializeToString())
        console.print(f"wrote [bold]{export_qdq}[/bold]: Q/DQ ONNX at the cache's scales")
    if eval_data is not None:
        fp32 = edge.build(model, edge.BuilderConfig(**config))
        data = load_calibration_data(eval_data, graph.inputs, batch=result.batch, preprocess=settings)
        found = top1_agreement(fp32.create_context(), int8.create_context(), data)
        console.print(
            f"INT8 vs FP32 on '{eval_data}': top-1 agreement {100 * found.top1:.1f} % of {found.samples} rows of "
            f"'{found.output}', output cosine {found.cosine:.5f}"
        )
