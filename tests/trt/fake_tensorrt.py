"""A test double of the slice of TensorRT's Python API that edgetrt calls.

Building records what the builder was told (flags, default device, DLA core, per-layer
device types and precisions, pools, the calibrator's cache) on the layers named after the
ONNX nodes, as TensorRT's ONNX parser names them. The "plan" is a tag, the release and the
ONNX; its engine runs that ONNX with onnxruntime on the bytes found at the addresses bound
to its execution context, and writes the results at the output addresses, so a test sees
exactly which buffers were bound. Releases below 10 offer only the 8.6 bindings API.
"""

from __future__ import annotations

import ctypes
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from edge.kernels.cpu.backend import HostBackend

_TAG = b"FAKE-TRT-PLAN\0"
_TYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_}


def _names(*items: str) -> SimpleNamespace:
    return SimpleNamespace(**{item: item for item in items})


class _Layer:
    def __init__(self, name: str) -> None:
        self.name, self.precision = name, None


class _Config:
    def __init__(self) -> None:
        self.flags: list[str] = []
        self.devices: dict[str, str] = {}
        self.pools: dict[str, int] = {}
        self.default_device_type = None
        self.DLA_core = None
        self.int8_calibrator = None
        self.profiling_verbosity = None

    def set_flag(self, flag: str) -> None:
        self.flags.append(flag)

    def set_device_type(self, layer: _Layer, device: str) -> None:
        self.devices[layer.name] = device

    def set_memory_pool_limit(self, pool: str, size: int) -> None:
        self.pools[pool] = size


class _Network:
    def __init__(self) -> None:
        self.layers: list[_Layer] = []
        self.onnx = b""

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_layer(self, index: int) -> _Layer:
        return self.layers[index]


class _Parser:
    def __init__(self, network: _Network, logger: Any) -> None:
        self.network, self.num_errors = network, 0

    def parse(self, data: bytes) -> bool:
        model = onnx.load_from_string(data)
        self.network.onnx = data
        self.network.layers = [_Layer(node.name) for node in model.graph.node]
        return True


class _Engine:
    """The "engine": the ONNX run by onnxruntime, its I/O in graph order (inputs first)."""

    def __init__(self, trt: FakeTensorRT, model: bytes) -> None:
        self.trt = trt
        self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        graph = onnx.load_from_string(model).graph
        io = [(v, True) for v in graph.input] + [(v, False) for v in graph.output]
        self.io = [
            (v.name, is_input, np.dtype(helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)),
             tuple(d.dim_value for d in v.type.tensor_type.shape.dim))
            for v, is_input in io
        ]
        self.contexts: list[_Context] = []

    def _dtype(self, dtype: np.dtype) -> str:
        if dtype == np.int64 and int(self.trt.__version__.split(".")[0]) < 10:
            return "INT32"  # TensorRT 8.6 imports INT64 tensors as INT32
        return next(name for name, t in _TYPES.items() if np.dtype(t) == dtype)

    # TensorRT 10.x
    @property
    def num_io_tensors(self) -> int:
        return len(self.io)

    def get_tensor_name(self, index: int) -> str:
        return self.io[index][0]

    def get_tensor_dtype(self, name: str) -> str:
        return self._dtype(next(d for n, _, d, _ in self.io if n == name))

    # TensorRT 8.6
    @property
    def num_bindings(self) -> int:
        return len(self.io)

    def get_binding_name(self, index: int) -> str:
        return self.io[index][0]

    def get_binding_dtype(self, index: int) -> str:
        return self._dtype(self.io[index][2])

    def create_execution_context(self) -> _Context:
        context = _Context(self)
        self.contexts.append(context)
        return context


