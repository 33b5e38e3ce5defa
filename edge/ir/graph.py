"""The one IR: Graph / Node / Value, used by every stage from import to runtime.

Values know their producer and their uses, so rewrites are cheap. Nodes carry the ONNX
op type, typed attributes and a ``meta`` dict where later stages record their decisions
(device, precision, tactic, the original ONNX node names a fused node came from).
Values carry dtype, shape (static ints, symbolic strings, or None for unknown) and a
``meta`` dict for per-tensor facts such as INT8 scales.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from edge.errors import GraphError

__all__ = ["Dim", "Shape", "Value", "Node", "Graph"]

Dim = int | str | None
"""One dimension: a static size, a symbolic name (e.g. ``"batch"``), or unknown."""

Shape = tuple[Dim, ...]


class Value:
    """A tensor edge: produced by at most one node (or a graph input / constant)."""

    __slots__ = ("name", "dtype", "shape", "const", "producer", "uses", "meta")

    def __init__(
        self,
        name: str,
        dtype: np.dtype | None = None,
        shape: Shape | None = None,
        const: np.ndarray | None = None,
    ) -> None:
        self.name = name
        self.dtype = np.dtype(dtype) if dtype is not None else None
        self.shape: Shape | None = tuple(shape) if shape is not None else None
        self.const = const
        if const is not None:
            self.dtype = const.dtype
            self.shape = tuple(int(d) for d in const.shape)
        self.producer: Node | None = None
        self.uses: list[tuple[Node, int]] = []
        self.meta: dict[str, Any] = {}

    @property
    def is_const(self) -> bool:
        return self.const is not None

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def is_static(self) -> bool:
        """True when every dimension is a known integer."""
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    @property
    def consumers(self) -> list[Node]:
        seen: dict[int, Node] = {}
        for node, _ in self.uses:
            seen.setdefault(id(node), node)
        return list(seen.values())

    def nbytes(self) -> int | None:
        """Size in bytes when the shape is static, else None."""
        if not self.is_static or self.dtype is None:
            return None
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def describe(self) -> str:
        """``name: float32[1,3,224,224]`` — used by printers and error messages."""
        dims = "?" if self.shape is None else ",".join("?" if d is None else str(d) for d in self.shape)
        dtype = "?" if self.dtype is None else self.dtype.name
        return f"{self.name}: {dtype}[{dims}]"

    def __repr__(self) -> str:
        return f"Value({self.describe()})"


class Node:
    """One operation. ``inputs`` may hold ``None`` for an omitted optional input."""

    __slots__ = ("op_type", "name", "domain", "_inputs", "outputs", "attrs", "meta", "__weakref__")

    def __init__(
        self,
        op_type: str,
        inputs: Sequence[Value | None],
        outputs: Sequence[Value],
        attrs: dict[str, Any] | None = None,
        name: str = "",
        domain: str = "",
    ) -> None:
        self.op_type = op_type
        self.name = name
        self.domain = domain
        self._inputs: list[Value | None] = []
        self.outputs: list[Value] = []
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.meta: dict[str, Any] = {}
        for value in inputs:
            self._append_input(value)
        for value in outputs:
            self.add_output(value)

    # -- inputs ---------------------------------------------------------------------
    @property
    def inputs(self) -> tuple[Value | None, ...]:
        return tuple(self._inputs)

    def _append_input(self, value: Value | None) -> None:
        if value is not None:
            value.uses.append((self, len(self._inputs)))
        self._inputs.append(value)

    def set_input(self, index: int, value: Value | None) -> None:
        """Rewire input ``index`` to ``value``, keeping use lists current."""
        old = self._inputs[index]
        if old is not None:
            old.uses.remove((self, index))
        if value is not None:
            value.uses.append((self, index))
        self._inputs[index] = value

    def set_inputs(self, values: Sequence[Value | None]) -> None:
        self.detach_inputs()
        for value in values:
            self._append_input(value)

    def detach_inputs(self) -> None:
        for index, value in enumerate(self._inputs):
            if value is not None:
                value.uses.remove((self, index))
        self._inputs = []

    def input(self, index: int) -> Value | None:
        """Input ``index`` or None when absent or omitted."""
        return self._inputs[index] if index < len(self._inputs) else None

    # -- outputs --------------------------------------------------------------------
    def add_output(self, value: Value) -> None:
        if value.producer is not None and value.producer is not self:
            raise GraphError(f"value '{value.name}' already produced by node '{value.producer.name}'")
        value.producer = self
        self.outputs.append(value)

    @property
    def origin(self) -> list[str]:
        """Names of the original ONNX nodes this node stands for (fusions merge them)."""
        return self.meta.get("origin", [self.name])

    def subgraphs(self) -> Iterator[Graph]:
        for attr in self.attrs.values():
            if isinstance(attr, Graph):
                yield attr

    def __repr__(self) -> str:
        ins = ", ".join("None" if v is None else v.name for v in self._inputs)
        outs = ", ".join(v.name for v in self.outputs)
        return f"Node({self.op_type} '{self.name}': ({ins}) -> ({outs}))"


class Graph:
    """An ordered list of nodes between graph inputs and outputs.

    Constants (initializers) are Values with ``const`` set and no producer. Subgraphs
    (If/Loop bodies) are Graphs stored in a node attribute; their nodes may read Values of
    the enclosing graph directly (outer-scope capture, as ONNX allows).
    """

    def __init__(
        self,
        nodes: Iterable[Node] = (),
        inputs: Iterable[Value] = (),
        outputs: Iterable[Value] = (),
        name: str = "graph",
        opset: dict[str, int] | None = None,
    ) -> None:
        self.name = name
        self.nodes: list[Node] = list(nodes)
        self.inputs: list[Value] = list(inputs)
        self.outputs: list[Value] = list(outputs)
        self.opset: dict[str, int] = dict(opset or {"": 17})
        self.meta: dict[str, Any] = {}
        self._counter = itertools.count()

    # -- queries --------------------------------------------------------------------
    def values(self) -> list[Value]:
        """Every value used or produced in this graph (not in subgraphs), in order."""
        seen: dict[int, Value] = {}
        for value in self.inputs:
            seen.setdefault(id(value), value)
        for node in self.nodes:
            for value in node.inputs:
                if value is not None:
                    seen.setdefault(id(value), value)
            for value in node.outputs:
                seen.setdefault(id(value), value)
        for value in self.outputs:
            seen.setdefault(id(value), value)
        return list(seen.values())

    def constants(self) -> list[Value]:
        return [v for v in self.values() if v.is_const]

    def value(self, name: str) -> Value:
        for value in self.values():
            if value.name == name:
                return value
        raise GraphError(f"graph '{self.name}' has no tensor named '{name}'")

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise GraphError(f"graph '{self.name}' has no node named '{name}'")

    def op_types(self) -> dict[str, int]:
        """Count of nodes per op type, including nodes inside subgraphs."""
        counts: dict[str, int] = {}
        for node in self.walk():
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
        return counts

    def walk(self) -> Iterator[Node]:
        """Every node, recursing into subgraphs."""
        for node in self.nodes:
            yield node
            for sub in node.subgraphs():
                yield from sub.walk()

    def is_output(self, value: Value) -> bool:
        return any(v is value for v in self.outputs)

    # -- mutation -------------------------------------------------------------------
    def unique_name(self, hint: str) -> str:
        return f"{hint}__{next(self._counter)}"

    def make_value(self, hint: str, dtype: np.dtype | None = None, shape: Shape | None = None) -> Value:
        return Value(self.unique_name(hint), dtype, shape)

    def make_const(self, hint: str, array: np.ndarray) -> Value:
        array = np.asarray(array)
        return Value(self.unique_name(hint), const=array if array.flags.c_contiguous else array.copy(order="C"))

    def insert_before(self, anchor: Node, node: Node) -> None:
        self.nodes.insert(self.nodes.index(anchor), node)

    def remove_node(self, node: Node) -> None:
        """Drop ``node``; its outputs must already be unused."""
        for value in node.outputs:
            if value.uses or self.is_output(value):
                raise GraphError(f"cannot remove node '{node.name}': output '{value.name}' is still used")
        node.detach_inputs()
        self.nodes.remove(node)

    def replace_all_uses(self, old: Value, new: Value) -> None:
        """Point every consumer of ``old`` (and graph outputs) at ``new``.

        When ``old`` is a graph output, ``new`` takes over its name so that the model's
        interface never changes.
        """
        for node, index in list(old.uses):
            node.set_input(index, new)
        if self.is_output(old):
            self.outputs = [new if v is old else v for v in self.outputs]
            old_name = old.name
            old.name = self.unique_name(old_name)
            new.name = old_name

    def sort(self) -> None:
        """Reorder nodes topologically, keeping the existing order wherever it is valid."""
        producer_of = {id(v): n for n in self.nodes for v in n.outputs}
        position = {id(n): i for i, n in enumerate(self.nodes)}
        dependents: dict[int, list[Node]] = {id(n): [] for n in self.nodes}
        waiting: dict[int, int] = {}
        for node in self.nodes:
            deps = {id(producer_of[id(v)]) for v in _all_reads(node) if id(v) in producer_of}
            deps.discard(id(node))
            waiting[id(node)] = len(deps)
            for dep in deps:
                dependents[dep].append(node)
        heap = [(position[id(n)], n) for n in self.nodes if waiting[id(n)] == 0]
        heapq.heapify(heap)
        order: list[Node] = []
        while heap:
            _, node = heapq.heappop(heap)
            order.append(node)
            for consumer in dependents[id(node)]:
                waiting[id(consumer)] -= 1
                if waiting[id(consumer)] == 0:
                    heapq.heappush(heap, (position[id(consumer)], consumer))
        if len(order) != len(self.nodes):
            placed = {id(n) for n in order}
            stuck = [n.name for n in self.nodes if id(n) not in placed][:5]
            raise GraphError(f"graph '{self.name}' has a cycle through nodes {stuck}")
        self.nodes = order

    def __repr__(self) -> str:
        return f"Graph('{self.name}', {len(self.nodes)} nodes)"


def _all_reads(node: Node) -> list[Value]:
    """Values a node reads, including outer-scope values its subgraphs capture."""
    reads = [v for v in node.inputs if v is not None]
    for sub in node.subgraphs():
        reads.extend(captured_values(sub))
    return reads


def captured_values(graph: Graph) -> list[Value]:
    """Values a subgraph reads from enclosing scopes (neither its inputs, consts nor its own)."""
    local: set[int] = {id(v) for v in graph.inputs}
    for node in graph.walk():
        local.update(id(v) for v in node.outputs)
    for sub_node in graph.walk():
        for sub in sub_node.subgraphs():
            local.update(id(v) for v in sub.inputs)
    captured: dict[int, Value] = {}
    for node in graph.walk():
        for value in node.inputs:
            if value is not None and id(value) not in local and not value.is_const:
                captured.setdefault(id(value), value)
    for value in graph.outputs:
        if id(value) not in local and not value.is_const:
            captured.setdefault(id(value), value)
    return list(captured.values())
