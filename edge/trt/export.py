"""``export_for_tensorrt``: one folder holding everything the board's TensorRT needs for edgetrt's plan.

The plan comes from an edgetrt engine, built here from the ONNX model (or given); the ONNX
TensorRT parses is the model through the portable passes only (TensorRT fuses itself), its
nodes mapped onto the engine's layers (:mod:`edge.trt.settings`). The folder is filled in a
temporary sibling and moved into place at the end, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from edge.builder import BuilderConfig, build
from edge.engine import Engine
from edge.errors import EdgeError
from edge.fileio import atomic_directory
from edge.frontend.onnx_export import export_model
from edge.frontend.onnx_import import import_model, load_model_proto
from edge.ir import Graph
from edge.passes import PORTABLE_PIPELINE, run_passes
from edge.profiles import DeviceProfile, load_profile
from edge.quant import CALIBRATORS, CalibrationCache, calibration_for, onnx_layout, write_cache
from edge.quant.apply import OnnxLayout
from edge.quant.numerics import quantizer_of
from edge.trt.builder import build_recipe, build_trt_engine, import_tensorrt
from edge.trt.qdq import add_qdq
from edge.trt.readme import readme
from edge.trt.settings import NetworkSettings, network_settings, onnx_names
from edge.trt.trtexec import build_command, profile_command, script, unlisted_layers
from edge.trt.versions import TrtTarget

__all__ = ["ExportResult", "PlannedNetwork", "export_for_tensorrt", "plan_network", "qdq_model", "TRTEXEC_ALGORITHM"]

TRTEXEC_ALGORITHM = "EntropyCalibration2"
"""The cache header's algorithm token: trtexec's ``--calib`` reads through an EntropyCalibrator2,
and TensorRT refuses a cache whose token names another calibrator, whatever made the scales."""

_DLA_POOLS = {"dlaLocalDRAM": 1 << 30, "dlaGlobalDRAM": 512 << 20}  # TensorRT's defaults
_FILES = {
    "onnx": "model.onnx",
    "qdq": "model.qdq.onnx",
    "calib": "model.calib",
    "engine": "model.engine",
    "plan": "plan.json",
    "script": "trtexec.sh",
    "readme": "README.md",
    "trt_plan": "model.plan",
    "timing": "timing.cache",
    "layers": "layers.json",
    "profile": "profile.json",
}


@dataclass
class ExportResult:
    """What was written: the folder, its files (name -> what it is), the settings and command lines."""

    folder: Path
    files: dict[str, str]
    settings: NetworkSettings
    build: list[str]
    profile: list[str]


def _portable(proto: onnx.ModelProto, shapes: dict[str, tuple] | None) -> tuple[Graph, OnnxLayout]:
    """The graph TensorRT gets, and the layout of the import it came from."""
    graph = import_model(proto, shapes)
    layout = onnx_layout(graph)
    run_passes(graph, PORTABLE_PIPELINE)
    return graph, layout


def qdq_model(model: str | os.PathLike, engine: Engine, scales: dict[str, float]) -> onnx.ModelProto:
    """``model`` as explicit Q/DQ ONNX at ``scales`` (ONNX tensor name -> scale, a cache's lines)
    on the layers ``engine`` runs INT8 (what ``calibrate --export-qdq`` writes)."""
    shapes = {v.name: v.shape for v in engine.graph.inputs if v.shape is not None}
    portable, layout = _portable(load_model_proto(model), shapes)
    settings = network_settings(engine, portable, scales, layout, {})
    qdq = add_qdq(export_model(portable, name=engine.name), settings)
    onnx.checker.check_model(qdq, full_check=True)
    return qdq


def _engine_scales(engine: Engine, layout: OnnxLayout) -> dict[str, float]:
    """Calibrated activation scales an engine carries, keyed by ONNX tensor names (explicit Q/DQ
    ones stay in the ONNX)."""
    names = onnx_names(engine.graph, layout)
    scales = {}
    for value in engine.graph.values():
        quantizer = quantizer_of(value.meta)
        if quantizer is not None and not value.is_const and value.meta.get("int8_source") != "qdq" and value.name in names:
            scales[names[value.name]] = float(quantizer.scale)
    return scales


def _build(proto: onnx.ModelProto, config: BuilderConfig, scratch: Path) -> tuple[Engine, dict[str, float]]:
    """Build edgetrt's engine; calibrate once on the unfused graph so the cache holds every ONNX tensor."""
    if config.precision != "int8" or not (config.calib_data or config.calib_cache):
        return build(proto, config), {}
    calibration = calibration_for(import_model(proto, config.input_shapes), config.calib_data, config.calib_cache, config.calibrator, config.calib_batches,
                                  recalibrate=config.recalibrate)
    if config.calib_cache is None:  # hand the scales to the build through a cache instead of calibrating twice
        cache = scratch / "edgetrt.calib"
        write_cache(cache, CalibrationCache(CALIBRATORS[calibration.calibrator], calibration.scales))
        # --best measures its trials on the data (the cache still spares a second calibration)
        config = dataclasses.replace(config, calib_cache=cache, calib_data=config.calib_data if config.best else None)
    return build(proto, config), calibration.scales


def _pools(board: DeviceProfile, uses_dla: bool, workspace_mib: int | None) -> dict[str, int]:
    """TensorRT memory pools: the workspace, and the DLA's when the plan uses one."""
    workspace = workspace_mib << 20 if workspace_mib is not None else min(4 << 30, int(board.memory_gb * 1e9) // 8)
    pools = {"workspace": workspace}
    if uses_dla and board.dla is not None:
        pools.update({"dlaSRAM": board.dla.sram_kb << 10, **_DLA_POOLS})
    return pools


@dataclass
class PlannedNetwork:
    """edgetrt's engine of a model, the ONNX TensorRT parses, and what TensorRT's builder is told."""

    engine: Engine
    onnx: onnx.ModelProto
    settings: NetworkSettings


def plan_network(
    model: str | os.PathLike | bytes | onnx.ModelProto, *, config: BuilderConfig | None = None, engine: Engine | None = None,
    workspace_mib: int | None = None,
) -> PlannedNetwork:
    """edgetrt's plan of ``model`` under ``config`` (built here) or ``engine`` (built before), as
    the portable ONNX and the per-layer settings TensorRT reproduces it with.

    Raises:
        EdgeError: a profile without a GPU, an engine of another model, dynamic input dims or
            an unexportable graph.
    """
    if (config is None) == (engine is None):
        raise EdgeError("give build settings or an engine, not both or neither")
    proto = load_model_proto(model)
    with tempfile.TemporaryDirectory() as scratch:
        if engine is None:
            if load_profile(config.profile).gpu is None:
                raise EdgeError(f"profile '{config.profile}' has no GPU; TensorRT targets a Jetson (e.g. --profile agx-orin-64gb)")
            engine, scales = _build(proto, config, Path(scratch))
            shapes = config.input_shapes
            portable, layout = _portable(proto, shapes)
        else:
            shapes = {v.name: v.shape for v in engine.graph.inputs if v.shape is not None}
            portable, layout = _portable(proto, shapes)
            scales = _engine_scales(engine, layout)
    dynamic = next((v for v in portable.inputs if not v.is_static), None)
    if dynamic is not None:
        raise EdgeError(f"input '{dynamic.describe()}' has dynamic dims: give fixed shapes with --shapes "
                        "(DLA engines need them, and the TensorRT engine carries no optimization profile)")
    uses_dla = engine.build.get("config", {}).get("dla_core") is not None
    settings = network_settings(engine, portable, scales, layout, _pools(load_profile(engine.profile), uses_dla, workspace_mib))
    exported = export_model(portable, name=engine.name)
    onnx.checker.check_model(exported, full_check=True)
    return PlannedNetwork(engine, exported, settings)


def export_for_tensorrt(
    model: str | os.PathLike, folder: str | os.PathLike, target: TrtTarget, *,
    config: BuilderConfig | None = None, engine: Engine | None = None, workspace_mib: int | None = None, build_plan: bool = False,
) -> ExportResult:
    """Write the hand-off folder for ``model`` under ``config`` (built here) or ``engine`` (built before);
    with ``build_plan`` also build ``model.plan`` with this machine's TensorRT (:mod:`edge.trt.builder`).

    Raises:
        EdgeError: what :func:`plan_network` raises, no TensorRT here (with ``build_plan``) or
            one of another release than ``target``.
    """
    planned = plan_network(model, config=config, engine=engine, workspace_mib=workspace_mib)
    engine, exported, settings = planned.engine, planned.onnx, planned.settings
    board = load_profile(engine.profile)
    if board.dla is not None and board.dla.version == 1 and target.name != "8.6":
        settings.notes.append(f"{board.module} runs JetPack 5.x with TensorRT 8.5.2: TensorRT {target.name} does not exist for it; "
                              "use --target-trt 8.6 (the same trtexec flags; write the cache header as TRT-8502)")
    int8 = settings.precision == "int8" and bool(settings.scales)
    files = {_FILES["onnx"]: "the optimized ONNX TensorRT parses (node names are the layer names below)"}
    calib = _FILES["calib"] if int8 and target.implicit_precision else None
    onnx_for_trt = _FILES["qdq"] if int8 and not target.implicit_precision else _FILES["onnx"]
    if calib:
        files[calib] = f"calibration cache, TensorRT {target.name} header, scales on this ONNX's tensor names"
    if onnx_for_trt == _FILES["qdq"]:
        files[onnx_for_trt] = "the same ONNX with Q/DQ nodes carrying the INT8 scales (TensorRT 11 has no calibrators)"
    files.update({
        _FILES["engine"]: "edgetrt's engine of the same plan (edgetrt run / compare / inspect)",
        _FILES["plan"]: "per-layer device and precision, memory pools and I/O, as JSON",
        _FILES["script"]: "the trtexec command lines: ./trtexec.sh build, ./trtexec.sh profile",
        _FILES["readme"]: "this file",
    })
    build_argv = build_command(settings, target, onnx_for_trt, _FILES["trt_plan"], calib, _FILES["timing"])
    profile_argv = profile_command(settings, _FILES["trt_plan"], _FILES["layers"], _FILES["profile"])
    partition_argv = _partition_command(engine, settings)
    cache_text = CalibrationCache(TRTEXEC_ALGORITHM, settings.scales, version=target.cache_version).to_text() if calib else None
    with atomic_directory(folder) as stage:
        (stage / _FILES["onnx"]).write_bytes(exported.SerializeToString())
        if calib:
            (stage / calib).write_text(cache_text, encoding="utf-8")
        trt_onnx = exported
        if onnx_for_trt == _FILES["qdq"]:
            trt_onnx = add_qdq(exported, settings)
            onnx.checker.check_model(trt_onnx, full_check=True)
            (stage / onnx_for_trt).write_bytes(trt_onnx.SerializeToString())
        if build_plan:
            (stage / _FILES["trt_plan"]).write_bytes(_local_plan(trt_onnx, settings, target, cache_text))
            files[_FILES["trt_plan"]] = "the TensorRT engine, built by edgetrt with this machine's TensorRT"
        engine.save(stage / _FILES["engine"])
        record: dict[str, Any] = {"target_trt": target.name, "profile": engine.profile, **settings.to_dict()}
        (stage / _FILES["plan"]).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        (stage / _FILES["script"]).write_text(script(build_argv, profile_argv), encoding="utf-8")
        (stage / _FILES["script"]).chmod(0o755)
        (stage / _FILES["readme"]).write_text(
            readme(settings, target, files, build_argv, profile_argv, partition_argv, engine.profile, unlisted_layers(settings)), encoding="utf-8"
        )
    return ExportResult(Path(folder), files, settings, build_argv, profile_argv)


def _local_plan(model: onnx.ModelProto, settings: NetworkSettings, target: TrtTarget, cache: str | None) -> bytes:
    """``model.plan`` built here; this machine's TensorRT must be the release the folder is for."""
    trt = import_tensorrt()
    if trt.__version__.split(".")[0] != target.name.split(".")[0]:
        raise EdgeError(f"this machine has TensorRT {trt.__version__}, the export is for --target-trt {target.name}; "
                        "build the plan with the TensorRT of the board it runs on")
    return build_trt_engine(model.SerializeToString(), build_recipe(settings, cache), trt)


def _partition_command(engine: Engine, settings: NetworkSettings) -> list[str]:
    """The ``edgetrt partition`` line whose prediction the board's JSON files are compared with."""
    argv = ["edgetrt", "partition", _FILES["onnx"], "--profile", engine.profile]
    power_mode = engine.build.get("config", {}).get("power_mode")
    if power_mode is not None:
        argv += ["--power-mode", str(power_mode)]
    if settings.dla_core is not None:
        argv += ["--dla", str(settings.dla_core)] + (["--gpu-fallback"] if settings.gpu_fallback else [])
    if settings.precision != "fp32":
        argv.append(f"--{settings.precision}")
    return argv + ["--measured", _FILES["profile"], "--layer-info", _FILES["layers"]]
