"""trtexec command lines that reproduce edgetrt's plan on the board, per TensorRT release.

The build line pins what edgetrt decided: DLA core and GPU fallback, every layer's device
(``--layerDeviceTypes``), for 8.6/10.x the precision flags, the calibration cache and every
layer's precision obeyed (``--layerPrecisions`` + ``--precisionConstraints=obey``), memory pools,
linear I/O formats of the model's own types, and a timing cache. The profile line loads the
engine and writes the per-layer JSON that ``edgetrt partition --measured`` reads back.
"""

from __future__ import annotations

import shlex

import numpy as np

from edge.trt.settings import NetworkSettings
from edge.trt.versions import TrtTarget

__all__ = ["build_command", "profile_command", "script", "unlisted_layers"]

_IO_TYPES = {"float32": "fp32", "float16": "fp16", "int32": "int32", "int64": "int64", "int8": "int8", "uint8": "uint8", "bool": "bool"}
_MIB = 1 << 20


def _listable(name: str) -> bool:
    """trtexec splits a layer list at ',' and each entry at its last ':'; other names cannot be listed."""
    return "," not in name and ":" not in name


def unlisted_layers(settings: NetworkSettings) -> list[str]:
    """Layers whose names trtexec's list syntax cannot carry (TensorRT places them itself)."""
    return [layer.name for layer in settings.layers if (layer.device or layer.precision) and not _listable(layer.name)]


def _spec(items: dict[str, str]) -> str:
    return ",".join(f"{name}:{value}" for name, value in items.items() if _listable(name))


def _size(nbytes: int, target: TrtTarget) -> str:
    mib = f"{nbytes / _MIB:g}"
    return f"{mib}M" if target.pool_suffix else mib


def _io_format(dtype: str, target: TrtTarget) -> str:
    kind = _IO_TYPES.get(np.dtype(dtype).name, "fp32")
    if kind == "int64" and not target.int64_io:
        kind = "int32"  # TensorRT 8.6 imports INT64 tensors as INT32
    return f"{kind}:chw"


def build_command(settings: NetworkSettings, target: TrtTarget, onnx_file: str, plan_file: str, calib_file: str | None, timing_cache: str) -> list[str]:
    """``trtexec`` argv building ``plan_file`` from ``onnx_file`` as edgetrt planned it."""
    argv = ["trtexec", f"--onnx={onnx_file}", f"--saveEngine={plan_file}"]
    reduced = settings.precision in ("fp16", "int8")
    if target.implicit_precision and reduced:
        argv += ["--fp16"] + (["--int8"] if settings.precision == "int8" else [])
        if settings.precision == "int8" and calib_file is not None:
            argv.append(f"--calib={calib_file}")
    if settings.dla_core is not None:
        argv.append(f"--useDLACore={settings.dla_core}")
        if settings.gpu_fallback:
            argv.append("--allowGPUFallback")
        devices = _spec(settings.devices())
        if devices:
            argv.append(f"--layerDeviceTypes={devices}")
    if target.implicit_precision and reduced:
        precisions = _spec(settings.precisions())
        if precisions:
            argv += [f"--layerPrecisions={precisions}", "--precisionConstraints=obey"]
    if settings.memory_pools:
        argv.append("--memPoolSize=" + ",".join(f"{pool}:{_size(size, target)}" for pool, size in settings.memory_pools.items()))
    inputs = [_io_format(dtype, target) for _, dtype, is_input in settings.io if is_input]
    outputs = [_io_format(dtype, target) for _, dtype, is_input in settings.io if not is_input]
    if inputs:
        argv.append("--inputIOFormats=" + ",".join(inputs))
    if outputs:
        argv.append("--outputIOFormats=" + ",".join(outputs))
    argv += [f"--timingCacheFile={timing_cache}", "--profilingVerbosity=detailed", "--skipInference", "--verbose"]
    return argv


def profile_command(settings: NetworkSettings, plan_file: str, layer_info: str, profile: str) -> list[str]:
    """``trtexec`` argv timing ``plan_file`` per layer and writing both JSON files."""
    argv = ["trtexec", f"--loadEngine={plan_file}"]
    if settings.dla_core is not None:
        argv.append(f"--useDLACore={settings.dla_core}")
    return argv + ["--separateProfileRun", f"--exportProfile={profile}", f"--exportLayerInfo={layer_info}", "--dumpProfile"]


def script(build: list[str], profile: list[str]) -> str:
    """A POSIX shell script: ``./trtexec.sh build`` (log in build.log) and ``./trtexec.sh profile``."""
    return (
        "#!/bin/sh\n"
        "# Written by edgetrt export-trt: build the TensorRT engine edgetrt planned, then time it per layer.\n"
        "set -eu\n"
        'cd "$(dirname "$0")"\n'
        'case "${1:-build}" in\n'
        f"  build) {shlex.join(build)} > build.log 2>&1 || {{ tail -n 40 build.log >&2; exit 1; }} ;;\n"
        f"  profile) {shlex.join(profile)} ;;\n"
        '  *) echo "usage: $0 [build|profile]" >&2; exit 2 ;;\n'
        "esac\n"
    )
