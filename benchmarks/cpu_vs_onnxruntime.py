"""CPU backend vs onnxruntime on the light models and a ResNet-50-shaped model.

Both run in the same process with the same thread count: onnxruntime's
``intra_op_num_threads`` and edgetrt's ``set_intra_op_threads`` (its kernels' pool).
The two alternate in blocks of runs, so load changes on a shared machine hit both alike,
while each is timed back to back, as a user running one engine sees it. Every block starts
after a pause (``PAUSE_S``) and one untimed run: both runtimes' pools keep their workers
spinning for a while after a run, and without the pause the first runs of one block shared
the cores with the other runtime's spinning workers (onnxruntime's 2-thread times on the
small models came out 1.5-2.5x slower than alone; earlier tables in docs/benchmarks.md were
taken that way). Each number is the median of the timed runs. Prints one row per model and
thread count with the ratio edgetrt / onnxruntime (target: no model above 2.0), plus the
load average.

    python benchmarks/cpu_vs_onnxruntime.py [--repeats 20] [--threads 1,2] [--models resnet50,vgg19]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edge  # noqa: E402
from benchmarks.machine import describe  # noqa: E402
from tests.conftest import LIGHT_DIR, LIGHT_MODELS  # noqa: E402
from tests.test_light_models import randomize_weights  # noqa: E402


PAUSE_S = 0.3
"""Quiet time before each block: longer than the runtimes' pools spin after a run."""


def block_medians(fns: list[Callable[[], object]], repeats: int, block: int = 5) -> list[float]:
    """Median milliseconds of ``repeats`` timed runs of each function, taken in alternating
    blocks of ``block`` runs, each block after a pause and one untimed run."""
    times: list[list[float]] = [[] for _ in fns]
    while len(times[-1]) < repeats:
        for fn, bucket in zip(fns, times):
            time.sleep(PAUSE_S)
            fn()
            for _ in range(min(block, repeats - len(bucket))):
                start = time.perf_counter()
                fn()
                bucket.append((time.perf_counter() - start) * 1000)
    return [statistics.median(bucket) for bucket in times]


def load_model(name: str) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The light model with random weights, and a seeded random input for each graph input."""
    model = randomize_weights(onnx.load(LIGHT_DIR / f"light_{name}.onnx"))
    inits = {t.name for t in model.graph.initializer}
    # weights listed as graph inputs could be overridden at run time, so onnxruntime would
    # not fold or prepack them: keep them constants for a fair comparison
    real_inputs = [v for v in model.graph.input if v.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(real_inputs)
    feeds = {}
    for value in real_inputs:
        shape = tuple(d.dim_value or 1 for d in value.type.tensor_type.shape.dim)
        feeds[value.name] = np.random.default_rng(0).random(shape, np.float32)
    return model, feeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per runtime (default 20)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--models", default=",".join(LIGHT_MODELS))
    args = parser.parse_args()

    import onnxruntime as ort

    counts = [int(t) for t in args.threads.split(",")]
    print(f"machine: {describe()}; onnxruntime {ort.__version__}")
    print(f"{'model':<14}{'threads':>8}{'nodes':>7}{'layers':>8}{'edgetrt ms':>12}{'ort ms':>10}{'ratio':>8}  load avg")
    worst: dict[int, tuple[float, str]] = {}
    for name in args.models.split(","):
        model, feeds = load_model(name)
        engine = edge.build(model.SerializeToString())
        context = engine.create_context()
        for threads in counts:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            edge.set_intra_op_threads(threads)
            edge_ms, ort_ms = block_medians([lambda: context.run(feeds), lambda: session.run(None, feeds)], args.repeats)
            ratio = edge_ms / ort_ms
            worst[threads] = max(worst.get(threads, (0.0, "")), (ratio, name))
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            print(
                f"{name:<14}{threads:>8}{len(model.graph.node):>7}{len(engine.graph.nodes):>8}"
                f"{edge_ms:>12.2f}{ort_ms:>10.2f}{ratio:>8.2f}  {load}",
                flush=True,
            )
    for threads, (ratio, name) in sorted(worst.items()):
        print(f"{threads} thread(s): worst ratio {ratio:.2f} ({name}; target <= 2.0)")


if __name__ == "__main__":
    main()
