"""Fixtures of the CUDA backend tests: compiled cubins shared by the session, a stand-in
device that records launches (GPU-free glue tests) and the real GPU backend (gpu tests)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

from edge.ir import Node, Value
from edge.kernels.backend import BackendUnavailable, RunState, StepSpec, TensorInfo

ARCHES = ("sm_87", "sm_90")


@pytest.fixture(scope="session")
def cubins(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], bytes]:
    """Every kernel module compiled for sm_87 and sm_90 into a fresh cache (in parallel:
    NVRTC runs without the GIL)."""
    pytest.importorskip("cuda.bindings.nvrtc")
    from edge.kernels.cuda import compiler

    saved = os.environ.get("EDGE_CACHE_DIR")
    os.environ["EDGE_CACHE_DIR"] = str(tmp_path_factory.mktemp("edge-cache"))
    try:
        pairs = [(module, arch) for module in compiler.KERNEL_SOURCES for arch in ARCHES]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            built = list(pool.map(lambda pair: compiler.compile_module(*pair), pairs))
    finally:
        if saved is None:
            os.environ.pop("EDGE_CACHE_DIR", None)
        else:
            os.environ["EDGE_CACHE_DIR"] = saved
    return dict(zip(pairs, built))


class FakeDevice:
    """Stands in for ``driver.Device``: memory is numbers, launches are recorded, modules are
    the real sm_90 cubins (so every kernel name a builder asks for must exist)."""

    arch = "sm_90"
    compute_capability = (9, 0)

    def __init__(self, cubins: dict[tuple[str, str], bytes]) -> None:
        self.cubins = {blob: module for (module, arch), blob in cubins.items() if arch == self.arch}
        self.launches: list[tuple[str, tuple, tuple, int]] = []
        self.calls: list[str] = []
        self.uploads = 0
        self.copies: list[tuple[str, int, int, int]] = []
        self._next = 1 << 32

    def load_module(self, cubin: bytes) -> bytes:
        return cubin

    def function(self, module: bytes, name: str) -> str:
        assert name.encode() + b"\0" in module, f"kernel {name} missing from {self.cubins[module]}.cu"
        return name

    def launch(self, function: str, grid, block, params: int, stream, shared: int = 0) -> None:
        self.launches.append((function, tuple(grid), tuple(block), params))

    def alloc(self, nbytes: int) -> int:
        pointer = self._next
        self._next += -(-max(nbytes, 1) // 256) * 256
        return pointer

    def free(self, pointer: int) -> None:
        pass

    driver = SimpleNamespace(CUstreamCaptureMode=SimpleNamespace(CU_STREAM_CAPTURE_MODE_THREAD_LOCAL=2))

    def call(self, name: str, *args) -> None:
        self.calls.append(name)
        if name == "cuMemcpyHtoD":
            self.uploads += 1

    def copy_d2d(self, dst: int, src: int, nbytes: int, stream) -> None:
        self.copies.append(("d2d", dst, src, nbytes))

    def copy_h2d(self, dst: int, src: int, nbytes: int, stream) -> None:
        self.copies.append(("h2d", dst, src, nbytes))

    def copy_d2h(self, dst: int, src: int, nbytes: int, stream) -> None:
        self.copies.append(("d2h", dst, src, nbytes))

    def stream(self) -> str:
        return "stream"

    def event(self) -> str:
        return "event"

    def record(self, event, stream, in_graph: bool = False) -> None:
        self.calls.append("cuEventRecordWithFlags" if in_graph else "cuEventRecord")

    def elapsed_seconds(self, start, end) -> float:
        return 1e-3

    def sync_stream(self, stream, spin: bool = False) -> None:
        pass

    def alloc_host(self, nbytes: int):
        view = np.zeros(nbytes, np.uint8)
        self._pinned = getattr(self, "_pinned", []) + [view]
        return view.ctypes.data, view

    def free_host(self, pointer: int) -> None:
        pass


@pytest.fixture
def without_libraries(monkeypatch):
    """cuDNN and cuBLASLt offer nothing: a stand-in device cannot run them, installed or not."""
    from edge.kernels.cuda import cublaslt, cudnn_graphs

    monkeypatch.setattr(cudnn_graphs, "available", lambda: False)
    monkeypatch.setattr(cublaslt, "available", lambda: False)


@pytest.fixture
def fake_backend(cubins, without_libraries):
    from edge.kernels.cuda.backend import CudaBackend

    device = FakeDevice(cubins)
    return CudaBackend(device=device), device


def make_step(op: str, inputs: list[tuple[str, np.dtype, tuple] | np.ndarray | None], outputs: list[tuple[np.dtype, tuple]],
              attrs: dict | None = None, domain: str = "", opset: int = 17, precision: str = "fp32", tactic=None) -> StepSpec:
    """A StepSpec for one node: inputs are (name, dtype, shape) activations, arrays (constants)
    or None (omitted); outputs (dtype, shape)."""
    values, infos = [], []
    for index, item in enumerate(inputs):
        if item is None:
            values.append(None)
            infos.append(None)
        elif isinstance(item, np.ndarray):
            values.append(Value(f"c{index}", const=item))
            infos.append(TensorInfo(f"c{index}", item.dtype, tuple(item.shape), item))
        else:
            name, dtype, shape = item
            values.append(Value(name, np.dtype(dtype), shape))
            infos.append(TensorInfo(name, np.dtype(dtype), tuple(shape)))
    outs = [Value(f"y{i}", np.dtype(d), s) for i, (d, s) in enumerate(outputs)]
    node = Node(op, values, outs, attrs or {}, name=f"{op.lower()}_0", domain=domain)
    out_infos = [TensorInfo(v.name, v.dtype, tuple(v.shape)) for v in outs]
    return StepSpec(node, opset, precision, tactic, "nchw", infos, out_infos, device="gpu")


class StandInTensor:
    """A stand-in cuDNN graph tensor (hashable: the variant pack is keyed by tensor); its
    setters chain, as the frontend's do."""

    def __init__(self, **attrs) -> None:
        self.__dict__.update(attrs)

    def __getattr__(self, name: str):
        if not name.startswith("set_"):
            raise AttributeError(name)
        return lambda value: setattr(self, name[4:], value) or self


