"""Kernel registry: implementations keyed by (domain, op type, backend, precision), versioned by opset.

A kernel's ``fn`` follows its backend's convention: on the host backends it is
``fn(ctx, *inputs) -> array | tuple[array, ...]``; a device backend may register builders
(see that backend). Registering the same op with a higher ``since`` adds a newer
implementation; lookup picks the newest one whose ``since`` is not above the model's opset
(the onnx reference evaluator's rule) among those that declare the step's precision; of one
version, the one registered last, and where its ``supports`` refuses a node, the next one
that takes it (``resolve``). Each registration may also declare ``supports(node) -> Refusal |
None`` (shapes, attributes or dtypes it cannot take), ``tactics(spec) -> [Tactic]`` (variants
the builder times), ``inplace`` (output 0 may overwrite an input of its size and dtype that
dies at the step) and free-form ``meta`` its backend reads.
A shape function ``shape_fn(ctx, *input_values) -> [(dtype, shape), ...]`` may be registered
beside a kernel for ops onnx's shape inference does not know (fused and custom ops).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.ir import Graph, Node, standard_domain
from edge.kernels.tactics import Tactic
from edge.refusal import Refusal

__all__ = [
    "OpContext",
    "Workspace",
    "Kernel",
    "KernelFn",
    "ShapeFn",
    "register",
    "register_shape",
    "register_custom_op",
    "lookup",
    "resolve",
    "passed_over",
    "lookup_shape",
    "supported_ops",
    "same_bytes",
]

KernelFn = Callable[..., Any]
SupportsFn = Callable[[Node], "Refusal | None"]
TacticsFn = Callable[..., "list[Tactic]"]
ShapeFn = Callable[..., list[tuple[np.dtype, tuple]]]


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``a`` and ``b`` view the same bytes laid out the same way: a result that
    already sits in its destination (a planned buffer, a Concat slice) needs no copy. Strides
    of length-1 axes do not matter, so two C-contiguous views of one start are the same."""
    if a.shape != b.shape or a.dtype != b.dtype or not np.may_share_memory(a, b):
        return False  # (may_share_memory compares bounds: ~10x cheaper than reading addresses)
    if a.__array_interface__["data"][0] != b.__array_interface__["data"][0]:
        return False
    return a.strides == b.strides or (a.flags.c_contiguous and b.flags.c_contiguous)


def _same_arrays(kept: Sequence[Any], given: Sequence[Any]) -> bool:
    """Whether ``given`` holds the very objects ``kept`` does, position by position (a loop,
    not a generator: this runs on every call of a kernel with folded weights)."""
    for a, b in zip(kept, given):
        if a is not b:
            return False
    return True


