"""The TensorRT releases ``export-trt`` writes for, and what each one's trtexec and builder accept.

8.6 is JetPack 6.0's TensorRT 8.6.2, 10.3 is JetPack 6.1/6.2's; both take implicit INT8 (a
calibration cache), ``--fp16/--int8`` and per-layer precisions. TensorRT 11 networks are
strongly typed: no precision flags, no calibrators, so INT8 travels as Q/DQ nodes in the ONNX.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.errors import EdgeError

__all__ = ["TRT_TARGETS", "TrtTarget", "cache_version", "trt_target"]


@dataclass(frozen=True)
class TrtTarget:
    """One TensorRT release line.

    Attributes:
        name: the ``--target-trt`` spelling.
        cache_version: NV_TENSORRT_VERSION token of the calibration cache header (None: no calibrators).
        implicit_precision: ``--fp16/--int8``, ``--calib``, ``--layerPrecisions`` and
            ``--precisionConstraints`` exist.
        pool_suffix: memPoolSize sizes take a unit suffix ("M"); 8.6 reads a bare number as MiB.
        int64_io: engine inputs/outputs may be INT64 (8.6 casts them to INT32).
        jetpack: the JetPack releases that ship it.
    """

    name: str
    cache_version: int | None
    implicit_precision: bool
    pool_suffix: bool
    int64_io: bool
    jetpack: str


TRT_TARGETS: dict[str, TrtTarget] = {
    "8.6": TrtTarget("8.6", 8602, True, False, False, "JetPack 6.0 (TensorRT 8.6.2)"),
    "10.3": TrtTarget("10.3", 100300, True, True, True, "JetPack 6.1 / 6.2 (TensorRT 10.3.0)"),
    "11": TrtTarget("11", None, False, True, True, "JetPack 7.x (TensorRT 11; DLA from 11.4.1 on AGX Orin with JetPack 7.2.2+)"),
}


def trt_target(name: str) -> TrtTarget:
    """The release line ``--target-trt`` names; a one-line error for any other."""
    try:
        return TRT_TARGETS[name]
    except KeyError:
        raise EdgeError(f"--target-trt {name}: expected one of {', '.join(TRT_TARGETS)}") from None


def cache_version(release: str) -> int:
    """The NV_TENSORRT_VERSION token a calibration cache header carries for TensorRT ``release``
    ("8.6.2.3" -> 8602, "10.3.0.30" -> 100300: the major's multiplier grew at 10)."""
    parts = [int(p) for p in (release.split(".") + ["0", "0"])[:3]]
    major, minor, patch = parts
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch
