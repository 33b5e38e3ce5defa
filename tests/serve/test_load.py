"""Bounded concurrent load on loopback: 10 % bad requests, no server errors, every reply its own request's answer."""

from __future__ import annotations

from tests.serve.conftest import mlp_oracle
from tests.serve.load import run_load


def test_16_clients_x_200_requests_with_10_percent_bad_ones(start_server):
    server = start_server(max_batch=8, max_queue_delay_s=0.002, instances=2, max_queue=64)
    result = run_load(server.url, "mlp", "x", "y", (1, 16), mlp_oracle, clients=16, requests=200, seed=100, bad_every=10)
    good = 16 * 200 - 16 * 20
    assert result.server_errors == []
    assert result.failures == []
    assert result.mismatches == []
    assert result.refused == 16 * 20
    assert len(result.latencies_s) == good
    stats = server.app.state.edgetrt.stats_of("mlp")
    assert stats.success.count == good and stats.inference_count == good
    assert stats.failure["OTHER"].count == 16 * 20
    # Under 16 concurrent clients the batcher must actually have stacked requests.
    assert stats.execution_count < stats.inference_count