class Workspace:
    """Named scratch buffers a kernel reuses from run to run (im2col columns, padded inputs).

    One execution context owns one workspace and runs one kernel at a time, so every kernel
    may take any buffer; a buffer only grows. Reusing them spares the allocation and the
    page faults a fresh multi-megabyte array costs on every run. Contents are undefined
    when handed out: a kernel writes everything it later reads.
    """

    __slots__ = ("_buffers",)

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A C-contiguous ``shape``/``dtype`` view of scratch buffer ``name``."""
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        buffer = self._buffers.get(name)
        if buffer is None or buffer.nbytes < nbytes:
            buffer = self._buffers[name] = np.empty(max(nbytes, 1), np.uint8)
        return buffer[:nbytes].view(dtype).reshape(shape)


class OpContext:
    """What a kernel sees besides its input arrays.

    Attributes:
        node: the IR node being executed (attributes, output count, meta).
        opset: the model's opset for the node's domain.
        out: preallocated output buffers (arena views) or None; a kernel may write its
            result into ``out[i]`` and return it, otherwise the runtime copies.
        cache: a dict kept per node across runs, for facts derived from attributes and
            input shapes (parsed windows, folded constants): key entries by what they
            depend on. Shared by threads running one schedule, so never scratch memory.
        workspace: scratch buffers of the running execution context (see Workspace).
        tactic: the variant the builder chose for this step (None: the kernel's heuristic).
    """

    __slots__ = ("node", "opset", "out", "cache", "workspace", "tactic", "_run_subgraph")

    def __init__(
        self,
        node: Node,
        opset: int,
        run_subgraph: Callable[[Graph, Sequence[np.ndarray | None]], list[np.ndarray]] | None = None,
        out: list[np.ndarray | None] | None = None,
        cache: dict[Any, Any] | None = None,
        workspace: Workspace | None = None,
        tactic: Tactic | None = None,
    ) -> None:
        self.node = node
        self.opset = opset
        self.out = out if out is not None else [None] * len(node.outputs)
        self.cache = cache if cache is not None else {}
        self.workspace = workspace if workspace is not None else Workspace()
        self.tactic = tactic
        self._run_subgraph = run_subgraph

    def attr(self, name: str, default: Any = None) -> Any:
        return self.node.attrs.get(name, default)

    def output(self, index: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Where to write output ``index``, always C-contiguous (what compiled kernels need):
        its planned buffer when that has this shape and dtype, else a fresh array (dynamic
        shapes, unplanned runs)."""
        out = self.out[index]
        if out is not None and out.shape == shape and out.dtype == dtype and out.flags.c_contiguous:
            return out
        return np.empty(shape, dtype)

    def from_constants(self, key: Any, arrays: Sequence[np.ndarray | None], compute: Callable[[], Any]) -> Any:
        """``compute()``, kept in ``cache`` under ``key`` when ``arrays`` (the node's inputs 1,
        2, ...; None for omitted ones) all come from constant inputs, so facts folded from
        weights are derived once, not every run. The entry remembers the very arrays it was
        derived from and is recomputed when given others (a kernel called by another op's
        kernel on arrays it derived)."""
        cached = self.cache.get(key)  # only ever holds values derived from constants
        if cached is not None and _same_arrays(cached[0], arrays):
            return cached[1]
        inputs = self.node.inputs[1:]
        if not all(v is not None and v.is_const for v, a in zip(inputs, arrays) if a is not None):
            return compute()
        value = compute()
        self.cache[key] = (tuple(arrays), value)
        return value

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
    """One registered implementation and what it declares about itself."""

    op_type: str
    domain: str
    backend: str
    since: int
    fn: KernelFn
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    supports: SupportsFn | None = field(default=None, compare=False)
    tactics: TacticsFn | None = field(default=None, compare=False)
    inplace: bool = False

    @property
    def name(self) -> str:
        """The implementation's name as ``inspect`` shows it (``module.function``)."""
        module = getattr(self.fn, "__module__", "") or ""
        return f"{module.rsplit('.', 1)[-1]}.{getattr(self.fn, '__name__', self.op_type)}"


_KERNELS: dict[tuple[str, str, str], list[Kernel]] = {}
_SHAPES: dict[tuple[str, str], ShapeFn] = {}


def register(
    *op_types: str,
    backend: str = "cpu",
    domain: str = "",
    since: int = 1,
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8"),
    supports: SupportsFn | None = None,
    tactics: TacticsFn | None = None,
    inplace: bool = False,
    **meta: Any,
) -> Callable[[KernelFn], KernelFn]:
    """Decorator: register ``fn`` as the kernel of every op in ``op_types``.

    Args:
        precisions: layer precisions the kernel serves (lookup filters on them).
        supports: ``fn(node) -> Refusal | None``, refusing nodes the kernel cannot take.
        tactics: ``fn(spec) -> [Tactic]``, the variants applicable to a step, heuristic first.
        inplace: output 0 may be written over an input of the same size and dtype that dies
            at this step (elementwise ops, reshapes): the memory planner then shares them.
    """

    def decorate(fn: KernelFn) -> KernelFn:
        for op_type in op_types:
            key = (standard_domain(domain), op_type, backend)
            versions = [k for k in _KERNELS.get(key, []) if (k.since, k.precisions) != (since, precisions)]
            versions.append(Kernel(op_type, key[0], backend, since, fn, precisions, dict(meta), supports, tactics, inplace))
            _KERNELS[key] = sorted(versions, key=lambda k: k.since)
        return fn

    return decorate


def register_shape(*op_types: str, domain: str = "") -> Callable[[ShapeFn], ShapeFn]:
    """Decorator: register a shape function for ops onnx's inference cannot type."""

    def decorate(fn: ShapeFn) -> ShapeFn:
        for op_type in op_types:
            _SHAPES[(standard_domain(domain), op_type)] = fn
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


def _candidates(op_type: str, domain: str, backend: str, opset: int | None, precision: str | None) -> list[Kernel]:
    """The kernels ``lookup`` chooses among, preferred first: those serving ``precision`` (None:
    FP32's, or any where no kernel serves FP32) of the newest ``since`` not above ``opset``
    (None: the newest; the oldest where every one is newer), the last registered first."""
    _ensure_loaded(backend)
    versions = _KERNELS.get((standard_domain(domain), op_type, backend), [])
    if precision is None and any("fp32" in k.precisions for k in versions):
        precision = "fp32"
    if precision is not None:
        versions = [k for k in versions if precision in k.precisions]
    if not versions:
        return []
    eligible = [k for k in versions if opset is None or k.since <= opset]
    since = eligible[-1].since if eligible else versions[0].since
    return [k for k in reversed(versions) if k.since == since]


def lookup(
    op_type: str, domain: str = "", backend: str = "cpu", opset: int | None = None, precision: str | None = None
) -> Kernel | None:
    """The newest kernel whose ``since`` is not above ``opset`` (None: the newest) among those
    serving ``precision`` (None: FP32's, or any where no kernel serves FP32: an op's INT8-only
    kernel is never what a caller without a precision means); of one version, the one
    registered last (a specialized kernel registered after the general one it improves on)."""
    found = _candidates(op_type, domain, backend, opset, precision)
    return found[0] if found else None


def resolve(node: Node, opset: int, backend: str, precision: str | None = None) -> Kernel | Refusal:
    """The kernel ``backend`` runs ``node`` with at ``precision``, or why it cannot: ``lookup``'s
    choice, or where its ``supports`` refuses the node, the next kernel of that version and
    precision that takes it (so the CUDA INT8 kernels yield to the float ones); when every
    one refuses, the preferred kernel's refusal."""
    candidates = _candidates(node.op_type, node.domain, backend, opset, precision)
    if not candidates:
        op = f"{node.domain}::{node.op_type}" if node.domain else node.op_type
        if precision is not None and lookup(node.op_type, node.domain, backend, opset) is not None:
            return Refusal("backend.precision", f"{op} '{node.name}': the {backend} backend has no {precision} kernel for {op}")
        return Refusal("backend.no_kernel", f"{op} '{node.name}': the {backend} backend has no kernel for {op}")
    first: Refusal | None = None
    for kernel in candidates:
        refusal = kernel.supports(node) if kernel.supports is not None else None
        if refusal is None:
            return kernel
        first = first or refusal
    assert first is not None
    return first


def passed_over(node: Node, opset: int, backend: str, precision: str | None, chosen: Kernel) -> Refusal | None:
    """Why the preferred kernel refused ``node`` when ``resolve`` chose ``chosen``, another one; else None."""
    preferred = lookup(node.op_type, node.domain, backend, opset, precision)
    if preferred is None or preferred is chosen or preferred.supports is None:
        return None
    return preferred.supports(node)


def lookup_shape(op_type: str, domain: str = "") -> ShapeFn | None:
    _ensure_loaded("cpu")
    return _SHAPES.get((standard_domain(domain), op_type))


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
    try:
        importlib.import_module(f"edge.kernels.{backend}")  # registers on import
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("edge.kernels"):
            raise
