"""A small wrapper over ``cuda.bindings.driver``: the calls the backend makes, with CUresult
errors turned into one-line ``edge.errors`` exceptions.

Only this module touches the driver API. It is imported lazily (``load()``), so importing
``edge.kernels.cuda`` works on machines with neither cuda-bindings nor a GPU.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.errors import EdgeError, KernelError
from edge.kernels.backend import BackendUnavailable

__all__ = [
    "CudaError",
    "OutOfDeviceMemory",
    "Device",
    "load",
    "open_device",
]


class CudaError(KernelError):
    """A CUDA driver call failed (the message names the call and the CUDA error)."""


class OutOfDeviceMemory(EdgeError):
    """A device allocation did not fit (the message gives the bytes asked and free)."""


_DRIVER: Any = None
_LOCK = threading.Lock()


def load() -> Any:
    """``cuda.bindings.driver`` after ``cuInit``; BackendUnavailable naming what is missing."""
    global _DRIVER
    with _LOCK:
        if _DRIVER is not None:
            return _DRIVER
        try:
            from cuda.bindings import driver
        except ImportError:
            raise BackendUnavailable("the CUDA backend needs the 'cuda-bindings' package (pip install 'edgetrt[cuda]')") from None
        try:
            (status,) = driver.cuInit(0)
        except Exception as exc:  # cuda-pathfinder raises when libcuda.so is absent
            raise BackendUnavailable(f"no NVIDIA driver: libcuda could not be loaded ({type(exc).__name__})") from None
        if status == driver.CUresult.CUDA_ERROR_NO_DEVICE:
            raise BackendUnavailable("no CUDA GPU: the NVIDIA driver found no device")
        if status != driver.CUresult.CUDA_SUCCESS:
            raise BackendUnavailable(f"the NVIDIA driver failed to initialize ({_name(driver, status)})")
        _DRIVER = driver
        return driver


def _name(driver: Any, status: Any) -> str:
    err, text = driver.cuGetErrorName(status)
    return text.decode() if err == driver.CUresult.CUDA_SUCCESS else str(status)


def _check(driver: Any, result: tuple, call: str) -> Any:
    status, *rest = result
    if status != driver.CUresult.CUDA_SUCCESS:
        raise CudaError(f"{call} failed: {_name(driver, status)}")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else tuple(rest)


@dataclass
class Device:
    """One GPU with its primary context made current on the calling thread when used."""

    driver: Any
    ordinal: int
    handle: Any
    context: Any

    def call(self, name: str, *args: Any) -> Any:
        """``driver.<name>(*args)`` with the context current; raises CudaError on failure."""
        _check(self.driver, self.driver.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")
        return _check(self.driver, getattr(self.driver, name)(*args), name)

    # -- facts ---------------------------------------------------------------------------
    def attribute(self, attribute: str) -> int:
        enum = getattr(self.driver.CUdevice_attribute, f"CU_DEVICE_ATTRIBUTE_{attribute}")
        return int(_check(self.driver, self.driver.cuDeviceGetAttribute(enum, self.handle), "cuDeviceGetAttribute"))

    @property
    def name(self) -> str:
        raw = _check(self.driver, self.driver.cuDeviceGetName(256, self.handle), "cuDeviceGetName")
        return raw.split(b"\0", 1)[0].decode()

    @property
    def compute_capability(self) -> tuple[int, int]:
        return self.attribute("COMPUTE_CAPABILITY_MAJOR"), self.attribute("COMPUTE_CAPABILITY_MINOR")

    @property
    def arch(self) -> str:
        """The NVRTC architecture of this GPU ("sm_90")."""
        major, minor = self.compute_capability
        return f"sm_{major}{minor}"

    def driver_version(self) -> str:
        """The CUDA version the installed driver supports ("13.0")."""
        version = _check(self.driver, self.driver.cuDriverGetVersion(), "cuDriverGetVersion")
        return f"{version // 1000}.{version % 1000 // 10}"

    def memory_info(self) -> tuple[int, int]:
        """(free, total) device bytes."""
        free, total = self.call("cuMemGetInfo")
        return int(free), int(total)

    # -- memory --------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> int:
        """Device memory of ``nbytes`` (at least 1); OutOfDeviceMemory names asked and free bytes."""
        _check(self.driver, self.driver.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")
        status, pointer = self.driver.cuMemAlloc(max(int(nbytes), 1))
        if status == self.driver.CUresult.CUDA_ERROR_OUT_OF_MEMORY:
            free, total = self.memory_info()
            raise OutOfDeviceMemory(
                f"out of GPU memory on {self.name}: asked for {nbytes} bytes, {free} of {total} bytes free"
            )
        _check(self.driver, (status,), "cuMemAlloc")
        return int(pointer)

    def free(self, pointer: int) -> None:
        self.call("cuMemFree", pointer)

    def alloc_host(self, nbytes: int) -> tuple[int, np.ndarray]:
        """Pinned (page-locked) host memory: its address and a uint8 numpy view of it."""
        pointer = int(self.call("cuMemAllocHost", max(int(nbytes), 1)))
        view = np.ctypeslib.as_array((ctypes.c_uint8 * max(int(nbytes), 1)).from_address(pointer))
        return pointer, view

    def free_host(self, pointer: int) -> None:
        self.call("cuMemFreeHost", pointer)

    def copy_h2d(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self.call("cuMemcpyHtoDAsync", dst, src, nbytes, stream)

    def copy_d2h(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self.call("cuMemcpyDtoHAsync", dst, src, nbytes, stream)

    def copy_d2d(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self.call("cuMemcpyDtoDAsync", dst, src, nbytes, stream)

    # -- streams and events --------------------------------------------------------------
    def stream(self) -> Any:
        return self.call("cuStreamCreate", int(self.driver.CUstream_flags.CU_STREAM_NON_BLOCKING))

    def sync_stream(self, stream: Any, spin: bool = False) -> None:
        """Wait for ``stream``; ``spin`` polls it instead of blocking (lower wake-up latency)."""
        if not spin:
            self.call("cuStreamSynchronize", stream)
            return
        not_ready = self.driver.CUresult.CUDA_ERROR_NOT_READY
        while True:
            (status,) = self.driver.cuStreamQuery(stream)
            if status != not_ready:
                _check(self.driver, (status,), "cuStreamQuery")
                return

    def event(self) -> Any:
        return self.call("cuEventCreate", int(self.driver.CUevent_flags.CU_EVENT_DEFAULT))

    def record(self, event: Any, stream: Any, in_graph: bool = False) -> None:
        """Record ``event`` on ``stream``; ``in_graph`` (during stream capture) makes it an
        event-record node of the graph, recorded at every replay, so it can time the replay."""
        if in_graph:
            self.call("cuEventRecordWithFlags", event, stream, int(self.driver.CUevent_record_flags.CU_EVENT_RECORD_EXTERNAL))
        else:
            self.call("cuEventRecord", event, stream)

    def elapsed_seconds(self, start: Any, end: Any) -> float:
        self.call("cuEventSynchronize", end)
        return float(self.call("cuEventElapsedTime", start, end)) / 1e3

    # -- modules and launches ------------------------------------------------------------
    def load_module(self, cubin: bytes) -> Any:
        return self.call("cuModuleLoadData", cubin)

    def function(self, module: Any, name: str) -> Any:
        return self.call("cuModuleGetFunction", module, name.encode())

    def launch(self, function: Any, grid: tuple[int, int, int], block: tuple[int, int, int], params: int, stream: Any, shared: int = 0) -> None:
        """Enqueue ``function``; ``params`` is the address of its void* argument array."""
        self.call("cuLaunchKernel", function, *grid, *block, shared, stream, params, 0)


def open_device(ordinal: int = 0) -> Device:
    """GPU ``ordinal`` with its primary context retained (BackendUnavailable if none)."""
    driver = load()
    count = _check(driver, driver.cuDeviceGetCount(), "cuDeviceGetCount")
    if count == 0:
        raise BackendUnavailable("no CUDA GPU: the NVIDIA driver found no device")
    if ordinal >= count:
        raise BackendUnavailable(f"no CUDA GPU {ordinal}: this machine has {count}")
    handle = _check(driver, driver.cuDeviceGet(ordinal), "cuDeviceGet")
    context = _check(driver, driver.cuDevicePrimaryCtxRetain(handle), "cuDevicePrimaryCtxRetain")
    return Device(driver, ordinal, handle, context)
