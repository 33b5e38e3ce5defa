"""``benchmark`` and ``edgetrt bench``: fields, stopping rules, streams, exports (no timing thresholds)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import edge
from edge.cli import main
from edge.errors import EdgeError, InputError
from edge.runtime.bench import BenchConfig, bench_inputs, benchmark, latency_stats
from tests.models import mobile_cnn
from tests.runtime.models import dynamic_encoder

STAT_KEYS = ["min", "mean", "median", "p90", "p95", "p99", "max"]


@pytest.fixture(scope="module")
def cnn_engine(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "cnn.engine"
    edge.build(mobile_cnn().SerializeToString()).save(path)
    return path


@pytest.fixture(scope="module")
def encoder_engine(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "encoder.engine"
    profile = {"ids": ((1, 1), (2, 8), (4, 32)), "mask": ((1, 1), (2, 8), (4, 32))}
    edge.build(dynamic_encoder().SerializeToString(), edge.BuilderConfig(optimization_profiles=[profile])).save(path)
    return path


def test_latency_stats_match_numpy() -> None:
    sample = np.array([5.0, 1.0, 3.0, 2.0, 4.0, 10.0])
    stats = latency_stats(sample)
    assert list(stats) == STAT_KEYS
    assert stats["min"] == 1.0 and stats["max"] == 10.0 and stats["median"] == 3.5
    assert stats["p90"] == pytest.approx(np.percentile(sample, 90))
    assert stats["mean"] == pytest.approx(25 / 6)


def test_streams_iterations_and_result_fields(cnn_engine) -> None:
    engine = edge.load(cnn_engine)
    seen = []
    result = benchmark(engine, BenchConfig(warmup=1, iterations=4, streams=3), on_iteration=lambda s, i, ms: seen.append((s, i)))
    assert len(result.latencies_ms) == 12 and sorted(seen) == [(s, i) for s in range(3) for i in range(4)]
    assert sorted(np.bincount(result.stream_ids)) == [4, 4, 4]
    assert np.all(np.diff(result.start_times_s) >= 0)
    assert result.wall_s >= result.start_times_s[-1] + result.latencies_ms[-1] / 1000 - 1e-9
    assert result.throughput == pytest.approx(12 / result.wall_s)
    data = result.to_dict()
    assert list(data["latency_ms"]) == STAT_KEYS
    assert data["iterations"] == 12 and data["streams"] == 3 and data["backend"] == "cpu"
    assert data["transfer"]["applicable"] is False and data["transfer"]["h2d_ms"] == 0.0
    assert data["shapes"] == {spec.name: list(spec.shape) for spec in engine.inputs}


def test_duration_keeps_running_past_the_iteration_minimum(cnn_engine) -> None:
    result = benchmark(edge.load(cnn_engine), BenchConfig(warmup=0, iterations=1, duration_s=0.2))
    assert result.start_times_s[-1] + result.latencies_ms[-1] / 1000 >= 0.2
    assert len(result.latencies_ms) >= 1


def test_dynamic_inputs_use_opt_shapes_unless_given(encoder_engine) -> None:
    engine = edge.load(encoder_engine)
    assert {k: v.shape for k, v in bench_inputs(engine).items()} == {"ids": (2, 8), "mask": (2, 8)}
    assert bench_inputs(engine, batch=3)["ids"].shape == (3, 8)
    assert bench_inputs(engine, shapes={"ids": (1, 20), "mask": (1, 20)})["mask"].shape == (1, 20)
    np.testing.assert_array_equal(bench_inputs(engine, seed=4)["ids"], bench_inputs(engine, seed=4)["ids"])
    with pytest.raises(EdgeError, match="--shapes names 'tokens', not an input"):
        bench_inputs(engine, shapes={"tokens": (1, 2)})
    with pytest.raises(InputError, match="input 'ids' has shape 4x33, outside optimization profile 0"):
        benchmark(engine, BenchConfig(iterations=1, shapes={"ids": (4, 33), "mask": (4, 33)}))


def test_layer_profile_covers_every_layer(encoder_engine) -> None:
    engine = edge.load(encoder_engine)
    result = benchmark(engine, BenchConfig(warmup=1, iterations=2, profile_layers=True, profile_runs=3))
    assert [row["name"] for row in result.layers] == [node.name for node in engine.graph.nodes]
    assert sum(row["percent"] for row in result.layers) == pytest.approx(100.0)
    for row in result.layers:
        assert row["total_ms"] == pytest.approx(3 * row["ms_per_run"]) and row["device"] == "cpu"
        assert row["origin"] and row["op"]


def test_cli_json_and_export_files(encoder_engine, tmp_path, capsys) -> None:
    times, profile = tmp_path / "out" / "times.json", tmp_path / "out" / "profile.json"
    argv = ["bench", str(encoder_engine), "--iterations", "3", "--streams", "2", "--shapes", "ids:3x12,mask:3x12"]
    argv += ["--json", "--export-times", str(times), "--export-profile", str(profile), "--profile-runs", "2"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["iterations"] == 6 and data["shapes"] == {"ids": [3, 12], "mask": [3, 12]}
    assert list(data["latency_ms"]) == STAT_KEYS and data["throughput"] > 0
    rows = json.loads(times.read_text())
    assert len(rows) == 6 and {r["stream"] for r in rows} == {0, 1}
    assert all(r["endMs"] == pytest.approx(r["startMs"] + r["latencyMs"]) and r["h2dMs"] == 0.0 for r in rows)
    layers = json.loads(profile.read_text())
    assert layers["runs"] == 2 and len(layers["layers"]) == 12
    assert {"name", "op", "origin", "device", "total_ms", "ms_per_run", "percent"} <= set(layers["layers"][0])


def test_cli_text_output_and_bad_input(encoder_engine, capsys) -> None:
    assert main(["bench", str(encoder_engine), "--iterations", "2", "--dump-profile"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "throughput:" in text and "p99" in text and "host<->device transfer: not applicable" in text
    assert "per-layer times over 10 runs" in text
    assert main(["bench", str(encoder_engine), "--iterations", "1", "--shapes", "ids:9x9,mask:9x9"]) == 1
    assert "input 'ids' has shape 9x9, outside optimization profile 0" in " ".join(capsys.readouterr().err.split())
    assert main(["bench", str(encoder_engine), "--streams", "0"]) == 1
