"""Structural checks on a Graph: defined inputs, topological order, single producers."""

from __future__ import annotations

from edge.errors import GraphError
from edge.ir.graph import Graph, Value

__all__ = ["verify"]


def verify(graph: Graph, outer: frozenset[int] = frozenset()) -> None:
    """Raise GraphError naming the first node that breaks an invariant.

    Args:
        graph: the graph to check (subgraphs are checked recursively).
        outer: ids of values visible from enclosing scopes.
    """
    defined: set[int] = set(outer) | {id(v) for v in graph.inputs}
    names: dict[str, Value] = {}
    for node in graph.nodes:
        for index, value in enumerate(node.inputs):
            if value is None or value.is_const:
                continue
            if id(value) not in defined:
                raise GraphError(
                    f"node '{node.name}' ({node.op_type}) input {index} '{value.name}' is used before it is defined"
                )
            if (node, index) not in value.uses:
                raise GraphError(f"node '{node.name}': use list of '{value.name}' is stale")
        for sub in node.subgraphs():
            verify(sub, frozenset(defined))
        for value in node.outputs:
            if value.producer is not node:
                raise GraphError(f"node '{node.name}': output '{value.name}' names another producer")
            if value.name in names and names[value.name] is not value:
                raise GraphError(f"tensor name '{value.name}' is produced twice")
            names[value.name] = value
            defined.add(id(value))
    for value in graph.outputs:
        if not value.is_const and id(value) not in defined:
            raise GraphError(f"graph output '{value.name}' is never produced")
