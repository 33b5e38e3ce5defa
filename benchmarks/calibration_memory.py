"""Calibration memory of a ResNet-50-sized model against a Jetson module's budget (issue 21).

Builds ResNet-50 (224x224, dynamic batch, seeded random weights), writes ``--samples``
random inputs as an .npy folder, and calibrates it (entropy2) with ``--calib-batch auto``
sized for the profile's memory (default orin-nano-4gb). Prints the batch auto chose, the
per-sample peak of its probe, the predicted and the measured calibration peak (tracemalloc),
the process's peak resident memory, the budget, and the time; writes the "Calibration
memory" section of docs/benchmarks.md.

    python benchmarks/calibration_memory.py [--profile orin-nano-4gb] [--samples 48] [--batches 1] [--no-docs]
"""

from __future__ import annotations

import argparse
import datetime
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.docs import write_section  # noqa: E402
from benchmarks.machine import describe  # noqa: E402
from benchmarks.networks import resnet  # noqa: E402
from edge.frontend import load_onnx  # noqa: E402
from edge.profiles import load_profile  # noqa: E402
from edge.quant import calibration_for  # noqa: E402

SECTION = "## Calibration memory"
MIB = 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="orin-nano-4gb")
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--batches", type=int, default=1, help="calibrate on this many batches of the auto batch")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    profile = load_profile(args.profile)
    graph = load_onnx(resnet(50, 224, batch="N"))  # type: ignore[arg-type]
    weights = sum(v.const.nbytes for v in graph.values() if v.is_const)
    with tempfile.TemporaryDirectory() as folder:
        rng = np.random.default_rng(0)
        np.save(Path(folder) / "input.npy", rng.standard_normal((args.samples, 3, 224, 224)).astype(np.float32))
        start = time.perf_counter()
        result = calibration_for(graph, folder, batch="auto", memory_bytes=profile.memory_gb * 1e9, max_batches=args.batches)
        seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    sizing = result.sizing
    rows = [
        ("profile memory", f"{profile.memory_gb:g} GB ({args.profile})"),
        ("budget (half, less the process)", f"{sizing['budget'] / MIB:.0f} MiB"),
        ("weights (FP32)", f"{weights / MIB:.0f} MiB"),
        ("probe: per sample", f"{sizing['per_sample'] / MIB:.1f} MiB"),
        ("batch chosen (auto)", str(result.batch)),
        ("predicted calibration peak", f"{sizing['predicted_peak'] / MIB:.0f} MiB"),
        ("measured calibration peak (tracemalloc)", f"{result.peak_memory / MIB:.0f} MiB"),
        ("process peak RSS (weights, runtime, data)", f"{rss / MIB:.0f} MiB"),
        ("batches calibrated", str(result.batches)),
        ("time (probe + calibration)", f"{seconds:.1f} s"),
    ]
    table = "\n".join(["| quantity | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])
    fits = "fits" if rss <= profile.memory_gb * 1e9 else "does NOT fit"
    section = (
        f"{SECTION}\n\n{datetime.date.today()}, {describe()}. ResNet-50 (224x224, dynamic batch, random weights, "
        f"{args.samples} random samples), entropy2 with `--calib-batch auto` for `{args.profile}`: the whole "
        f"process {fits} the module's memory. `python benchmarks/calibration_memory.py`\n\n{table}\n"
    )
    print(section)
    if not args.no_docs:
        write_section(SECTION, section)


if __name__ == "__main__":
    main()
