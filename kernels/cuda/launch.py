"""What the CUDA kernel builders share: the device tensor type, kernel argument packing,
launch-grid math and ``Step``, the view of one plan step that a registered builder reads.

A kernel registered for backend "cuda" is a builder ``fn(step) -> body``: it reads the step's
attributes, shapes and constant inputs once (at ``Backend.prepare``), resolves its compiled
functions and returns ``body(inputs, outputs, state)``, which only packs pointers and
enqueues kernels on the context's stream (no allocation, so a run can be graph-captured).
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.ir import Node
from edge.kernels.backend import StepSpec, TensorInfo
from edge.refusal import Refusal

if TYPE_CHECKING:
    from edge.kernels.cuda.backend import CudaBackend, CudaState

__all__ = [
    "PRECISIONS",
    "DeviceTensor",
    "Dims",
    "MAX_DIMS",
    "BLOCK",
    "ACTIVATION_CODES",
    "activation_code",
    "contiguous_strides",
    "broadcast_strides",
    "merge_axes",
    "grid_1d",
    "storage_suffix",
    "Function",
    "Step",
    "Body",
    "float_suffix",
    "bytes_suffix",
    "static_refusal",
    "version_text",
]

PRECISIONS = ("fp32", "fp16", "int8")
"""Layer precisions the float kernels serve: INT8 layers too (those without an integer kernel),
between the INT8 conversions of :mod:`.conversions`."""

MAX_DIMS = 8
"""Axes the N-d kernels index (``EDGE_MAX_DIMS`` in common.cuh)."""

BLOCK = 256
"""Threads per block of the elementwise (grid-stride) kernels."""

_MAX_BLOCKS = 65535 * 8
"""Blocks a grid-stride kernel launches at most (each thread then loops)."""

ACTIVATION_CODES = {
    "": 0, "Relu": 1, "Clip": 2, "LeakyRelu": 3, "Sigmoid": 4,
    "HardSigmoid": 5, "HardSwish": 6, "SiLU": 7, "Gelu": 8, "Tanh": 9,
}
"""Fused-epilogue activations by attribute name (``enum Activation`` in common.cuh)."""


@dataclass(frozen=True)
class DeviceTensor:
    """A tensor in device memory: its address, shape and dtype (C-contiguous)."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    owner: Any = field(default=None, compare=False, repr=False)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize


class Dims(ctypes.Structure):
    """``struct Dims`` of common.cuh: up to 8 int64s by value."""

    _fields_ = [("v", ctypes.c_int64 * MAX_DIMS)]

    @classmethod
    def of(cls, values: Sequence[int]) -> Dims:
        if len(values) > MAX_DIMS:
            raise ValueError(f"{len(values)} axes: the CUDA kernels index at most {MAX_DIMS}")
        return cls((ctypes.c_int64 * MAX_DIMS)(*[int(v) for v in values]))


def activation_code(name: str, params: Sequence[float]) -> tuple[int, float, float]:
    """(code, p0, p1) of a fused activation with the CPU's defaults for missing parameters."""
    params = list(params or ())
    defaults = {"Clip": (-np.inf, np.inf), "LeakyRelu": (0.01, 0.0), "HardSigmoid": (0.2, 0.5)}
    p0, p1 = defaults.get(name, (0.0, 0.0))
    if params:
        p0 = params[0]
    if len(params) > 1:
        p1 = params[1]
    return ACTIVATION_CODES[name], float(p0), float(p1)


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """Element strides of a C-contiguous tensor of ``shape``."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def broadcast_strides(shape: Sequence[int], out: Sequence[int]) -> tuple[int, ...]:
    """Strides that read a contiguous ``shape`` operand at every index of ``out``
    (numpy broadcasting: leading axes added, size-1 axes stride 0)."""
    padded = (1,) * (len(out) - len(shape)) + tuple(shape)
    strides = contiguous_strides(padded)
    return tuple(0 if size == 1 and target != 1 else stride for size, target, stride in zip(padded, out, strides))


def merge_axes(shape: Sequence[int], *strides: Sequence[int]) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """Fold neighbouring axes that every stride set walks contiguously (fewer divisions per
    element, and more ops fit the 8-axis kernels); size-1 axes are dropped."""
    axes = [(size, [s[i] for s in strides]) for i, size in enumerate(shape) if size != 1]
    merged: list[tuple[int, list[int]]] = []
    for size, steps in axes:
        if merged:
            prev_size, prev_steps = merged[-1]
            if all(p == q * size for p, q in zip(prev_steps, steps)):
                merged[-1] = (prev_size * size, steps)
                continue
        merged.append((size, steps))
    if not merged:
        merged = [(1, [0] * len(strides))]
    return tuple(m[0] for m in merged), [tuple(m[1][k] for m in merged) for k in range(len(strides))]


def grid_1d(n: int, block: int = BLOCK) -> tuple[int, int, int]:
    """Blocks for a grid-stride loop over ``n`` elements (at least one, capped)."""
    return (max(1, min(-(-n // block), _MAX_BLOCKS)), 1, 1)


_FLOAT_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16"}


def float_suffix(dtype: np.dtype) -> str:
    """The kernel-name suffix of a float dtype ("f32", "f16")."""
    return _FLOAT_SUFFIX[np.dtype(dtype)]


def storage_suffix(dtype: np.dtype) -> str:
    """The kernel-name suffix of a tensor's storage: a float dtype's, or "i8" for INT8 codes."""
    return "i8" if np.dtype(dtype) == np.int8 else float_suffix(dtype)


def bytes_suffix(dtype: np.dtype) -> str:
    """The copy kernels' suffix for ``dtype``'s element size ("b1" .. "b8")."""
    return f"b{np.dtype(dtype).itemsize}"


def _argument(value: Any) -> Any:
    if isinstance(value, DeviceTensor):
        return ctypes.c_uint64(value.ptr)
    if value is None:
        return ctypes.c_uint64(0)
    return value


class Function:
    """A compiled kernel of this device, launched with ctypes-packed arguments."""

    __slots__ = ("backend", "handle", "name")

    def __init__(self, backend: CudaBackend, handle: Any, name: str) -> None:
        self.backend = backend
        self.handle = handle
        self.name = name

    def __call__(self, state: CudaState, grid: tuple[int, int, int], block: tuple[int, int, int], *args: Any) -> None:
        """Enqueue on ``state``'s stream; device tensors / None become pointers, the rest are
        ctypes values (c_int64, c_int32, c_float, a Structure)."""
        if 0 in grid:
            return  # an empty tensor: nothing to do
        values = [_argument(a) for a in args]
        params = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
        self.backend.device.launch(self.handle, grid, block, ctypes.addressof(params), state.stream)


Body = Callable[[list, list, "CudaState"], None]
"""``body(inputs, outputs, state)``: enqueues one step's kernels (constants already resolved)."""


