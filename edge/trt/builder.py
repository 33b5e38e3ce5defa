"""Build a TensorRT engine from the exported ONNX with edgetrt's plan, where ``import tensorrt`` works.

:func:`build_recipe` turns :class:`~edge.trt.settings.NetworkSettings` into plain data in
TensorRT's own vocabulary (builder flags, default device, DLA core, per-layer device types
and precisions, memory pools, the calibration cache); :func:`build_trt_engine` applies it
through TensorRT's Python API (8.6 / 10.x: implicit INT8 through an EntropyCalibrator2 that
serves the cache and never asks for data). Without TensorRT the error says so and points to
the trtexec hand-off that ``edgetrt export-trt`` writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from edge.errors import EdgeError
from edge.kernels.backend import BackendUnavailable
from edge.trt.settings import NetworkSettings

__all__ = ["TrtBuildRecipe", "build_recipe", "build_trt_engine", "import_tensorrt"]

_PRECISION_TYPES = {"fp32": "FLOAT", "fp16": "HALF", "int8": "INT8"}
_POOLS = {"workspace": "WORKSPACE", "dlaSRAM": "DLA_MANAGED_SRAM", "dlaLocalDRAM": "DLA_LOCAL_DRAM", "dlaGlobalDRAM": "DLA_GLOBAL_DRAM"}


@dataclass(frozen=True)
class TrtBuildRecipe:
    """The builder configuration in TensorRT's enum names.

    Attributes:
        flags: ``trt.BuilderFlag`` members to set.
        default_device: ``trt.DeviceType`` member for layers not listed.
        dla_core: ``config.DLA_core``, or None.
        devices: layer name -> ``trt.DeviceType`` member.
        precisions: layer name -> ``trt.DataType`` member.
        pools: ``trt.MemoryPoolType`` member -> bytes.
        calibration_cache: the cache text the calibrator serves, or None.
    """

    flags: tuple[str, ...]
    default_device: str
    dla_core: int | None
    devices: dict[str, str] = field(default_factory=dict)
    precisions: dict[str, str] = field(default_factory=dict)
    pools: dict[str, int] = field(default_factory=dict)
    calibration_cache: str | None = None


def build_recipe(settings: NetworkSettings, calibration_cache: str | None) -> TrtBuildRecipe:
    """The builder settings that reproduce ``settings`` (precisions obeyed, as trtexec's line does)."""
    int8 = settings.precision == "int8" and calibration_cache is not None
    flags: list[str] = []
    if settings.precision in ("fp16", "int8"):
        flags += ["FP16", *(["INT8"] if int8 else []), "OBEY_PRECISION_CONSTRAINTS"]
    if settings.dla_core is not None and settings.gpu_fallback:
        flags.append("GPU_FALLBACK")
    return TrtBuildRecipe(
        flags=tuple(flags),
        default_device="DLA" if settings.dla_core is not None else "GPU",
        dla_core=settings.dla_core,
        devices=settings.devices() if settings.dla_core is not None else {},
        precisions={name: _PRECISION_TYPES[p] for name, p in settings.precisions().items()} if flags else {},
        pools={_POOLS[name]: size for name, size in settings.memory_pools.items()},
        calibration_cache=calibration_cache if int8 else None,
    )


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or BackendUnavailable naming the fix and the trtexec route."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailable(
            f"TensorRT is not installed here (import tensorrt: {exc}); on a Jetson install JetPack's python3-libnvinfer, "
            "or write the trtexec hand-off with `edgetrt export-trt MODEL.onnx -o DIR` and build it on the board"
        ) from None
    return tensorrt


def _calibrator(trt: ModuleType, cache: str) -> Any:
    """An EntropyCalibrator2 that only serves ``cache`` (TensorRT asks for batches only without one)."""

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> None:
            return None  # no data: the cache covers every tensor

        def read_calibration_cache(self) -> bytes:
            return cache.encode("ascii")

        def write_calibration_cache(self, data: Any) -> None:
            return None

    return CacheCalibrator()


def build_trt_engine(onnx_bytes: bytes, recipe: TrtBuildRecipe, trt: ModuleType | None = None) -> bytes:
    """A serialized TensorRT engine (plan) of ``onnx_bytes`` built as ``recipe`` says.

    Raises:
        BackendUnavailable: no TensorRT here.
        EdgeError: the parser or the builder failed (its first message), or a listed layer is
            missing from the parsed network.
    """
    trt = trt or import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)  # implied from TensorRT 10
    network = builder.create_network(0 if explicit is None else 1 << int(explicit))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        raise EdgeError(f"TensorRT's ONNX parser refused the model: {parser.get_error(0) if parser.num_errors else 'no message'}")
    config = builder.create_builder_config()
    for flag in recipe.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    config.default_device_type = getattr(trt.DeviceType, recipe.default_device)
    if recipe.dla_core is not None:
        config.DLA_core = recipe.dla_core
    for pool, size in recipe.pools.items():
        config.set_memory_pool_limit(getattr(trt.MemoryPoolType, pool), size)
    layers = {network.get_layer(i).name: network.get_layer(i) for i in range(network.num_layers)}
    missing = sorted((set(recipe.devices) | set(recipe.precisions)) - set(layers))
    if missing:
        raise EdgeError(f"the parsed TensorRT network has no layer named '{missing[0]}' ({len(missing)} planned layers missing)")
    for name, device in recipe.devices.items():
        config.set_device_type(layers[name], getattr(trt.DeviceType, device))
    for name, precision in recipe.precisions.items():
        layers[name].precision = getattr(trt.DataType, precision)
    if recipe.calibration_cache is not None:
        config.int8_calibrator = _calibrator(trt, recipe.calibration_cache)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EdgeError("TensorRT could not build the engine (see its log above); `./trtexec.sh build` shows the same with --verbose")
    return bytes(plan)
