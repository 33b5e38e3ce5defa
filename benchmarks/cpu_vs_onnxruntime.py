"""CPU backend vs onnxruntime on the light models and a ResNet-50-shaped model.

Both run on the same machine in the same process with the same thread count; each model's
number is the median of repeated runs after a warm-up. Prints one row per model with the
ratio edgetrt / onnxruntime (target: no model above 2.0).

    python benchmarks/cpu_vs_onnxruntime.py [--repeats 10] [--models resnet50,vgg19]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edge  # noqa: E402
from tests.conftest import LIGHT_DIR, LIGHT_MODELS  # noqa: E402
from tests.test_light_models import randomize_weights  # noqa: E402


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--models", default=",".join(LIGHT_MODELS))
    args = parser.parse_args()

    import onnxruntime as ort

    threads = os.cpu_count() or 1
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    print(f"machine: {machine()}; onnxruntime {ort.__version__} with {threads} threads")
    print(f"{'model':<16}{'nodes':>7}{'layers':>8}{'edgetrt ms':>12}{'ort ms':>10}{'ratio':>8}")
    worst = 0.0
    for name in args.models.split(","):
        model = randomize_weights(onnx.load(LIGHT_DIR / f"light_{name}.onnx"))
        feeds = {}
        inits = {t.name for t in model.graph.initializer}
        for value in model.graph.input:
            if value.name not in inits:
                shape = tuple(d.dim_value or 1 for d in value.type.tensor_type.shape.dim)
                feeds[value.name] = np.random.default_rng(0).random(shape, np.float32)
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        engine = edge.build(model.SerializeToString())
        context = engine.create_context()
        ort_ms = _median_ms(lambda: session.run(None, feeds), args.repeats)
        edge_ms = _median_ms(lambda: context.run(feeds), args.repeats)
        ratio = edge_ms / ort_ms
        worst = max(worst, ratio)
        print(f"{name:<16}{len(model.graph.node):>7}{len(engine.graph.nodes):>8}{edge_ms:>12.2f}{ort_ms:>10.2f}{ratio:>8.2f}")
    print(f"worst ratio {worst:.2f} (target <= 2.0)")


if __name__ == "__main__":
    main()
