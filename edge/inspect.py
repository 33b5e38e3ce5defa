"""Describe a model or an engine: header, I/O and one row per layer (used by ``inspect``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edge.engine import MAGIC, Engine, load
from edge.frontend import load_onnx
from edge.ir import Graph, Value

__all__ = ["describe", "layer_rows", "is_engine_file"]


def is_engine_file(path: str | os.PathLike) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(MAGIC)) == MAGIC


def _value(value: Value | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {
        "name": value.name,
        "dtype": None if value.dtype is None else value.dtype.name,
        "shape": None if value.shape is None else list(value.shape),
        "const": value.is_const,
    }


def layer_rows(graph: Graph) -> list[dict[str, Any]]:
    """One JSON-able row per node: name, op, I/O tensors, device, precision, origin."""
    rows = []
    for node in graph.nodes:
        rows.append(
            {
                "name": node.name,
                "op": node.op_type if not node.domain else f"{node.domain}::{node.op_type}",
                "inputs": [_value(v) for v in node.inputs],
                "outputs": [_value(v) for v in node.outputs if not v.meta.get("omitted")],
                "device": node.meta.get("device"),
                "precision": node.meta.get("precision"),
                "precision_note": node.meta.get("precision_note"),
                "tactic": node.meta.get("tactic"),
                "origin": node.origin,
            }
        )
    return rows


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """Header (engines only), inputs, outputs and layer rows of a model or engine file."""
    if is_engine_file(path):
        engine: Engine = load(path)
        graph, header, build = engine.graph, engine.header, engine.build
        kind = "engine"
    else:
        graph, header, build, kind = load_onnx(path), {}, {}, "onnx"
    return {
        "file": str(Path(path)),
        "kind": kind,
        "header": header,
        "build": {k: v for k, v in build.items() if k in ("config", "timings_s", "optimizer", "memory", "partition_summary")},
        "inputs": [_value(v) for v in graph.inputs],
        "outputs": [_value(v) for v in graph.outputs],
        "op_counts": graph.op_types(),
        "layers": layer_rows(graph),
    }
