"""Typed schema of a device profile and the validator that builds it from parsed YAML.

The dataclasses below *are* the schema: field names are the YAML keys, type hints are the
expected types, fields without a default are required. ``build_profile`` walks them, so an
error always names the file, the dotted key and what was wrong ("agx.yaml: key
'gpu.sms': expected an integer, got 'sixteen'").

Units: memory in GB, bandwidth in GB/s, clocks in MHz, power in W, throughput dense
(TOPS / TFLOPS). GPU peaks are for the whole GPU at ``gpu.max_mhz`` with every TPC on; DLA
peaks are **per core** at ``dla.max_mhz``. The cost model scales them by a power mode's caps.

The ``cost`` section holds the cost model's constants (efficiencies, fixed costs), each a
``{value, source}`` pair so every number says where it came from (a fit to published
numbers, a board owner's ``edgetrt partition calibrate`` run, or an estimate).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

from edge.errors import ProfileError

__all__ = [
    "CpuSpec", "GpuSpec", "DlaSpec", "PowerMode", "Constant", "GpuCost", "DlaCost", "CostSpec", "DeviceProfile",
    "build_profile", "same_mode_name",
]


def same_mode_name(a: str, b: str) -> bool:
    """nvpmodel mode names match case-insensitively, with or without NVIDIA's ``MODE_`` prefix
    (``15W`` is ``MODE_15W``), the one rule every command resolves ``--power-mode`` by."""

    def bare(name: str) -> str:
        upper = name.strip().upper()
        return upper.removeprefix("MODE_")

    return bare(a) == bare(b)


@dataclass(frozen=True)
class CpuSpec:
    """Host CPU cluster: used for shape computations and the ``cpu`` profile's cost model."""

    cores: int
    max_mhz: float
    arch: str = ""
    peak_fp32_gflops: float = 0.0


@dataclass(frozen=True)
class GpuSpec:
    """Integrated (or discrete) GPU at its highest clock with every TPC powered."""

    compute_capability: str
    sms: int
    max_mhz: float
    peak_fp32_tflops: float
    peak_fp16_tflops: float
    peak_int8_tops: float
    arch: str = ""
    tpcs: int = 0


@dataclass(frozen=True)
class DlaSpec:
    """NVDLA engines: ``version`` 1 is Xavier's first generation, 2 is Orin's."""

    cores: int
    version: int
    max_mhz: float
    peak_int8_tops: float
    peak_fp16_tflops: float
    sram_kb: int


@dataclass(frozen=True)
class PowerMode:
    """One nvpmodel mode: its caps on CPU, GPU, DLA and memory-controller clocks.

    ``budget_w`` is None for MAXN (no budget); ``gpu_tpcs`` None means all TPCs on;
    ``gpu_max_mhz`` / ``dla_max_mhz`` are None on profiles without a GPU / a DLA.
    """

    id: int
    name: str
    budget_w: float | None
    online_cpus: int
    cpu_max_mhz: float
    gpu_max_mhz: float | None
    dla_max_mhz: float | None
    emc_max_mhz: float
    gpu_tpcs: int | None = None


@dataclass(frozen=True)
class Constant:
    """One cost-model constant and where it came from (fit, calibration run or estimate)."""

    value: float
    source: str


@dataclass(frozen=True)
class GpuCost:
    """GPU terms of the cost model (see edge.partitioner.cost).

    ``eff_*`` are the fractions of the roofline an op class reaches: of the compute peak for
    conv (k x k), pointwise (1x1), depthwise, stem (<= 4 input channels) and gemm, of the DRAM
    bandwidth for elementwise, pool, data (concat / reshape / reformat) and norm layers.
    ``tile_m`` x ``tile_n`` output tiles, ``ctas_per_sm`` resident per SM: wave quantization.
    """

    launch_ms: Constant
    memory_eff: Constant
    int8_factor: Constant
    eff_conv: Constant
    eff_pointwise: Constant
    eff_depthwise: Constant
    eff_stem: Constant
    eff_gemm: Constant
    eff_elementwise: Constant
    eff_pool: Constant
    eff_data: Constant
    eff_norm: Constant
    tile_m: Constant
    tile_n: Constant
    ctas_per_sm: Constant


