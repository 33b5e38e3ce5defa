"""Dead-code elimination: drop nodes none of whose outputs reach a graph output."""

from __future__ import annotations

from edge.ir import Graph

__all__ = ["eliminate_dead_code"]


def eliminate_dead_code(graph: Graph) -> int:
    """Remove unused nodes (consumers first, so whole dead chains go in one sweep), recursing into subgraphs.

    Graph inputs are never removed: they are the model's interface even when unused.
    Returns the number of nodes removed.
    """
    removed = 0
    for node in reversed(list(graph.nodes)):
        if any(v.uses or graph.is_output(v) for v in node.outputs):
            for sub in node.subgraphs():
                removed += eliminate_dead_code(sub)
            continue
        graph.remove_node(node)
        removed += 1
    return removed
