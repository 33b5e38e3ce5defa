"""Partitioner benchmark: greedy vs optimized placement per model and profile, and the
partitioner's own run time on a 500-layer model (target: under one second).

Run from the repository root: ``python benchmarks/partitioner.py [--markdown]``. Latencies
are cost-model estimates (INT8 on the DLA, default power mode, the default objective,
optimized graphs), not device measurements.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edge  # noqa: E402
from benchmarks.machine import describe  # noqa: E402
from edge.partitioner import PartitionOptions, plan_partition  # noqa: E402
from edge.passes import optimize  # noqa: E402
from edge.profiles import load_profile  # noqa: E402
from tests.partitioner.models import conv_chain, mobilenet_v2, resnet50, yolo_detector  # noqa: E402

MODELS = {
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "yolo": yolo_detector,
    "yolo (cubic up1)": lambda: yolo_detector(resize_mode="cubic"),
}
PROFILES = ["agx-orin-64gb", "orin-nx-16gb", "agx-xavier", "xavier-nx"]
OPTIONS = PartitionOptions(dla_core=0, gpu_fallback=True, precision="int8")


def placement_rows() -> list[list[str]]:
    rows = []
    for model_name, build in MODELS.items():
        graph = edge.load_onnx(build())
        optimize(graph)
        for profile in PROFILES:
            plan = plan_partition(graph, profile, OPTIONS)
            g, o, c = plan.estimates["greedy"], plan.estimates["optimized"], plan.estimates["gpu_only"]
            rows.append([
                model_name, f"{profile} ({plan.power_mode_name})", str(len(graph.nodes)),
                f"{g.dla_layers}/{g.subgraphs}/{g.transitions}", f"{o.dla_layers}/{o.subgraphs}/{o.transitions}",
                f"{c.latency_ms:.3f}", f"{g.latency_ms:.3f}", f"{o.latency_ms:.3f}", f"{g.latency_ms / o.latency_ms:.2f}x",
            ])
    return rows


def timing_rows(repeats: int = 5) -> list[list[str]]:
    graph = edge.load_onnx(conv_chain(500))
    rows = []
    for profile in ("agx-xavier", "agx-orin-64gb"):
        for mode in load_profile(profile).power_modes[:2]:
            options = PartitionOptions(dla_core=0, gpu_fallback=True, precision="int8", power_mode=mode.id)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                plan = plan_partition(graph, profile, options)
                times.append(time.perf_counter() - start)
            g, o = plan.estimates["greedy"], plan.estimates["optimized"]
            rows.append([f"{profile} ({mode.name})", str(len(graph.nodes)), f"{g.subgraphs}/{g.transitions}",
                         f"{o.subgraphs}/{o.transitions}", f"{min(times) * 1e3:.0f}", f"{sorted(times)[len(times) // 2] * 1e3:.0f}"])
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the docs/benchmarks.md section")
    args = parser.parse_args()
    placement = _table(
        ["model", "profile (mode)", "layers", "greedy DLA layers/subgraphs/transitions", "optimized DLA/subgraphs/transitions",
         "GPU-only ms", "greedy ms", "optimized ms", "greedy/optimized"],
        placement_rows(),
    )
    timing = _table(["profile (mode)", "layers", "greedy subgraphs/transitions", "optimized subgraphs/transitions",
                     "min ms", "median ms"], timing_rows())
    machine = f"{platform.node() or 'host'}: {describe()}"
    text = (
        f"## Partitioner\n\n{date.today().isoformat()}, {machine}. `python benchmarks/partitioner.py --markdown`.\n"
        "Estimated latencies from the cost model (INT8 on DLA core 0 with GPU fallback, each profile's default power\n"
        f"mode, the default `{OPTIONS.objective}` objective bounded by the greedy latency, graphs after `edge.passes.optimize`);\n"
        "not measured on a device.\n\n"
        f"{placement}\n\nPartitioner run time on a 500-layer model (analysis + greedy + optimizer; target < 1 s):\n\n{timing}\n"
    )
    print(text if args.markdown else text.replace("## Partitioner\n\n", ""))


if __name__ == "__main__":
    main()
