"""``edge.doctor``: what this machine can do for edgetrt — libraries, BLAS, Jetson tools, GPU, extras.

Every check returns ``ok``, ``missing`` or ``n/a`` (does not apply here, e.g. Jetson tools on
a desktop) with what was found and a one-line hint. Only the core (numpy, onnx) being
broken makes the machine unusable; everything else narrows what edgetrt can do.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import edge
from edge.errors import ProfileError
from edge.kernels.threads import intra_op_threads
from edge.power.control import Commands, PowerController

__all__ = ["MISSING", "NA", "OK", "SYSROOT", "Check", "DoctorReport", "board_memory_gb", "match_profile", "run_checks"]

OK, MISSING, NA = "ok", "missing", "n/a"

SYSROOT = Path("/")
"""Root of the filesystem the Jetson and systemd checks read (tests point it at a fake board)."""

_EXTRAS = {
    "serve": (("starlette", "starlette"), ("uvicorn", "uvicorn"), ("prometheus_client", "prometheus-client")),
    "telemetry": (("psutil", "psutil"), ("matplotlib", "matplotlib"), ("pynvml", "nvidia-ml-py")),
    "fast": (("numba", "numba"),),
}
"""extra -> (import name, distribution name) of the packages doctor looks for."""


@dataclass
class Check:
    """One line of the doctor's table."""

    group: str
    name: str
    status: str
    detail: str
    hint: str = ""
    core: bool = False


@dataclass
class DoctorReport:
    """All checks, in display order."""

    checks: list[Check]

    @property
    def core_ok(self) -> bool:
        """False when numpy or onnx is missing or broken (edgetrt cannot work at all)."""
        return all(c.status == OK for c in self.checks if c.core)

    def get(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"core_ok": self.core_ok, "checks": [asdict(c) for c in self.checks]}


def run_checks(sysroot: Path | None = None, path: str | None = None, euid: int | None = None) -> DoctorReport:
    """Probe the machine; never raises for a missing piece, it becomes a check.

    Args:
        sysroot: filesystem root for /etc, /proc and /run reads [default: :data:`SYSROOT`].
        path: PATH to look executables up in [default: the environment's].
        euid: effective user id to assume [default: the process's].
    """
    root = SYSROOT if sysroot is None else sysroot
    euid = os.geteuid() if euid is None else euid
    checks = [*_core_checks(), *_cpu_checks()]
    jetson = PowerController(sysroot=root).is_jetson()
    checks += _jetson_checks(root, path, euid, jetson)
    checks += _gpu_checks(path, jetson)
    checks += _extra_checks(jetson)
    checks.append(_systemd_check(root, path))
    return DoctorReport(checks)


# -- core libraries ----------------------------------------------------------------------------
def _import(module: str) -> Any:
    return importlib.import_module(module)


def _core_checks() -> list[Check]:
    checks = [Check("core", "edgetrt", OK, edge.__version__)]
    version = platform.python_version()
    checks.append(
        Check("core", "python", OK if sys.version_info >= (3, 10) else MISSING, version, "" if sys.version_info >= (3, 10) else "edgetrt needs Python >= 3.10", core=True)
    )
    for module, probe in (("numpy", _probe_numpy), ("onnx", _probe_onnx)):
        try:
            detail = probe(_import(module))
            checks.append(Check("core", module, OK, detail, core=True))
        except Exception as exc:  # an import or sanity failure of any kind means the core is broken
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            checks.append(Check("core", module, MISSING, f"broken: {reason}", f"pip install --force-reinstall {module}", core=True))
    found = _version("onnxruntime", ("onnxruntime", "onnxruntime-gpu"))
    checks.append(
        Check("core", "onnxruntime", OK if found else MISSING, found or "not installed",
              "" if found else "pip install onnxruntime: the independent reference of `edgetrt compare`")
    )
    return checks


def _probe_numpy(np: Any) -> str:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    if float((a @ a.T)[1, 1]) != 50.0:
        raise RuntimeError("matrix product gives a wrong result")
    return str(np.__version__)


def _probe_onnx(onnx: Any) -> str:
    return f"{onnx.__version__} (opset {onnx.defs.onnx_opset_version()})"


def _version(module: str, distributions: tuple[str, ...]) -> str | None:
    """Installed version of an importable module ("installed" when no metadata), or None."""
    if importlib.util.find_spec(module) is None:
        return None
    for dist in distributions:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "installed"


# -- CPU and BLAS --------------------------------------------------------------------------------
def _cpu_checks() -> list[Check]:
    total = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else total
    checks = [Check("cpu", "cpu cores", OK, f"{usable} usable of {total} ({platform.machine()})")]
    blas, threads = _blas()
    detail = f"{blas or 'unknown library'}, " + (f"{threads} thread(s)" if threads else "thread count unknown")
    detail += f"; kernels use {intra_op_threads()} intra-op thread(s)"
    checks.append(Check("cpu", "blas", OK if blas else MISSING, detail))
    return checks


