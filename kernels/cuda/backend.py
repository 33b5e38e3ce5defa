"""``CudaBackend``: the backend protocol on one NVIDIA GPU through the driver API.

Memory: ``allocate`` gives each execution context one device arena; constants (weights and
what builders derive from them) live in a weights region owned by the backend and shared by
every context. Each context's ``CudaState`` holds its stream, its events and a pinned
staging area for host copies, so contexts on separate streams run concurrently.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from dataclasses import dataclass, field
from collections.abc import Hashable
from typing import Any

import numpy as np

from edge.errors import KernelError
from edge.ir import Node
from edge.kernels import registry
from edge.kernels.backend import Backend, Launch, RunState, StepSpec
from edge.kernels.cuda import compiler, cublaslt, cudnn_graphs
from edge.kernels.cuda.conversions import quantizers, with_conversions
from edge.kernels.cuda.driver import Device, open_device
from edge.kernels.cuda.launch import DeviceTensor, Function, Step
from edge.refusal import Refusal

__all__ = ["CapturedGraph", "CudaBackend", "CudaState", "DeviceBuffer"]

TIMED_REPLAYS = 3
"""Replays of a tactic's captured calls the auto-tuner times (their median is the time)."""


@dataclass(frozen=True)
class DeviceBuffer:
    """One device allocation (a context's arena); freed when the last reference goes."""

    ptr: int
    nbytes: int
    finalizer: Any = field(default=None, compare=False, repr=False)