@dataclass(frozen=True)
class DlaCost:
    """DLA terms: per-class compute efficiency, DRAM rate, and the fixed costs per layer and
    image (a batch runs image by image) and per subgraph submission."""

    eff_conv: Constant
    eff_pointwise: Constant
    eff_depthwise: Constant
    eff_stem: Constant
    eff_other: Constant
    bandwidth_gbps: Constant
    layer_ms: Constant
    image_ms: Constant
    submit_ms: Constant
    sparse_speedup: Constant
    transition_sync_ms: Constant


@dataclass(frozen=True)
class CostSpec:
    """The cost model's constants for one module; ``gpu`` / ``dla`` present iff the module has one."""

    cpu_eff: Constant
    gpu_power_share: Constant
    concurrency_slowdown: Constant
    gpu: GpuCost | None = None
    dla: DlaCost | None = None
    dla_perf_per_watt: Constant | None = None


@dataclass(frozen=True)
class DeviceProfile:
    """Everything edgetrt knows about one target module."""

    name: str
    module: str
    memory_gb: float
    memory_bandwidth_gbps: float
    emc_max_mhz: float
    max_power_w: float
    cpu: CpuSpec
    gpu: GpuSpec | None
    dla: DlaSpec | None
    power_modes: list[PowerMode]
    default_power_mode: int
    tegrastats_rails: list[str]
    cost: CostSpec
    part_number: str = ""
    soc: str = ""
    total_power_rail: str | None = None
    detect: str | None = None
    source: str = field(default="", compare=False)

    @property
    def dla_cores(self) -> int:
        return 0 if self.dla is None else self.dla.cores

    def power_mode(self, key: int | str | None = None) -> PowerMode:
        """The mode with this id or name (see :func:`same_mode_name`); None gives the default mode."""
        if key is None:
            key = self.default_power_mode
        for mode in self.power_modes:
            if mode.id == key or (isinstance(key, str) and (same_mode_name(mode.name, key) or str(mode.id) == key.strip())):
                return mode
        known = ", ".join(f"{m.id}={m.name}" for m in self.power_modes)
        raise ProfileError(f"profile '{self.name}' has no power mode '{key}' (modes: {known})")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON-able), without the source path."""
        data = dataclasses.asdict(self)
        data.pop("source")
        return data


def build_profile(data: Any, source: str) -> DeviceProfile:
    """Validate parsed YAML against the schema and build the profile.

    Args:
        data: the parsed YAML document.
        source: the file name, used in every error message.

    Raises:
        ProfileError: naming ``source``, the dotted key and the problem.
    """
    profile = _build(DeviceProfile, data, "", source)
    profile = dataclasses.replace(profile, source=source)
    _check_consistency(profile, source)
    return profile


def _build(cls: type, data: Any, path: str, source: str) -> Any:
    if not isinstance(data, dict):
        where = f"key '{path}'" if path else "top level"
        raise ProfileError(f"{source}: {where}: expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not (cls is DeviceProfile and f.name == "source")}
    for key in data:
        if key not in fields:
            raise ProfileError(f"{source}: unknown key '{_join(path, str(key))}' (known: {', '.join(fields)})")
    kwargs = {}
    for name, spec in fields.items():
        key = _join(path, name)
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise ProfileError(f"{source}: missing required key '{key}'")
            continue
        kwargs[name] = _convert(hints[name], data[name], key, source)
    return cls(**kwargs)


def _convert(hint: Any, value: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(options[0], value, key, source)
    if origin is list:
        if not isinstance(value, list):
            raise ProfileError(f"{source}: key '{key}': expected a list, got {_describe(value)}")
        (item,) = typing.get_args(hint)
        return [_convert(item, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key, source)
    if value is None:
        raise ProfileError(f"{source}: key '{key}': must not be null")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, float) and key.endswith("compute_capability"):
            return str(value)  # YAML reads an unquoted 8.7 as a float
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    raise ProfileError(f"{source}: key '{key}': expected {names.get(hint, hint)}, got {_describe(value)}")


def _check_consistency(p: DeviceProfile, source: str) -> None:
    """Rules that span several keys (ids unique, default exists, DLA clocks iff DLA)."""
    positive = {
        "memory_gb": p.memory_gb,
        "memory_bandwidth_gbps": p.memory_bandwidth_gbps,
        "emc_max_mhz": p.emc_max_mhz,
        "max_power_w": p.max_power_w,
        "cpu.cores": p.cpu.cores,
        "cpu.max_mhz": p.cpu.max_mhz,
    }
    if p.gpu is not None:
        positive.update({f"gpu.{k}": getattr(p.gpu, k) for k in ("sms", "max_mhz", "peak_fp32_tflops", "peak_fp16_tflops", "peak_int8_tops")})
    if p.dla is not None:
        positive.update({f"dla.{k}": getattr(p.dla, k) for k in ("cores", "max_mhz", "peak_int8_tops", "peak_fp16_tflops", "sram_kb")})
        if p.dla.version not in (1, 2):
            raise ProfileError(f"{source}: key 'dla.version': must be 1 (Xavier) or 2 (Orin), got {p.dla.version}")
    for key, value in positive.items():
        if value <= 0:
            raise ProfileError(f"{source}: key '{key}': must be positive, got {value}")
    if not p.power_modes:
        raise ProfileError(f"{source}: key 'power_modes': at least one power mode is required")
    seen: set[int] = set()
    for index, mode in enumerate(p.power_modes):
        key = f"power_modes[{index}]"
        if mode.id in seen:
            raise ProfileError(f"{source}: key '{key}.id': duplicate power mode id {mode.id}")
        seen.add(mode.id)
        if p.dla is None and mode.dla_max_mhz is not None:
            raise ProfileError(f"{source}: key '{key}.dla_max_mhz': set, but the profile has no DLA (dla: null)")
        if p.dla is not None and mode.dla_max_mhz is None:
            raise ProfileError(f"{source}: key '{key}.dla_max_mhz': required because the profile has a DLA")
        if (p.gpu is None) != (mode.gpu_max_mhz is None):
            problem = "set, but the profile has no GPU (gpu: null)" if p.gpu is None else "required because the profile has a GPU"
            raise ProfileError(f"{source}: key '{key}.gpu_max_mhz': {problem}")
        for name in ("cpu_max_mhz", "emc_max_mhz", "online_cpus"):
            if getattr(mode, name) <= 0:
                raise ProfileError(f"{source}: key '{key}.{name}': must be positive, got {getattr(mode, name)}")
        if mode.online_cpus > p.cpu.cores:
            raise ProfileError(f"{source}: key '{key}.online_cpus': {mode.online_cpus} exceeds cpu.cores {p.cpu.cores}")
        if p.gpu is not None and mode.gpu_tpcs is not None and p.gpu.tpcs and mode.gpu_tpcs > p.gpu.tpcs:
            raise ProfileError(f"{source}: key '{key}.gpu_tpcs': {mode.gpu_tpcs} exceeds gpu.tpcs {p.gpu.tpcs}")
    if p.default_power_mode not in seen:
        raise ProfileError(
            f"{source}: key 'default_power_mode': {p.default_power_mode} is not a power mode id (ids: {sorted(seen)})"
        )
    for unit, key in ((p.gpu, "gpu"), (p.dla, "dla")):
        if (unit is None) != (getattr(p.cost, key) is None):
            problem = f"set, but the profile has no {key.upper()}" if unit is None else f"required because the profile has a {key.upper()}"
            raise ProfileError(f"{source}: key 'cost.{key}': {problem}")
    if p.dla is not None and p.cost.dla_perf_per_watt is None:
        raise ProfileError(f"{source}: key 'cost.dla_perf_per_watt': required because the profile has a DLA")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}"
