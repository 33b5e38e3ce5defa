"""``benchmark`` and ``edgetrt bench``: trtexec's summary fields, stopping rules, streams,
warm-up in ms, Ctrl-C, backend plug-ins (no timing thresholds)."""

from __future__ import annotations

import json
import os
import signal
import statistics
from fractions import Fraction

import numpy as np
import pytest

import edge
import edge.runtime.bench as bench_module
from edge.cli import main
from edge.errors import EdgeError, InputError
from edge.runtime.bench import BenchConfig, bench_inputs, benchmark, coefficient_of_variance, latency_stats
from edge.runtime.timing import RunTimes
from tests.models import mobile_cnn
from tests.runtime.models import dynamic_encoder

STAT_KEYS = ["min", "max", "mean", "median", "p90", "p95", "p99"]


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


class ScriptedContext:
    """Stands in for a GPU backend's context: reports the RunTimes it is given, in turn, and
    records the keyword arguments bench passes to run."""

    def __init__(self, times: list[RunTimes]) -> None:
        self.times, self.calls, self.last_times, self.profiler = times, [], None, None

    def set_optimization_profile(self, index) -> None:
        pass

    def run(self, feeds, transfers: bool = True):
        self.calls.append({"transfers": transfers})
        self.last_times = self.times[(len(self.calls) - 1) % len(self.times)]
        return {}


def scripted(monkeypatch, engine, times: list[RunTimes], device: bool = True) -> ScriptedContext:
    context = ScriptedContext(times)
    monkeypatch.setattr(engine, "create_context", lambda: context)
    monkeypatch.setattr(bench_module, "uses_device", lambda _engine: device)
    return context


def nearest_rank(sample, p: float) -> float:
    """trtexec's percentile: the smallest sample v with count(x <= v) >= p % of n (exact)."""
    share = Fraction(str(p)) / 100
    return min(v for v in sample if Fraction(sum(x <= v for x in sample), len(sample)) >= share)


def test_latency_stats_follow_trtexecs_rules() -> None:
    sample = np.array([5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 7.0])
    stats = latency_stats(sample)
    assert list(stats) == STAT_KEYS
    assert stats["min"] == 1.0 and stats["max"] == 10.0 and stats["median"] == 4.0
    assert stats["mean"] == pytest.approx(32 / 7)
    for p in (90, 95, 99):
        assert stats[f"p{p}"] == nearest_rank(sample, p)
    custom = latency_stats(np.arange(1.0, 1001.0), (50, 99.9, 0))
    assert custom["p50"] == 500.0 and custom["p99.9"] == 999.0 and custom["p0"] == 1.0
    ten = np.arange(10.0, 0.0, -1.0)
    assert latency_stats(ten, (90,))["p90"] == nearest_rank(ten, 90) == 9.0
    assert latency_stats(np.array([1.0, 2.0, 3.0, 4.0]))["median"] == 2.5


def test_coefficient_of_variance_is_population_std_over_mean() -> None:
    sample = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
    assert coefficient_of_variance(np.array(sample)) == pytest.approx(statistics.pstdev(sample) / statistics.mean(sample) * 100)


def test_context_records_run_times_on_the_cpu_backend(cnn_engine) -> None:
    engine = edge.load(cnn_engine)
    context = engine.create_context()
    assert context.last_times is None
    feeds = bench_inputs(engine)
    for _ in range(2):
        t0 = time_ms()
        context.run(feeds)
        outside = time_ms() - t0
    times = context.last_times
    assert 0 < times.host_ms <= outside
    assert times.compute_ms == times.host_ms == times.enqueue_ms == times.latency_ms
    assert times.h2d_ms is None and times.d2h_ms is None


def time_ms() -> float:
    import time

    return time.perf_counter() * 1000.0


def test_streams_iterations_and_summary_fields(cnn_engine) -> None:
    engine = edge.load(cnn_engine)
    seen = []
    result = benchmark(engine, BenchConfig(warmup=1, iterations=4, streams=3), on_iteration=lambda s, i, ms: seen.append((s, i)))
    assert result.iterations == 12 and sorted(seen) == [(s, i) for s in range(3) for i in range(4)]
    assert sorted(np.bincount(result.stream_ids)) == [4, 4, 4]
    assert np.all(np.diff(result.start_times_s) >= 0)
    assert result.wall_s >= result.start_times_s[-1] + result.times_ms["host"][-1] / 1000 - 1e-9
    assert result.throughput == pytest.approx(12 / result.wall_s)
    assert result.warmup_runs == 3 and not result.interrupted and result.no_effect == []
    data = result.to_dict()
    assert list(data["latency_ms"]) == STAT_KEYS
    assert data["iterations"] == 12 and data["streams"] == 3 and data["backend"] == "cpu"
    assert data["h2d_ms"] is None and data["d2h_ms"] is None
    assert data["compute_ms"] == data["latency_ms"] == data["host_ms"]
    assert data["total_compute_s"] == pytest.approx(float(np.sum(result.times_ms["host"])) / 1000)
    assert data["compute_cv_percent"] == pytest.approx(np.std(result.times_ms["host"]) / np.mean(result.times_ms["host"]) * 100)
    assert data["shapes"] == {spec.name: list(spec.shape) for spec in engine.inputs}
    json.dumps(data)  # JSON-able, no NaN for unmeasured parts