class CudaState:
    """One execution context's stream, timing events and pinned host staging.

    Staging is a bump area: each ``copy_in`` takes a fresh slice, so copies queued before a
    synchronize never overwrite each other; it is reset (and grown, if a run needed more)
    at ``synchronize``.
    """

    def __init__(self, device: Device) -> None:
        self.device = device
        self.stream = device.stream()
        self.start, self.end = device.event(), device.event()
        self._staging: list[tuple[int, np.ndarray]] = []
        self._used = 0
        self._retired: list[tuple[int, np.ndarray]] = []
        self._workspaces: dict[str, DeviceBuffer] = {}
        self.marks: list[tuple[Hashable, Any]] = []  # (phase, event) recorded this run
        self.mark_events: list[Any] = []
        self.capturing = False  # inside CudaBackend.capture: marks become graph nodes
        weakref.finalize(self, _free_state, device, self.stream, self._staging, self._retired)

    def workspace(self, backend: CudaBackend, nbytes: int, purpose: str = "step") -> int:
        """Device scratch of at least ``nbytes`` for one step's intermediates (attention
        scores, INT8 im2col rows), shared by the context's steps, which run one after another
        on its stream; each ``purpose`` has its own (a step's quantized input copies live
        beside the scratch of the kernel reading them). It grows on the first run that needs
        more, so capture a graph after a warm-up run."""
        current = self._workspaces.get(purpose)
        if current is None or current.nbytes < nbytes:
            if current is not None:
                self.device.sync_stream(self.stream)  # the old scratch may still be read
            current = self._workspaces[purpose] = backend.allocate(nbytes)
        return current.ptr

    def stage(self, nbytes: int) -> tuple[int, np.ndarray]:
        """Pinned host bytes for one copy: (address, uint8 view)."""
        aligned = -(-nbytes // 256) * 256
        if not self._staging or self._used + aligned > self._staging[-1][1].size:
            if self._staging:
                self._retired.append(self._staging.pop())
            self._staging.append(self.device.alloc_host(max(aligned, 2 * (self._used + aligned), 1 << 20)))
            self._used = 0
        pointer, view = self._staging[-1]
        start = self._used
        self._used += aligned
        return pointer + start, view[start : start + nbytes]

    def synchronize(self, spin: bool = False) -> None:
        """Wait for the stream (``spin``: busy-wait polling it, trtexec's --useSpinWait)."""
        self.device.sync_stream(self.stream, spin)
        self._used = 0
        while self._retired:
            self.device.free_host(self._retired.pop()[0])


def _free_state(device: Device, stream: Any, staging: list, retired: list) -> None:
    try:
        device.call("cuStreamDestroy", stream)
        for pointer, _ in staging + retired:
            device.free_host(pointer)
    except Exception:  # interpreter shutdown: the driver may already be gone
        pass


class CapturedGraph:
    """A captured CUDA graph and its executable instance (destroyed with this object), and
    the timing marks (phase, event) its event-record nodes make on every replay."""

    def __init__(self, device: Device, graph: Any, executable: Any, marks: list[tuple[Hashable, Any]]) -> None:
        self.graph, self.executable, self.marks = graph, executable, marks
        weakref.finalize(self, _free_graph, device, graph, executable)


def _free_graph(device: Device, graph: Any, executable: Any) -> None:
    try:
        device.call("cuGraphExecDestroy", executable)
        device.call("cuGraphDestroy", graph)
    except Exception:  # interpreter shutdown
        pass


def _free_device(device: Device, pointer: int) -> None:
    try:
        device.free(pointer)
    except Exception:  # interpreter shutdown
        pass


class CudaBackend(Backend):
    """Runs plan steps on GPU ``ordinal`` with the NVRTC kernels of this package."""

    name = "cuda"
    memory_space = "device"
    half_storage = True
    can_capture = True

    def __init__(self, ordinal: int = 0, device: Device | None = None) -> None:
        """Open GPU ``ordinal`` (``device``: an already opened one, or a stand-in in tests)."""
        self.device = device if device is not None else open_device(ordinal)
        self.arch = self.device.arch
        self._modules: dict[str, Any] = {}
        self._functions: dict[tuple[str, str], Function] = {}
        self._weights: dict[int, tuple[np.ndarray, DeviceTensor]] = {}
        self._derived: dict[tuple, DeviceTensor] = {}
        self._embedded: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def add_cubins(self, cubins: dict[str, bytes]) -> None:
        """Cubins an engine carries ("<module>.<arch>" -> bytes, see ``compiler.embed_cubins``):
        modules for this GPU's arch load from them instead of being compiled."""
        with self._lock:
            self._embedded.update(cubins)

    # -- memory ---------------------------------------------------------------------------
    def allocate(self, nbytes: int) -> DeviceBuffer:
        pointer = self.device.alloc(nbytes)
        buffer = DeviceBuffer(pointer, int(nbytes))
        object.__setattr__(buffer, "finalizer", weakref.finalize(buffer, _free_device, self.device, pointer))
        return buffer

    def view(self, buffer: DeviceBuffer, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> DeviceTensor:
        tensor = DeviceTensor(buffer.ptr + int(offset), tuple(int(d) for d in shape), np.dtype(dtype), buffer)
        if offset < 0 or int(offset) + tensor.nbytes > buffer.nbytes:
            raise KernelError(f"view of {tensor.nbytes} bytes at offset {offset} lies outside a {buffer.nbytes}-byte device buffer")
        return tensor

    def upload(self, array: np.ndarray) -> DeviceTensor:
        """``array`` in the weights region (once per array object; shared by all contexts)."""
        with self._lock:
            kept = self._weights.get(id(array))
            if kept is not None and kept[0] is array:
                return kept[1]
        tensor = self._copy_up(array)
        with self._lock:
            self._weights[id(array)] = (array, tensor)
        return tensor

    def upload_derived(self, array: np.ndarray) -> DeviceTensor:
        """A constant a builder computed (a float32 bias, folded norm factors, resize taps) in
        the weights region, once per content: builders make a fresh array at every prepare
        (each tactic the auto-tuner tries, each engine load), which must not add an upload."""
        host = np.ascontiguousarray(array)
        key = (host.dtype.str, host.shape, hashlib.blake2b(host.view(np.uint8).reshape(-1), digest_size=16).digest())
        with self._lock:
            kept = self._derived.get(key)
        if kept is None:
            kept = self._copy_up(host)  # outside the lock: the copy synchronizes the device
            with self._lock:
                kept = self._derived.setdefault(key, kept)
        return kept

    def _copy_up(self, array: np.ndarray) -> DeviceTensor:
        """A fresh weights-region copy of ``array``."""
        host = np.ascontiguousarray(array)
        buffer = self.allocate(host.nbytes)
        tensor = DeviceTensor(buffer.ptr, tuple(host.shape), host.dtype, buffer)
        self.device.call("cuMemcpyHtoD", tensor.ptr, host.ctypes.data, host.nbytes)
        self.device.call("cuCtxSynchronize")  # a pageable copy may still be in flight on return
        return tensor

    def copy_in(self, dst: DeviceTensor, src: np.ndarray, state: RunState) -> DeviceTensor:
        cuda = _cuda(state)
        host = np.ascontiguousarray(src, dtype=dst.dtype)
        if host.nbytes != dst.nbytes:
            raise KernelError(f"copy of {host.nbytes} bytes into a {dst.nbytes}-byte device tensor {dst.shape}")
        pointer, staging = cuda.stage(host.nbytes)
        staging[:] = host.reshape(-1).view(np.uint8)
        self.device.copy_h2d(dst.ptr, pointer, host.nbytes, cuda.stream)
        return dst

    def copy_out(self, src: DeviceTensor, state: RunState) -> np.ndarray:
        cuda = _cuda(state)
        pointer, staging = cuda.stage(src.nbytes)
        self.device.copy_d2h(pointer, src.ptr, src.nbytes, cuda.stream)
        cuda.synchronize(state.spin_wait)
        return staging.view(src.dtype).reshape(src.shape).copy()

    # -- execution ------------------------------------------------------------------------
    def function(self, module: str, name: str) -> Function:
        """Kernel ``name`` of ``module``.cu compiled for this GPU (compiled/loaded once)."""
        with self._lock:
            found = self._functions.get((module, name))
            if found is not None:
                return found
            loaded = self._modules.get(module)
            if loaded is None:
                cubin = self._embedded.get(f"{module}.{self.arch}") or compiler.compile_module(module, self.arch)
                loaded = self._modules[module] = self.device.load_module(cubin)
            found = self._functions[(module, name)] = Function(self, self.device.function(loaded, name), name)
            return found

    def prepare(self, spec: StepSpec) -> Launch:
        node = spec.node
        kernel = registry.resolve(node, spec.opset, "cuda", spec.precision)
        if isinstance(kernel, Refusal):
            raise KernelError(f"{node.op_type} '{node.name}': the cuda backend has no {spec.precision} kernel for it ({kernel.detail})")
        step = Step(spec, self)
        body = kernel.fn(step)
        step.bind_constants()
        if not kernel.meta.get("quantizes"):
            body = with_conversions(step, body)
        constants = dict(step.constants)

        def launch(inputs: list, outputs: list | None, state: RunState) -> list:
            tensors = list(inputs)
            for index, tensor in constants.items():
                tensors[index] = tensor
            body(tensors, outputs, _cuda(state))
            return outputs

        return launch

    def converts(self, node: Node) -> bool:
        """Whether the step of ``node`` puts tensors on an INT8 grid (FP16 rounding is no
        conversion here: such layers store float16)."""
        return any(quantizers(node))

    def new_state(self) -> CudaState:
        return CudaState(self.device)

    def synchronize(self, state: RunState) -> None:
        _cuda(state).synchronize(state.spin_wait)

    def capture(self, enqueue, state: RunState) -> CapturedGraph:
        """Stream capture (thread-local mode, so other contexts' threads are not affected) of
        what ``enqueue`` launches, instantiated for replay."""
        cuda = _cuda(state)
        driver = self.device.driver
        marked = len(cuda.marks)
        self.device.call("cuStreamBeginCapture", cuda.stream, driver.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        cuda.capturing = True
        try:
            enqueue()
        finally:
            cuda.capturing = False
            graph = self.device.call("cuStreamEndCapture", cuda.stream)
            captured_marks = cuda.marks[marked:]  # recorded by the graph's replays, not by capture
            del cuda.marks[marked:]
        executable = self.device.call("cuGraphInstantiate", graph, 0)
        return CapturedGraph(self.device, graph, executable, captured_marks)

    def replay(self, graph: CapturedGraph, state: RunState) -> None:
        cuda = _cuda(state)
        self.device.call("cuGraphLaunch", graph.executable, cuda.stream)
        cuda.marks.extend(graph.marks)

    def mark(self, state: RunState, phase: Hashable) -> None:
        cuda = _cuda(state)
        if len(cuda.marks) == len(cuda.mark_events):
            cuda.mark_events.append(self.device.event())  # created in the first runs, reused after
        event = cuda.mark_events[len(cuda.marks)]
        self.device.record(event, cuda.stream, in_graph=cuda.capturing)
        cuda.marks.append((phase, event))

    def phase_times(self, state: RunState) -> dict[Hashable, float]:
        cuda = _cuda(state)
        times: dict[Hashable, float] = {}
        for (phase, start), (_, end) in zip(cuda.marks, cuda.marks[1:]):
            times[phase] = times.get(phase, 0.0) + self.device.elapsed_seconds(start, end) * 1e3
        cuda.marks.clear()
        return times

    def time_launch(self, launch: Launch, inputs: list, outputs: list | None, state: RunState, repeat: int) -> list[float]:
        """Seconds per call, after one warm-up call: ``repeat`` calls captured into one CUDA
        graph and its replays timed with events, as a warm run replays them (an eager call's
        events would also count the host's launch time, which a library's small kernels can
        exceed); where the launch cannot be captured, events around each eager call."""
        cuda = _cuda(state)
        launch(inputs, outputs, state)  # sizes workspaces, loads modules
        try:
            graph = self.capture(lambda: [launch(inputs, outputs, state) for _ in range(repeat)], state)
        except KernelError:
            graph = None
        times = []
        for _ in range(TIMED_REPLAYS if graph is not None else repeat):
            self.device.record(cuda.start, cuda.stream)
            if graph is not None:
                self.replay(graph, state)
            else:
                launch(inputs, outputs, state)
            self.device.record(cuda.end, cuda.stream)
            elapsed = self.device.elapsed_seconds(cuda.start, cuda.end)
            times.append(elapsed / repeat if graph is not None else elapsed)
        cuda.synchronize()
        return times

    @property
    def compute_capability(self) -> str:
        """The GPU's compute capability, "8.7" on Orin, "9.0" on H100."""
        major, minor = self.device.compute_capability
        return f"{major}.{minor}"

    def device_signature(self) -> dict[str, Any]:
        from cuda.bindings import __version__ as bindings_version

        return {
            "backend": self.name,
            "gpu": self.device.name,
            "compute_capability": self.compute_capability,
            "sm_count": self.device.attribute("MULTIPROCESSOR_COUNT"),
            "cuda": self.device.driver_version(),
            "driver": _driver_release(),
            "cuda_bindings": bindings_version,
            "nvrtc": compiler.nvrtc_version(),
            "cublaslt": cublaslt.library_version() or "none",
            "cudnn": cudnn_graphs.library_version() or "none",
        }


def _driver_release() -> str:
    """The NVIDIA driver's release ("580.159") from NVML, or "unknown" without nvidia-ml-py."""
    try:
        import pynvml

        pynvml.nvmlInit()
        release = pynvml.nvmlSystemGetDriverVersion()
        return release.decode() if isinstance(release, bytes) else str(release)
    except Exception:  # no nvidia-ml-py or no NVML library: the signature still holds the CUDA version
        return "unknown"


def _cuda(state: RunState) -> CudaState:
    cuda = state.scratch.get("cuda")
    if cuda is None:
        raise KernelError("no CUDA state in this run: the execution context did not call CudaBackend.new_state()")
    return cuda
