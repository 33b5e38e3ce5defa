"""Kernel registry: implementations keyed by (domain, op type, backend), versioned by opset.

A kernel is a function ``fn(ctx, *inputs) -> array | tuple[array, ...]``. Registering the
same op with a higher ``since`` adds a newer implementation; lookup picks the newest one
whose ``since`` is not above the model's opset (the onnx reference evaluator's rule).
A shape function ``shape_fn(ctx, *input_values) -> [(dtype, shape), ...]`` may be registered
beside a kernel for ops onnx's shape inference does not know (fused and custom ops).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.ir import Graph, Node

__all__ = [
    "OpContext",
    "Kernel",
    "KernelFn",
    "ShapeFn",
    "register",
    "register_shape",
    "register_custom_op",
    "lookup",
    "lookup_shape",
    "supported_ops",
]

KernelFn = Callable[..., Any]
ShapeFn = Callable[..., list[tuple[np.dtype, tuple]]]


class OpContext:
    """What a kernel sees besides its input arrays.

    Attributes:
        node: the IR node being executed (attributes, output count, meta).
        opset: the model's opset for the node's domain.
        out: preallocated output buffers (arena views) or None; a kernel may write its
            result into ``out[i]`` and return it, otherwise the runtime copies.
    """

    __slots__ = ("node", "opset", "out", "_run_subgraph")

    def __init__(
        self,
        node: Node,
        opset: int,
        run_subgraph: Callable[[Graph, Sequence[np.ndarray | None]], list[np.ndarray]] | None = None,
        out: list[np.ndarray | None] | None = None,
    ) -> None:
        self.node = node
        self.opset = opset
        self.out = out if out is not None else [None] * len(node.outputs)
        self._run_subgraph = run_subgraph

    def attr(self, name: str, default: Any = None) -> Any:
        return self.node.attrs.get(name, default)

    @property
    def num_outputs(self) -> int:
        return len(self.node.outputs)

    def run_subgraph(self, graph: Graph, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        """Execute a subgraph attribute (If/Loop/Scan body) on the given inputs."""
        if self._run_subgraph is None:
            raise RuntimeError(f"node '{self.node.name}': this runtime cannot execute subgraphs")
        return self._run_subgraph(graph, inputs)


@dataclass(frozen=True)
class Kernel:
    op_type: str
    domain: str
    backend: str
    since: int
    fn: KernelFn
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


_KERNELS: dict[tuple[str, str, str], list[Kernel]] = {}
_SHAPES: dict[tuple[str, str], ShapeFn] = {}


def _normalize_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def register(
    *op_types: str,
    backend: str = "cpu",
    domain: str = "",
    since: int = 1,
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8"),
    **meta: Any,
) -> Callable[[KernelFn], KernelFn]:
    """Decorator: register ``fn`` as the kernel of every op in ``op_types``."""

    def decorate(fn: KernelFn) -> KernelFn:
        for op_type in op_types:
            key = (_normalize_domain(domain), op_type, backend)
            versions = [k for k in _KERNELS.get(key, []) if k.since != since]
            versions.append(Kernel(op_type, key[0], backend, since, fn, precisions, dict(meta)))
            _KERNELS[key] = sorted(versions, key=lambda k: k.since)
        return fn

    return decorate


def register_shape(*op_types: str, domain: str = "") -> Callable[[ShapeFn], ShapeFn]:
    """Decorator: register a shape function for ops onnx's inference cannot type."""

    def decorate(fn: ShapeFn) -> ShapeFn:
        for op_type in op_types:
            _SHAPES[(_normalize_domain(domain), op_type)] = fn
        return fn

    return decorate


def register_custom_op(
    op_type: str, kernel: KernelFn, shape_fn: ShapeFn | None = None, domain: str = "", backend: str = "cpu"
) -> None:
    """Plugin hook: make a custom operator importable, buildable and runnable.

    Args:
        op_type: the ONNX op type as it appears in the model.
        kernel: ``fn(ctx, *inputs) -> array | tuple``.
        shape_fn: ``fn(ctx, *input_values) -> [(dtype, shape), ...]``; without one the
            output shapes are found by running the kernel on zero-filled inputs.
        domain: the node's ONNX domain (custom ops usually have their own).
        backend: which backend the kernel is for.
    """
    register(op_type, backend=backend, domain=domain)(kernel)
    if shape_fn is not None:
        register_shape(op_type, domain=domain)(shape_fn)


def lookup(op_type: str, domain: str = "", backend: str = "cpu", opset: int | None = None) -> Kernel | None:
    """The newest kernel whose ``since`` is not above ``opset`` (None: the newest)."""
    _ensure_loaded(backend)
    versions = _KERNELS.get((_normalize_domain(domain), op_type, backend), [])
    chosen = None
    for kernel in versions:
        if opset is None or kernel.since <= opset:
            chosen = kernel
    return chosen if chosen is not None else (versions[0] if versions else None)


def lookup_shape(op_type: str, domain: str = "") -> ShapeFn | None:
    _ensure_loaded("cpu")
    return _SHAPES.get((_normalize_domain(domain), op_type))


def supported_ops(backend: str = "cpu") -> dict[str, set[str]]:
    """Op types per domain that ``backend`` implements."""
    _ensure_loaded(backend)
    ops: dict[str, set[str]] = {}
    for domain, op_type, kernel_backend in _KERNELS:
        if kernel_backend == backend:
            ops.setdefault(domain, set()).add(op_type)
    return ops


_LOADED: set[str] = set()


def _ensure_loaded(backend: str) -> None:
    """Import a backend's kernel modules on first use, so registration happens lazily."""
    if backend in _LOADED:
        return
    _LOADED.add(backend)
    if backend == "cpu":
        import edge.kernels.cpu  # noqa: F401  (registers on import)