def test_device_backend_times_reach_the_summary(monkeypatch, cnn_engine) -> None:
    engine = edge.load(cnn_engine)
    runs = [RunTimes(0.5, 1.0, 2.0, 0.25, 4.0), RunTimes(0.5, 1.0, 4.0, 0.25, 6.0)]
    context = scripted(monkeypatch, engine, runs)
    result = benchmark(engine, BenchConfig(warmup=0, iterations=6, avg_runs=4, percentiles=(50,), data_transfers=False))
    assert all(call == {"transfers": False} for call in context.calls)
    assert result.device and result.no_effect == []
    np.testing.assert_allclose(result.latencies_ms, [3.25, 5.25] * 3)  # H2D + compute + D2H
    assert result.metric_stats("compute") == {"min": 2.0, "max": 4.0, "mean": 3.0, "median": 3.0, "p50": 2.0}
    assert result.metric_stats("h2d")["max"] == 1.0 and result.metric_stats("host")["mean"] == 5.0
    assert result.total_compute_s == pytest.approx(18 / 1000)
    assert result.averages() == [{"compute_ms": 3.0, "latency_ms": 4.25, "enqueue_ms": 0.5}]  # the incomplete last group is left out
    (unstable,) = result.warnings()  # CV 33 %; enqueue 0.5 < 0.8 x 3; copies below compute
    assert "GPU compute time is unstable" in unstable and "33.33 %" in unstable


def test_device_warnings_for_enqueue_and_copy_bound_runs(monkeypatch, cnn_engine) -> None:
    engine = edge.load(cnn_engine)
    scripted(monkeypatch, engine, [RunTimes(1.9, 2.0, 2.0, 3.0, 8.0)])
    warnings = benchmark(engine, BenchConfig(warmup=0, iterations=3)).warnings()
    assert len(warnings) == 3  # steady compute: no CV warning
    assert "--use-cuda-graph" in warnings[0] and "host-to-device" in warnings[1] and "device-to-host" in warnings[2]


def test_flags_a_backend_cannot_honour_are_reported(monkeypatch, cnn_engine) -> None:
    engine = edge.load(cnn_engine)
    config = BenchConfig(warmup=0, iterations=1, data_transfers=False, spin_wait=True, cuda_graph=True)
    assert benchmark(engine, config).no_effect == ["data_transfers", "spin_wait", "cuda_graph"]  # CPU engine
    context = scripted(monkeypatch, engine, [RunTimes(None, None, 1.0, None, 1.0)])
    assert benchmark(engine, config).no_effect == ["spin_wait", "cuda_graph"]  # the context offers transfers only
    assert context.calls[0] == {"transfers": False}


def test_unmeasured_compute_is_not_invented(monkeypatch, cnn_engine) -> None:
    engine = edge.load(cnn_engine)
    scripted(monkeypatch, engine, [RunTimes(None, None, None, None, 3.0)])
    result = benchmark(engine, BenchConfig(warmup=0, iterations=2))
    assert result.metric_stats("compute") is None and result.total_compute_s is None and result.warnings() == []
    assert result.metric_stats("latency")["mean"] == 3.0  # latency falls back to host time


def test_warmup_ms_is_time_and_runs_are_runs(cnn_engine) -> None:
    engine = edge.load(cnn_engine)
    timed = benchmark(engine, BenchConfig(warmup=0, warmup_ms=30.0, iterations=1))
    assert timed.warmup_ms >= 30.0 and timed.warmup_runs >= 1
    counted = benchmark(engine, BenchConfig(warmup=3, iterations=1, streams=2))
    assert counted.warmup_runs == 6


def test_duration_keeps_running_past_the_iteration_minimum(cnn_engine) -> None:
    result = benchmark(edge.load(cnn_engine), BenchConfig(warmup=0, iterations=1, duration_s=0.2))
    assert result.wall_s >= 0.2  # the last iteration ended past the duration, on the bench's own clock
    assert result.iterations >= 1


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C raises KeyboardInterrupt in the main thread, whatever the test runner set."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_returns_the_runs_taken(cnn_engine, ctrl_c_raises) -> None:
    def interrupt(stream: int, iteration: int, latency_ms: float) -> None:
        if iteration == 3:
            os.kill(os.getpid(), signal.SIGINT)

    result = benchmark(edge.load(cnn_engine), BenchConfig(warmup=0, duration_s=-1), on_iteration=interrupt)
    assert result.interrupted and result.iterations >= 4
    assert result.to_dict()["interrupted"] is True


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


