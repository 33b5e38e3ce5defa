"""Access to the numba-compiled kernels (``edge.kernels.cpu.jit``), which are optional."""

from __future__ import annotations

import functools
import importlib
import os
from types import ModuleType

__all__ = ["compiled"]


def compiled() -> ModuleType | None:
    """The compiled kernels module, or None when numba is missing or ``EDGETRT_JIT=0``."""
    if os.environ.get("EDGETRT_JIT", "1") == "0":
        return None
    return _load()


@functools.cache
def _load() -> ModuleType | None:
    try:
        return importlib.import_module("edge.kernels.cpu.jit")
    except ImportError:  # numba is optional
        return None
