"""``edgetrt build --backend gpu=tensorrt``: edgetrt's plan built into one TensorRT engine, held in an edgetrt engine.

The plan is made as for ``export-trt`` (partition, precisions, calibration on the unfused
graph, all emulated on the CPU: no tactics are timed, TensorRT times its own); the portable
ONNX is then built with this machine's TensorRT under the same per-layer device types and
precisions, DLA core, fallback flag and a calibrator serving edgetrt's scales, and the
serialized plan becomes the engine's one ``TensorRTEngine`` layer (a checksummed blob of the
engine file). Every command that loads an engine (run, bench, profile, serve) then runs it.

On a Jetson whose TensorRT imports, a build that names no GPU/DLA backend takes this path:
there the DLA is only reachable through TensorRT, and the plan is built on the board that runs
it (TensorRT plans do not move between machines or versions).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import onnx

from edge.engine import Engine, new_header
from edge.errors import EdgeError
from edge.ir import EDGETRT_DOMAIN, Graph, Value
from edge.kernels.autotune import TimingCache, select_tactics
from edge.kernels.backend import BackendUnavailable, get_backend
from edge.plan import lower
from edge.profiles import load_profile
from edge.quant import CalibrationCache
from edge.runtime.arena import plan_engine_memory
from edge.runtime.interpreter import Schedule
from edge.runtime.profiles import validate_profiles
from edge.trt.builder import TrtBuildRecipe, build_recipe, build_trt_engine
from edge.trt.export import TRTEXEC_ALGORITHM, plan_network
from edge.trt.versions import cache_version

__all__ = ["TENSORRT", "build_with_tensorrt", "uses_tensorrt"]

TENSORRT = "tensorrt"
_PLANNED_ON = {"cpu": "cpu", "gpu": "cpu", "dla": "cpu"}
_TEGRA_RELEASE = Path("/etc/nv_tegra_release")


def uses_tensorrt(config: Any) -> bool:
    """Whether ``config`` builds through TensorRT: a device's backend is ``tensorrt``, or none of
    GPU/DLA is named on a Jetson where the TensorRT backend can run.

    Raises:
        EdgeError: ``tensorrt`` for one of GPU/DLA and another backend for the other (the
            TensorRT engine holds both).
    """
    chosen = config.backends or {}
    if TENSORRT in chosen.values():
        other = next((f"{d}={b}" for d, b in chosen.items() if d in ("gpu", "dla") and b != TENSORRT), None)
        if other is not None:
            raise EdgeError(f"--backend {other}: with tensorrt the whole network is one TensorRT engine (GPU and DLA layers); drop {other}")
        return True
    if chosen.keys() & {"gpu", "dla"} or not _TEGRA_RELEASE.is_file() or load_profile(config.profile).gpu is None:
        return False
    try:
        get_backend(TENSORRT)
    except BackendUnavailable:
        return False
    return True


def _calibration_cache(settings: Any, release: str) -> str | None:
    """The cache text the calibrator serves: edgetrt's scales under this TensorRT's header."""
    if settings.precision != "int8" or not settings.scales:
        return None
    return CalibrationCache(TRTEXEC_ALGORITHM, settings.scales, version=cache_version(release)).to_text()


def _recipe_record(recipe: TrtBuildRecipe) -> dict[str, Any]:
    """The builder configuration as the build record keeps it (the cache is in the provenance hash)."""
    record = dataclasses.asdict(recipe)
    record["calibration_cache"] = recipe.calibration_cache is not None
    return record


def build_with_tensorrt(model: str | os.PathLike | bytes | onnx.ModelProto | Graph, config: Any) -> Engine:
    """An engine whose network is one TensorRT engine built here from ``model`` under ``config``.

    Raises:
        BackendUnavailable: ``tensorrt`` does not import here (the message points to export-trt).
        EdgeError: an imported Graph (TensorRT parses ONNX), a profile without a GPU, dynamic
            input dims, TensorRT 11 (strongly typed networks), or TensorRT's own refusal.
    """
    backend = get_backend(TENSORRT)
    trt = backend.trt
    if int(trt.__version__.split(".")[0]) >= 11:
        raise EdgeError(f"TensorRT {trt.__version__} builds strongly typed networks only; the tensorrt backend builds with 8.6/10.x "
                        "(JetPack 6): for TensorRT 11 write the Q/DQ hand-off with `edgetrt export-trt --target-trt 11`")
    if isinstance(model, Graph):
        raise EdgeError("the tensorrt backend builds from an ONNX model (path, bytes or ModelProto), not an imported graph")
    planning = dataclasses.replace(config, backends=dict(_PLANNED_ON), optimization_level=0, timing_cache=None)
    planned = plan_network(model, config=planning)
    settings = planned.settings
    recipe = build_recipe(settings, _calibration_cache(settings, trt.__version__))
    plan = build_trt_engine(planned.onnx.SerializeToString(), recipe, trt)
    graph = _engine_graph(planned.engine.graph, plan, trt.__version__, settings.dla_core)
    targets = {**_PLANNED_ON, "gpu": TENSORRT, "dla": TENSORRT}
    execution = lower(graph, targets)
    build_info = {key: value for key, value in planned.engine.build.items() if key not in ("tactics", "memory", "targets")}
    build_info["config"] = {**build_info["config"], "backends": config.backends, "optimization_level": config.optimization_level}
    build_info["targets"] = targets
    build_info["tactics"] = select_tactics(graph, execution, 0, TimingCache())
    build_info["memory"] = plan_engine_memory(Schedule(graph, plan=execution), validate_profiles(graph.inputs, None))
    build_info["tensorrt"] = {"version": trt.__version__, "plan_bytes": len(plan), "recipe": _recipe_record(recipe), "network": settings.to_dict()}
    header = new_header(planned.engine.name, profile=planned.engine.profile, precision=planned.engine.precision)
    provenance = planned.engine.header["provenance"]
    provenance["built_with"].update(tensorrt=trt.__version__, gpu_compute_capability=backend.compute_capability)
    header["provenance"] = provenance
    return Engine(graph, header, build_info, execution)


def _engine_graph(planned: Graph, plan: bytes, release: str, dla_core: int | None) -> Graph:
    """The graph of one ``TensorRTEngine`` layer between the planned engine's inputs and outputs."""
    from edge.kernels.tensorrt.step import engine_node

    inputs = [Value(v.name, v.dtype, v.shape) for v in planned.inputs]
    outputs = [Value(v.name, v.dtype, v.shape) for v in planned.outputs]
    node = engine_node(plan, inputs, outputs, release, dla_core)
    node.meta.update(device="dla" if dla_core is not None else "gpu", precision="fp32")
    return Graph([node], inputs, outputs, name=planned.name, opset={"": planned.opset.get("", 17), EDGETRT_DOMAIN: 1})
