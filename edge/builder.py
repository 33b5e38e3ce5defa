"""``edge.build``: the build pipeline from an ONNX model to an Engine.

import -> optimize -> precision -> partition -> execution plan (backends, kernels, transfers)
-> tactics (timed, cached) -> memory plan per space -> Engine. Each stage reads and writes the
one IR or the plan; its decisions land in node/value ``meta``, the plan and ``Engine.build``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.engine import Engine, new_header
from edge.engine.provenance import build_provenance
from edge.errors import EdgeError, ProfileError
from edge.frontend import load_onnx
from edge.ir import Dim, Graph, verify
from edge.kernels.autotune import TimingCache, select_tactics
from edge.kernels.backend import BackendUnavailable, get_backend
from edge.partitioner import PartitionOptions, partition
from edge.passes import optimize
from edge.plan import lower
from edge.precision import PRECISIONS, assign_precision, round_weights
from edge.profiles import load_profile
from edge.quant import CALIBRATORS, CalibrationCache, apply_int8, calibration_for, onnx_layout
from edge.runtime.arena import plan_engine_memory
from edge.runtime.interpreter import Schedule
from edge.runtime.profiles import validate_profiles

__all__ = ["BuilderConfig", "build"]


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
        calib_data: folder of .npy/.npz calibration inputs (INT8 scales; see edge.quant.data).
        calib_cache: TensorRT calibration cache file: read when it exists and fits the model
            and calibrator, else written after calibrating on ``calib_data``.
        calibrator: "entropy2", "minmax" or "percentile"; None takes a cache's algorithm,
            else "entropy2".
        calib_batches: calibrate on at most this many batches.
        backends: backend per partition device ("cpu", "gpu", "dla"), e.g. {"gpu": "cuda"};
            unnamed devices take the default: the CUDA backend for the GPU where one is
            usable, else the CPU backend emulating the device's numerics.
        optimization_level: 0 takes each kernel's heuristic tactic; 1-5 time the candidate
            tactics on this machine (trtexec's --builderOptimizationLevel; default 3).
        timing_cache: JSON timing cache file, read before timing and updated after.
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
    calibrator: str | None = None
    calib_batches: int | None = None
    backends: dict[str, str] | None = None
    optimization_level: int = 3
    timing_cache: str | os.PathLike | None = None
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
        if not 0 <= self.optimization_level <= 5:
            raise EdgeError(f"builder optimization level must be 0..5, got {self.optimization_level}")


def build(model: str | os.PathLike | bytes | Graph, config: BuilderConfig | None = None) -> Engine:
    """Build an engine from an ONNX model (path, bytes, ModelProto) or an imported Graph."""
    config = config or BuilderConfig()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    graph = model if isinstance(model, Graph) else load_onnx(model, input_shapes=config.input_shapes)
    timings["import"] = time.perf_counter() - start
    build_info: dict[str, Any] = {"config": _config_record(config)}
    profiles = validate_profiles(graph.inputs, config.optimization_profiles)
    build_info["optimization_profiles"] = [p.to_record() for p in profiles]

    # calibration (edge.quant): INT8 scales keyed by ONNX tensor names, taken before fusion
    layout = onnx_layout(graph)
    calibration = None
    if config.precision == "int8" and (config.calib_data or config.calib_cache):
        stage = time.perf_counter()
        calibration = calibration_for(graph, config.calib_data, config.calib_cache, config.calibrator, config.calib_batches)
        timings["calibration"] = time.perf_counter() - stage
        build_info["calibration"] = {
            "calibrator": calibration.calibrator,
            "source": calibration.source,
            "tensors": len(calibration.scales),
            "batches": calibration.batches,
        }

    if config.optimize:
        stage = time.perf_counter()
        report = optimize(graph)
        timings["optimize"] = time.perf_counter() - stage
        build_info["optimizer"] = report.to_dict()

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
    build_info["int8"] = apply_int8(graph, calibration.scales if calibration else None, layout)
    round_weights(graph)
    timings["precision_and_placement"] = time.perf_counter() - stage

    verify(graph)

    # execution plan: every layer on its device's backend, transfers at memory-space boundaries
    stage = time.perf_counter()
    targets = _targets(device, config.backends)
    plan = lower(graph, targets)
    build_info["targets"] = targets
    timings["plan"] = time.perf_counter() - stage

    stage = time.perf_counter()
    cache = TimingCache.load(config.timing_cache) if config.timing_cache else TimingCache()
    build_info["tactics"] = select_tactics(graph, plan, config.optimization_level, cache)
    if config.timing_cache:
        cache.save(config.timing_cache)
    timings["tactics"] = time.perf_counter() - stage

    # memory plan: arena offsets per memory space for static shapes, one plan per profile otherwise
    stage = time.perf_counter()
    build_info["memory"] = plan_engine_memory(Schedule(graph, plan=plan), profiles)
    timings["memory"] = time.perf_counter() - stage

    build_info["timings_s"] = timings
    name = Path(model).stem if isinstance(model, (str, os.PathLike)) else graph.name
    header = new_header(name, profile=device.name, precision=config.precision)
    header["provenance"] = build_provenance(
        device, config.precision, config.dla_core, config.power_mode,
        _cache_text(calibration, config.calib_cache), targets, _gpu_capability(targets),
    )
    return Engine(graph, header, build_info, plan)


def _cache_text(calibration: Any, path: str | os.PathLike | None) -> str | None:
    """The calibration cache the INT8 scales are (the file when there is one), for its hash."""
    if calibration is None:
        return None
    if path is not None and Path(path).is_file():
        return Path(path).read_text(encoding="utf-8")
    return CalibrationCache(CALIBRATORS.get(calibration.calibrator, calibration.calibrator), calibration.scales).to_text()


def _gpu_capability(targets: dict[str, str]) -> str | None:
    """Compute capability of the GPU the CUDA backend compiled this engine's kernels for."""
    if "cuda" not in targets.values():
        return None
    return str(get_backend("cuda").device_signature()["compute_capability"])


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
        "calib_data": None if config.calib_data is None else str(config.calib_data),
        "calib_cache": None if config.calib_cache is None else str(config.calib_cache),
        "calibrator": config.calibrator,
        "backends": config.backends,
        "optimization_level": config.optimization_level,
        "timing_cache": None if config.timing_cache is None else str(config.timing_cache),
    }
