"""Dynamic batching, deterministically: what batches form, and every request gets its own rows."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import edge
from edge.serve.batcher import BatchingConfig, DynamicBatcher
from edge.serve.metrics import ModelStats
from edge.serve.model import ServedModel
from edge.serve.protocol import ServeError
from tests.serve.conftest import mlp_oracle


def _run(engine_file, config: BatchingConfig, requests: list[dict[str, np.ndarray]], extra=None):
    """Submit all requests at once to a fresh batcher; returns (results, stats, extra's result)."""
    model = ServedModel.from_engine(edge.load(engine_file), "m", config)
    stats = ModelStats("m", "1")

    async def main():
        batcher = DynamicBatcher(model, config, stats)
        await batcher.start()
        try:
            tasks = [asyncio.create_task(batcher.submit(feeds)) for feeds in requests]
            await asyncio.sleep(0)  # every request is queued before anything else happens
            side = await extra(batcher) if extra else None
            return await asyncio.gather(*tasks, return_exceptions=True), side
        finally:
            await batcher.stop()

    results, side = asyncio.run(main())
    return results, stats, side


def _mlp_requests(sizes: list[int], seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((n, 16)).astype(np.float32)} for n in sizes]


def test_requests_that_fill_max_batch_run_as_one_batch(engine_files):
    requests = _mlp_requests([1, 2, 1, 4])  # sums to 8 = max_batch: no waiting for the 60 s delay
    results, stats, _ = _run(engine_files["mlp"], BatchingConfig(8, 60.0, 1, 16), requests)
    assert stats.execution_count == 1 and stats.inference_count == 8
    for feeds, out in zip(requests, results):
        np.testing.assert_allclose(out["y"], mlp_oracle(feeds["x"]), rtol=1e-5, atol=1e-5)


def test_batches_are_cut_at_max_batch_in_arrival_order(engine_files):
    requests = _mlp_requests([3, 3, 3, 3])
    results, stats, _ = _run(engine_files["mlp"], BatchingConfig(6, 60.0, 1, 16), requests)
    assert sorted(stats.batches) == [6] and stats.batches[6].count == 2
    for feeds, out in zip(requests, results):
        np.testing.assert_allclose(out["y"], mlp_oracle(feeds["x"]), rtol=1e-5, atol=1e-5)


def test_the_delay_flushes_a_partial_batch(engine_files):
    requests = _mlp_requests([1, 2])
    results, stats, _ = _run(engine_files["mlp"], BatchingConfig(8, 0.05, 1, 16), requests)
    assert stats.execution_count == 1 and stats.inference_count == 3
    assert stats.queue.ns >= 2 * 0.05e9 * 0.9  # both waited (about) the delay
    np.testing.assert_allclose(results[1]["y"], mlp_oracle(requests[1]["x"]), rtol=1e-5, atol=1e-5)


def test_requests_with_different_shapes_are_not_mixed(engine_files):
    rng = np.random.default_rng(1)
    requests = []
    for m in (3, 5, 3, 5):
        a, b = (rng.integers(-9, 9, (1, m), dtype=np.int32) for _ in range(2))
        requests.append({"a": a, "b": b})
    results, stats, _ = _run(engine_files["pair"], BatchingConfig(4, 0.05, 1, 16), requests)
    assert stats.execution_count == 2 and dict((k, d.count) for k, d in stats.batches.items()) == {2: 2}
    for feeds, out in zip(requests, results):
        np.testing.assert_array_equal(out["sum"], feeds["a"] + feeds["b"])
        np.testing.assert_array_equal(out["prod"], feeds["a"] * feeds["b"])


def test_max_batch_one_runs_each_request_alone(engine_files):
    requests = _mlp_requests([2, 2, 2])
    results, stats, _ = _run(engine_files["mlp"], BatchingConfig(1, 60.0, 2, 16), requests)
    assert stats.execution_count == 3 and sorted(stats.batches) == [2]
    for feeds, out in zip(requests, results):
        np.testing.assert_allclose(out["y"], mlp_oracle(feeds["x"]), rtol=1e-5, atol=1e-5)


def test_full_queue_rejects_and_draining_finishes_queued_work(engine_files):
    requests = _mlp_requests([1, 1])

    async def overflow(batcher: DynamicBatcher):
        with pytest.raises(ServeError) as info:
            await batcher.submit(_mlp_requests([1], seed=5)[0])
        await batcher.stop()
        with pytest.raises(ServeError, match="shutting down"):
            await batcher.submit(_mlp_requests([1], seed=6)[0])
        return info.value.status

    # The two queued requests wait on a 60 s delay; stop() must flush them, not wait it out.
    results, stats, status = _run(engine_files["mlp"], BatchingConfig(8, 60.0, 1, 2), requests, overflow)
    assert status == 503
    assert stats.execution_count == 1
    for feeds, out in zip(requests, results):
        np.testing.assert_allclose(out["y"], mlp_oracle(feeds["x"]), rtol=1e-5, atol=1e-5)
