"""Fit the cost model's constants to published Jetson Orin numbers and report how well they fit.

Run from the repository root: ``python benchmarks/cost_model_fit.py [--write] [--markdown]``.
The calibration rows are benchmarks/data/jetson_calibration.yaml (each citing its source); the
networks are benchmarks/networks.py at the published shapes, optimized as ``edgetrt build``
optimizes them. Prints every row with its prediction and ratio, then per engine (GPU, DLA,
DLA + GPU fallback) the median error, the worst factor and the share of rows within 25 %.
``--write`` stores the fitted constants in the cost sections of the Orin profiles (same GPU and
DLA generation; only AGX Orin 64GB rows exist, the other modules' sources say so).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edge  # noqa: E402
from benchmarks.machine import describe  # noqa: E402
from benchmarks.networks import build  # noqa: E402
from edge.ir import Graph  # noqa: E402
from edge.partitioner import PartitionOptions  # noqa: E402
from edge.partitioner.cost import CostModel, WorkArrays, network_work  # noqa: E402
from edge.partitioner.fit import Observation, error_summary, fit_constants, with_values  # noqa: E402
from edge.partitioner.partition import Analysis, evaluate, greedy, group  # noqa: E402
from edge.partitioner.rules import dla_precision  # noqa: E402
from edge.passes import optimize  # noqa: E402
from edge.profiles import DeviceProfile, PowerMode, load_profile, replace_cost_section  # noqa: E402
from edge.profiles.schema import CostSpec  # noqa: E402

DATA = ROOT / "benchmarks" / "data" / "jetson_calibration.yaml"
ORIN_PROFILES = ["agx-orin-64gb", "agx-orin-32gb", "orin-nx-16gb", "orin-nx-8gb", "orin-nano-8gb", "orin-nano-4gb"]
FITTED = [
    "gpu.launch_ms", "gpu.memory_eff", "gpu.int8_factor", "gpu.eff_conv", "gpu.eff_pointwise", "gpu.eff_stem",
    "dla.eff_conv", "dla.eff_pointwise", "dla.eff_depthwise", "dla.eff_stem", "dla.eff_other", "dla.bandwidth_gbps",
    "dla.layer_ms", "dla.image_ms", "dla.submit_ms", "dla.sparse_speedup", "dla.transition_sync_ms", "concurrency_slowdown",
]
ENGINE_TITLES = {"gpu": "GPU", "dla": "DLA", "dla_fallback": "DLA + GPU fallback"}


@lru_cache(maxsize=None)
def network(name: str, batch: int) -> Graph:
    graph = edge.load_onnx(build(name, batch))
    optimize(graph)
    return graph


@lru_cache(maxsize=None)
def work(name: str, batch: int) -> tuple[WorkArrays, tuple[str, ...]]:
    layers = network(name, batch).nodes
    return WorkArrays(network_work(layers)), tuple(dla_precision(n, "int8") for n in layers)


def row_mode(profile: DeviceProfile, row: dict) -> PowerMode:
    """The row's power mode, or MAXN with the clocks the source states."""
    if "mode" in row:
        return profile.power_mode(row["mode"])
    clocks = row["clocks"]
    maxn = profile.power_mode("MAXN")
    return dataclasses.replace(
        maxn,
        gpu_max_mhz=clocks.get("gpu_mhz", maxn.gpu_max_mhz),
        dla_max_mhz=clocks.get("dla_mhz", maxn.dla_max_mhz),
        emc_max_mhz=clocks.get("emc_mhz", maxn.emc_max_mhz),
    )


def predictor(profile: DeviceProfile, row: dict) -> Callable[[CostSpec], float]:
    """How the model predicts one calibration row."""
    mode = row_mode(profile, row)
    batch, metric = int(row["batch"]), row["metric"]
    if row["engine"] == "dla_fallback":
        options = PartitionOptions(dla_core=0, gpu_fallback=True, precision=row["precision"], objective="latency")
        analysis = Analysis(network(row["network"], batch), profile, mode, options)
        placement = greedy(analysis)[0]
        groups = group(analysis, placement)

        def fallback(cost: CostSpec) -> float:
            analysis.reprice(CostModel(profile, mode, cost))
            return evaluate(analysis, placement, groups)[0].latency_ms

        return fallback
    arrays, precisions = work(row["network"], batch)
    engines = int(row.get("engines", 1))
    sparse = bool(row.get("sparse", False))

    def latency(cost: CostSpec) -> float:
        model = CostModel(profile, mode, cost)
        if row["engine"] == "gpu":
            ms = float(model.gpu_times(arrays, row["precision"]).sum())
        else:
            if metric == "layer_ms":
                return float(model.dla_image_times(arrays, precisions, sparse)[row["layer"]])
            ms = float(model.dla_times(arrays, precisions, sparse).sum()) + model.dla_subgraph_ms(batch)
        ms *= model.concurrent_factor(engines)
        return engines * batch * 1e3 / ms if metric == "throughput" else ms

    return latency


