"""The Engine: an optimized graph plus the build's decisions, loadable and runnable.

An Engine is what ``edge.build`` returns and what an ``.engine`` file holds. It owns the
weights (shared by every execution context), the execution plan and the compiled schedule; each
:class:`~edge.runtime.context.ExecutionContext` it creates owns only per-run state.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from edge.engine.format import BlobWriter, read_engine, write_engine
from edge.engine.provenance import Mismatch, mismatches, read_machine
from edge.engine.serialize import decode, encode, graph_from_document, graph_to_document
from edge.errors import EngineFormatError, EngineMismatchError, EngineMismatchWarning
from edge.ir import Dim, Graph
from edge.plan import ExecutionPlan, lower
from edge.version import __version__

__all__ = ["TensorSpec", "Engine", "load"]


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of an engine input or output (dims may be symbolic)."""

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...]

    def describe(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype.name}[{dims}]"


class Engine:
    """A built model: graph, execution plan, header (target, precision, versions) and build
    decisions. Without a plan (a hand-made Engine) every layer runs on the CPU backend."""

    def __init__(
        self, graph: Graph, header: dict[str, Any], build: dict[str, Any] | None = None, plan: ExecutionPlan | None = None
    ) -> None:
        self.graph = graph
        self.header = dict(header)
        self.build = dict(build or {})
        self.plan = plan if plan is not None else lower(graph, {})
        self._schedule = None
        self._lock = threading.Lock()
        self.mismatches: list[Mismatch] = []

    # -- description -----------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.header.get("name", self.graph.name))

    @property
    def inputs(self) -> list[TensorSpec]:
        return [_spec(v) for v in self.graph.inputs]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [_spec(v) for v in self.graph.outputs]

    @property
    def precision(self) -> str:
        return str(self.header.get("precision", "fp32"))

    @property
    def profile(self) -> str:
        return str(self.header.get("profile", "cpu"))

    # -- execution -------------------------------------------------------------------
    def schedule(self):  # -> edge.runtime.interpreter.Schedule
        """The compiled schedule of the plan, built once and shared by all contexts."""
        with self._lock:
            if self._schedule is None:
                from edge.runtime.interpreter import Schedule

                self._schedule = Schedule(self.graph, plan=self.plan)
            return self._schedule

    def create_context(self, cuda_graph: bool = True):  # -> edge.runtime.context.ExecutionContext
        """A new execution context; use one per thread. ``cuda_graph``: replay captured CUDA
        graphs of the GPU steps once warm (static shapes)."""
        from edge.runtime.context import ExecutionContext

        return ExecutionContext(self, cuda_graph=cuda_graph)

    # -- persistence -----------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the engine file atomically (see :mod:`edge.engine.format`)."""
        blobs = BlobWriter()
        document = graph_to_document(self.graph, blobs)
        document["build"] = encode(self.build, blobs)
        document["plan"] = self.plan.to_dict()
        write_engine(path, self.header, document, blobs.getvalue())


def _spec(value) -> TensorSpec:
    return TensorSpec(value.name, value.dtype, tuple(value.shape or ()))


def new_header(name: str, profile: str, precision: str, **extra: Any) -> dict[str, Any]:
    """Header fields every engine carries."""
    return {
        "name": name,
        "edgetrt_version": __version__,
        "profile": profile,
        "precision": precision,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def load(
    path: str | os.PathLike, profile: str | None = None, *, check_machine: bool = True, allow_mismatch: bool = False
) -> Engine:
    """Read an engine file.

    Args:
        path: the ``.engine`` file.
        profile: when given, refuse an engine built for a different device profile.
        check_machine: compare the engine's provenance with this machine (see
            :mod:`edge.engine.provenance`); off for tools that only describe engines.
        allow_mismatch: load despite differences; they are kept in ``engine.mismatches`` and
            issued as an :class:`EngineMismatchWarning` each.

    Raises:
        EngineFormatError: truncated, corrupted, foreign, newer-format or mismatched file.
        EngineMismatchError: built for another machine (names every difference).
    """
    blob = read_engine(path)
    graph = graph_from_document(blob.document, blob)
    plan = _plan(blob.document.get("plan"), path)
    engine = Engine(graph, blob.header, decode(blob.document.get("build", {}), blob), plan)
    if profile is not None and engine.profile != profile:
        raise EngineFormatError(f"'{path}' was built for profile '{engine.profile}', not '{profile}'; rebuild it")
    if check_machine:
        _check_machine(engine, path, allow_mismatch)
    return engine


def _check_machine(engine: Engine, path: str | os.PathLike, allow_mismatch: bool) -> None:
    found = mismatches(engine.header, {segment.backend for segment in engine.plan.segments}, read_machine())
    if not found:
        return
    described = "; ".join(m.describe() for m in found)
    if not allow_mismatch:
        raise EngineMismatchError(f"'{path}' was built for another machine: {described}; rebuild it here or pass --allow-mismatch")
    engine.mismatches = found
    for mismatch in found:
        warnings.warn(f"'{path}': {mismatch.describe()}", EngineMismatchWarning, stacklevel=3)


def _plan(record: Any, path: str | os.PathLike) -> ExecutionPlan | None:
    """The stored execution plan (None in engines written before plans were stored)."""
    if record is None:
        return None
    try:
        return ExecutionPlan.from_dict(record)
    except (KeyError, TypeError, ValueError) as exc:
        raise EngineFormatError(f"'{path}' is corrupted: malformed execution plan ({exc})") from None
