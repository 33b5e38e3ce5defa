"""Runs a pipeline of passes over a Graph: fixed-point loops, timing, verification, reports.

A pass is a named function ``graph -> int`` that rewrites the graph in place and returns how
many changes it made (0 = nothing to do). The manager runs the list in order, repeats each
``fixed_point`` pass until it reports no change, repeats the whole list while any pass still
changes something (fusions expose new folding, folding exposes new fusions), records per-pass
statistics, and — in debug mode or when asked — verifies the IR after every pass. When a pass
fails, the error names the pass and the passes that ran before it on that graph.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edge.errors import EdgeError, GraphError
from edge.frontend.shapes import infer_missing_shapes
from edge.ir import Graph, verify

__all__ = ["Pass", "PassStats", "OptimizeReport", "PassError", "run_passes", "debug_enabled"]


class PassError(GraphError):
    """A pass crashed or left a malformed graph; names the pass and those before it."""


@dataclass(frozen=True)
class Pass:
    """One named graph transformation.

    Attributes:
        name: short identifier printed in reports (``fold_bn``, ``fuse_activation``).
        fn: rewrites the graph in place, returns the number of changes it made.
        kind: "fuse" when a change merges nodes (counted as fused), "simplify" otherwise.
        fixed_point: repeat until ``fn`` reports no change.
    """

    name: str
    fn: Callable[[Graph], int]
    kind: str = "simplify"
    fixed_point: bool = False


@dataclass
class PassStats:
    """Accumulated effect of one pass over every time it ran."""

    name: str
    kind: str
    runs: int = 0
    changes: int = 0
    nodes_removed: int = 0
    seconds: float = 0.0
    nodes_before: int | None = None
    nodes_after: int | None = None

    @property
    def fused(self) -> int:
        return self.changes if self.kind == "fuse" else 0


@dataclass
class OptimizeReport:
    """What optimization did: per-pass stats plus node counts before and after."""

    nodes_before: int
    nodes_after: int = 0
    rounds: int = 0
    seconds: float = 0.0
    passes: list[PassStats] = field(default_factory=list)

    def stats(self, name: str) -> PassStats:
        for entry in self.passes:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def rows(self) -> list[dict[str, object]]:
        """One JSON-ready dict per pass: pass, kind, runs, changes, fused, removed (net nodes),
        nodes_before (before its first run), nodes_after (after its last run), ms."""
        return [
            {
                "pass": s.name,
                "kind": s.kind,
                "runs": s.runs,
                "changes": s.changes,
                "fused": s.fused,
                "removed": s.nodes_removed,
                "nodes_before": s.nodes_before,
                "nodes_after": s.nodes_after,
                "ms": round(s.seconds * 1e3, 2),
            }
            for s in self.passes
        ]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready record (engine build info): totals plus :meth:`rows` as ``passes``."""
        return {
            "nodes_before": self.nodes_before,
            "nodes_after": self.nodes_after,
            "rounds": self.rounds,
            "time_ms": round(self.seconds * 1e3, 3),
            "passes": self.rows(),
        }

    def format(self) -> str:
        """A plain-text table (what ``edgetrt build --verbose`` prints)."""
        header = f"{'pass':<18}{'runs':>5}{'changes':>9}{'fused':>7}{'removed':>9}{'ms':>10}"
        lines = [header, "-" * len(header)]
        for s in self.passes:
            lines.append(
                f"{s.name:<18}{s.runs:>5}{s.changes:>9}{s.fused:>7}{s.nodes_removed:>9}{s.seconds * 1e3:>10.2f}"
            )
        lines.append("-" * len(header))
        lines.append(
            f"nodes {self.nodes_before} -> {self.nodes_after} in {self.rounds} round(s), {self.seconds * 1e3:.1f} ms"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def debug_enabled() -> bool:
    """``EDGE_DEBUG`` set to a non-zero value turns on verification after every pass."""
    return os.environ.get("EDGE_DEBUG", "0") not in ("", "0")


def run_passes(
    graph: Graph,
    passes: Sequence[Pass],
    *,
    check: bool | None = None,
    max_rounds: int = 4,
    max_repeats: int = 16,
    on_pass: Callable[[Pass, Graph, int], None] | None = None,
) -> OptimizeReport:
    """Run ``passes`` over ``graph`` in place.

    Args:
        graph: the graph to rewrite.
        passes: the pipeline, in order.
        check: verify the IR after every pass (default: when ``EDGE_DEBUG`` is set).
        max_rounds: how often the whole list may repeat while something changes.
        max_repeats: cap on repeats of one fixed-point pass.
        on_pass: called after each pass run with (pass, graph, changes) — IR dumps, tracing.

    Returns:
        An :class:`OptimizeReport` with per-pass statistics.

    Raises:
        PassError: a pass raised or broke an IR invariant; the message names the pass and
            the passes that ran before it.
    """
    verify_each = debug_enabled() if check is None else check
    report = OptimizeReport(nodes_before=len(graph.nodes))
    stats = {p.name: PassStats(p.name, p.kind) for p in passes}
    report.passes = list(stats.values())
    history: list[str] = []
    start = time.perf_counter()
    for round_index in range(max_rounds):
        report.rounds = round_index + 1
        changed_round = 0
        for entry in passes:
            for _ in range(max_repeats if entry.fixed_point else 1):
                changes = _run_one(graph, entry, stats[entry.name], history, verify_each)
                if on_pass is not None:
                    on_pass(entry, graph, changes)
                changed_round += changes
                if not changes:
                    break
        if not changed_round:
            break
    report.nodes_after = len(graph.nodes)
    report.seconds = time.perf_counter() - start
    return report


def _run_one(graph: Graph, entry: Pass, stat: PassStats, history: list[str], verify_each: bool) -> int:
    before = len(graph.nodes)
    tick = time.perf_counter()
    try:
        changes = int(entry.fn(graph))
        if changes:
            graph.sort()
            infer_missing_shapes(graph)
        if verify_each:
            verify(graph)
    except EdgeError as exc:
        raise PassError(f"pass '{entry.name}' failed{_after(history)}: {exc}") from exc
    except Exception as exc:  # a bug in a pass: still say where
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PassError(f"pass '{entry.name}' crashed{_after(history)}: {type(exc).__name__}: {message}") from exc
    stat.seconds += time.perf_counter() - tick
    stat.runs += 1
    stat.changes += changes
    stat.nodes_removed += before - len(graph.nodes)
    if stat.nodes_before is None:
        stat.nodes_before = before
    stat.nodes_after = len(graph.nodes)
    history.append(entry.name)
    return changes


def _after(history: list[str]) -> str:
    if not history:
        return " (first pass)"
    recent = list(dict.fromkeys(reversed(history)))[:6]
    return f" (after {', '.join(reversed(recent))})"