def _blas() -> tuple[str | None, int | None]:
    """(library, its own thread count) of the BLAS numpy's matrix products run on: one
    thread while the compiled kernels' pool runs the intra-op threads."""
    import numpy as np
    from threadpoolctl import threadpool_info

    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if pools:
        pool = pools[0]
        return f"{pool.get('internal_api')} {pool.get('version') or ''}".strip(), pool.get("num_threads")
    try:
        deps = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{deps.get('name')} {deps.get('version') or ''}".strip(), None
    except Exception:  # numpy < 1.26 has no dict mode; the layout is not a stable API
        return None, None


# -- Jetson --------------------------------------------------------------------------------------
def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return None


def board_memory_gb(root: Path) -> float | None:
    """RAM in GB from the board's /proc/meminfo (None when unreadable)."""
    text = _read(root / "proc/meminfo") or ""
    found = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(found.group(1)) * 1024 / 1e9 if found else None


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[-_]", " ", text.lower()).split())


def match_profile(model: str, memory_gb: float | None) -> str | None:
    """The bundled profile of a Jetson whose device-tree model is ``model``.

    The module family ("AGX Orin", "Orin Nano", ...) must appear in the model string; among
    a family's memory variants the one closest to the board's RAM wins.
    """
    from edge.profiles import list_profiles, load_profile

    model = _normalise(model)
    candidates = []
    for name in list_profiles():
        try:
            profile = load_profile(name)
        except ProfileError:  # a detect-based profile that cannot read this machine
            continue
        family = _normalise(re.sub(r"^Jetson\s+|\s*\d+\s*GB$", "", profile.module, flags=re.IGNORECASE))
        if profile.module.lower().startswith("jetson") and family and family in model:
            candidates.append((abs(profile.memory_gb - memory_gb) if memory_gb is not None else 0.0, profile.name))
    return min(candidates)[1] if candidates else None


def _jetson_checks(root: Path, path: str | None, euid: int, jetson: bool) -> list[Check]:
    model = _read(root / "proc/device-tree/model")
    release = (_read(root / "etc/nv_tegra_release") or "").splitlines()
    if not jetson:
        checks = [Check("jetson", "jetson", NA, f"not a Jetson ({model or 'no /etc/nv_tegra_release'})", "build with --profile <module> here, run on the board")]
        profile = "desktop-cuda" if shutil.which("nvidia-smi", path=path) else "cpu"
        checks.append(Check("jetson", "profile", OK, profile, "engines built here for a Jetson profile run on the CPU reference"))
    else:
        l4t = release[0].lstrip("# ").strip() if release else "L4T release unknown"
        checks = [Check("jetson", "jetson", OK, f"{model or 'unknown model'}; {l4t}")]
        memory = board_memory_gb(root)
        matched = match_profile(model or "", memory)
        checks.append(
            Check("jetson", "profile", OK if matched else MISSING, matched or f"no bundled profile matches '{model}'",
                  "" if matched else "write a profile YAML (copy one: edgetrt profiles show agx-orin-64gb) and pass --profile FILE")
        )
    for tool, hint in (
        (Commands.NVPMODEL, "power modes need nvpmodel (part of L4T)"),
        (Commands.JETSON_CLOCKS, "clock pinning needs jetson_clocks (part of L4T)"),
        ("tegrastats", "`edgetrt profile` reads tegrastats (part of L4T)"),
    ):
        found = shutil.which(tool, path=path)
        status = OK if found else (MISSING if jetson else NA)
        checks.append(Check("jetson", tool, status, found or "not on PATH", "" if found or not jetson else hint))
    root_status = OK if euid == 0 else (MISSING if jetson else NA)
    checks.append(
        Check("jetson", "root", root_status, "yes" if euid == 0 else f"no (euid {euid})",
              "setting power modes and clocks needs sudo" if root_status == MISSING else "")
    )
    return checks


# -- GPU -----------------------------------------------------------------------------------------
def _gpu_checks(path: str | None, jetson: bool) -> list[Check]:
    # edgetrt has no TensorRT backend (plans are not handed to TensorRT yet): the module is
    # reported for the record, never suggested
    trt = _version("tensorrt", ("tensorrt", "tensorrt-cu12"))
    checks = [
        Check("gpu", "tensorrt", NA, f"{trt or 'not installed'}; not used: edgetrt has no TensorRT backend, engines run on its own backends")
    ]
    smi = shutil.which("nvidia-smi", path=path)
    checks.append(Check("gpu", "nvidia-smi", OK if smi else (NA if jetson else MISSING), smi or "not on PATH",
                        "" if smi or jetson else "no NVIDIA driver here: engines run on the CPU reference"))
    cuda = _version("cuda", ("cuda-python", "cuda-bindings"))
    checks.append(Check("gpu", "cuda-python", OK if cuda else MISSING, cuda or "not installed", "" if cuda else "pip install 'edgetrt[cuda]' for the CUDA backend"))
    checks.append(_desktop_cuda_check(jetson))
    checks.append(_cuda_backend_check())
    checks.extend(_library_tactic_checks())
    return checks


