"""NVRTC compilation of the kernel sources in this folder, with an on-disk cubin cache.

Each ``.cu`` file is one module. It compiles to a cubin for one ``sm_XY`` architecture with
NVRTC (no GPU needed), so CI checks every kernel for the Jetson Orin (sm_87) and the H100
(sm_90), and an engine can carry the cubins of its target (``embed_cubins``). The cache key
is the hash of the source and every header it includes, the options, the architecture and
the NVRTC version, so a changed kernel or compiler never reuses a stale binary.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from importlib import resources
from pathlib import Path

from edge.errors import KernelError
from edge.fileio import write_atomic
from edge.kernels.backend import BackendUnavailable

__all__ = [
    "CompileError",
    "KERNEL_SOURCES",
    "cache_dir",
    "include_dirs",
    "nvrtc_version",
    "compile_options",
    "cache_key",
    "compile_module",
    "embed_cubins",
]

_SOURCE_DIR = Path(str(resources.files("edge.kernels") / "cuda"))
KERNEL_SOURCES: tuple[str, ...] = tuple(sorted(p.stem for p in _SOURCE_DIR.glob("*.cu")))
"""The modules (``.cu`` file stems) this backend compiles."""

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)
_LOCK = threading.Lock()
_MEMORY: dict[str, bytes] = {}


class CompileError(KernelError):
    """NVRTC rejected a kernel source (the message carries the first compiler error)."""


def cache_dir() -> Path:
    """Where compiled cubins are kept: ``$EDGE_CACHE_DIR/cuda`` or ``~/.cache/edgetrt/cuda``."""
    root = os.environ.get("EDGE_CACHE_DIR")
    return Path(root) / "cuda" if root else Path.home() / ".cache" / "edgetrt" / "cuda"


def include_dirs() -> list[Path]:
    """Folders holding ``cuda_fp16.h`` and friends: the pip wheels' ``nvidia/cu13|cu12/include``,
    ``$CUDA_HOME/include``, ``/usr/local/cuda/include`` and JetPack's aarch64 target folder."""
    found: list[Path] = []
    try:
        import nvidia  # namespace package of the nvidia-* wheels

        for base in nvidia.__path__:
            for major in ("cu13", "cu12", "cuda_runtime", "cuda_nvrtc"):
                found.append(Path(base) / major / "include")
    except ImportError:
        pass
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if cuda_home:
        found.append(Path(cuda_home) / "include")
    found += [Path("/usr/local/cuda/include"), Path("/usr/local/cuda/targets/aarch64-linux/include")]
    unique: list[Path] = []
    for path in found:
        if (path / "cuda_fp16.h").is_file() and path not in unique:
            unique.append(path)
    return unique


def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        raise BackendUnavailable("CUDA kernels need the 'cuda-bindings' package (pip install 'edgetrt[cuda]')") from None
    return nvrtc


def _check(result: tuple, what: str):
    nvrtc = _nvrtc()
    status, *rest = result
    if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        name = nvrtc.nvrtcGetErrorString(status)[1].decode()
        raise CompileError(f"NVRTC {what} failed: {name}")
    return rest[0] if len(rest) == 1 else rest


def nvrtc_version() -> str:
    """NVRTC's version as "major.minor" (raises BackendUnavailable without cuda-bindings or libnvrtc)."""
    nvrtc = _nvrtc()
    try:
        major, minor = _check(nvrtc.nvrtcVersion(), "version query")
    except (RuntimeError, OSError) as exc:  # libnvrtc.so not found by cuda-pathfinder
        raise BackendUnavailable(f"NVRTC is not installed ({exc}); pip install nvidia-cuda-nvrtc") from None
    return f"{major}.{minor}"


def compile_options(arch: str, debug: bool = False) -> list[str]:
    """NVRTC options for ``arch`` ("sm_87"): C++17, IEEE math (no --use_fast_math, so results
    match the CPU reference; multiply-adds may fuse), the include folders."""
    options = [f"--gpu-architecture={arch}", "--std=c++17", "-default-device", "--fmad=true"]
    options += ["-lineinfo"] if debug else []
    options += [f"--include-path={path}" for path in include_dirs()]
    return options


