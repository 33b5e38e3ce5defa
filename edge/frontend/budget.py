"""Memory estimates checked before anything is allocated: one tensor must fit in RAM.

A model or engine may declare dims such as 10^9 that every stage would accept until the
first allocation dies with MemoryError (or the machine swaps). The importer, the constant
folder and the engine reader call these first and refuse with the estimate.
"""

from __future__ import annotations

import math
import os

import numpy as np

from edge.ir import Graph, Value

__all__ = ["physical_memory", "tensor_bytes", "format_bytes", "oversized_tensor"]


def physical_memory() -> int:
    """Bytes of RAM on this machine (sysconf; a large stand-in where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def tensor_bytes(shape: tuple, dtype: np.dtype | None) -> int | None:
    """Exact bytes of a static shape (Python ints: no int64 overflow), else None."""
    if dtype is None or not all(isinstance(d, int) for d in shape):
        return None
    return math.prod(shape) * max(np.dtype(dtype).itemsize, 1)


def format_bytes(nbytes: int) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes} B"


def _describe(value: Value, nbytes: int, limit: int) -> str:
    where = f" (output of node '{value.producer.name}')" if value.producer is not None else ""
    return (
        f"tensor '{value.name}'{where} {value.describe()} would need {format_bytes(nbytes)}, "
        f"more than this machine's {format_bytes(limit)} of RAM"
    )


def oversized_tensor(graph: Graph, limit: int | None = None) -> str | None:
    """A one-line reason when a statically shaped tensor of ``graph`` exceeds ``limit``
    bytes (default: physical RAM), subgraphs included; None when all fit."""
    budget = physical_memory() if limit is None else limit
    values = [*graph.inputs, *(v for node in graph.walk() for v in node.outputs)]
    for value in values:
        if value.shape is None:
            continue
        nbytes = tensor_bytes(value.shape, value.dtype)
        if nbytes is not None and nbytes > budget:
            return _describe(value, nbytes, budget)
    return None
