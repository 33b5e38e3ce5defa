"""``TensorRTBackend``: the backend protocol over TensorRT, with the CUDA backend's memory and streams.

TensorRT runs engines but owns no memory API in Python, so this backend keeps tensors where
its ``memory`` backend does (the CUDA backend: device arenas, pinned staging, one stream per
execution context) and enqueues its ``TensorRTEngine`` steps on that same stream; CUDA and
TensorRT segments of one plan then share tensors without copies.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.errors import KernelError
from edge.ir import Graph
from edge.kernels.backend import Backend, Launch, RunState, StepSpec
from edge.kernels.registry import lookup
from edge.kernels.tensorrt.step import ENGINE_OP, check_plan_version

__all__ = ["TensorRTBackend", "TensorRTState"]


class TensorRTState:
    """One edgetrt execution context's TensorRT execution contexts and its memory backend's state."""

    def __init__(self, memory: Backend) -> None:
        self.memory_state = memory.new_state()
        self.memory_run = RunState({memory.name: self.memory_state})
        self.contexts: dict[int, Any] = {}
        stream = getattr(self.memory_state, "stream", None)
        self.stream_handle = int(stream) if stream is not None else 0


class TensorRTBackend(Backend):
    """Runs ``TensorRTEngine`` steps with the ``trt`` module; tensors live in ``memory``'s space."""

    name = "tensorrt"
    half_storage = False  # engine I/O keeps the model's own types (linear fp32/int formats)

    def __init__(self, trt: Any, memory: Backend) -> None:
        self.trt = trt
        self.memory = memory
        self.memory_space = memory.memory_space
        self.logger = trt.Logger(trt.Logger.WARNING)

    def state_of(self, state: RunState) -> TensorRTState:
        found = state.scratch.get(self.name)
        if found is None:
            raise KernelError("no TensorRT state in this run: the execution context did not call TensorRTBackend.new_state()")
        return found

    def _memory(self, state: RunState) -> RunState:
        """The memory backend's view of this run (its own state, the caller's spin-wait choice)."""
        run = self.state_of(state).memory_run
        run.spin_wait = state.spin_wait
        return run

    # -- memory (the memory backend's) ---------------------------------------------------
    def allocate(self, nbytes: int) -> Any:
        return self.memory.allocate(nbytes)

    def view(self, buffer: Any, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        return self.memory.view(buffer, offset, shape, dtype)

    def copy_in(self, dst: Any, src: np.ndarray, state: RunState) -> Any:
        return self.memory.copy_in(dst, src, self._memory(state))

    def copy_out(self, src: Any, state: RunState) -> np.ndarray:
        return self.memory.copy_out(src, self._memory(state))

    # -- execution ------------------------------------------------------------------------
    def prepare(self, spec: StepSpec) -> Launch:
        node = spec.node
        kernel = lookup(node.op_type, node.domain, self.name, spec.opset)
        if kernel is None:
            raise KernelError(f"{node.op_type} '{node.name}': the tensorrt backend runs whole TensorRT engines ({ENGINE_OP} layers) only")
        return kernel.fn(self, spec)

    def new_state(self) -> TensorRTState:
        return TensorRTState(self.memory)

    def synchronize(self, state: RunState) -> None:
        self.memory.synchronize(self._memory(state))

    def mark(self, state: RunState, phase: str) -> None:
        self.memory.mark(self._memory(state), phase)

    def phase_times(self, state: RunState) -> dict[str, float]:
        return self.memory.phase_times(self._memory(state))

    def check_engine(self, graph: Graph) -> None:
        """Refuse, at load, an engine holding a plan another TensorRT version built."""
        for node in graph.nodes:
            if node.op_type == ENGINE_OP:
                check_plan_version(node, self.trt.__version__)

    @property
    def compute_capability(self) -> str | None:
        """The GPU's compute capability, from the memory backend (None off a GPU)."""
        return getattr(self.memory, "compute_capability", None)

    def device_signature(self) -> dict[str, Any]:
        return {**self.memory.device_signature(), "backend": self.name, "tensorrt": self.trt.__version__}
