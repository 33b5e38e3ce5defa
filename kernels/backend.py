"""The backend protocol: what the runtime needs from a device to run an execution plan.

A backend owns one memory space ("host" for the CPU backends, "device" for a GPU) and turns
plan steps into launches. The runtime never branches on backends or ops: it asks each
segment's backend to ``allocate`` its arena, ``view`` planned tensors inside it, ``prepare``
every step once (kernels, weights uploaded, tactics applied) and then, per run, calls the
launches in plan order, ``copy_in`` / ``copy_out`` at memory-space boundaries and
``synchronize`` before handing results back.

Backends are found by name: ``get_backend("cuda")`` imports ``edge.kernels.cuda`` and calls
its ``create_backend()``; ``register_backend`` adds one from elsewhere (tests, plugins).
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.errors import EdgeError
from edge.ir import Graph, Node
from edge.kernels.tactics import Tactic

__all__ = [
    "BackendUnavailable",
    "TensorInfo",
    "StepSpec",
    "RunState",
    "Launch",
    "Backend",
    "get_backend",
    "register_backend",
    "backend_names",
]


class BackendUnavailable(EdgeError):
    """A backend was asked for on a machine that cannot run it (no GPU, no library)."""


@dataclass(frozen=True)
class TensorInfo:
    """A step's input or output as planned: dtype, shape (max shape for dynamic dims), and the
    array itself for constants (weights), which a backend uploads once per engine."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...] | None
    const: np.ndarray | None = None


@dataclass
class StepSpec:
    """Everything ``Backend.prepare`` may read about one kernel step."""

    node: Node
    opset: int
    precision: str
    tactic: Tactic | None
    layout: str
    inputs: list[TensorInfo | None]
    outputs: list[TensorInfo]
    device: str = "cpu"


@dataclass
class RunState:
    """Per-run, per-context state handed to every launch.

    Attributes:
        scratch: per-backend context state (CPU workspace, CUDA stream and handles), keyed by
            backend name; created once per execution context by ``Backend.new_state``.
        arena: the host arena of the context (host launches copy results that would alias it).
        subgraph: runs a subgraph attribute (If/Loop bodies) with the current outer values.
        graphs: the context's captured device graphs by (first step index, with per-step
            marks) (None: capture off).
        warm: a run has completed (workspaces are sized, so a run may now be captured).
        timing: time each run's phases with device events; ``times`` then holds the last
            run's milliseconds per phase (see ``Schedule.run``).
        spin_wait: device backends busy-wait for their streams instead of blocking.
        step_times: when a dict, each run fills it with every step's milliseconds by step
            index (device events on a schedule with a device, so GPU steps are not
            serialized by host syncs; the host clock otherwise); CUDA graphs are off then.
    """

    scratch: dict[str, Any] = field(default_factory=dict)
    arena: np.ndarray | None = None
    subgraph: Callable[[Graph, Sequence[Any]], list[Any]] | None = None
    graphs: dict[int, Any] | None = None
    warm: bool = False
    timing: bool = False
    times: dict[str, float] = field(default_factory=dict)
    spin_wait: bool = False
    step_times: dict[int, float] | None = None


Launch = Callable[[list, "list | None", RunState], list]
"""``launch(inputs, outputs, state) -> results``: runs one prepared step. ``inputs`` hold the
tensors of the step's memory space (numpy arrays on the host, device views on a GPU);
``outputs`` the planned output views or None where unplanned. Returns the step's results."""