class _Context:
    """Records bound addresses and enqueues; runs the engine on the memory at those addresses."""

    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.addresses: dict[str, int] = {}
        self.enqueued: list[tuple[str, int]] = []  # (API, stream handle)
        if int(engine.trt.__version__.split(".")[0]) < 10:  # offer what 8.6 callers use only
            self.set_tensor_address = self.execute_async_v3 = None

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        self.enqueued.append(("v3", stream_handle))
        return self._run(self.addresses)

    def execute_async_v2(self, bindings: list[int], stream_handle: int) -> bool:
        self.enqueued.append(("v2", stream_handle))
        return self._run({name: address for (name, *_), address in zip(self.engine.io, bindings)})

    def _run(self, addresses: dict[str, int]) -> bool:
        feeds = {}
        for name, is_input, dtype, shape in self.engine.io:
            if is_input:
                nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                feeds[name] = np.frombuffer(ctypes.string_at(addresses[name], nbytes), dtype).reshape(shape)
        outputs = self.engine.session.run(None, feeds)
        for (name, *_), array in zip((io for io in self.engine.io if not io[1]), outputs):
            array = np.ascontiguousarray(array)
            ctypes.memmove(addresses[name], array.ctypes.data, array.nbytes)
        return True


class _Runtime:
    def __init__(self, trt: FakeTensorRT, logger: Any) -> None:
        self.trt, self.DLA_core = trt, -1

    def deserialize_cuda_engine(self, plan: bytes) -> _Engine | None:
        """None, as TensorRT does, for bytes that are not a plan of this release."""
        head = _TAG + self.trt.__version__.encode() + b"\0"
        if not plan.startswith(head):
            return None
        engine = _Engine(self.trt, plan[len(head):])
        self.trt.engines.append((self.DLA_core, engine))
        return engine


class FakeTensorRT:
    """Stands in for the ``tensorrt`` module of release ``version`` (put it in ``sys.modules``)."""

    def __init__(self, version: str = "10.3.0.30") -> None:
        self.__version__ = version
        self.built: list[dict[str, Any]] = []
        self.engines: list[tuple[int, _Engine]] = []
        self.BuilderFlag = _names("FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS", "GPU_FALLBACK")
        self.DeviceType = _names("DLA", "GPU")
        self.DataType = _names(*_TYPES)
        self.MemoryPoolType = _names("WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM", "DLA_GLOBAL_DRAM")
        self.ProfilingVerbosity = _names("DETAILED")
        self.NetworkDefinitionCreationFlag = SimpleNamespace(EXPLICIT_BATCH=0) if version.startswith("8.") else SimpleNamespace()
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda logger, level: None})
        self.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {"__init__": lambda calibrator: None})

    def nptype(self, dtype: str) -> type:
        return _TYPES[dtype]

    def Builder(self, logger: Any) -> SimpleNamespace:  # noqa: N802 (TensorRT's spelling)
        return SimpleNamespace(create_network=lambda flags: _Network(), create_builder_config=_Config, build_serialized_network=self._build)

    def OnnxParser(self, network: _Network, logger: Any) -> _Parser:  # noqa: N802
        return _Parser(network, logger)

    def Runtime(self, logger: Any) -> _Runtime:  # noqa: N802
        return _Runtime(self, logger)

    def _build(self, network: _Network, config: _Config) -> bytes:
        calibrator = config.int8_calibrator
        self.built.append({
            "flags": list(config.flags), "default_device": config.default_device_type, "dla_core": config.DLA_core,
            "devices": dict(config.devices), "pools": dict(config.pools),
            "precisions": {layer.name: layer.precision for layer in network.layers if layer.precision is not None},
            "calibration_cache": None if calibrator is None else calibrator.read_calibration_cache().decode(),
        })
        return _TAG + self.__version__.encode() + b"\0" + network.onnx


class FakeDeviceMemory(HostBackend):
    """Host arrays posing as a device memory space, so plans get transfers and synchronizes."""

    memory_space = "device"

    def __init__(self) -> None:
        super().__init__("cpu")
        self.synchronized = 0

    def synchronize(self, state: Any) -> None:
        self.synchronized += 1

    def copy_in(self, dst: np.ndarray | None, src: np.ndarray, state: Any) -> np.ndarray:
        return np.array(src, order="C") if dst is None else super().copy_in(dst, src, state)

    def copy_out(self, src: np.ndarray, state: Any) -> np.ndarray:
        return np.array(src)
