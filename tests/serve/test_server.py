"""The server driven by the official Triton HTTP client: metadata, JSON and binary inference, errors."""

from __future__ import annotations

import gzip
import http.client
import json
import threading
import time

import numpy as np
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from tests.serve.conftest import mlp_oracle


@pytest.fixture
def client(server):
    c = triton.InferenceServerClient(server.url)
    yield c
    c.close()


def _raw(server, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, bytes]:
    """One plain HTTP request (for what the Triton client refuses to send)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _expect_error(status: str, fragment: str, call, *args, **kwargs) -> None:
    with pytest.raises(InferenceServerException) as info:
        call(*args, **kwargs)
    assert info.value.status() == status, info.value
    assert fragment in info.value.message(), info.value.message()


def _mlp_input(x: np.ndarray, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    return tensor


def test_health_and_server_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "edgetrt"
    assert {"binary_tensor_data", "model_configuration", "statistics"} <= set(meta["extensions"])


def test_model_metadata_and_config(client):
    assert client.is_model_ready("mlp") and client.is_model_ready("pair", "1")
    meta = client.get_model_metadata("mlp")
    assert meta["name"] == "mlp" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 8]}]
    pair = client.get_model_metadata("pair", "1")
    assert [t["name"] for t in pair["outputs"]] == ["sum", "prod"]
    assert pair["inputs"][0] == {"name": "a", "datatype": "INT32", "shape": [-1, -1]}
    config = client.get_model_config("mlp")
    assert config["max_batch_size"] == 8
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [("x", "TYPE_FP32", [16])]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 2000
    assert config["dynamic_batching"]["default_queue_policy"]["max_queue_size"] == 64
    assert config["instance_group"][0]["count"] == 2


@pytest.mark.parametrize("binary_in", [False, True])
@pytest.mark.parametrize("binary_out", [False, True])
def test_infer_json_and_binary(client, binary_in, binary_out):
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    result = client.infer(
        "mlp",
        [_mlp_input(x, binary_in)],
        outputs=[triton.InferRequestedOutput("y", binary_data=binary_out)],
        request_id="req-7",
    )
    np.testing.assert_allclose(result.as_numpy("y"), mlp_oracle(x), rtol=1e-5, atol=1e-5)
    response = result.get_response()
    assert response["id"] == "req-7" and response["model_name"] == "mlp"
    assert ("binary_data_size" in response["outputs"][0].get("parameters", {})) == binary_out


def test_infer_two_inputs_output_selection_and_versions(client):
    rng = np.random.default_rng(2)
    a = rng.integers(-50, 50, (2, 5), dtype=np.int32)
    b = rng.integers(-50, 50, (2, 5), dtype=np.int32)
    inputs = [triton.InferInput("a", [2, 5], "INT32"), triton.InferInput("b", [2, 5], "INT32")]
    inputs[0].set_data_from_numpy(a, binary_data=False)
    inputs[1].set_data_from_numpy(b)
    result = client.infer("pair", inputs, model_version="1", outputs=[triton.InferRequestedOutput("prod", binary_data=False)])
    np.testing.assert_array_equal(result.as_numpy("prod"), a * b)
    assert result.as_numpy("sum") is None  # not requested, not sent
    everything = client.infer("pair", inputs)  # no outputs named: all of them, binary
    np.testing.assert_array_equal(everything.as_numpy("sum"), a + b)
    np.testing.assert_array_equal(everything.as_numpy("prod"), a * b)


def test_compressed_request_body(client):
    x = np.random.default_rng(3).standard_normal((2, 16)).astype(np.float32)
    for algorithm in ("gzip", "deflate"):
        result = client.infer("mlp", [_mlp_input(x, True)], request_compression_algorithm=algorithm)
        np.testing.assert_allclose(result.as_numpy("y"), mlp_oracle(x), rtol=1e-5, atol=1e-5)


def test_unknown_model_and_version_are_404(client, server):
    x = np.zeros((1, 16), np.float32)
    _expect_error("404", "unknown model 'nope'", client.infer, "nope", [_mlp_input(x, True)])
    _expect_error("404", "unknown model 'nope'", client.get_model_metadata, "nope")
    _expect_error("404", "no version '2'", client.get_model_metadata, "mlp", "2")
    assert not client.is_model_ready("nope")
    status, body = _raw(server, "GET", "/v2/models/nope/ready")
    assert status == 404 and "nope" in json.loads(body)["error"]
    status, body = _raw(server, "GET", "/v2/no/such/route")
    assert status == 404 and "error" in json.loads(body)
    assert client.is_server_live()


def test_bad_inputs_are_400_naming_the_problem(client):
    good = np.zeros((2, 16), np.float32)
    wrong_name = triton.InferInput("z", [2, 16], "FP32")
    wrong_name.set_data_from_numpy(good)
    _expect_error("400", "unknown input 'z'", client.infer, "mlp", [wrong_name])
    _expect_error("400", "input 'x' has shape 2x15", client.infer, "mlp", [_mlp_input(np.zeros((2, 15), np.float32), True)])
    _expect_error("400", "rank 1", client.infer, "mlp", [_mlp_input(np.zeros(16, np.float32), False)])
    wrong_type = triton.InferInput("x", [2, 16], "FP64")
    wrong_type.set_data_from_numpy(good.astype(np.float64))
    _expect_error("400", "input 'x' has datatype FP64, model 'mlp' expects FP32", client.infer, "mlp", [wrong_type])
    _expect_error(
        "400", "unknown output 'nope'", client.infer, "mlp", [_mlp_input(good, True)], outputs=[triton.InferRequestedOutput("nope")]
    )
    a = triton.InferInput("a", [2, 3], "INT32")
    a.set_data_from_numpy(np.zeros((2, 3), np.int32))
    _expect_error("400", "missing input 'b'", client.infer, "pair", [a])
    b = triton.InferInput("b", [2, 4], "INT32")
    b.set_data_from_numpy(np.zeros((2, 4), np.int32))
    _expect_error("400", "'M' is 4", client.infer, "pair", [a, b])
    assert client.is_server_live()


_BINARY_HEADER = b'{"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "parameters": {"binary_data_size": 64}}]}'
_JSON_HEADER = b'{"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1]}]}'


@pytest.mark.parametrize(
    ("body", "headers", "fragment"),
    [
        (b"{not json", {}, "malformed JSON"),
        (b"[1, 2]", {}, "JSON object"),
        (b'{"inputs": []}', {}, "non-empty 'inputs'"),
        (b'{"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [1, 2]}]}', {}, "holds 16 elements"),
        (b'{"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": ["a"]}]}', {}, "holds a string, expected FP32"),
        (b'{"inputs": [{"name": "x", "shape": [1, -16], "datatype": "FP32", "data": []}]}', {}, "non-negative integers"),
        (b'{"inputs": [{"name": "x", "shape": [1, 16], "datatype": "STRING", "data": []}]}', {}, "datatype 'STRING'"),
        (_BINARY_HEADER + b"\0" * 10, {"Inference-Header-Content-Length": str(len(_BINARY_HEADER))}, "binary data ends after"),
        (_JSON_HEADER + b"\0" * 3, {"Inference-Header-Content-Length": str(len(_JSON_HEADER))}, "no input claims them"),
        (b"{}", {"Inference-Header-Content-Length": "99"}, "outside the body"),
        (b"{}", {"Content-Encoding": "gzip"}, "not valid gzip"),
    ],
)
def test_malformed_requests_are_400(server, client, body, headers, fragment):
    status, reply = _raw(server, "POST", "/v2/models/mlp/infer", body, headers)
    assert status == 400, reply
    assert fragment in json.loads(reply)["error"]
    assert client.is_server_live()


def test_oversized_bodies_are_413(server, client):
    big = b" " * ((1 << 20) + 10)  # the fixture's limit is 1 MiB
    status, reply = _raw(server, "POST", "/v2/models/mlp/infer", big)
    assert status == 413 and "exceeds the limit" in json.loads(reply)["error"]
    bomb = gzip.compress(b" " * (2 << 20))  # small on the wire, 2 MiB once inflated
    status, reply = _raw(server, "POST", "/v2/models/mlp/infer", bomb, {"Content-Encoding": "gzip"})
    assert status == 413 and "decompressed" in json.loads(reply)["error"]
    x = np.zeros((1, 16), np.float32)
    assert client.infer("mlp", [_mlp_input(x, True)]).as_numpy("y").shape == (1, 8)


def test_full_queue_is_503_and_queued_work_still_completes(start_server):
    # A long batching delay holds the first request in the queue (max_queue 1), so the second
    # finds the queue full; the first still gets its own correct answer afterwards.
    slow = start_server(max_queue=1, max_queue_delay_s=1.0, max_batch=4, instances=1)
    x = np.random.default_rng(4).standard_normal((1, 16)).astype(np.float32)
    results = {}

    def first() -> None:
        with triton.InferenceServerClient(slow.url) as c:
            results["first"] = c.infer("mlp", [_mlp_input(x, True)]).as_numpy("y")

    thread = threading.Thread(target=first)
    thread.start()
    with triton.InferenceServerClient(slow.url) as c:
        while "nv_inference_pending_request_count{model=\"mlp\",version=\"1\"} 1.0" not in _metrics(slow):
            time.sleep(0.01)
        _expect_error("503", "queue is full", c.infer, "mlp", [_mlp_input(x, True)])
        thread.join()
        np.testing.assert_allclose(results["first"], mlp_oracle(x), rtol=1e-5, atol=1e-5)
        assert c.is_server_live()
        assert 'nv_inference_request_failure{model="mlp",reason="REJECTED",version="1"} 1.0' in _metrics(slow)


def _metrics(server) -> str:
    status, body = _raw(server, "GET", "/metrics")
    assert status == 200
    return body.decode()


def test_metrics_and_statistics_count_requests(start_server):
    fresh = start_server()
    x = np.ones((3, 16), np.float32)
    with triton.InferenceServerClient(fresh.url) as c:
        for _ in range(2):
            c.infer("mlp", [_mlp_input(x, True)])
        with pytest.raises(InferenceServerException):
            c.infer("mlp", [_mlp_input(np.ones((3, 2), np.float32), True)])
        stats = c.get_inference_statistics("mlp")["model_stats"][0]
    assert stats["inference_count"] == 6 and stats["execution_count"] == 2
    assert stats["inference_stats"]["success"]["count"] == 2 and stats["inference_stats"]["fail"]["count"] == 1
    text = _metrics(fresh)
    for line in (
        'nv_inference_request_success{model="mlp",version="1"} 2.0',
        'nv_inference_request_failure{model="mlp",reason="OTHER",version="1"} 1.0',
        'nv_inference_count{model="mlp",version="1"} 6.0',
        'nv_inference_exec_count{model="mlp",version="1"} 2.0',
        'edgetrt_inference_batch_size_bucket{le="2",model="mlp",version="1"} 0.0',
        'edgetrt_inference_batch_size_bucket{le="4",model="mlp",version="1"} 2.0',
        "# TYPE nv_inference_request_success counter",
        "# TYPE nv_inference_request_duration_us counter",
        "# TYPE nv_inference_compute_infer_duration_us counter",
        "# TYPE nv_inference_queue_duration_us counter",
        "# TYPE nv_inference_pending_request_count gauge",
    ):
        assert line in text, line
    families = {f.name: f for f in text_string_to_metric_families(text)}  # an independent parser accepts it all
    assert families["nv_inference_request_success"].type == "counter"
    assert families["edgetrt_inference_batch_size"].type == "histogram"
    assert "process_cpu_seconds" in families
    infer_us = float(text.split('nv_inference_compute_infer_duration_us{model="mlp",version="1"} ')[1].split()[0])
    assert infer_us > 0