class StandInGraph:
    """A stand-in ``cudnn.pygraph``: records its tensors, its operations in order (each
    returning a new tensor) and its build calls; of its 3 plans, rank 0 does not build."""

    def __init__(self, **config) -> None:
        self.config, self.tensors, self.executed, self.built, self.ops = config, {}, [], [], []

    def tensor(self, name, dim, stride, data_type):
        self.tensors[name] = StandInTensor(name=name, dim=dim, stride=stride, data_type=data_type)
        return self.tensors[name]

    def __getattr__(self, op: str):
        if op.startswith("_"):
            raise AttributeError(op)

        def operation(**kwargs):
            result = StandInTensor(name=f"{op}{len(self.ops)}")
            self.ops.append((op, kwargs, result))
            return result

        return operation

    def validate(self) -> None:
        self.built.append("validate")

    def build_operation_graph(self) -> None:
        self.built.append("build_operation_graph")

    def create_execution_plans(self, modes) -> None:
        self.built.append(("create_execution_plans", tuple(modes)))

    def get_execution_plan_count(self) -> int:
        return 3

    def build_plan_at_index(self, index: int) -> None:
        if index == 0:
            raise RuntimeError("this engine does not take the graph")

    def get_workspace_size_plan_at_index(self, index: int) -> int:
        return 1 << 16

    def execute_plan_at_index(self, pack, workspace, index, handle) -> None:
        self.executed.append((pack, workspace, index, handle))


def stand_in_frontend(monkeypatch, graph_type: type = StandInGraph) -> tuple[list, list]:
    """Install a stand-in cuDNN frontend; returns the graphs it makes and the streams it is given."""
    from edge.kernels.cuda import cudnn_graphs

    graphs, streams = [], []
    types = SimpleNamespace(HALF="half", FLOAT="float", INT8="int8", INT32="int32")
    frontend = SimpleNamespace(
        data_type=types, heur_mode=SimpleNamespace(A="A", FALLBACK="fallback"),
        pygraph=lambda **config: graphs.append(graph_type(**config)) or graphs[-1], create_handle=lambda: "handle",
        set_stream=lambda handle, stream: streams.append((handle, stream)),
    )
    monkeypatch.setattr(cudnn_graphs, "library", lambda: frontend)
    monkeypatch.setattr(cudnn_graphs, "available", lambda: True)
    monkeypatch.setattr(cudnn_graphs.Graphs, "_by_backend", {})
    return graphs, streams


def _open_gpu():
    try:
        from edge.kernels.cuda import create_backend

        return create_backend()
    except BackendUnavailable as exc:
        return exc


@pytest.fixture(scope="session")
def gpu():
    """The real CUDA backend, or a skip naming why there is none."""
    backend = _open_gpu()
    if isinstance(backend, BackendUnavailable):
        pytest.skip(str(backend))
    return backend


def run_on(backend, spec: StepSpec, arrays: list[np.ndarray | None]) -> list[np.ndarray]:
    """Prepare ``spec`` on ``backend`` and run it once on ``arrays`` (None for constants):
    inputs copied into an arena, outputs copied back."""
    state = RunState(scratch={"cuda": backend.new_state()})
    sizes = [a.nbytes for a in arrays if a is not None] + [int(np.prod(o.shape)) * np.dtype(o.dtype).itemsize for o in spec.outputs]
    offsets = np.cumsum([0] + [-(-s // 256) * 256 for s in sizes])
    arena = backend.allocate(int(offsets[-1]) + 256)
    views, slot = [], 0
    for array in arrays:
        if array is None:
            views.append(None)
            continue
        view = backend.view(arena, int(offsets[slot]), array.shape, array.dtype)
        backend.copy_in(view, array, state)
        views.append(view)
        slot += 1
    outs = []
    for info in spec.outputs:
        outs.append(backend.view(arena, int(offsets[slot]), tuple(info.shape), info.dtype))
        slot += 1
    launch = backend.prepare(spec)
    launch(views, outs, state)
    backend.synchronize(state)
    return [backend.copy_out(o, state) for o in outs]


__all__ = ["ARCHES", "FakeDevice", "StandInGraph", "StandInTensor", "make_step", "run_on", "stand_in_frontend"]
