"""Runtime benchmark: arena size vs naive vs lower bound, and ``edge.runtime.bench`` vs onnxruntime.

For each test model: the memory plan's arena, the naive sum of all tensors and the lower
bound (largest set of simultaneously live tensors); then the CPU backend's latency and
throughput measured by :func:`edge.runtime.bench.benchmark` next to onnxruntime's on the same
inputs, in the same process, with the same thread count, and the ratio edgetrt / onnxruntime.
Appends (or replaces) the "Runtime" section of docs/benchmarks.md with the output.

    python benchmarks/runtime.py [--iterations 10] [--models squeezenet,mobile_cnn] [--no-docs]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from contextlib import redirect_stdout
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edge  # noqa: E402
from benchmarks.docs import write_section  # noqa: E402
from benchmarks.machine import describe  # noqa: E402
from edge.runtime.bench import BenchConfig, bench_inputs, benchmark, latency_stats  # noqa: E402
from tests.conftest import LIGHT_DIR  # noqa: E402
from tests.models import mobile_cnn, resnet_block_cnn, transformer_encoder  # noqa: E402
from tests.runtime.models import dynamic_encoder  # noqa: E402
from tests.test_light_models import randomize_weights  # noqa: E402

ENCODER_PROFILE = {"ids": ((1, 1), (4, 64), (8, 128)), "mask": ((1, 1), (4, 64), (8, 128))}
BUILDERS = {
    "resnet_block_cnn": lambda: (resnet_block_cnn(batch=4, size=32), None),
    "mobile_cnn": lambda: (mobile_cnn(batch=4, size=32), None),
    "transformer_encoder": lambda: (transformer_encoder(batch=4, seq=64, d_model=64, heads=4), None),
    "dynamic_encoder": lambda: (dynamic_encoder(vocab=1000, width=64), [ENCODER_PROFILE]),
}
LIGHT = ("squeezenet", "shufflenet", "inception_v1")
SECTION = "## Runtime"


def _model(name: str) -> tuple[onnx.ModelProto, list | None]:
    if name in LIGHT:
        return randomize_weights(onnx.load(LIGHT_DIR / f"light_{name}.onnx")), None
    return BUILDERS[name]()


def _ort_bench(model: onnx.ModelProto, feeds: dict[str, np.ndarray], warmup: int, iterations: int) -> tuple[dict, float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    for _ in range(warmup):
        session.run(None, feeds)
    latencies = []
    start = time.perf_counter()
    for _ in range(iterations):
        t0 = time.perf_counter()
        session.run(None, feeds)
        latencies.append((time.perf_counter() - t0) * 1000.0)
    return latency_stats(np.array(latencies)), iterations / (time.perf_counter() - start)


def _unplanned_ms(engine: edge.Engine, feeds: dict[str, np.ndarray], iterations: int) -> float:
    schedule = engine.schedule()
    inputs = [feeds[spec.name] for spec in engine.inputs]
    latencies = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        schedule.run(inputs)
        latencies.append((time.perf_counter() - t0) * 1000.0)
    return float(np.median(latencies))


def run(models: list[str], warmup: int, iterations: int) -> None:
    import onnxruntime as ort

    load = os.getloadavg()[0]
    print(f"machine: {describe()}; onnxruntime {ort.__version__}, intra-op threads {os.cpu_count()}")
    print(f"protocol: {warmup} warm-up + {iterations} timed runs each, one stream, same inputs for both runtimes\n")
    print("activation memory (KB; dynamic models at their profile's max shapes)")
    print(f"{'model':<21}{'arena':>10}{'naive':>10}{'lower bd':>10}{'arena/lb':>10}{'naive/arena':>12}{'in-place':>10}")
    engines = {}
    for name in models:
        model, profiles = _model(name)
        engine = edge.build(model.SerializeToString(), edge.BuilderConfig(optimization_profiles=profiles))
        engines[name] = (model, engine)
        memory = engine.build["memory"]
        detail = memory["static"] or max(memory["profiles"], key=lambda p: p["arena_bytes"])
        arena, naive, bound = memory["arena_bytes"], memory["naive_bytes"], memory["lower_bound_bytes"]
        print(
            f"{name:<21}{arena / 1e3:>10.1f}{naive / 1e3:>10.1f}{bound / 1e3:>10.1f}{arena / bound:>10.3f}"
            f"{naive / arena:>12.1f}{detail['inplace']:>10}"
        )
    print("\nlatency (ms, median / p90) and throughput (inferences/s): edgetrt bench vs onnxruntime;")
    print("no-arena = the same schedule run without the arena (median ms), to show what the arena costs")
    print(f"{'model':<21}{'edgetrt':>16}{'ort':>16}{'edge/s':>9}{'ort/s':>9}{'ratio':>7}{'no-arena':>10}")
    worst = 0.0
    for name, (model, engine) in engines.items():
        result = benchmark(engine, BenchConfig(warmup=warmup, iterations=iterations))
        feeds = bench_inputs(engine)
        ort_stats, ort_throughput = _ort_bench(model, feeds, warmup, iterations)
        ratio = result.stats["median"] / ort_stats["median"]
        worst = max(worst, ratio)
        ours = f"{result.stats['median']:.2f} / {result.stats['p90']:.2f}"
        theirs = f"{ort_stats['median']:.2f} / {ort_stats['p90']:.2f}"
        unplanned = _unplanned_ms(engine, feeds, iterations)
        print(f"{name:<21}{ours:>16}{theirs:>16}{result.throughput:>9.1f}{ort_throughput:>9.1f}{ratio:>7.2f}{unplanned:>10.2f}")
    print(f"\nworst median-latency ratio edgetrt / onnxruntime: {worst:.2f} (target <= 2.0)")
    print(f"load average (1 min) at the start {load:.2f}, at the end {os.getloadavg()[0]:.2f}: a shared machine inflates both columns")


def _write_docs(output: str) -> None:
    """Replace this benchmark's section of docs/benchmarks.md (or append it), leaving others alone."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"{SECTION}\n\nMemory planner and `edgetrt bench` vs onnxruntime (`python benchmarks/runtime.py`), "
        f"run {stamp} on {describe()}.\n\n```\n{output.rstrip()}\n```\n"
    )
    write_section(SECTION, section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--models", default=",".join([*BUILDERS, *LIGHT]))
    parser.add_argument("--no-docs", action="store_true", help="Print only; leave docs/benchmarks.md alone.")
    args = parser.parse_args()
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        run(args.models.split(","), args.warmup, args.iterations)
    print(buffer.getvalue(), end="")
    if not args.no_docs:
        _write_docs(buffer.getvalue())


if __name__ == "__main__":
    main()
