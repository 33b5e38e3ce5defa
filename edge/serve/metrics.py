"""Per-model serving statistics, exported as Triton-named Prometheus metrics and v2 stats JSON.

One ``ModelStats`` per model is the single source: the batcher and the HTTP layer update it
(always from the event loop thread, so no locks), ``TritonCollector`` renders it for
``/metrics`` and ``ModelStats.to_json`` for the ``statistics`` extension.

Triton's counters carry no ``_total`` suffix (``nv_inference_request_success``), and
prometheus-client's text exposition always appends one to a counter's HELP/TYPE lines. So
the families are built with prometheus-client but rendered by :func:`render_text`, which
writes the names exactly as Triton (prometheus-cpp) does; the format stays valid Prometheus
text 0.0.4.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

__all__ = ["Duration", "Histogram", "ModelStats", "TritonCollector", "render_text", "BATCH_BUCKETS", "FAILURE_REASONS"]

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FAILURE_REASONS = ("REJECTED", "BACKEND", "OTHER")


@dataclass
class Duration:
    """A count and a cumulative duration in nanoseconds."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class Histogram:
    """Counts of durations per upper bound (seconds, cumulative when exported), and their sum."""

    counts: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_S))
    total: int = 0
    sum_s: float = 0.0

    def observe(self, ns: int) -> None:
        seconds = ns / 1e9
        self.total += 1
        self.sum_s += seconds
        for index, bound in enumerate(LATENCY_BUCKETS_S):
            if seconds <= bound:
                self.counts[index] += 1
                break

    def buckets(self) -> list[tuple[str, int]]:
        """Prometheus' cumulative ``le`` buckets, ending with ``+Inf``."""
        running, out = 0, []
        for bound, count in zip(LATENCY_BUCKETS_S, self.counts):
            running += count
            out.append((floatToGoString(bound), running))
        return [*out, ("+Inf", self.total)]


@dataclass
class ModelStats:
    """Counters for one model version, in the shape of Triton's statistics extension."""

    name: str
    version: str
    success: Duration = field(default_factory=Duration)
    failure: dict[str, Duration] = field(default_factory=lambda: {r: Duration() for r in FAILURE_REASONS})
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    batches: dict[int, Duration] = field(default_factory=dict)
    pending: int = 0
    inflight: int = 0
    request_latency: Histogram = field(default_factory=Histogram)
    queue_latency: Histogram = field(default_factory=Histogram)

    def record_request(self, ns: int, failure_reason: str | None = None) -> None:
        """One HTTP inference request finished (successfully when ``failure_reason`` is None)."""
        self.request_latency.observe(ns)
        if failure_reason is None:
            self.success.add(ns)
        else:
            self.failure[failure_reason].add(ns)

    def record_execution(self, batch: int, queue_waits_ns: list[int], input_ns: int, infer_ns: int, output_ns: int) -> None:
        """One batch execution of ``batch`` inferences built from requests that waited ``queue_waits_ns``.

        Like Triton, every request in the batch is charged the batch's compute time.
        """
        requests, queue_ns = len(queue_waits_ns), sum(queue_waits_ns)
        for wait in queue_waits_ns:
            self.queue_latency.observe(wait)
        self.inference_count += batch
        self.execution_count += 1
        self.last_inference_ms = int(time.time() * 1000)
        self.queue.add(queue_ns, requests)
        self.compute_input.add(input_ns * requests, requests)
        self.compute_infer.add(infer_ns * requests, requests)
        self.compute_output.add(output_ns * requests, requests)
        self.batches.setdefault(batch, Duration()).add(infer_ns)

    @property
    def failed(self) -> Duration:
        """Failed requests over every reason."""
        return Duration(sum(d.count for d in self.failure.values()), sum(d.ns for d in self.failure.values()))

    def to_json(self) -> dict[str, Any]:
        """This model's entry of ``{"model_stats": [...]}`` (Triton's statistics extension)."""
        return {
            "name": self.name,
            "version": self.version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.to_json(),
                "fail": self.failed.to_json(),
                "queue": self.queue.to_json(),
                "compute_input": self.compute_input.to_json(),
                "compute_infer": self.compute_infer.to_json(),
                "compute_output": self.compute_output.to_json(),
            },
            "batch_stats": [
                {"batch_size": size, "compute_infer": d.to_json()} for size, d in sorted(self.batches.items())
            ],
        }


