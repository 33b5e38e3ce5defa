"""The host backends (``cpu`` and ``reference``): numpy arrays in host memory, kernels called in turn.

Host kernels compute in float32 and never store float16 activations, so this backend also
owns the emulation of lower precisions: a reduced-precision layer rounds its float inputs and
outputs to FP16 values; an INT8 layer with scales quantizes its activation inputs to their
INT8 grid, runs its INT8 kernel (integer arithmetic for Conv/Gemm/MatMul, ``int8.py``) and
requantizes the outputs it writes as INT8; a tensor with explicit Q/DQ scales is quantized
where it is produced (``edge.quant.numerics``). That is how GPU and DLA segments run
off-device in their numerics.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge.errors import EdgeError, KernelError
from edge.ir import Node, TensorSequence
from edge.kernels.backend import Backend, RunState, StepSpec
from edge.kernels.registry import OpContext, Workspace, lookup, same_bytes
from edge.precision import REDUCED, round_to_fp16
from edge.quant.numerics import explicit_quantizer, has_int8_scales, input_quantizers, quantizer_of

__all__ = ["Conversions", "HostBackend", "HostLaunch", "conversions_of"]

Conversions = tuple[tuple[int, Callable[[np.ndarray], np.ndarray]], ...]
"""(position, fn) pairs: how a reduced-precision layer's arrays are emulated (FP16 rounding,
INT8 fake quantization), applied in order to the array at each position."""


def conversions_of(node: Node) -> tuple[Conversions, Conversions]:
    """How a layer's precision is emulated: an INT8 layer with scales quantizes its activation
    inputs (those not already written as INT8) and requantizes the outputs it writes as INT8
    (``meta["int8_output"]``); another FP16/INT8 layer rounds every input and output to FP16;
    an output that is an explicit Q/DQ tensor is quantized where produced, at any precision."""
    convert_in: Conversions = ()
    convert_out: Conversions = ()
    if node.meta.get("precision") == "int8" and has_int8_scales(node):
        convert_in = input_quantizers(node)
        convert_out = tuple(
            (i, q) for i, v in enumerate(node.outputs) if v.meta.get("int8_output") and (q := quantizer_of(v.meta)) is not None
        )
    elif node.meta.get("precision") in REDUCED:
        convert_in = tuple((i, round_to_fp16) for i, v in enumerate(node.inputs) if v is not None)
        convert_out = tuple((i, round_to_fp16) for i in range(len(node.outputs)))
    explicit = tuple((i, q) for i, v in enumerate(node.outputs) if (q := explicit_quantizer(v)) is not None)
    return convert_in, convert_out + explicit


def convert(arrays: list, conversions: Conversions) -> None:
    """Apply ``conversions`` to ``arrays`` in place, skipping positions that hold no tensor
    (an omitted input, an empty optional, a sequence)."""
    for index, fn in conversions:
        if index < len(arrays) and isinstance(arrays[index], np.ndarray):
            arrays[index] = fn(arrays[index])


class HostLaunch:
    """One prepared host step: the kernel, its emulated precision and its per-node cache."""

    __slots__ = ("node", "opset", "fn", "tactic", "cache", "nested", "convert_in", "convert_out", "workspace_key")

    def __init__(self, spec: StepSpec, fn: Callable, workspace_key: str) -> None:
        self.node = spec.node
        self.opset = spec.opset
        self.fn = fn
        self.tactic = spec.tactic
        self.cache: dict = {}
        self.nested = any(True for _ in spec.node.subgraphs())
        self.convert_in, self.convert_out = conversions_of(spec.node)
        self.workspace_key = workspace_key

    def __call__(self, args: list, out: list | None, state: RunState) -> list[np.ndarray]:
        if self.convert_in:
            convert(args, self.convert_in)
        ctx = OpContext(
            self.node, self.opset, state.subgraph if self.nested else None, out, self.cache,
            state.scratch.get(self.workspace_key), self.tactic,
        )
        try:
            result = self.fn(ctx, *args)
        except EdgeError:
            raise
        except Exception as exc:
            shapes = ", ".join(_describe(a) for a in args)
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise KernelError(f"node '{self.node.name}' ({self.node.op_type}) failed on inputs ({shapes}): {message}") from exc
        if type(result) is np.ndarray:
            results = [result]
        else:
            results = list(result) if isinstance(result, (tuple, list)) else [result]
            results = [r if r is None or isinstance(r, (np.ndarray, TensorSequence)) else np.asarray(r) for r in results]
        if self.convert_out:
            convert(results, self.convert_out)
        if out is not None:
            results = [_place(r, view, state.arena) for r, view in zip(results, out)]
        return results


def _place(result: np.ndarray, view: np.ndarray | None, arena: np.ndarray | None) -> np.ndarray:
    """Put a kernel's result into its planned buffer (or keep it off the arena); a sequence
    or an empty optional is never planned."""
    if result is view or not isinstance(result, np.ndarray):
        return result
    if view is not None and result.shape == view.shape and result.dtype == view.dtype:
        if not same_bytes(result, view):  # an aliasing op (Reshape) planned over its input
            np.copyto(view, result)
        return view
    # no buffer, or a data-dependent shape the plan did not foresee: the result must not
    # alias arena bytes that a later step will overwrite
    return detach(result, arena)


def detach(array: np.ndarray, arena: np.ndarray | None) -> np.ndarray:
    """``array``, copied when it views ``arena`` (whose bytes later steps overwrite); a
    sequence holds its own copies."""
    if arena is not None and isinstance(array, np.ndarray) and np.may_share_memory(array, arena):
        return array.copy()
    return array


def _describe(value: object) -> str:
    """An argument as an error message shows it: ``float32[2, 3]``, a sequence, or None."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype}{list(value.shape)}"
    return repr(value)


class HostBackend(Backend):
    """Host memory and the kernels registered under ``name`` ("cpu" or "reference")."""

    memory_space = "host"

    def __init__(self, name: str) -> None:
        self.name = name

    def allocate(self, nbytes: int) -> np.ndarray:
        return np.empty(nbytes, np.uint8)

    def view(self, buffer: np.ndarray, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        return buffer[offset : offset + nbytes].view(dtype).reshape(shape)

    def copy_in(self, dst: np.ndarray | None, src: np.ndarray, state: RunState) -> np.ndarray:
        if dst is None:
            return src
        np.copyto(dst, src)
        return dst

    def copy_out(self, src: np.ndarray, state: RunState) -> np.ndarray:
        return src

    def prepare(self, spec: StepSpec) -> HostLaunch:
        node = spec.node
        kernel = lookup(node.op_type, node.domain, self.name, spec.opset, spec.precision)
        if kernel is None:
            kernel = lookup(node.op_type, node.domain, self.name, spec.opset)
        if kernel is None:
            raise KernelError(f"node '{node.name}': no {self.name} kernel for {node.op_type}")
        return HostLaunch(spec, kernel.fn, self.name)

    def converts(self, node: Node) -> bool:
        convert_in, convert_out = conversions_of(node)
        return bool(convert_in or convert_out)

    def new_state(self) -> Workspace:
        return Workspace()

    def device_signature(self) -> dict[str, object]:
        from edge.kernels.threads import intra_op_threads

        import platform

        return {"backend": self.name, "machine": platform.machine(), "processor": _cpu_model(), "threads": intra_op_threads()}


def _cpu_model() -> str:
    """The CPU's model name (timings differ between CPU models, not between machines of one)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"