def _source_text(module: str) -> str:
    path = _SOURCE_DIR / f"{module}.cu"
    if not path.is_file():
        raise CompileError(f"no CUDA kernel module '{module}' (known: {', '.join(KERNEL_SOURCES)})")
    return path.read_text()


def _hashed_sources(module: str) -> bytes:
    """The module's source followed by every local header it includes, recursively."""
    seen: list[str] = []
    pending = [f"{module}.cu"]
    parts = []
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.append(name)
        text = (_SOURCE_DIR / name).read_text()
        parts.append(f"// {name}\n{text}")
        pending += [inc for inc in _INCLUDE.findall(text) if (_SOURCE_DIR / inc).is_file()]
    return "\n".join(parts).encode()


def cache_key(module: str, arch: str, options: list[str], version: str) -> str:
    """Key of a compiled module: sources + headers, options (include paths left out: the same
    headers at another path give the same binary), architecture and NVRTC version."""
    digest = hashlib.sha256(_hashed_sources(module))
    stable = [opt for opt in options if not opt.startswith("--include-path=")]
    digest.update("\0".join([arch, version, *stable]).encode())
    return f"{module}-{arch}-{digest.hexdigest()[:24]}"


def compile_module(module: str, arch: str, debug: bool = False) -> bytes:
    """The cubin of ``module`` for ``arch`` (e.g. "sm_90"), from the memory or disk cache or
    compiled now.

    Raises:
        CompileError: the source does not compile (first error line in the message).
        BackendUnavailable: no NVRTC here.
    """
    version = nvrtc_version()
    options = compile_options(arch, debug)
    key = cache_key(module, arch, options, version)
    with _LOCK:
        cubin = _MEMORY.get(key)
    if cubin is not None:
        return cubin
    path = cache_dir() / f"{key}.cubin"
    if path.is_file():
        cubin = path.read_bytes()
    else:
        if not include_dirs():
            raise BackendUnavailable("no CUDA headers (cuda_fp16.h) found; pip install nvidia-cuda-runtime nvidia-cuda-crt or set CUDA_HOME")
        cubin = _compile(module, arch, options)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, cubin)
    with _LOCK:
        _MEMORY[key] = cubin
    return cubin


def _compile(module: str, arch: str, options: list[str]) -> bytes:
    nvrtc = _nvrtc()
    source = _source_text(module).encode()
    headers = sorted(p.name for p in _SOURCE_DIR.glob("*.cuh"))
    contents = [(_SOURCE_DIR / h).read_bytes() for h in headers]
    program = _check(
        nvrtc.nvrtcCreateProgram(source, f"{module}.cu".encode(), len(headers), contents, [h.encode() for h in headers]),
        f"program creation for {module}.cu",
    )
    try:
        (status,) = nvrtc.nvrtcCompileProgram(program, len(options), [o.encode() for o in options])
        if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            size = _check(nvrtc.nvrtcGetProgramLogSize(program), "log size query")
            log = bytearray(size)
            _check(nvrtc.nvrtcGetProgramLog(program, log), "log query")
            lines = [line for line in bytes(log).decode(errors="replace").splitlines() if "error" in line]
            first = lines[0].strip() if lines else "unknown error"
            raise CompileError(f"{module}.cu does not compile for {arch}: {first} ({len(lines)} error(s))")
        size = _check(nvrtc.nvrtcGetCUBINSize(program), "cubin size query")
        cubin = bytearray(size)
        _check(nvrtc.nvrtcGetCUBIN(program, cubin), "cubin query")
        return bytes(cubin)
    finally:
        nvrtc.nvrtcDestroyProgram(program)


def embed_cubins(arch: str, modules: tuple[str, ...] = KERNEL_SOURCES) -> dict[str, bytes]:
    """Every module compiled for ``arch``, keyed "<module>.<arch>", for an engine to carry."""
    return {f"{module}.{arch}": compile_module(module, arch) for module in modules}