@pytest.mark.parametrize(
    "config, message",
    [
        ({"warmup_ms": -1}, "warm-up time must be >= 0 ms"),
        ({"avg_runs": 0}, "avgRuns must be >= 1"),
        ({"percentiles": (90, 101)}, r"percentiles must be in \[0, 100\]"),
        ({"streams": 0}, "streams must be >= 1"),
    ],
)
def test_bad_config_is_refused(config, message) -> None:
    with pytest.raises(EdgeError, match=message):
        BenchConfig(**config)


def test_cli_json_and_warmup_spellings(encoder_engine, capsys) -> None:
    argv = ["bench", str(encoder_engine), "--iterations", "3", "--streams", "2", "--shapes", "ids:3x12,mask:3x12"]
    argv += ["--json", "--warmUp=0", "--warmup-runs=2", "--percentile=50,99.9", "--avgRuns=2", "--useSpinWait"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["iterations"] == 6 and data["shapes"] == {"ids": [3, 12], "mask": [3, 12]}
    assert data["warmup"]["runs"] == 4  # --warmUp is ms (trtexec's meaning), --warmup-runs counts runs
    assert list(data["latency_ms"]) == ["min", "max", "mean", "median", "p50", "p99.9"] and data["throughput_qps"] > 0
    assert data["averages"]["runs"] == 2 and len(data["averages"]["rows"]) == 3
    assert data["no_effect"] == ["spin_wait"]
    assert main(["bench", str(encoder_engine), "--iterations=1", "--warmUp=20", "--warmup-runs=0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warmup"]["ms"] >= 20


def test_cli_text_output_and_bad_input(encoder_engine, capsys) -> None:
    assert main(["bench", str(encoder_engine), "--iterations", "2", "--dump-profile", "--no-data-transfers"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for field in ("throughput:", "qps", "total host walltime", "total compute time", "Latency", "Enqueue Time", "Compute Time", "p99"):
        assert field in text
    assert "H2D Latency, D2H Latency: none, the cpu backend has no host<->device copies" in text
    assert "--no-data-transfers: no effect on this backend (cpu)" in text
    assert "per-layer times over 10 runs" in text
    assert main(["bench", str(encoder_engine), "--iterations", "1", "--shapes", "ids:9x9,mask:9x9"]) == 1
    assert "input 'ids' has shape 9x9, outside optimization profile 0" in " ".join(capsys.readouterr().err.split())
    assert main(["bench", str(encoder_engine), "--streams", "0"]) == 2
    assert main(["bench", str(encoder_engine), "--percentile", "50,abc"]) == 1
    assert "--percentile '50,abc' is not a comma-separated list" in capsys.readouterr().err


def test_cli_ctrl_c_prints_the_summary_of_the_runs_taken(monkeypatch, cnn_engine, capsys, ctrl_c_raises) -> None:
    real = bench_module.benchmark

    def interrupted_after_three(engine, config, on_iteration=None):
        def interrupt(stream, iteration, latency_ms):
            if iteration == 2:
                os.kill(os.getpid(), signal.SIGINT)

        return real(engine, config, on_iteration=interrupt)

    monkeypatch.setattr("edge.cli.bench.benchmark", interrupted_after_three)
    assert main(["bench", str(cnn_engine), "--duration", "10", "--json"]) == 130  # stopped before its duration
    assert json.loads(capsys.readouterr().out)["interrupted"] is True
    assert main(["bench", str(cnn_engine), "--duration", "-1"]) == 0  # Ctrl-C is how an endless run ends
    text = " ".join(capsys.readouterr().out.split())
    assert "interrupted: the summary covers the" in text and "throughput:" in text


def test_cli_progress_bar_only_on_a_terminal(monkeypatch, cnn_engine, capsys) -> None:
    from edge.cli.app import console

    real, callbacks = bench_module.benchmark, []

    def recording(engine, config, on_iteration=None):
        callbacks.append(on_iteration)
        return real(engine, config, on_iteration=on_iteration)  # the bar advances from the streams

    monkeypatch.setattr("edge.cli.bench.benchmark", recording)
    assert main(["bench", str(cnn_engine), "--iterations", "3"]) == 0  # piped: no bar
    monkeypatch.setattr(console, "_force_terminal", True)
    assert main(["bench", str(cnn_engine), "--iterations", "3", "--json"]) == 0
    assert main(["bench", str(cnn_engine), "--iterations", "3", "--streams", "2"]) == 0
    assert [callback is not None for callback in callbacks[:3]] == [False, False, True]
