"""A fake accelerator for plan tests: its own memory space, counted copies and launches.

Its tensors are not numpy arrays (the runtime must never treat them as host data); its
kernels are the CPU kernels run on the bytes of its own buffer. Registering a few ops for it
leaves the rest to the CPU fallback, so plans get segments and transfers both ways.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.ir import EDGETRT_DOMAIN
from edge.kernels.backend import Backend, RunState, StepSpec, register_backend
from edge.kernels.registry import OpContext, lookup, register
from edge.kernels.tactics import Tactic

NAME = "fake"
OPS = ("Conv", "Relu", "Add", "MaxPool")
FUSED = ("FusedConv",)


@dataclass(frozen=True)
class FakeTensor:
    """A view of fake device memory (deliberately not an ndarray)."""

    buffer: np.ndarray
    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype

    def array(self) -> np.ndarray:
        nbytes = int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize
        return self.buffer[self.offset : self.offset + nbytes].view(self.dtype).reshape(self.shape)


class FakeDevice(Backend):
    """Counts what the runtime asks of a device."""

    name = NAME
    memory_space = "fake-device"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.allocations: list[int] = []
        self.copies_in = 0
        self.copies_out = 0
        self.launches = 0
        self.prepared = 0
        self.wrong: set[str] = set()  # tactics whose results the device spoils (+1), as a buggy kernel would
        self.seconds: dict[str, float] = {}  # per-call time the auto-tuner reads for a precision's launches

    def allocate(self, nbytes: int) -> np.ndarray:
        self.allocations.append(nbytes)
        return np.zeros(nbytes, np.uint8)

    def view(self, buffer: np.ndarray, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> FakeTensor:
        return FakeTensor(buffer, offset, tuple(shape), np.dtype(dtype))

    def copy_in(self, dst: FakeTensor | None, src: np.ndarray, state: RunState) -> FakeTensor:
        assert dst is not None, "device copies go into planned buffers"
        self.copies_in += 1
        np.copyto(dst.array(), src)
        return dst

    def copy_out(self, src: FakeTensor, state: RunState) -> np.ndarray:
        assert isinstance(src, FakeTensor), f"copy_out got {type(src).__name__}, not device memory"
        self.copies_out += 1
        return src.array().copy()

    def prepare(self, spec: StepSpec):
        self.prepared += 1
        node = spec.node
        kernel = lookup(node.op_type, node.domain, "cpu", spec.opset)
        consts = [None if t is None else t.const for t in spec.inputs]
        cache: dict = {}

        def launch(inputs: list, outputs: list | None, state: RunState) -> list:
            assert outputs is not None and all(isinstance(o, FakeTensor) for o in outputs), "outputs must be planned"
            for given in inputs:
                assert given is None or isinstance(given, FakeTensor), f"{node.name}: host data reached the device"
            self.launches += 1
            args = [c if c is not None else (None if t is None else t.array()) for c, t in zip(consts, inputs)]
            ctx = OpContext(node, spec.opset, cache=cache, tactic=spec.tactic)
            result = kernel.fn(ctx, *args)
            results = result if isinstance(result, tuple) else (result,)
            spoil = spec.tactic is not None and spec.tactic.name in self.wrong
            for out, value in zip(outputs, results):
                np.copyto(out.array(), value + 1 if spoil else value)
            return outputs

        launch.precision = spec.precision  # type: ignore[attr-defined]  (read by time_launch)
        return launch

    def time_launch(self, launch, inputs: list, outputs: list | None, state: RunState, repeat: int) -> list[float]:
        seconds = self.seconds.get(getattr(launch, "precision", ""))
        if seconds is None:
            return super().time_launch(launch, inputs, outputs, state, repeat)
        launch(inputs, outputs, state)
        return [seconds] * repeat


def _tactics(spec: StepSpec) -> list[Tactic]:
    """Two variants every build times and one only levels 4-5 time (a deeper search)."""
    return [Tactic("plain"), Tactic("other", {"unroll": 2}), Tactic("deep", {"unroll": 4, "min_level": 4})]


def _marker(ctx, *inputs):  # the fake device's kernels are built by FakeDevice.prepare
    raise AssertionError("fake kernels run through FakeDevice.prepare")


def install() -> FakeDevice:
    """Register the fake device and its ops (idempotent); returns the shared instance."""
    device = FakeDevice()
    register_backend(NAME, lambda: device)
    register(*OPS, backend=NAME, tactics=_tactics)(_marker)
    register(*FUSED, backend=NAME, domain=EDGETRT_DOMAIN, tactics=_tactics)(_marker)
    return device
