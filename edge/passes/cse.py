"""Common-subexpression elimination: equal constants and equal nodes are computed once.

Two constants are equal when dtype, shape and bytes match (only small ones are compared:
large weights are almost never duplicated and hashing them costs build time). Two nodes are
equal when op type, domain, attributes and input values (by identity, after constants were
merged) match; the later one is replaced by the earlier. Nodes with subgraphs and random ops
are never merged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.ir import Graph, Node, Value
from edge.passes.rewrite import replace_value, replacement_refusal

__all__ = ["eliminate_common_subexpressions", "MAX_CONST_ELEMENTS"]

MAX_CONST_ELEMENTS = 4096
_NEVER = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}


def eliminate_common_subexpressions(graph: Graph) -> int:
    """Merge duplicates; returns how many constants and nodes were merged."""
    return _merge_constants(graph) + _merge_nodes(graph)


def _merge_constants(graph: Graph) -> int:
    merged = 0
    seen: dict[tuple[Any, ...], Value] = {}
    for value in graph.constants():
        assert value.const is not None
        if value.const.size > MAX_CONST_ELEMENTS or graph.is_output(value):
            continue
        key = (value.const.dtype.str, value.const.shape, value.const.tobytes())
        first = seen.setdefault(key, value)
        if first is not value and value.uses:
            for node, index in list(value.uses):
                node.set_input(index, first)
            merged += 1
    return merged


def _merge_nodes(graph: Graph) -> int:
    merged = 0
    seen: dict[tuple[Any, ...], Node] = {}
    for node in list(graph.nodes):
        if node.op_type in _NEVER or any(True for _ in node.subgraphs()):
            continue
        key = (
            node.op_type,
            node.domain,
            tuple(None if v is None else id(v) for v in node.inputs),
            len(node.outputs),
            tuple(sorted((k, _hashable(a)) for k, a in node.attrs.items())),
        )
        first = seen.setdefault(key, node)
        if first is node:
            continue
        pairs = list(zip(node.outputs, first.outputs))
        if any(replacement_refusal(graph, old, new) for old, new in pairs if old.uses or graph.is_output(old)):
            continue
        for old, new in pairs:
            replace_value(graph, old, new)
        graph.remove_node(node)
        merged += 1
    return merged


def _hashable(attr: Any) -> Any:
    if isinstance(attr, np.ndarray):
        return (attr.dtype.str, attr.shape, attr.tobytes())
    if isinstance(attr, (list, tuple)):
        return tuple(_hashable(a) for a in attr)
    return attr