class Step:
    """One plan step as a builder sees it: node attributes, tensor infos, compiled functions
    and constant inputs uploaded to the backend's weights region."""

    def __init__(self, spec: StepSpec, backend: CudaBackend) -> None:
        self.spec = spec
        self.backend = backend
        self.constants: dict[int, DeviceTensor] = {}

    @property
    def node(self) -> Node:
        return self.spec.node

    def attr(self, name: str, default: Any = None) -> Any:
        return self.spec.node.attrs.get(name, default)

    def input(self, index: int) -> TensorInfo | None:
        return self.spec.inputs[index] if index < len(self.spec.inputs) else None

    def output(self, index: int) -> TensorInfo:
        return self.spec.outputs[index]

    def const(self, index: int) -> np.ndarray | None:
        """The host value of constant input ``index`` (None if absent or computed)."""
        info = self.input(index)
        return None if info is None else info.const

    def function(self, module: str, name: str) -> Function:
        return self.backend.function(module, name)

    def weight(self, index: int) -> DeviceTensor:
        """Constant input ``index`` on the device (uploaded once per backend); the launch
        then hands it to the body in place of the runtime's None."""
        array = self.const(index)
        if array is None:
            raise ValueError(f"node '{self.node.name}': input {index} is not a constant")
        tensor = self.constants[index] = self.backend.upload(array)
        return tensor

    def place(self, index: int, array: np.ndarray) -> DeviceTensor:
        """Upload ``array``, a form of constant input ``index`` the builder derived (packed INT8
        weights, a float32 bias), to stand in for that input at launch."""
        tensor = self.constants[index] = self.upload(array)
        return tensor

    def bind_constants(self) -> None:
        """Upload every constant input the builder has not placed itself (they come in the
        dtype the backend stores them in), to stand in for the runtime's None at launch."""
        for index, info in enumerate(self.spec.inputs):
            if info is not None and info.const is not None and index not in self.constants:
                self.weight(index)

    def upload(self, array: np.ndarray) -> DeviceTensor:
        """A derived constant (folded BatchNorm factors, resize taps) in the weights region,
        uploaded once per content (see ``CudaBackend.upload_derived``)."""
        return self.backend.upload_derived(array)


def static_refusal(node: Node, dtypes: Sequence[np.dtype] | None = None) -> Refusal | None:
    """Refusal "cuda.dynamic_shape" unless every tensor of ``node`` has a static shape (and,
    given ``dtypes``, its first input one of them): such nodes stay on the CPU."""
    for value in (*node.inputs, *node.outputs):
        if value is not None and not value.is_static:
            return Refusal("cuda.dynamic_shape", f"{node.op_type} '{node.name}': tensor '{value.name}' has no static shape")
        if value is not None and value.shape is not None and len(value.shape) > MAX_DIMS:
            return Refusal("cuda.rank", f"{node.op_type} '{node.name}': tensor '{value.name}' has more than {MAX_DIMS} axes")
        if value is not None and value.dtype is not None and (value.dtype.kind not in "biuf" or value.dtype.itemsize not in (1, 2, 4, 8)):
            return Refusal("cuda.dtype", f"{node.op_type} '{node.name}': tensor '{value.name}' is {value.dtype}, which the cuda backend does not hold")
    first = node.inputs[0] if node.inputs else None
    if dtypes is not None and first is not None and first.dtype not in [np.dtype(d) for d in dtypes]:
        return Refusal("cuda.dtype", f"{node.op_type} '{node.name}': the cuda backend has no {first.dtype} kernel")
    return None


def version_text(encoded: int) -> str:
    """A library version encoded as major * 10000 + minor * 100 + patch (cuDNN's and
    cuBLASLt's ``get_version``) as "major.minor.patch"."""
    return f"{encoded // 10000}.{encoded // 100 % 100}.{encoded % 100}"
