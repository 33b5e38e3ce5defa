"""Engine provenance: what an engine was built for and with, and how this machine differs.

The header's ``provenance`` holds two flat records. ``target``: the device profile and its SoC,
the GPU compute capability the profile names, DLA core, precision, the power mode the build was
pinned to (``--power-mode``; None when it was only costed for the profile's default, named in
``costed_power_mode``) and the SHA-256 of the calibration cache the INT8 scales came from. ``built_with``: the software of the build
machine where present (edgetrt, JetPack, L4T, CUDA, cuDNN, TensorRT) and, when the plan runs on
the CUDA backend, the compute capability its kernels were compiled for.

``mismatches`` compares one engine with :class:`MachineFacts`, only where a difference changes
what the engine does: the board and power mode on a Jetson, the GPU when a segment runs on a
real GPU, library versions when a segment uses them, and always the edgetrt version. Engines
written before provenance existed carry none of this and are compared on the version alone.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.profiles.schema import same_mode_name
from edge.version import __version__

__all__ = ["MachineFacts", "Mismatch", "build_provenance", "cache_digest", "mismatches", "read_machine"]

_GPU_BACKENDS = frozenset({"cuda", "tensorrt"})
_LIBRARIES = {"cuda": _GPU_BACKENDS, "cudnn": _GPU_BACKENDS, "tensorrt": frozenset({"tensorrt"})}
"""Library -> backends whose segments depend on its version."""


@dataclass(frozen=True)
class Mismatch:
    """One difference between what an engine was built for and this machine."""

    what: str
    engine: str
    machine: str

    def describe(self) -> str:
        return f"{self.what}: engine {self.engine}, this machine {self.machine}"


@dataclass
class MachineFacts:
    """What this machine is; None where it cannot be known (not a Jetson, library absent).

    ``gpu_compute_capability`` is read lazily (it opens the GPU), only for engines that run on one.
    """

    jetson_profile: str | None = None
    power_mode: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    gpu_compute_capability: str | None = None


def cache_digest(text: str) -> str:
    """SHA-256 of a calibration cache's text, the fingerprint the header records."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _distribution(*names: str) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _l4t(sysroot: Path) -> str | None:
    """``R36 (release), REVISION: 4.3`` in /etc/nv_tegra_release -> "36.4.3"."""
    try:
        first = (sysroot / "etc/nv_tegra_release").read_text(encoding="utf-8", errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    found = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", first)
    return f"{found.group(1)}.{found.group(2)}" if found else None


def _dpkg_version(sysroot: Path, package: str) -> str | None:
    """Version of an installed Debian package (JetPack is the ``nvidia-jetpack`` meta-package)."""
    try:
        status = (sysroot / "var/lib/dpkg/status").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for block in status.split("\n\n"):
        if re.search(rf"^Package: {re.escape(package)}$", block, re.MULTILINE):
            found = re.search(r"^Version: (\S+)", block, re.MULTILINE)
            return found.group(1) if found else None
    return None


def _cuda_toolkit(sysroot: Path) -> str | None:
    try:
        return str(json.loads((sysroot / "usr/local/cuda/version.json").read_text())["cuda"]["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return _distribution("nvidia-cuda-runtime", "nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime-cu13")


def _imported_tensorrt() -> str | None:
    """``tensorrt.__version__`` once the TensorRT backend imported it: the version TensorRT plans
    are tied to, and the one an engine with a TensorRT plan recorded."""
    module = sys.modules.get("tensorrt")
    version = getattr(module, "__version__", None)
    return str(version) if version is not None else None


def software_versions(sysroot: Path = Path("/")) -> dict[str, str]:
    """JetPack, L4T, CUDA, cuDNN and TensorRT versions found here (absent ones left out)."""
    found = {
        "jetpack": _dpkg_version(sysroot, "nvidia-jetpack"),
        "l4t": _l4t(sysroot),
        "cuda": _cuda_toolkit(sysroot),
        "cudnn": _dpkg_version(sysroot, "libcudnn9-cuda-12") or _dpkg_version(sysroot, "libcudnn8")
        or _distribution("nvidia-cudnn-cu12", "nvidia-cudnn-cu13"),
        "tensorrt": _imported_tensorrt() or _distribution("tensorrt", "tensorrt-cu12", "tensorrt-cu13")
        or _dpkg_version(sysroot, "python3-libnvinfer"),
    }
    return {name: version for name, version in found.items() if version}


def build_provenance(
    profile: Any, precision: str, dla_core: int | None, power_mode: str | None, calibration_cache: str | None,
    targets: Mapping[str, str], gpu_compute_capability: str | None, sysroot: Path = Path("/"),
) -> dict[str, dict[str, Any]]:
    """The header's ``provenance`` record for an engine built here for ``profile``, pinned to
    ``power_mode`` when one was asked for."""
    costed = profile.power_mode(power_mode).name
    target = {
        "profile": profile.name,
        "soc": profile.module,
        "compute_capability": profile.gpu.compute_capability if profile.gpu is not None else None,
        "dla_core": dla_core,
        "precision": precision,
        "power_mode": costed if power_mode is not None else None,
        "costed_power_mode": costed,
        "calibration_cache_sha256": cache_digest(calibration_cache) if calibration_cache is not None else None,
    }
    built_with: dict[str, Any] = {"edgetrt": __version__, **software_versions(sysroot)}
    if _GPU_BACKENDS & set(targets.values()):
        built_with["gpu_compute_capability"] = gpu_compute_capability
    return {"target": target, "built_with": built_with}


def read_machine(sysroot: Path = Path("/")) -> MachineFacts:
    """This machine's facts; the board profile and power mode only on a Jetson."""
    from edge.power.control import PowerController

    facts = MachineFacts(versions=software_versions(sysroot))
    controller = PowerController(sysroot=sysroot)
    if not controller.is_jetson():
        return facts
    from edge.doctor import board_memory_gb, match_profile
    from edge.errors import PowerError

    try:
        model = (sysroot / "proc/device-tree/model").read_bytes().decode("utf-8", "replace").strip("\x00 \n")
    except OSError:
        model = ""
    facts.jetson_profile = match_profile(model, board_memory_gb(sysroot))
    try:
        facts.power_mode = controller.query_mode().name
    except PowerError:
        facts.power_mode = None
    return facts


def gpu_capability() -> str:
    """This machine's GPU compute capability as the CUDA backend sees it, or why there is none."""
    from edge.kernels.backend import BackendUnavailable, get_backend

    try:
        return get_backend("cuda").compute_capability
    except BackendUnavailable:
        return "none (no usable GPU)"


def mismatches(header: Mapping[str, Any], backends: Iterable[str], machine: MachineFacts) -> list[Mismatch]:
    """Every difference between the engine ``header`` (whose plan uses ``backends``) and ``machine``."""
    used = set(backends)
    provenance = header.get("provenance") or {}
    target = provenance.get("target") or {}
    built = provenance.get("built_with") or {}
    found = []
    if header.get("edgetrt_version") != __version__:
        found.append(Mismatch("edgetrt version", str(header.get("edgetrt_version")), __version__))
    if machine.jetson_profile is not None and header.get("profile") != machine.jetson_profile:
        found.append(Mismatch("device profile", str(header.get("profile")), machine.jetson_profile))
    wanted_mode = target.get("power_mode")
    if machine.power_mode is not None and wanted_mode is not None and not same_mode_name(wanted_mode, machine.power_mode):
        found.append(Mismatch("power mode", str(wanted_mode), machine.power_mode))
    built_cc = built.get("gpu_compute_capability")
    if built_cc is not None and used & _GPU_BACKENDS:
        if machine.gpu_compute_capability is None:
            machine.gpu_compute_capability = gpu_capability()
        if machine.gpu_compute_capability != built_cc:
            found.append(Mismatch("GPU compute capability", str(built_cc), str(machine.gpu_compute_capability)))
    on_jetson = machine.versions.get("l4t") is not None
    for name, label in (("jetpack", "JetPack"), ("l4t", "L4T"), ("cuda", "CUDA"), ("cudnn", "cuDNN"), ("tensorrt", "TensorRT")):
        relevant = used & _LIBRARIES[name] if name in _LIBRARIES else on_jetson
        have, want = machine.versions.get(name), built.get(name)
        if relevant and want is not None and have != want:
            found.append(Mismatch(f"{label} version", str(want), have or "not installed"))
    return found
