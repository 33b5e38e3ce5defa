"""Execution contexts: per-run state on top of an engine's shared weights and schedule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from edge.errors import InputError

if TYPE_CHECKING:
    from edge.engine import Engine, TensorSpec

__all__ = ["ExecutionContext", "check_inputs"]


class ExecutionContext:
    """Runs an engine on named numpy arrays. Use one context per thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._schedule = engine.schedule()

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; returns outputs by name.

        Raises:
            InputError: unknown, missing, mistyped or misshaped input, naming it.
        """
        specs = self.engine.inputs
        check_inputs(specs, feeds)
        arrays = self._schedule.run([np.ascontiguousarray(feeds[s.name]) for s in specs])
        return {spec.name: array for spec, array in zip(self.engine.outputs, arrays)}


def check_inputs(specs: list[TensorSpec], feeds: Mapping[str, np.ndarray]) -> None:
    """Validate names, dtypes and shapes (symbolic dims must agree across inputs)."""
    names = [s.name for s in specs]
    unknown = [n for n in feeds if n not in names]
    if unknown:
        raise InputError(f"unknown input '{unknown[0]}'; the engine's inputs are {names}")
    symbols: dict[str, tuple[int, str]] = {}
    for spec in specs:
        if spec.name not in feeds:
            raise InputError(f"missing input '{spec.name}' ({spec.describe()})")
        array = feeds[spec.name]
        if not isinstance(array, np.ndarray):
            raise InputError(f"input '{spec.name}' must be a numpy array, got {type(array).__name__}")
        if array.dtype != spec.dtype:
            raise InputError(f"input '{spec.name}' has dtype {array.dtype}, the engine expects {spec.dtype}")
        expected = "x".join("?" if d is None else str(d) for d in spec.shape)
        actual = "x".join(str(d) for d in array.shape)
        if array.ndim != len(spec.shape):
            raise InputError(f"input '{spec.name}' has shape {actual} (rank {array.ndim}), the engine expects {expected}")
        for axis, (want, got) in enumerate(zip(spec.shape, array.shape)):
            if isinstance(want, int) and want != got:
                raise InputError(f"input '{spec.name}' has shape {actual}, the engine expects {expected} (dim {axis})")
            if isinstance(want, str):
                seen = symbols.setdefault(want, (got, spec.name))
                if seen[0] != got:
                    raise InputError(
                        f"input '{spec.name}' dim {axis} '{want}' is {got}, but input '{seen[1]}' set it to {seen[0]}"
                    )
