"""IR <-> JSON document + tensor blobs, for the engine file.

Every value of the graph and of its subgraphs goes into one table, so a subgraph node that
reads an outer-scope value simply refers to its index. Attributes and meta entries are
encoded with small tags for what JSON lacks: tensors (blob references), subgraphs, and
numpy scalars.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.engine.format import BlobWriter, EngineBlob
from edge.engine.checks import check_engine_graph
from edge.errors import EdgeError, EngineFormatError
from edge.ir import Graph, Node, Value

__all__ = ["graph_to_document", "graph_from_document", "encode", "decode"]

_TENSOR, _GRAPH, _STRINGS = "__tensor__", "__graph__", "__strings__"


class _Writer:
    def __init__(self, blobs: BlobWriter) -> None:
        self.blobs = blobs
        self.index: dict[int, int] = {}
        self.values: list[dict[str, Any]] = []

    def value_id(self, value: Value) -> int:
        key = id(value)
        if key not in self.index:
            self.index[key] = len(self.values)
            entry: dict[str, Any] = {
                "name": value.name,
                "dtype": None if value.dtype is None else value.dtype.str,
                "shape": None if value.shape is None else list(value.shape),
            }
            if value.is_const:
                entry["const"] = self.encode(value.const)
            if value.meta:
                entry["meta"] = self.encode(value.meta)
            self.values.append(entry)
        return self.index[key]

    def graph(self, graph: Graph) -> dict[str, Any]:
        return {
            "name": graph.name,
            "opset": graph.opset,
            "inputs": [self.value_id(v) for v in graph.inputs],
            "outputs": [self.value_id(v) for v in graph.outputs],
            "nodes": [self.node(n) for n in graph.nodes],
            "meta": self.encode(graph.meta),
        }

    def node(self, node: Node) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "op": node.op_type,
            "name": node.name,
            "inputs": [None if v is None else self.value_id(v) for v in node.inputs],
            "outputs": [self.value_id(v) for v in node.outputs],
        }
        if node.domain:
            entry["domain"] = node.domain
        if node.attrs:
            entry["attrs"] = self.encode(node.attrs)
        if node.meta:
            entry["meta"] = self.encode(node.meta)
        return entry

    def encode(self, item: Any) -> Any:
        if isinstance(item, Graph):
            return {_GRAPH: self.graph(item)}
        if isinstance(item, np.ndarray):
            if item.dtype == object:
                return {_STRINGS: item.tolist(), "shape": list(item.shape)}
            return {_TENSOR: self.blobs.add(item)}
        if isinstance(item, np.generic):
            return item.item()
        if isinstance(item, dict):
            return {str(k): self.encode(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [self.encode(v) for v in item]
        if item is None or isinstance(item, (bool, int, float, str)):
            return item
        raise TypeError(f"cannot store {type(item).__name__} in an engine file")


def graph_to_document(graph: Graph, blobs: BlobWriter) -> dict[str, Any]:
    """Encode ``graph`` (and its subgraphs) as a JSON-able dict, tensors into ``blobs``."""
    writer = _Writer(blobs)
    body = writer.graph(graph)
    return {"values": writer.values, "graph": body}


def encode(item: Any, blobs: BlobWriter) -> Any:
    """Encode a JSON-able structure that may hold arrays (plans, build info)."""
    return _Writer(blobs).encode(item)


class _Reader:
    def __init__(self, document: dict[str, Any], blob: EngineBlob) -> None:
        self.blob = blob
        self.entries = document["values"]
        self.values: list[Value | None] = [None] * len(self.entries)

    def value(self, index: int) -> Value:
        if not 0 <= index < len(self.entries):
            raise EngineFormatError(f"engine is corrupted: value index {index} out of range")
        if self.values[index] is None:
            entry = self.entries[index]
            const = self.decode(entry["const"]) if "const" in entry else None
            shape = None if entry["shape"] is None else tuple(entry["shape"])
            value = Value(entry["name"], entry["dtype"] and np.dtype(entry["dtype"]), shape, const)
            value.meta = self.decode(entry.get("meta", {}))
            self.values[index] = value
        return self.values[index]  # type: ignore[return-value]

    def graph(self, body: dict[str, Any]) -> Graph:
        graph = Graph(
            name=body["name"],
            inputs=[self.value(i) for i in body["inputs"]],
            opset=body["opset"],
        )
        for entry in body["nodes"]:
            node = Node(
                entry["op"],
                [None if i is None else self.value(i) for i in entry["inputs"]],
                [self.value(i) for i in entry["outputs"]],
                self.decode(entry.get("attrs", {})),
                name=entry["name"],
                domain=entry.get("domain", ""),
            )
            node.meta = self.decode(entry.get("meta", {}))
            graph.nodes.append(node)
        graph.outputs = [self.value(i) for i in body["outputs"]]
        graph.meta = self.decode(body.get("meta", {}))
        return graph

    def decode(self, item: Any) -> Any:
        if isinstance(item, dict):
            if _TENSOR in item:
                return self.blob.tensor(item[_TENSOR])
            if _GRAPH in item:
                return self.graph(item[_GRAPH])
            if _STRINGS in item:
                return np.array(item[_STRINGS], dtype=object).reshape(item["shape"])
            return {k: self.decode(v) for k, v in item.items()}
        if isinstance(item, list):
            return [self.decode(v) for v in item]
        return item


def graph_from_document(document: dict[str, Any], blob: EngineBlob) -> Graph:
    """Rebuild the IR from :func:`graph_to_document`'s output (a document that passed the
    schema) and check it against itself (:mod:`edge.engine.checks`)."""
    try:
        graph = _Reader(document, blob).graph(document["graph"])
    except EdgeError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError, MemoryError) as exc:
        raise EngineFormatError(f"engine is corrupted: malformed graph description ({type(exc).__name__}: {str(exc)[:200]})") from None
    check_engine_graph(graph, document)
    return graph


def decode(item: Any, blob: EngineBlob) -> Any:
    """Inverse of :func:`encode`."""
    try:
        return _Reader({"values": []}, blob).decode(item)
    except EdgeError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, RecursionError, MemoryError) as exc:
        raise EngineFormatError(f"engine is corrupted: malformed build record ({type(exc).__name__}: {str(exc)[:200]})") from None