def _library_tactic_checks() -> list[Check]:
    """cuDNN (conv, attention) and cuBLASLt (GEMM) as tactic sources: the library version loaded
    through its Python binding, or what to install."""
    from edge.kernels.cuda import cublaslt, cudnn_graphs

    checks = []
    for name, module, binding, extra in (("cudnn", cudnn_graphs, ("nvidia-cudnn-frontend",), "cudnn"),
                                         ("cublaslt", cublaslt, ("nvmath-python",), "cublas")):
        loaded, wrapper = module.library_version(), _distribution_version(binding)
        if loaded:
            checks.append(Check("gpu", name, OK, f"{name} {loaded} via {wrapper}; its tactics join the auto-tuner"))
        else:
            missing = "its library does not load" if wrapper else f"{binding[0]} is not installed"
            checks.append(Check("gpu", name, NA, f"{missing}: the NVRTC kernels serve these layers",
                                f"pip install 'edgetrt[{extra}]' (on a Jetson, with JetPack's own library)"))
    return checks


def _distribution_version(distributions: tuple[str, ...]) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for distribution in distributions:
        try:
            return f"{distribution} {version(distribution)}"
        except PackageNotFoundError:
            continue
    return None


def _cuda_backend_check() -> Check:
    """Open the CUDA backend and run a tiny Add + Relu engine on it against numpy (the self-test)."""
    from edge.kernels.backend import BackendUnavailable, get_backend

    try:
        signature = get_backend("cuda").device_signature()
    except BackendUnavailable as exc:
        return Check("gpu", "cuda backend", MISSING, str(exc), "engines run on the CPU backend here")
    detail = (f"{signature['gpu']} (sm {signature['compute_capability']}, {signature['sm_count']} SMs), CUDA {signature['cuda']}, "
              f"driver {signature['driver']}, NVRTC {signature['nvrtc']}, cuda-bindings {signature['cuda_bindings']}")
    try:
        error = _cuda_self_test()
    except Exception as exc:  # noqa: BLE001  (a failing self-test is a report line, not a crash)
        return Check("gpu", "cuda backend", MISSING, f"{detail}; self-test failed: {exc}", "report this with `edgetrt doctor --json`")
    status = OK if error == 0.0 else MISSING
    return Check("gpu", "cuda backend", status, f"{detail}; self-test Add+Relu max error {error:g}")


def _cuda_self_test() -> float:
    import numpy as np
    from onnx import TensorProto, helper

    import edge

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "y"], ["s"]), helper.make_node("Relu", ["s"], ["out"])], "self_test",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, (2, 257)) for n in ("x", "y")],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, (2, 257))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    engine = edge.build(model.SerializeToString(), edge.BuilderConfig(profile="desktop-cuda", backends={"gpu": "cuda"}, optimize=False))
    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal((2, 257)).astype(np.float32) for _ in range(2))
    out = engine.create_context().run({"x": x, "y": y})["out"]
    return float(np.max(np.abs(out - np.maximum(x + y, 0))))


def _desktop_cuda_check(jetson: bool) -> Check:
    """What the ``desktop-cuda`` profile reads from this machine (NVML, else cuda-python)."""
    from edge.profiles import load_profile

    if jetson:
        return Check("gpu", "desktop-cuda", NA, "a Jetson uses its module profile", "")
    try:
        profile = load_profile("desktop-cuda")
    except ProfileError as exc:
        return Check("gpu", "desktop-cuda", MISSING, str(exc), "needs an NVIDIA GPU with its driver and nvidia-ml-py")
    gpu = profile.gpu
    detail = f"{profile.module}: cc {gpu.compute_capability}, {gpu.sms} SMs @ {gpu.max_mhz:.0f} MHz, {gpu.peak_fp16_tflops:g} FP16 TFLOPS, {profile.memory_gb:g} GB"
    return Check("gpu", "desktop-cuda", OK, detail)


# -- optional extras and services -----------------------------------------------------------------
def _extra_checks(jetson: bool) -> list[Check]:
    checks = []
    for extra, packages in _EXTRAS.items():
        found = {dist: _version(module, (dist,)) for module, dist in packages}
        missing = [dist for dist, version in found.items() if version is None]
        detail = ", ".join(f"{dist} {version}" if version else f"{dist} missing" for dist, version in found.items())
        checks.append(Check("extras", extra, MISSING if missing else OK, detail, f"pip install 'edgetrt[{extra}]'" if missing else ""))
    jtop = _version("jtop", ("jetson-stats",))
    status = OK if jtop else (MISSING if jetson else NA)
    checks.append(Check("extras", "jetson-stats", status, jtop or "not installed", "pip install 'edgetrt[jetson]' for the jtop sampler" if status == MISSING else ""))
    return checks


def _systemd_check(root: Path, path: str | None) -> Check:
    systemctl = shutil.which("systemctl", path=path)
    booted = (root / "run/systemd/system").is_dir()  # systemd is PID 1 (sd_booted's test)
    if systemctl and booted:
        return Check("service", "systemd", OK, systemctl)
    why = "systemctl not on PATH" if not systemctl else "systemd is not running (container?)"
    return Check("service", "systemd", MISSING, why, "`edgetrt service install` needs systemd; --dry-run shows the unit files")
