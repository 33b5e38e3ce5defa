"""Compact, diffable text form of a Graph, used by ``--verbose``, tests and reports."""

from __future__ import annotations

import numpy as np

from edge.ir.graph import Graph, Node

__all__ = ["format_graph", "format_node"]


def _attr(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"tensor<{value.dtype.name}{list(value.shape)}>"
    if isinstance(value, Graph):
        return f"graph<{len(value.nodes)} nodes>"
    return repr(value)


def format_node(node: Node) -> str:
    ins = ", ".join("_" if v is None else ("%" if not v.is_const else "$") + v.name for v in node.inputs)
    outs = ", ".join("%" + v.describe() for v in node.outputs)
    attrs = ", ".join(f"{k}={_attr(v)}" for k, v in sorted(node.attrs.items()))
    return f"{outs} = {node.op_type}[{attrs}]({ins})  # {node.name}"


def format_graph(graph: Graph) -> str:
    lines = [f"graph {graph.name}({', '.join(v.describe() for v in graph.inputs)}) {{"]
    lines += ["  " + format_node(n) for n in graph.nodes]
    lines.append(f"  return {', '.join(v.name for v in graph.outputs)}")
    lines.append("}")
    return "\n".join(lines)
