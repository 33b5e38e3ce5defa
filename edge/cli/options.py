"""Parsers for option values shared by several commands (shapes, input files)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import typer

from edge.errors import EdgeError, EngineMismatchWarning, InputError
from edge.fileio import read_arrays
from edge.quant.best import DEFAULT_TOLERANCE

__all__ = [
    "BEST",
    "BEST_SEARCH",
    "BEST_TOLERANCE",
    "DLA_CORE",
    "DLA_OBJECTIVE",
    "FP16",
    "GPU_FALLBACK",
    "INT8",
    "LAYER_PRECISIONS",
    "POWER_MODE",
    "SAVED_DATA",
    "SHAPES",
    "THREADS",
    "ALLOW_MISMATCH",
    "load_engine",
    "parse_backends",
    "parse_best_tolerance",
    "parse_input_files",
    "parse_layer_precisions",
    "parse_per_output",
    "parse_shapes",
    "precision_from_flags",
]

# Build flags shared by `build`, `partition` and `compare` (trtexec's names where it has them).
FP16 = typer.Option(False, "--fp16", help="Allow FP16 layers.")
INT8 = typer.Option(False, "--int8", help="Allow INT8 layers (FP16 where no scales are known).")
BEST = typer.Option(False, "--best", help="Allow every precision (same as --fp16 --int8).")
# `build` and `export-trt`, which take calibration data: --best there chooses each layer's precision
BEST_SEARCH = typer.Option(
    False, "--best", help="Allow every precision; with --calib-data, choose each layer's (int8, else fp16, else fp32) so every output stays within --best-tolerance of FP32."
)
BEST_TOLERANCE = typer.Option(
    None, "--best-tolerance", help=f"With --best: the largest relative L2 error ||y - y_fp32|| / ||y_fp32|| any output may reach on the calibration data \\[default: {DEFAULT_TOLERANCE:g}]."
)
DLA_CORE = typer.Option(None, "--dla", "--useDLACore", help="Place eligible layers on this DLA core.")
GPU_FALLBACK = typer.Option(False, "--gpu-fallback", "--allowGPUFallback", help="Let layers the DLA refuses run on the GPU.")
DLA_OBJECTIVE = typer.Option("offload", "--dla-objective", help="Partitioner goal: latency, offload (least GPU time, no slower than greedy) or energy.")
POWER_MODE = typer.Option(None, "--power-mode", help="nvpmodel mode id or name the partition is costed for \\[default: the profile's].")
SHAPES = typer.Option(None, "--shapes", help="Fixed input shapes: name:1x3x224x224,other:1x128.")
LAYER_PRECISIONS = typer.Option(
    None,
    "--layer-precisions",
    "--layerPrecisions",
    help="Per-layer precision by ONNX node name, e.g. conv1:fp16,fc:int8 (*:fp16 for the rest), or @FILE holding that; needs the build's --fp16/--int8.",
)  # parsed by parse_layer_precisions
# Polygraphy's saved-data flags shared by `run` and `compare` (its spellings)
SAVED_DATA = {
    "save_inputs": typer.Option(None, "--save-inputs", help="Write the input feeds of every iteration (.json as Polygraphy writes it, or .npz)."),
    "load_inputs": typer.Option(None, "--load-inputs", help="Read input feeds, one per iteration (Polygraphy .json or .npz)."),
    "save_outputs": typer.Option(None, "--save-outputs", help="Write the outputs of every iteration (Polygraphy RunResults .json, or .npz)."),
    "load_outputs": typer.Option(None, "--load-outputs", help="Compare against saved outputs (Polygraphy RunResults .json or .npz) instead of running a reference."),
    "data_loader_script": typer.Option(None, "--data-loader-script", help="FILE.py[:FUNCTION] whose function (default load_data) yields {input: array} feeds."),
    "iterations": typer.Option(1, "--iterations", min=1, help="Feeds to run (saved feeds and data loaders give their own count)."),
    "validate": typer.Option(False, "--validate", help="Fail when an output holds NaN or inf."),
}
ALLOW_MISMATCH = typer.Option(
    False, "--allow-mismatch", help="Load an engine built for another machine (board, power mode, GPU, versions), warning about each difference."
)
# Run flags shared by `run` and `bench` (onnxruntime's intra_op_num_threads)
THREADS = typer.Option(None, "--threads", min=1, help="CPU threads per layer (the compiled kernels' pool, else the BLAS pool); all cores when not given.")


def precision_from_flags(fp16: bool, int8: bool, best: bool = False) -> str:
    """The widest precision the flags allow, as trtexec reads --fp16/--int8/--best."""
    return "int8" if (int8 or best) else "fp16" if fp16 else "fp32"


def parse_best_tolerance(text: str | None, best: bool) -> float:
    """``--best-tolerance``: a positive finite number, given only with --best (default when absent)."""
    if text is None:
        return DEFAULT_TOLERANCE
    if not best:
        raise EdgeError("--best-tolerance applies to --best: add --best")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise EdgeError(f"--best-tolerance must be a positive number (the largest relative L2 error of an output vs FP32, e.g. 0.01), got '{text}'")
    return value


def parse_shapes(text: str | None) -> dict[str, tuple[int, ...]]:
    """``"x:1x3x224x224,mask:1x128"`` -> ``{"x": (1, 3, 224, 224), "mask": (1, 128)}``."""
    shapes: dict[str, tuple[int, ...]] = {}
    if not text:
        return shapes
    for item in text.split(","):
        name, sep, dims = item.strip().rpartition(":")
        if not sep or not name:
            raise EdgeError(f"--shapes entry '{item}' is not NAME:DIMS (e.g. input:1x3x224x224)")
        try:
            shapes[name] = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            raise EdgeError(f"--shapes entry '{item}': dims '{dims}' are not integers joined by 'x'") from None
        if any(d < 0 for d in shapes[name]):
            raise EdgeError(f"--shapes entry '{item}': dims must be non-negative")
    return shapes


def parse_backends(text: str | None) -> dict[str, str] | None:
    """``"gpu=cuda,dla=cpu"`` -> ``{"gpu": "cuda", "dla": "cpu"}`` (None when not given)."""
    if not text:
        return None
    backends: dict[str, str] = {}
    for item in text.split(","):
        device, sep, backend = item.strip().partition("=")
        if not sep or not device or not backend:
            raise EdgeError(f"--backend entry '{item}' is not DEVICE=BACKEND (e.g. gpu=cuda)")
        backends[device] = backend
    return backends


def parse_layer_precisions(text: str | None) -> dict[str, str] | None:
    """``"conv1:fp16,fc:int8"`` (trtexec's --layerPrecisions) -> ``{"conv1": "fp16", "fc": "int8"}``;
    a name may hold colons (split at the last one). ``@FILE`` reads the value from a file
    (what ``calibrate --keep-fp16`` writes)."""
    if not text:
        return None
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise EdgeError(f"--layer-precisions file '{text[1:]}' cannot be read: {exc}") from None
    pins: dict[str, str] = {}
    for item in text.split(","):
        name, sep, precision = item.strip().rpartition(":")
        if not sep or not name or not precision:
            raise EdgeError(f"--layer-precisions entry '{item}' is not LAYER:PRECISION (e.g. conv1:fp16)")
        pins[name] = precision.lower()
    return pins


def parse_input_files(items: list[str]) -> dict[str, np.ndarray]:
    """``["x=img.npy", "y=b.npz"]`` -> arrays (an .npz must hold exactly one array)."""
    feeds: dict[str, np.ndarray] = {}
    for item in items:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise EdgeError(f"--input '{item}' is not NAME=FILE.npy")
        path = Path(file)
        loaded = read_arrays(path, InputError)
        if len(loaded) != 1:
            raise InputError(f"--input '{name}': '{path}' holds {len(loaded)} arrays, expected one")
        feeds[name] = next(iter(loaded.values()))
    return feeds


def parse_per_output(items: list[str], option: str, cast: type = float) -> dict[str, object] | None:
    """Polygraphy's per-output values: ``["1e-5", "out:1e-3,logits:1e-2"]`` ->
    ``{"": 1e-5, "out": 1e-3, "logits": 1e-2}`` ("" is every other output); None when empty."""
    values: dict[str, object] = {}
    for item in items:
        for part in item.split(","):
            name, _, text = part.strip().rpartition(":")
            try:
                values[name] = cast(text)
            except ValueError:
                raise EdgeError(f"{option} '{part}' is not [OUTPUT:]VALUE (e.g. {option} out:1e-3)") from None
    return values or None
def load_engine(path: Path, allow_mismatch: bool = False):  # -> edge.Engine
    """``edge.load`` for run/bench/serve/profile: each difference from this machine printed as a warning."""
    import edge
    from edge.cli.app import console_warning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EngineMismatchWarning)
        engine = edge.load(path, allow_mismatch=allow_mismatch)
    for warning in caught:
        if issubclass(warning.category, EngineMismatchWarning):
            console_warning(str(warning.message))
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return engine
