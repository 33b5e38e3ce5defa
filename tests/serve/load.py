"""Closed-loop load generator: N Triton HTTP clients in threads, each sending its own random inputs.

Shared by the load test (correctness under concurrency) and benchmarks/serve_load.py
(throughput and latency). Every response is compared with the oracle applied to that
request's own input, so a batching mix-up shows as a mismatch, not just as noise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tritonclient.http as triton

__all__ = ["LoadResult", "run_load"]


@dataclass
class LoadResult:
    """Per-request latencies (seconds), wall time, failures and oracle mismatches."""

    latencies_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    failures: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

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
) -> LoadResult:
    """``clients`` threads each send ``requests`` FP32 requests back to back (binary tensors)."""
    result = LoadResult()
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def worker(index: int) -> None:
        rng = np.random.default_rng(seed + index)
        latencies, failures, mismatches = [], [], []
        with triton.InferenceServerClient(url, connection_timeout=60, network_timeout=60) as client:
            start.wait()
            for i in range(requests):
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

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    result.wall_s = time.perf_counter() - t0
    return result