class TritonCollector:
    """Renders every model's :class:`ModelStats` with Triton's metric names and labels."""

    def __init__(self, stats: Callable[[], Iterable[ModelStats]]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        models = list(self._stats())
        labels = ("model", "version")

        def counter(name: str, doc: str, value: Callable[[ModelStats], float]) -> Metric:
            family = Metric(name, doc, "counter")
            for s in models:
                family.add_sample(name, {"model": s.name, "version": s.version}, value(s))
            return family

        failure = Metric("nv_inference_request_failure", "Number of failed inference requests, by reason", "counter")
        for s in models:
            for reason, d in s.failure.items():
                failure.add_sample(failure.name, {"model": s.name, "reason": reason, "version": s.version}, d.count)
        yield counter("nv_inference_request_success", "Number of successful inference requests", lambda s: s.success.count)
        yield failure
        yield counter("nv_inference_count", "Number of inferences performed (a batch of n counts n)", lambda s: s.inference_count)
        yield counter("nv_inference_exec_count", "Number of model executions (batches) performed", lambda s: s.execution_count)
        yield counter(
            "nv_inference_request_duration_us",
            "Cumulative end-to-end inference request duration in microseconds",
            lambda s: (s.success.ns + s.failed.ns) // 1000,
        )
        yield counter(
            "nv_inference_queue_duration_us", "Cumulative time requests spent queued, in microseconds", lambda s: s.queue.ns // 1000
        )
        yield counter(
            "nv_inference_compute_input_duration_us", "Cumulative input preparation (batch assembly) time in microseconds",
            lambda s: s.compute_input.ns // 1000,
        )
        yield counter(
            "nv_inference_compute_infer_duration_us", "Cumulative model execution time in microseconds",
            lambda s: s.compute_infer.ns // 1000,
        )
        yield counter(
            "nv_inference_compute_output_duration_us", "Cumulative output handling (batch split) time in microseconds",
            lambda s: s.compute_output.ns // 1000,
        )
        pending = GaugeMetricFamily("nv_inference_pending_request_count", "Requests queued awaiting execution", labels=labels)
        inflight = GaugeMetricFamily("edgetrt_inference_inflight_requests", "Requests queued or executing", labels=labels)
        batch = HistogramMetricFamily("edgetrt_inference_batch_size", "Batch size of each model execution", labels=labels)
        for s in models:
            pending.add_metric((s.name, s.version), s.pending)
            inflight.add_metric((s.name, s.version), s.inflight)
            buckets = [(str(b), sum(d.count for size, d in s.batches.items() if size <= b)) for b in BATCH_BUCKETS]
            buckets.append(("+Inf", s.execution_count))
            batch.add_metric((s.name, s.version), buckets, sum_value=s.inference_count)
        yield pending
        yield inflight
        yield batch
        for name, doc, pick in (
            ("edgetrt_inference_request_duration_seconds", "End-to-end inference request duration", lambda s: s.request_latency),
            ("edgetrt_inference_queue_duration_seconds", "Time a request waited in the queue", lambda s: s.queue_latency),
        ):
            family = HistogramMetricFamily(name, doc, labels=labels)
            for s in models:
                histogram = pick(s)
                family.add_metric((s.name, s.version), histogram.buckets(), sum_value=histogram.sum_s)
            yield family


def render_text(families: Iterable[Metric]) -> bytes:
    """Prometheus text format (0.0.4) with family and sample names written as given."""
    lines = []
    for family in families:
        doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        lines.append(f"# HELP {family.name} {doc}")
        lines.append(f"# TYPE {family.name} {'untyped' if family.type == 'unknown' else family.type}")
        for sample in family.samples:
            labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(sample.labels.items()))
            lines.append(f"{sample.name}{{{labels}}} {floatToGoString(sample.value)}")
    return ("\n".join(lines) + "\n").encode()


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
