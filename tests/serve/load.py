"""Closed-loop load generator: N Triton HTTP clients in threads, each sending its own random inputs.

Shared by the load test (correctness under concurrency) and benchmarks/serve_load.py
(throughput and latency). Every response is compared with the oracle applied to that
request's own input, so a batching mix-up shows as a mismatch, not just as noise. With
``bad_every`` n, every n-th request is malformed in one of several ways (wrong shape, wrong
datatype, unknown input, JSON ``null`` data); each must get a 400, while a 5xx counts as a
server error.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

__all__ = ["LoadResult", "run_load"]


@dataclass
class LoadResult:
    """Per-request latencies (seconds), wall time, failures, oracle mismatches and bad-request outcomes."""

    latencies_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    failures: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    refused: int = 0  # bad requests answered 400, as they must be

    @property
    def throughput(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.latencies_s) * 1000, q)) if self.latencies_s else float("nan")


def run_load(
    url: str,
    model: str,
    input_name: str,
    output_name: str,
    shape: tuple[int, ...],
    oracle: Callable[[np.ndarray], np.ndarray],
    clients: int,
    requests: int,
    seed: int = 0,
    bad_every: int | None = None,
) -> LoadResult:
    """``clients`` threads each send ``requests`` FP32 requests back to back (binary tensors)."""
    result = LoadResult()
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def worker(index: int) -> None:
        rng = np.random.default_rng(seed + index)
        latencies, failures, mismatches, server_errors, refused = [], [], [], [], 0
        with triton.InferenceServerClient(url, connection_timeout=300, network_timeout=300) as client:
            start.wait()
            for i in range(requests):
                if bad_every and i % bad_every == bad_every - 1:
                    status = _send_bad(client, url, model, input_name, shape, kind=i // bad_every)
                    if status == 400:
                        refused += 1
                    elif status >= 500:
                        server_errors.append(f"client {index} request {i}: {status}")
                    else:
                        failures.append(f"client {index} bad request {i} got {status}, not 400")
                    continue
                x = rng.standard_normal(shape).astype(np.float32)
                tensor = triton.InferInput(input_name, list(shape), "FP32")
                tensor.set_data_from_numpy(x)
                t0 = time.perf_counter()
                try:
                    reply = client.infer(model, [tensor], request_id=f"{index}-{i}")
                except Exception as exc:  # counted, reported by the caller
                    failures.append(f"client {index} request {i}: {exc}")
                    continue
                latencies.append(time.perf_counter() - t0)
                got = reply.as_numpy(output_name)
                if reply.get_response().get("id") != f"{index}-{i}" or not np.allclose(got, oracle(x), rtol=1e-4, atol=1e-4):
                    mismatches.append(f"client {index} request {i}")
        with lock:
            result.latencies_s += latencies
            result.failures += failures
            result.mismatches += mismatches
            result.server_errors += server_errors
            result.refused += refused

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    result.wall_s = time.perf_counter() - t0
    return result


def _send_bad(client: triton.InferenceServerClient, url: str, model: str, name: str, shape: tuple[int, ...], kind: int) -> int:
    """Send one malformed request of the ``kind``-th sort (cycling); returns the HTTP status."""
    x = np.zeros(shape, np.float32)
    choice = kind % 4
    if choice == 3:  # JSON null data, which the Triton client cannot produce
        host, port = url.rsplit(":", 1)
        doc = {"inputs": [{"name": name, "shape": list(shape), "datatype": "FP32", "data": [None] * x.size}]}
        conn = http.client.HTTPConnection(host, int(port), timeout=300)
        try:
            conn.request("POST", f"/v2/models/{model}/infer", body=json.dumps(doc), headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()
    if choice == 0:
        tensor = triton.InferInput(name, [*shape[:-1], shape[-1] + 1], "FP32")
        tensor.set_data_from_numpy(np.zeros((*shape[:-1], shape[-1] + 1), np.float32))
    elif choice == 1:
        tensor = triton.InferInput(name, list(shape), "FP64")
        tensor.set_data_from_numpy(x.astype(np.float64))
    else:
        tensor = triton.InferInput(name + "_unknown", list(shape), "FP32")
        tensor.set_data_from_numpy(x)
    try:
        client.infer(model, [tensor])
    except InferenceServerException as exc:
        return int(exc.status() or 0)
    return 200
