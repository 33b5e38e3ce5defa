"""The ``TensorRTEngine`` step: one serialized TensorRT engine run on the step's I/O buffers.

The node holds the plan as a uint8 tensor (a blob of the engine file, under its checksum),
the TensorRT version that built it and the DLA core it was built for. Preparing the step
deserializes the plan once; each execution context gets its own TensorRT execution context,
whose bindings are the addresses of edgetrt's planned input and output buffers:
``set_tensor_address`` + ``execute_async_v3`` on TensorRT 10.x, a bindings list and
``execute_async_v2`` on 8.6.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.errors import EngineMismatchError, KernelError
from edge.ir import EDGETRT_DOMAIN, Node, Value
from edge.kernels.backend import RunState, StepSpec
from edge.kernels.registry import register

if TYPE_CHECKING:
    from edge.kernels.tensorrt.backend import TensorRTBackend

__all__ = ["ENGINE_OP", "EngineLaunch", "engine_node", "check_plan_version", "plan_bytes"]

ENGINE_OP = "TensorRTEngine"
_NO_DLA = -1


def engine_node(plan: bytes, inputs: Sequence[Value], outputs: Sequence[Value], tensorrt_version: str, dla_core: int | None) -> Node:
    """The one node of an engine whose whole network is the TensorRT ``plan``."""
    attrs = {
        "plan": np.frombuffer(plan, dtype=np.uint8).copy(),
        "tensorrt_version": tensorrt_version,
        "dla_core": _NO_DLA if dla_core is None else int(dla_core),
    }
    return Node(ENGINE_OP, list(inputs), list(outputs), attrs, name="tensorrt_engine", domain=EDGETRT_DOMAIN)


def plan_bytes(node: Node) -> bytes:
    """The serialized TensorRT engine a ``TensorRTEngine`` node holds."""
    return np.asarray(node.attrs["plan"], dtype=np.uint8).tobytes()


def check_plan_version(node: Node, here: str) -> None:
    """Refuse a plan another TensorRT version built: TensorRT plans are not portable between releases."""
    built = str(node.attrs.get("tensorrt_version"))
    if built != here:
        raise EngineMismatchError(
            f"layer '{node.name}' is a TensorRT {built} plan, but this machine has TensorRT {here} and TensorRT plans "
            "do not move between versions: rebuild it here with `edgetrt build MODEL.onnx --backend gpu=tensorrt`"
        )


def _address(tensor: Any) -> int:
    """The address TensorRT binds: a device tensor's pointer, or a host array's data (test doubles)."""
    pointer = getattr(tensor, "ptr", None)
    return int(pointer) if pointer is not None else int(tensor.ctypes.data)


class EngineLaunch:
    """A deserialized TensorRT engine and the binding order of its I/O tensors."""

    def __init__(self, backend: TensorRTBackend, spec: StepSpec) -> None:
        trt = backend.trt
        node = spec.node
        check_plan_version(node, trt.__version__)
        runtime = trt.Runtime(backend.logger)
        dla_core = int(node.attrs.get("dla_core", _NO_DLA))
        if dla_core != _NO_DLA:
            runtime.DLA_core = dla_core
        engine = runtime.deserialize_cuda_engine(plan_bytes(node))
        if engine is None:
            raise KernelError(f"layer '{node.name}': TensorRT {trt.__version__} could not deserialize its plan (see TensorRT's log above)")
        self.backend = backend
        self.engine = engine
        self.runtime = runtime  # TensorRT wants the runtime to outlive its engines
        self.v3 = int(trt.__version__.split(".")[0]) >= 10
        self.bindings = _io_tensors(trt, engine, self.v3)
        self.input_names = [v.name for v in node.inputs]  # the network's names (the step's are plan tensors')
        self.output_names = [v.name for v in node.outputs]
        self.outputs = spec.outputs
        _check_io(node, trt, self.bindings, spec)

    def __call__(self, inputs: list, outputs: list | None, state: RunState) -> list:
        backend = self.backend
        trt_state = backend.state_of(state)
        context = trt_state.contexts.get(id(self))
        if context is None:
            context = trt_state.contexts[id(self)] = self.engine.create_execution_context()
        results = list(outputs) if outputs is not None else [None] * len(self.outputs)
        for index, (tensor, info) in enumerate(zip(results, self.outputs)):
            if tensor is None:  # an unplanned run (no arena): a fresh buffer
                nbytes = int(np.prod(info.shape, dtype=np.int64)) * info.dtype.itemsize
                results[index] = backend.view(backend.allocate(max(nbytes, 1)), 0, info.shape, info.dtype)
        addresses = {name: _address(t) for name, t in zip(self.input_names, inputs)}
        addresses.update(zip(self.output_names, map(_address, results)))
        if self.v3:
            for name, _ in self.bindings:
                context.set_tensor_address(name, addresses[name])
            done = context.execute_async_v3(trt_state.stream_handle)
        else:
            done = context.execute_async_v2([addresses[name] for name, _ in self.bindings], trt_state.stream_handle)
        if not done:
            raise KernelError("TensorRT's execution context refused to enqueue the engine (see TensorRT's log above)")
        return results


def _io_tensors(trt: Any, engine: Any, v3: bool) -> list[tuple[str, np.dtype]]:
    """(name, numpy dtype) of every engine I/O tensor in TensorRT's binding order."""
    if v3:
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        return [(name, np.dtype(trt.nptype(engine.get_tensor_dtype(name)))) for name in names]
    return [(engine.get_binding_name(i), np.dtype(trt.nptype(engine.get_binding_dtype(i)))) for i in range(engine.num_bindings)]


def _check_io(node: Node, trt: Any, bindings: list[tuple[str, np.dtype]], spec: StepSpec) -> None:
    """The plan's I/O tensors must be the node's, by name and dtype (TensorRT 8.6 makes INT64 INT32)."""
    values = [*node.inputs, *node.outputs]
    infos = [*spec.inputs, *spec.outputs]
    wanted = {value.name: np.dtype(info.dtype) for value, info in zip(values, infos) if value is not None and info is not None}
    found = dict(bindings)
    if set(found) != set(wanted):
        raise KernelError(
            f"layer '{node.name}': the TensorRT plan's I/O tensors {sorted(found)} are not the engine's {sorted(wanted)}"
        )
    for name, dtype in wanted.items():
        if found[name] != dtype:
            raise KernelError(
                f"layer '{node.name}': TensorRT {trt.__version__} binds '{name}' as {found[name]}, edgetrt's engine as {dtype}"
            )


@register(ENGINE_OP, backend="tensorrt", domain=EDGETRT_DOMAIN)
def prepare_engine(backend: TensorRTBackend, spec: StepSpec) -> EngineLaunch:
    """The tensorrt backend's builder for a ``TensorRTEngine`` step."""
    return EngineLaunch(backend, spec)