def observations(profile: DeviceProfile, rows: list[dict]) -> list[Observation]:
    return [Observation(r["id"], r["engine"], float(r["value"]), predictor(profile, r)) for r in rows]


def table(rows: list[dict], fitted: list[tuple[str, str, float, float]], markdown: bool) -> list[str]:
    head = ["id", "engine", "network", "batch", "mode / clocks", "metric", "published", "predicted", "ratio"]
    lines = []
    if markdown:
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    else:
        lines.append(f"{'id':6} {'engine':13} {'network':28} {'bs':>3} {'mode/clocks':22} {'metric':10} {'published':>10} {'predicted':>10} {'ratio':>6}")
    for row, (_, engine, measured, predicted) in zip(rows, fitted):
        where = row.get("mode") or ",".join(f"{k}={v}" for k, v in row["clocks"].items())
        metric = row["metric"] + (" sparse" if row.get("sparse") else "")
        cells = [row["id"], ENGINE_TITLES[engine], row["network"], str(row["batch"]), where, metric,
                 f"{measured:.4g}", f"{predicted:.4g}", f"{predicted / measured:.2f}"]
        lines.append("| " + " | ".join(cells) + " |" if markdown else
                     f"{cells[0]:6} {engine:13} {cells[2]:28} {cells[3]:>3} {cells[4]:22} {cells[5]:10} {cells[6]:>10} {cells[7]:>10} {cells[8]:>6}")
    return lines


def summary_lines(fitted: list[tuple[str, str, float, float]], markdown: bool) -> list[str]:
    stats = error_summary(fitted)
    lines = ["", "| engine | rows | median error | worst | within 25 % |", "|---|---|---|---|---|"] if markdown else ["", "per engine:"]
    for engine, s in stats.items():
        cells = [ENGINE_TITLES[engine], f"{s['rows']:.0f}", f"{100 * s['median_error']:.1f} %", f"{s['worst_factor']:.2f}x", f"{100 * s['within_25']:.0f} %"]
        lines.append("| " + " | ".join(cells) + " |" if markdown else f"  {cells[0]:20} rows {cells[1]:>3}  median error {cells[2]:>7}  worst {cells[3]:>6}  within 25 %: {cells[4]}")
    target = all(s["within_25"] >= 0.8 and s["worst_factor"] <= 2.0 for s in stats.values())
    lines.append("")
    lines.append(f"target (per engine >= 80 % of rows within 25 %, none off by more than 2x): {'met' if target else 'NOT met'}")
    return lines


def write_profiles(fitted: CostSpec, fit_source: str) -> None:
    """Store the fitted constants in the Orin profiles; modules other than AGX Orin 64GB say they inherit them."""
    for name in ORIN_PROFILES:
        path = ROOT / "profiles" / f"{name}.yaml"
        current = load_profile(str(path)).cost
        values = {}
        for dotted in FITTED:
            head, _, tail = dotted.partition(".")
            if tail and getattr(current, head) is None:
                continue
            holder = getattr(fitted, head) if tail else fitted
            values[dotted] = getattr(holder, tail or head).value
        source = fit_source if name == "agx-orin-64gb" else f"{fit_source}; fitted on AGX Orin 64GB (same Ampere GPU / DLA 2.0), not on this module"
        updated = with_values(current, values, source)
        path.write_text(replace_cost_section(path.read_text(), updated))
        print(f"wrote {path.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="store the fitted constants in the Orin profiles")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown (for docs/benchmarks.md)")
    args = parser.parse_args()
    data = yaml.safe_load(DATA.read_text())
    profile = load_profile(data["profile"])
    rows = data["rows"]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    source = f"fit: benchmarks/cost_model_fit.py to benchmarks/data/jetson_calibration.yaml ({len(rows)} rows, {stamp})"
    result = fit_constants(profile.cost, observations(profile, rows), FITTED, source)
    print(f"# Cost model fit, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, on {describe()}")
    print(f"# profile {profile.name}; {len(rows)} calibration rows; command: python benchmarks/cost_model_fit.py{' --markdown' if args.markdown else ''}")
    print("\n".join(table(rows, result.rows, args.markdown)))
    print("\n".join(summary_lines(result.rows, args.markdown)))
    print("\nfitted constants:")
    for dotted in FITTED:
        head, _, tail = dotted.partition(".")
        holder = getattr(result.cost, head) if tail else result.cost
        print(f"  {dotted:24} {getattr(holder, tail or head).value:.6g}")
    if args.write:
        write_profiles(result.cost, source)


if __name__ == "__main__":
    main()
