"""Read a profile's numbers from the machine itself: the host CPU and the local NVIDIA GPU.

Profiles with ``detect: host`` or ``detect: cuda`` leave keys out of their YAML; these
functions return those keys as a dict that the loader merges under the YAML (YAML wins),
before schema validation. GPU facts come from NVML (nvidia-ml-py), else from cuda-python;
peak throughput is estimated from SMs x clock x the per-SM rate of the compute capability.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from edge.errors import ProfileError

__all__ = ["detect_host", "detect_cuda", "DETECTORS"]

# Dense FMA per clock per SM (FP32 CUDA cores; FP16 tensor cores), by compute capability.
# Values follow NVIDIA's published per-SM rates per architecture; unlisted capabilities use
# the nearest lower one. Estimates for the cost model only.
_FP32_FMA_PER_SM = {(6, 0): 64, (6, 1): 128, (7, 0): 64, (8, 0): 64, (8, 6): 128}
_FP16_TENSOR_FMA_PER_SM = {(7, 0): 512, (8, 0): 1024, (8, 6): 512, (8, 7): 1024, (8, 9): 512, (9, 0): 2048, (10, 0): 4096, (12, 0): 512}
_HOST_BANDWIDTH_GBPS = 25.6  # dual-channel DDR4-1600; estimate


def _rate(table: dict[tuple[int, int], int], cc: tuple[int, int]) -> int:
    below = [key for key in table if key <= cc]
    return table[max(below)] if below else 0


def _gpu_peaks(cc: tuple[int, int], sms: int, mhz: float) -> dict[str, float]:
    """Dense peak TFLOPS/TOPS at ``mhz`` for FP32 (CUDA cores), FP16 and INT8 (tensor cores)."""
    ops_per_clock = 2 * sms * mhz / 1e6  # FMA = 2 ops; MHz -> tera
    fp32 = _rate(_FP32_FMA_PER_SM, cc) * ops_per_clock
    tensor = _rate(_FP16_TENSOR_FMA_PER_SM, cc) * ops_per_clock
    fp16 = tensor if tensor else 2 * fp32  # no tensor cores: half2 math
    int8 = 2 * tensor if cc >= (7, 2) else 4 * fp32  # INT8 tensor cores from Xavier/Turing; dp4a before
    return {"peak_fp32_tflops": round(fp32, 3), "peak_fp16_tflops": round(fp16, 3), "peak_int8_tops": round(int8, 3)}


def _host_mhz() -> float:
    freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return int(freq.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                return float(line.split(":")[1])
    except (OSError, ValueError, IndexError):
        pass
    raise ProfileError("cannot read the host CPU clock (no cpufreq and no 'cpu MHz' in /proc/cpuinfo); write cpu.max_mhz in the profile")


def detect_host() -> dict[str, Any]:
    """Host CPU: cores, clock, memory; one power mode describing the machine as it is."""
    cores = os.cpu_count() or 1
    mhz = _host_mhz()
    # FP32 FLOP per cycle per core: AVX2 (2 x 8-lane FMA) on x86-64, 2 x 128-bit NEON FMA on Arm.
    flop_per_cycle = 32 if platform.machine().lower() in ("x86_64", "amd64") else 16
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    return {
        "memory_gb": round(memory_gb, 1),
        "memory_bandwidth_gbps": _HOST_BANDWIDTH_GBPS,
        "emc_max_mhz": 1600.0,
        "max_power_w": 65.0,
        "cpu": {"arch": platform.machine(), "cores": cores, "max_mhz": mhz, "peak_fp32_gflops": round(cores * mhz / 1000 * flop_per_cycle, 1)},
        "power_modes": [
            {"id": 0, "name": "host", "budget_w": None, "online_cpus": cores, "cpu_max_mhz": mhz, "gpu_max_mhz": None, "dla_max_mhz": None, "emc_max_mhz": 1600.0}
        ],
        "default_power_mode": 0,
    }


def _read_nvml() -> dict[str, Any]:
    import pynvml  # nvidia-ml-py

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise ProfileError(f"desktop-cuda: no NVIDIA GPU found (NVML: {exc})") from None
    try:
        if pynvml.nvmlDeviceGetCount() == 0:
            raise ProfileError("desktop-cuda: no NVIDIA GPU found (NVML reports 0 devices)")
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(handle)
        major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
        cores = pynvml.nvmlDeviceGetNumGpuCores(handle)
        fp32_per_sm = _rate(_FP32_FMA_PER_SM, (major, minor))
        try:
            power_w = pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0
        except pynvml.NVMLError:
            power_w = 0.0
        return {
            "name": name.decode() if isinstance(name, bytes) else name,
            "cc": (int(major), int(minor)),
            "sms": int(cores) // fp32_per_sm,
            "sm_mhz": float(pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)),
            "mem_mhz": float(pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)),
            "bus_bits": int(pynvml.nvmlDeviceGetMemoryBusWidth(handle)),
            "memory_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
            "power_w": power_w,
        }
    finally:
        pynvml.nvmlShutdown()


def _read_cuda_python() -> dict[str, Any]:
    from cuda.bindings import runtime as rt

    err, count = rt.cudaGetDeviceCount()
    if err != rt.cudaError_t.cudaSuccess or count == 0:
        raise ProfileError(f"desktop-cuda: no NVIDIA GPU found (CUDA: {err.name})")
    err, prop = rt.cudaGetDeviceProperties(0)
    attr = rt.cudaDeviceAttr

    def get(a: Any) -> int:
        return int(rt.cudaDeviceGetAttribute(a, 0)[1])

    return {
        "name": prop.name.decode().rstrip("\x00"),
        "cc": (int(prop.major), int(prop.minor)),
        "sms": int(prop.multiProcessorCount),
        "sm_mhz": get(attr.cudaDevAttrClockRate) / 1000.0,
        "mem_mhz": get(attr.cudaDevAttrMemoryClockRate) / 1000.0,
        "bus_bits": get(attr.cudaDevAttrGlobalMemoryBusWidth),
        "memory_bytes": int(prop.totalGlobalMem),
        "power_w": 0.0,
    }


def detect_cuda() -> dict[str, Any]:
    """The first local NVIDIA GPU, read through NVML (preferred) or cuda-python."""
    info = None
    errors = []
    for reader, package in ((_read_nvml, "nvidia-ml-py"), (_read_cuda_python, "cuda-python")):
        try:
            info = reader()
            break
        except ImportError:
            errors.append(f"{package} not installed")
    if info is None:
        raise ProfileError(f"desktop-cuda: cannot read the local GPU ({'; '.join(errors)}); pip install nvidia-ml-py")
    host = detect_host()
    bandwidth = info["mem_mhz"] * 2 * info["bus_bits"] / 8 / 1000  # double data rate
    major, minor = info["cc"]
    power = info["power_w"] or 250.0
    return {
        "module": info["name"],
        "memory_gb": round(info["memory_bytes"] / 1e9, 1),
        "memory_bandwidth_gbps": round(bandwidth, 1),
        "emc_max_mhz": info["mem_mhz"],
        "max_power_w": power,
        "cpu": host["cpu"],
        "gpu": {"arch": info["name"], "compute_capability": f"{major}.{minor}", "sms": info["sms"], "max_mhz": info["sm_mhz"], **_gpu_peaks(info["cc"], info["sms"], info["sm_mhz"])},
        "power_modes": [
            {
                "id": 0,
                "name": "default",
                "budget_w": info["power_w"] or None,
                "online_cpus": host["cpu"]["cores"],
                "cpu_max_mhz": host["cpu"]["max_mhz"],
                "gpu_max_mhz": info["sm_mhz"],
                "dla_max_mhz": None,
                "emc_max_mhz": info["mem_mhz"],
            }
        ],
        "default_power_mode": 0,
    }


DETECTORS = {"host": detect_host, "cuda": detect_cuda}
"""``detect:`` value in a profile -> function returning the keys it fills in."""
