"""The cuDNN frontend (``nvidia-cudnn-frontend``) as this backend's tactic source: the library
probe, one handle per backend, the operation graphs built so far per problem, and the plans a
step runs. Shared by the convolutions (:mod:`.cudnn_conv`) and attention (:mod:`.cudnn_sdpa`).

A plan runs on our own device pointers with the context's scratch as its workspace, on the
context's stream: an execution allocates nothing and can be graph-captured.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from edge.kernels.cuda.launch import version_text

__all__ = ["available", "library", "library_version", "Graphs", "Plan"]

G = TypeVar("G")


@functools.cache
def library() -> Any:
    """The ``cudnn`` frontend module with libcudnn loaded, or None."""
    try:
        import cudnn

        cudnn.backend_version()
    except Exception:  # not installed, or libcudnn missing: the source offers nothing
        return None
    return cudnn


def available() -> bool:
    """Whether cuDNN's tactics can be offered (the frontend imports and libcudnn loads)."""
    return library() is not None


def library_version() -> str | None:
    """cuDNN's version ("9.19.0"), or None without it."""
    cudnn = library()
    if cudnn is None:
        return None
    return version_text(int(cudnn.backend_version()))


class Graphs:
    """Per backend: one cuDNN handle (its stream set per execution, under the lock) and the
    operation graphs built so far, by problem (a graph serves every step of that problem)."""

    _lock = threading.Lock()
    _by_backend: dict[int, Graphs] = {}

    def __init__(self, cudnn: Any) -> None:
        self.handle = cudnn.create_handle()
        self.graphs: dict[tuple, Any] = {}  # a str: why no engine takes the problem
        self.lock = threading.Lock()

    @classmethod
    def of(cls, backend: Any) -> Graphs:
        """The handle and graphs of ``backend`` (made on first use, with its context current)."""
        with cls._lock:
            found = cls._by_backend.get(id(backend))
            if found is None:
                backend.device.call("cuCtxGetCurrent")  # the primary context current for cuDNN
                found = cls._by_backend[id(backend)] = cls(library())
            return found

    def built(self, p: dict[str, Any], make: Callable[[Any, Any, dict[str, Any]], G]) -> G | str:
        """``make(cudnn, handle, p)``, the graph of problem ``p`` with its ranked plans listed,
        built once per backend, or why it does not build (remembered, not retried: the
        frontend's not-supported errors carry the engines' reasons)."""
        key = (make, tuple(sorted((k, str(v)) for k, v in p.items())))
        with self.lock:
            if key not in self.graphs:
                try:
                    self.graphs[key] = make(library(), self.handle, p)
                except Exception as exc:  # no engine takes this problem, or the frontend refuses it
                    self.graphs[key] = str(exc).split("\n", 1)[0] or type(exc).__name__
            return self.graphs[key]

    def plan(self, graph: Any, start: int = 0) -> Plan | None:
        """The first execution plan of ``graph``'s ranked list from rank ``start`` that builds
        (None: none does)."""
        with self.lock:
            for index in range(start, int(graph.get_execution_plan_count())):
                try:
                    graph.build_plan_at_index(index)
                except Exception:  # this plan does not build for the problem: try the next ranked one
                    continue
                return Plan(self, graph, index, int(graph.get_workspace_size_plan_at_index(index)))
        return None


@dataclass(frozen=True)
class Plan:
    """One built execution plan of a shared graph: what a step's body runs."""

    graphs: Graphs
    graph: Any
    index: int
    workspace: int

    def execute(self, pack: dict[Any, int], state: Any, backend: Any) -> None:
        """Enqueue the plan on ``state``'s stream: ``pack`` maps the graph's tensors to device
        pointers, the workspace is the context's scratch."""
        scratch = state.workspace(backend, self.workspace) if self.workspace else None
        with self.graphs.lock:
            library().set_stream(self.graphs.handle, int(state.stream))
            self.graph.execute_plan_at_index(pack, scratch, self.index, handle=self.graphs.handle)
