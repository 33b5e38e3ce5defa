"""``edge.build``: the build pipeline from an ONNX model to an Engine.

import -> optimize -> precision -> partition -> execution plan (backends, kernels, transfers)
-> tactics (timed, cached) -> memory plan per space -> Engine. Each stage reads and writes the
one IR or the plan; its decisions land in node/value ``meta``, the plan and ``Engine.build``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.engine import Engine, new_header
from edge.engine.provenance import build_provenance, gpu_capability
from edge.errors import EdgeError, ModelImportError, ProfileError
from edge.fp16_range import fp16_overflow_warning, layer_peaks, probe_inputs
from edge.frontend import load_onnx
from edge.ir import Dim, Graph, verify
from edge.kernels.autotune import TimingCache, select_tactics
from edge.kernels.backend import BackendUnavailable, get_backend
from edge.partitioner import PartitionOptions, partition
from edge.passes import optimize
from edge.passes.layout import to_channels_last_regions
from edge.plan.int8_storage import store_int8_codes
from edge.plan import lower
from edge.precision import PRECISIONS, REDUCED, assign_precision, layer_precisions
from edge.profiles import DeviceProfile, load_profile
from edge.quant import CALIBRATORS, Calibration, CalibrationCache, Preprocess, calibration_for, load_calibration_data, onnx_layout
from edge.quant.apply import OnnxLayout, settle_precisions
from edge.quant.best import CHOSEN, DEFAULT_TOLERANCE, choose_precisions
from edge.quant.probe import PrecisionProbe
from edge.runtime.arena import plan_engine_memory
from edge.runtime.interpreter import Schedule
from edge.runtime.profiles import validate_profiles

__all__ = ["BEST_BATCHES", "BuilderConfig", "build", "precision_probe"]

BEST_BATCHES = 8
"""Calibration batches ``best`` measures each trial on (the first ones; all when fewer)."""


@dataclass
class BuilderConfig:
    """What to build and for which target (trtexec's flags, Pythonic names).

    Attributes:
        precision: "fp32", "fp16" or "int8" (the widest precision layers may use).
        profile: device profile name or YAML path.
        dla_core: DLA core to place eligible layers on, or None for GPU/CPU only.
        gpu_fallback: let layers the DLA cannot run fall back to the GPU.
        dla_objective: "latency", "offload" or "energy" (the partitioner's goal).
        power_mode: nvpmodel mode name or id the partition is costed for.
        input_shapes: fixed shapes for inputs, e.g. {"x": (1, 3, 224, 224)}.
        optimization_profiles: list of {input: (min, opt, max)} shape ranges for dynamic inputs.
        optimize: run the graph optimizer.
        verbose: record per-pass details for printing.
        calib_data: calibration inputs (INT8 scales): a folder of .npy/.npz files or images,
            a callable giving batches, or a ``module:function`` spec (see edge.quant.data).
        calib_cache: TensorRT calibration cache file: read when it exists and fits the model
            and calibrator, else written after calibrating on ``calib_data``; one lacking
            tensors of the model is refused unless ``recalibrate``.
        recalibrate: calibrate on ``calib_data`` and rewrite a cache that lacks tensors of the model.
        calibrator: "entropy2", "minmax", "percentile" or "mse"; None takes a cache's algorithm,
            else "entropy2".
        calib_batches: calibrate on at most this many batches.
        calib_batch: samples per calibration batch when the model's batch dim is symbolic,
            or "auto": the largest whose calibration peak fits the profile's memory.
        calib_preprocess: how image folders become input samples (edge.quant.Preprocess).
        layer_precisions: ONNX node name -> "fp32" / "fp16" / "int8" ("*" for the rest), as
            trtexec's --layerPrecisions with --precisionConstraints obey (edge.precision.pin_precisions).
            Pins win over ``best``'s choice.
        best: choose each layer's precision among fp32/fp16/int8, INT8 first, so that every
            output stays within ``best_tolerance`` of FP32 on the first ``BEST_BATCHES``
            batches of ``calib_data`` (edge.quant.best); needs precision "int8". Without
            ``calib_data`` every layer with scales runs INT8 and the rest FP16 (trtexec's --best).
        best_tolerance: the largest relative L2 error ``||y - y_fp32|| / ||y_fp32||`` of any
            output that ``best`` accepts.
        backends: backend per partition device ("cpu", "gpu", "dla"), e.g. {"gpu": "cuda"};
            unnamed devices take the default: the CUDA backend for the GPU where one is
            usable, else the CPU backend emulating the device's numerics.
        optimization_level: 0 takes each kernel's heuristic tactic; 1-5 time the candidate
            tactics on this machine (trtexec's --builderOptimizationLevel; default 3).
        timing_cache: JSON timing cache file, read before timing and updated after.
        channels_last: put the CUDA backend's FP16 and INT8 convolution regions in NHWC where
            the boundary reformats cost less than NCHW convolutions (edge.passes.layout); False
            keeps every tensor in the model's NCHW.
        int8_storage: keep the GPU tensors that integer kernels write and alone read as INT8
            codes (edge.plan.int8_storage); False stores them in float16 as ``q · s``.
    """

    precision: str = "fp32"
    profile: str = "cpu"
    dla_core: int | None = None
    gpu_fallback: bool = False
    dla_objective: str = "offload"
    power_mode: str | None = None
    input_shapes: dict[str, tuple[Dim, ...]] | None = None
    optimization_profiles: list[dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]] | None = None
    optimize: bool = True
    verbose: bool = False
    calib_data: str | os.PathLike | None = None
    calib_cache: str | os.PathLike | None = None
    recalibrate: bool = False
    calibrator: str | None = None
    calib_batches: int | None = None
    calib_batch: int | str | None = None
    calib_preprocess: Preprocess | None = None
    layer_precisions: dict[str, str] | None = None
    best: bool = False
    best_tolerance: float = DEFAULT_TOLERANCE
    backends: dict[str, str] | None = None
    optimization_level: int = 3
    timing_cache: str | os.PathLike | None = None
    channels_last: bool = True
    int8_storage: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise EdgeError(f"precision '{self.precision}' is not one of {list(PRECISIONS)}")
        if self.calibrator is not None and self.calibrator not in CALIBRATORS:
            raise EdgeError(f"calibrator '{self.calibrator}' is not one of {list(CALIBRATORS)}")
        if (self.calib_data or self.calib_cache) and self.precision != "int8":
            raise EdgeError("calibration data or cache given, but the build is not INT8 (add --int8)")
        if self.calib_batches is not None and self.calib_batches < 1:
            raise EdgeError(f"calib_batches must be at least 1, got {self.calib_batches}")
        if self.best and self.precision != "int8":
            raise EdgeError(f"best chooses among fp32, fp16 and int8: it needs precision 'int8', not '{self.precision}'")
        if isinstance(self.best_tolerance, bool) or not isinstance(self.best_tolerance, (int, float)) or not (
            math.isfinite(self.best_tolerance) and self.best_tolerance > 0
        ):
            raise EdgeError(f"best tolerance must be a positive number (relative L2 error vs FP32), got {self.best_tolerance!r}")
        if not 0 <= self.optimization_level <= 5:
            raise EdgeError(f"builder optimization level must be 0..5, got {self.optimization_level}")


def _refuse_container_io(graph: Graph) -> None:
    """Engines take and return tensors (as TensorRT's do): a sequence or optional graph input
    or output is refused; inside the graph such values run on the host."""
    for kind, values in (("input", graph.inputs), ("output", graph.outputs)):
        for value in values:
            container = value.meta.get("container")
            if container is not None:
                raise ModelImportError(
                    f"graph {kind} '{value.name}' is a {container}, but engine inputs and outputs are tensors "
                    "(convert it inside the model: SequenceAt / ConcatFromSequence / OptionalGetElement)"
                )


@dataclass
class _Placed:
    """The build up to placement: the optimized graph with every layer's device and default
    precision, and what settling its precisions and lowering it need."""

    graph: Graph
    layout: OnnxLayout
    calibration: Calibration | None
    device: DeviceProfile
    targets: dict[str, str]
    profiles: list[Any]
    peaks: dict[str, float] | None

    @property
    def scales(self) -> dict[str, float] | None:
        return self.calibration.scales if self.calibration else None


def build(model: str | os.PathLike | bytes | Graph, config: BuilderConfig | None = None) -> Engine:
    """Build an engine from an ONNX model (path, bytes, ModelProto) or an imported Graph."""
    config = config or BuilderConfig()
    from edge.trt.embed import build_with_tensorrt, uses_tensorrt  # edge.trt builds on this module

    if uses_tensorrt(config):  # the whole network as one TensorRT engine
        return build_with_tensorrt(model, config)
    timings: dict[str, float] = {}
    build_info: dict[str, Any] = {"config": _config_record(config), "notes": [], "warnings": []}
    placed = _place(model, config, build_info, timings)
    graph, device, targets = placed.graph, placed.device, placed.targets

    if config.best:
        stage = time.perf_counter()
        _choose_best(placed, config, build_info)
        timings["best"] = time.perf_counter() - stage
    stage = time.perf_counter()
    build_info["int8"] = settle_precisions(graph, config.layer_precisions, config.precision, placed.scales, placed.layout)
    build_info["layer_precisions"] = layer_precisions(graph)
    build_info["warnings"] += _precision_warnings(config, build_info["int8"], build_info["layer_precisions"], "best" in build_info)
    if placed.peaks is not None:
        overflow = fp16_overflow_warning(graph.nodes, placed.peaks, build_info["fp16_range"]["inputs"])
        build_info["warnings"] += [overflow] if overflow else []
    timings["precision"] = time.perf_counter() - stage

    if config.channels_last and "cuda" in targets.values():
        stage = time.perf_counter()
        build_info["layout"] = _channels_last(graph, targets)
        timings["layout"] = time.perf_counter() - stage

    verify(graph)

    # execution plan: every layer on its device's backend, transfers at memory-space boundaries
    stage = time.perf_counter()
    plan = lower(graph, targets)
    build_info["targets"] = targets
    timings["plan"] = time.perf_counter() - stage

    stage = time.perf_counter()
    cache = TimingCache.load(config.timing_cache) if config.timing_cache else TimingCache()
    build_info["tactics"] = select_tactics(graph, plan, config.optimization_level, cache)
    if faster := build_info["tactics"]["int8_faster_in_fp16"]:  # the auto-tuner settled some INT8 layers in FP16
        build_info["layer_precisions"] = layer_precisions(graph)
        build_info["warnings"].append(
            f"{len(faster)} INT8 layer(s) run FP16, faster on this device than their INT8 kernels "
            f"(first: '{faster[0]['node']}', {faster[0]['fp16_ms']} ms against {faster[0]['int8_ms']}); "
            "--layer-precisions '*:int8' keeps every calibrated layer INT8"
        )
    if config.timing_cache:
        cache.save(config.timing_cache)
    timings["tactics"] = time.perf_counter() - stage
    if config.int8_storage and config.precision == "int8" and "cuda" in targets.values():
        stage = time.perf_counter()
        stored = store_int8_codes(graph, plan, lambda names: _unprepared(graph, plan, names))
        build_info["int8_storage"] = {"tensors": len(stored), "names": stored}
        timings["int8_storage"] = time.perf_counter() - stage

    # memory plan: arena offsets per memory space for static shapes, one plan per profile otherwise
    stage = time.perf_counter()
    build_info["memory"] = plan_engine_memory(Schedule(graph, plan=plan), placed.profiles)
    timings["memory"] = time.perf_counter() - stage

    build_info["timings_s"] = timings
    name = Path(model).stem if isinstance(model, (str, os.PathLike)) else graph.name
    header = new_header(name, profile=device.name, precision=config.precision)
    header["provenance"] = build_provenance(
        device, config.precision, config.dla_core, config.power_mode,
        _cache_text(placed.calibration, config.calib_cache), targets, gpu_capability() if "cuda" in targets.values() else None,
    )
    return Engine(graph, header, build_info, plan)


def precision_probe(model: str | os.PathLike | bytes | Graph, config: BuilderConfig, batches: list[list[Any]]) -> PrecisionProbe:
    """Trials of ``model`` placed as ``config`` builds it, on ``batches`` (inputs in model
    order): what ``calibrate --sensitivity`` ranks layers with (edge.quant.sensitivity)."""
    placed = _place(model, config, {}, {})
    return PrecisionProbe(placed.graph, placed.scales, placed.layout, placed.targets, batches, config.layer_precisions, config.precision)


def _place(model: str | os.PathLike | bytes | Graph, config: BuilderConfig, build_info: dict[str, Any], timings: dict[str, float]) -> _Placed:
    """Import, calibrate, optimize and place ``model``: every layer gets its device and the
    build's default precision (pins and INT8 scales settle it afterwards)."""
    start = time.perf_counter()
    graph = model if isinstance(model, Graph) else load_onnx(model, input_shapes=config.input_shapes)
    _refuse_container_io(graph)
    timings["import"] = time.perf_counter() - start
    profiles = validate_profiles(graph.inputs, config.optimization_profiles)
    build_info["optimization_profiles"] = [p.to_record() for p in profiles]

    # calibration (edge.quant): INT8 scales keyed by ONNX tensor names, taken before fusion
    layout = onnx_layout(graph)
    calibration = None
    if config.precision == "int8" and (config.calib_data or config.calib_cache):
        stage = time.perf_counter()
        calibration = calibration_for(
            graph, config.calib_data, config.calib_cache, config.calibrator, config.calib_batches,
            config.calib_batch, load_profile(config.profile).memory_gb * 1e9, config.calib_preprocess,
            recalibrate=config.recalibrate,
        )
        timings["calibration"] = time.perf_counter() - stage
        build_info["calibration"] = {
            "calibrator": calibration.calibrator,
            "source": calibration.source,
            "tensors": len(calibration.scales),
            "batches": calibration.batches,
            "batch": calibration.batch,
            "peak_memory": calibration.peak_memory,
        }

    if config.optimize:
        stage = time.perf_counter()
        report = optimize(graph)
        timings["optimize"] = time.perf_counter() - stage
        build_info["optimizer"] = report.to_dict()

    peaks = None
    if config.precision in REDUCED:
        stage = time.perf_counter()
        peaks = _fp16_range_probe(graph, config, build_info)
        timings["fp16_range"] = time.perf_counter() - stage

    stage = time.perf_counter()
    device = load_profile(config.profile)
    assign_precision(graph, config.precision)
    if device.gpu is not None:
        options = PartitionOptions(
            dla_core=config.dla_core,
            gpu_fallback=config.gpu_fallback,
            precision=config.precision,
            power_mode=config.power_mode,
            objective=config.dla_objective,
        )
        plan = partition(graph, device, options)
        build_info["partition_summary"] = {
            "dla_layers": sum(layer.device == "dla" for layer in plan.layers),
            "gpu_layers": sum(layer.device == "gpu" for layer in plan.layers),
            "dla_subgraphs": len(plan.subgraphs),
            "estimated_latency_ms": plan.applied.latency_ms,
        }
    elif config.dla_core is not None:
        raise ProfileError(f"--dla {config.dla_core}: profile '{device.name}' has no DLA (pick a Jetson profile)")
    else:
        for node in graph.walk():
            node.meta["device"] = "cpu"
    targets = _targets(device, config.backends)
    timings["placement"] = time.perf_counter() - stage
    return _Placed(graph, layout, calibration, device, targets, profiles, peaks)


def _channels_last(graph: Graph, targets: dict[str, str]) -> dict[str, Any]:
    """NHWC regions for the FP16 and INT8 layers of devices the CUDA backend runs, where its
    convolutions take NHWC (cuDNN present); the layout report for the build record. INT8
    layers join so that an INT8 network, and the INT8 layers the auto-tuner settles in FP16,
    run channels-last as an FP16 one does."""
    from edge.kernels.cuda.nn import channels_last_convs

    if not channels_last_convs():
        return {"converted_regions": 0, "note": "NCHW throughout: channels-last convolutions need cuDNN"}
    devices = {device for device, backend in targets.items() if backend == "cuda"}
    wants = lambda node: node.meta.get("device") in devices and node.meta.get("precision") in ("fp16", "int8")  # noqa: E731
    return to_channels_last_regions(graph, wants).to_dict()


def _unprepared(graph: Graph, plan: Any, names: list[str]) -> set[str]:
    """Those of ``names`` (tensors the plan now stores as INT8 codes) whose writer or a reader
    fails to prepare with them: they go back to float storage."""
    wanted, failed = set(names), set()
    for step in Schedule(graph, plan=plan).steps:
        touched = wanted & {name for name in (*step.plan.inputs, *step.plan.outputs) if name}
        if touched and not touched <= failed:
            try:
                step.backend.prepare(step.spec)
            except Exception:  # noqa: BLE001  (a tactic that cannot take codes: its tensors stay float)
                failed |= touched
    return failed


def _choose_best(placed: _Placed, config: BuilderConfig, build_info: dict[str, Any]) -> None:
    """``best``: settle each layer's precision within the tolerance on the calibration data
    (edge.quant.best), recording the decisions on the layers and in ``build_info["best"]``;
    without calibration data, say that every precision is simply allowed."""
    if placed.calibration is None or not config.calib_data:
        build_info["notes"].append(
            "--best without --calib-data has no data to measure the output error on: every layer with INT8 scales "
            "runs INT8 and the rest FP16, as trtexec's --best; add --calib-data to choose each layer's precision "
            "within --best-tolerance"
        )
        return
    batches = load_calibration_data(
        config.calib_data, placed.graph.inputs, BEST_BATCHES, placed.calibration.batch, config.calib_preprocess
    )
    probe = PrecisionProbe(
        placed.graph, placed.scales, placed.layout, placed.targets, list(batches), config.layer_precisions, config.precision
    )
    choice = choose_precisions(probe, config.best_tolerance)
    decided = {layer.layer: layer for layer in choice.layers}
    for node in placed.graph.nodes:
        if node.name in decided:
            node.meta["precision"] = decided[node.name].precision
            node.meta["precision_note"] = CHOSEN
    build_info["best"] = choice.to_record()
    if choice.error > choice.tolerance:
        build_info["warnings"].append(
            f"--best: the engine's output error {choice.error:.3g} exceeds --best-tolerance {choice.tolerance:g} even at "
            "the widest precisions allowed (the DLA runs FP16/INT8 only; --layer-precisions pins hold)"
        )


def _fp16_range_probe(graph: Graph, config: BuilderConfig, build_info: dict[str, Any]) -> dict[str, float] | None:
    """Each layer's FP32 peak |output| on one input batch (see edge.fp16_range); None, with the
    reason in the build record, when that batch cannot run."""
    try:
        first = None
        if config.calib_data:
            data = load_calibration_data(config.calib_data, graph.inputs, 1, preprocess=config.calib_preprocess)
            first = next(iter(data), None)
        inputs, source = probe_inputs(graph, first)
        peaks = layer_peaks(graph, inputs)
    except EdgeError as exc:
        build_info["fp16_range"] = {"inputs": None, "skipped": str(exc)}
        return None
    build_info["fp16_range"] = {"inputs": source}
    return peaks


def _precision_warnings(config: BuilderConfig, int8: dict[str, Any], layers: dict[str, int], searched: bool) -> list[str]:
    """Requested precisions the build could not give (trtexec warns the same way when INT8
    has no calibrator: the build goes on, for timing, but the numbers are not INT8's). A
    ``best`` search that kept no layer in INT8 says why in its own record."""
    if config.precision != "int8" or int8["int8_layers"] or searched:
        return []
    used = ", ".join(f"{n} {p}" for p, n in sorted(layers.items()))
    if config.calib_data or config.calib_cache:
        return [f"INT8 requested but calibration gave no layer all its scales: no layer runs INT8 (layers: {used})"]
    return [
        "INT8 requested without calibration data or cache (--calib-data / --calib): no layer has INT8 scales, "
        f"so no layer runs INT8 (layers: {used}); accuracy and speed are FP16's, not INT8's"
    ]


def _cache_text(calibration: Any, path: str | os.PathLike | None) -> str | None:
    """The calibration cache the INT8 scales are (the file when there is one), for its hash."""
    if calibration is None:
        return None
    if path is not None and Path(path).is_file():
        return Path(path).read_text(encoding="utf-8")
    return CalibrationCache(CALIBRATORS.get(calibration.calibrator, calibration.calibrator), calibration.scales).to_text()




def _targets(device: Any, chosen: dict[str, str] | None) -> dict[str, str]:
    """Backend per partition device: the user's choice, else CUDA for the GPU where usable."""
    targets = {"cpu": "cpu", "gpu": "cpu", "dla": "cpu"}
    if device.gpu is not None and not (chosen and "gpu" in chosen):
        try:
            get_backend("cuda")
            targets["gpu"] = "cuda"
        except BackendUnavailable:
            pass
    for name, backend in (chosen or {}).items():
        if name not in targets:
            raise EdgeError(f"--backend {name}={backend}: '{name}' is not a device (cpu, gpu, dla)")
        get_backend(backend)  # a clear one-line error now when it cannot run here
        targets[name] = backend
    return targets


def _config_record(config: BuilderConfig) -> dict[str, Any]:
    return {
        "precision": config.precision,
        "profile": str(config.profile),
        "dla_core": config.dla_core,
        "gpu_fallback": config.gpu_fallback,
        "dla_objective": config.dla_objective,
        "power_mode": config.power_mode,
        "optimize": config.optimize,
        "calib_data": None if config.calib_data is None else getattr(config.calib_data, "__name__", str(config.calib_data)),
        "calib_cache": None if config.calib_cache is None else str(config.calib_cache),
        "calibrator": config.calibrator,
        "layer_precisions": config.layer_precisions,
        "best": config.best,
        "best_tolerance": config.best_tolerance if config.best else None,
        "backends": config.backends,
        "optimization_level": config.optimization_level,
        "timing_cache": None if config.timing_cache is None else str(config.timing_cache),
        "channels_last": config.channels_last,
    }