class Backend(ABC):
    """One execution target. Subclasses set ``name`` and ``memory_space``.

    Attributes:
        name: the registry's backend key ("cpu", "reference", "cuda").
        memory_space: where its tensors live; steps of two backends in one space share tensors
            without copies.
        half_storage: whether reduced-precision layers keep float tensors as float16 (a real
            FP16 device) rather than float32 rounded to FP16 values (the CPU's emulation).
        can_capture: whether ``capture``/``replay`` record and replay runs of its steps
            (CUDA graphs), so a run costs one launch instead of one per kernel.
    """

    name: str = ""
    memory_space: str = "host"
    half_storage: bool = False
    can_capture: bool = False

    # -- memory ---------------------------------------------------------------------------
    @abstractmethod
    def allocate(self, nbytes: int) -> Any:
        """One buffer of ``nbytes`` in this backend's memory space (a context's arena)."""

    @abstractmethod
    def view(self, buffer: Any, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        """The tensor at ``offset`` of ``buffer`` with ``shape``/``dtype`` (no copy)."""

    @abstractmethod
    def copy_in(self, dst: Any, src: np.ndarray, state: RunState) -> Any:
        """Copy a host array into ``dst`` (a view of this space, or None: allocate-free staging
        is the backend's business); returns the tensor now holding the data."""

    @abstractmethod
    def copy_out(self, src: Any, state: RunState) -> np.ndarray:
        """A host array with ``src``'s contents (after the work writing it is complete)."""

    # -- execution ------------------------------------------------------------------------
    @abstractmethod
    def prepare(self, spec: StepSpec) -> Launch:
        """Compile/bind one kernel step; called once per engine, before any run."""

    def converts(self, node: Node) -> bool:
        """Whether this backend's step of ``node`` rounds or quantizes the values it reads or
        writes (its precision's emulation or INT8 grid): such a step never becomes a no-op by
        placing its inputs inside its output (Concat elision)."""
        return False

    def new_state(self) -> Any:
        """Per-context state (streams, scratch); None for stateless backends."""
        return None

    def synchronize(self, state: RunState) -> None:
        """Wait for everything launched with ``state`` to finish (no-op on the host)."""

    def capture(self, enqueue: Callable[[], None], state: RunState) -> Any:
        """Record what ``enqueue`` launches on ``state``'s stream, without running it, as a
        replayable graph (backends with ``can_capture``)."""
        raise NotImplementedError(f"backend '{self.name}' cannot capture graphs")

    def replay(self, graph: Any, state: RunState) -> None:
        """Launch a graph from ``capture`` on ``state``'s stream."""
        raise NotImplementedError(f"backend '{self.name}' cannot capture graphs")

    def mark(self, state: RunState, phase: Hashable) -> None:
        """Record on ``state``'s stream that ``phase`` starts here (device backends)."""

    def phase_times(self, state: RunState) -> dict[Hashable, float]:
        """Milliseconds per phase between the marks since the last call (after a synchronize)."""
        return {}

    def time_launch(self, launch: Launch, inputs: list, outputs: list | None, state: RunState, repeat: int) -> list[float]:
        """Seconds per call of ``launch`` over ``repeat`` calls, after one warm-up (the tactic
        auto-tuner's clock). Host backends use the wall clock; GPU backends override with events."""
        import time

        launch(inputs, outputs, state)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            launch(inputs, outputs, state)
            self.synchronize(state)
            times.append(time.perf_counter() - start)
        return times

    def device_signature(self) -> dict[str, Any]:
        """What a timing cache is keyed by: the device and library versions timings depend on."""
        return {"backend": self.name}


_FACTORIES: dict[str, Callable[[], Backend]] = {}
_INSTANCES: dict[str, Backend] = {}
_LOCK = threading.Lock()


def register_backend(name: str, factory: Callable[[], Backend]) -> None:
    """Make ``get_backend(name)`` return ``factory()`` (created once, then shared)."""
    with _LOCK:
        _FACTORIES[name] = factory
        _INSTANCES.pop(name, None)


def get_backend(name: str) -> Backend:
    """The backend called ``name``: registered ones first, else ``edge.kernels.<name>``'s
    ``create_backend()``.

    Raises:
        BackendUnavailable: no such backend, or it cannot run here (its message says why).
    """
    with _LOCK:
        backend = _INSTANCES.get(name)
        if backend is not None:
            return backend
        factory = _FACTORIES.get(name)
    if factory is None:
        try:
            module = importlib.import_module(f"edge.kernels.{name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("edge.kernels"):
                raise BackendUnavailable(f"no backend named '{name}' (known: {', '.join(backend_names())})") from None
            raise BackendUnavailable(f"backend '{name}' needs the missing Python package '{exc.name}'") from None
        factory = getattr(module, "create_backend", None)
        if factory is None:
            raise BackendUnavailable(f"edge.kernels.{name} defines no create_backend()")
    backend = factory()
    with _LOCK:
        return _INSTANCES.setdefault(name, backend)


def backend_names() -> list[str]:
    """Backends this installation ships (each package of ``edge.kernels`` is one, as
    ``get_backend`` finds them) or has registered (available or not)."""
    from edge import kernels

    shipped = {module.name for module in pkgutil.iter_modules(kernels.__path__) if module.ispkg}
    return sorted(set(_FACTORIES) | shipped)
