"""Graph optimizer benchmark: node counts, build (optimize) time and CPU latency before/after.

For each model (the 9 light models of the onnx wheel with seeded random weights, and the
test-model builders of tests/models.py): nodes before and after ``edge.passes.optimize``,
how many of the remaining nodes are fused ops, the optimize time, and the CPU interpreter's
median latency over ``--repeats`` runs (after one warm-up) before and after, all in one
process on the same inputs, the two graphs' runs alternating in blocks so that both see the same load.
Replaces (or appends) the "Graph optimizer" section of docs/benchmarks.md with the output.

    python benchmarks/optimizer.py [--repeats 5] [--models resnet50,transformer_encoder] [--no-docs]
"""

from __future__ import annotations

import argparse
import datetime
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.cpu_vs_onnxruntime import block_medians  # noqa: E402
from benchmarks.docs import write_section  # noqa: E402
from benchmarks.machine import describe  # noqa: E402
from edge.frontend.onnx_import import load_onnx  # noqa: E402
from edge.ir import Graph  # noqa: E402
from edge.passes import optimize  # noqa: E402
from edge.runtime.interpreter import Schedule  # noqa: E402
from tests.conftest import LIGHT_DIR, LIGHT_MODELS  # noqa: E402
from tests.models import ALL_BUILDERS, randomize_constant_of_shape  # noqa: E402

SECTION = "## Graph optimizer"


def _graph(name: str) -> Graph:
    if name in ALL_BUILDERS:
        return load_onnx(ALL_BUILDERS[name]())
    graph = load_onnx(onnx.load(LIGHT_DIR / f"light_{name}.onnx"))
    randomize_constant_of_shape(graph)
    return graph


def _machine() -> str:
    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    return f"- uname: `{uname}`\n- {describe()}"


def run(models: list[str], repeats: int, out: io.TextIOBase) -> None:
    columns = (("nodes", 7), ("after", 7), ("fused", 7), ("build ms", 10), ("before ms", 11), ("after ms", 10))
    header = f"{'model':<20}" + "".join(f"{title:>{width}}" for title, width in columns) + f"{'speedup':>9}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for name in models:
        original, graph = _graph(name), _graph(name)  # same seed: identical weights
        rng = np.random.default_rng(0)
        inputs = [
            rng.standard_normal(tuple(d if isinstance(d, int) else 1 for d in v.shape)).astype(v.dtype)
            for v in graph.inputs
        ]
        report = optimize(graph)
        fused = sum(1 for n in graph.nodes if len(n.meta.get("origin", [])) > 1)
        first, second = Schedule(original), Schedule(graph)
        before_ms, after_ms = block_medians([lambda: first.run(inputs), lambda: second.run(inputs)], repeats)
        print(
            f"{name:<20}{len(original.nodes):>7}{len(graph.nodes):>7}{fused:>7}{report.seconds * 1e3:>10.1f}"
            f"{before_ms:>11.1f}{after_ms:>10.1f}{before_ms / after_ms:>8.2f}x",
            file=out,
            flush=True,
        )


def _write_docs(table: str, repeats: int) -> None:
    """Replace this benchmark's section of docs/benchmarks.md (or append it), leaving others alone."""
    section = (
        f"{SECTION}\n\n`python benchmarks/optimizer.py --repeats {repeats}`, "
        f"{datetime.date.today().isoformat()}\n\n{_machine()}\n\n"
        "nodes/after: node count before and after `edge.passes.optimize`; fused: nodes that stand for "
        "more than one original ONNX node; build: optimize time; before/after: CPU interpreter median "
        "latency, runs of the two graphs alternating in blocks (batch 1 for the light models). The machine is shared "
        "with other jobs, so single rows are noisy; node counts and build times are exact.\n\n"
        f"```\n{table.rstrip()}\n```\n"
    )
    write_section(SECTION, section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default=",".join([*LIGHT_MODELS, *ALL_BUILDERS]))
    parser.add_argument("--no-docs", action="store_true", help="Print only; leave docs/benchmarks.md alone.")
    args = parser.parse_args()
    buffer = io.StringIO()

    class Tee(io.TextIOBase):
        def write(self, s: str) -> int:
            sys.stdout.write(s)
            return buffer.write(s)

    run(args.models.split(","), args.repeats, Tee())
    if not args.no_docs:
        _write_docs(buffer.getvalue(), args.repeats)


if __name__ == "__main__":
    main()
