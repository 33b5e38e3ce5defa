"""Serving fixtures: small engines built with edge.build, their numpy oracles, live servers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edge

uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("tritonclient.http")

from edge.serve.app import ServeConfig, create_app  # noqa: E402
from edge.serve.batcher import BatchingConfig  # noqa: E402
from edge.serve.connections import ConnectionLimits  # noqa: E402
from edge.serve.model import ServedModel  # noqa: E402
from edge.serve.server import listen, uvicorn_config  # noqa: E402

_RNG = np.random.default_rng(7)
MLP_W = _RNG.standard_normal((16, 8)).astype(np.float32)
MLP_B = _RNG.standard_normal(8).astype(np.float32)


def mlp_oracle(x: np.ndarray) -> np.ndarray:
    """relu(x @ W + b), written independently of the engine."""
    return np.maximum(x @ MLP_W + MLP_B, 0).astype(np.float32)


def mlp_model(batch: str | int = "N") -> onnx.ModelProto:
    """MatMul + Add + Relu on x[N, 16] -> y[N, 8] (dynamic batch dim N unless ``batch`` fixes it)."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"]),
            helper.make_node("Add", ["h", "b"], ["a"]),
            helper.make_node("Relu", ["a"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 8])],
        [numpy_helper.from_array(MLP_W, "W"), numpy_helper.from_array(MLP_B, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def pair_model() -> onnx.ModelProto:
    """Two int32 inputs a, b [N, M] (M dynamic too) -> sum = a + b, prod = a * b."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Mul", ["a", "b"], ["prod"])],
        "pair",
        [helper.make_tensor_value_info(n, TensorProto.INT32, ["N", "M"]) for n in ("a", "b")],
        [helper.make_tensor_value_info(n, TensorProto.INT32, ["N", "M"]) for n in ("sum", "prod")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="session")
def engine_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test engines saved to disk (world-readable, as a service needs them)."""
    folder = tmp_path_factory.mktemp("engines")
    files = {}
    for name, model in (("mlp", mlp_model()), ("pair", pair_model())):
        path = folder / f"{name}.engine"
        edge.build(model).save(path)
        path.chmod(0o644)
        files[name] = path
    return files


@dataclass
class RunningServer:
    """A live server on 127.0.0.1 and what it serves."""

    url: str
    port: int
    app: object


def _config(max_connections: int = 256, header_timeout_s: float = 10.0) -> ServeConfig:
    return ServeConfig(
        host="127.0.0.1", port=0, max_body_bytes=1 << 20, connections=ConnectionLimits(max_connections, header_timeout_s)
    )


def start_uvicorn(app: object, config: ServeConfig, servers: list) -> int:
    """Run ``app`` under uvicorn in a daemon thread; returns its port once it accepts requests."""
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn_config(app, config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "server thread died during startup"
        thread.join(0.01)
    servers.append((server, thread))
    return sock.getsockname()[1]


@pytest.fixture(scope="session")
def start_server(engine_files: dict[str, Path]) -> Iterator:
    """Factory: start a real uvicorn server in a thread with the given batching and connection knobs."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(max_connections: int = 256, header_timeout_s: float = 10.0, **batching: float) -> RunningServer:
        knobs = BatchingConfig(**{"max_batch": 8, "max_queue_delay_s": 0.002, "instances": 2, "max_queue": 64, **batching})
        models = [ServedModel.from_engine(edge.load(path), name, knobs) for name, path in engine_files.items()]
        config = _config(max_connections, header_timeout_s)
        app = create_app(models, config)
        port = start_uvicorn(app, config, servers)
        return RunningServer(f"127.0.0.1:{port}", port, app)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join()


@pytest.fixture(scope="session")
def server(start_server) -> RunningServer:
    """The shared server: max batch 8, 2 ms delay, 2 instances, 1 MiB body limit, queue 64."""
    return start_server()
