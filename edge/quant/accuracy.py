"""How faithful a reduced-precision engine is: top-1 agreement with FP32, output cosine, and the
relative L2 error ``--best`` holds within its tolerance.

The numbers accumulate over batches (:class:`OutputGap`), so no batch's outputs are kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from edge.errors import CalibrationError

__all__ = ["Agreement", "Deviation", "OutputGap", "deviation", "top1_agreement"]


class OutputGap:
    """Running sums comparing one output with its reference over batches: the cosine of the
    two taken whole, the relative L2 error ``||actual - expected|| / ||expected||`` and the
    largest absolute difference. A non-finite difference (NaN or inf where the reference has
    none) makes the errors infinite and the cosine NaN."""

    def __init__(self) -> None:
        self.dot = self.norm_expected = self.norm_actual = self.squared_error = self._max = 0.0
        self.finite = True

    def add(self, expected: np.ndarray, actual: np.ndarray) -> None:
        expected, actual = np.asarray(expected, np.float64), np.asarray(actual, np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            difference = np.where(expected == actual, 0.0, actual - expected)  # inf == inf is no error
        if not np.isfinite(difference).all():
            self.finite = False
            return
        self.dot += float(np.vdot(expected, actual))
        self.norm_expected += float(np.vdot(expected, expected))
        self.norm_actual += float(np.vdot(actual, actual))
        self.squared_error += float(np.vdot(difference, difference))
        self._max = max(self._max, float(np.abs(difference).max(initial=0.0)))

    @property
    def max_error(self) -> float:
        return self._max if self.finite else float("inf")

    @property
    def cosine(self) -> float:
        if not self.finite:
            return float("nan")
        if self.norm_expected and self.norm_actual:
            return float(self.dot / np.sqrt(self.norm_expected * self.norm_actual))
        return float(self.norm_expected == self.norm_actual)

    @property
    def relative(self) -> float:
        """``||actual - expected|| / ||expected||`` (the absolute L2 error when the reference is zero)."""
        if not self.finite:
            return float("inf")
        return float(np.sqrt(self.squared_error / (self.norm_expected or 1.0)))


@dataclass(frozen=True)
class Agreement:
    """Over ``samples`` rows of an output: the share whose argmax (last axis) matches the
    reference's, and the cosine similarity of the two outputs taken whole."""

    output: str
    samples: int
    top1: float
    cosine: float


def top1_agreement(reference, candidate, batches: Iterable[list[np.ndarray]], output: str | None = None) -> Agreement:
    """Run both execution contexts (``edge.runtime.Context``) on every batch (inputs in the
    engines' input order) and compare ``output`` (default: the first).

    Raises:
        CalibrationError: no batch, or an output the engines do not have.
    """
    names = [v.name for v in reference.engine.graph.inputs]
    outputs = [v.name for v in reference.engine.graph.outputs]
    chosen = output or outputs[0]
    if chosen not in outputs:
        raise CalibrationError(f"output '{chosen}' is not one of the model's outputs {outputs}")
    agree = rows = 0
    gap = OutputGap()
    for batch in batches:
        feeds = dict(zip(names, batch))
        expected, actual = np.asarray(reference.run(feeds)[chosen]), np.asarray(candidate.run(feeds)[chosen])
        flat_expected, flat_actual = expected.reshape(-1, expected.shape[-1]), actual.reshape(-1, actual.shape[-1])
        agree += int(np.count_nonzero(flat_expected.argmax(axis=1) == flat_actual.argmax(axis=1)))
        rows += len(flat_expected)
        gap.add(expected, actual)
    if rows == 0:
        raise CalibrationError("accuracy check needs at least one batch")
    return Agreement(chosen, rows, agree / rows, gap.cosine)


@dataclass(frozen=True)
class Deviation:
    """How far a model's outputs moved from their reference, taking the worst output for each
    number: the largest relative L2 error (the one ``--best`` compares with its tolerance),
    the lowest cosine and the largest absolute difference."""

    relative: float
    cosine: float
    max_error: float


def deviation(expected: Sequence[Sequence[np.ndarray]], actual: Sequence[Sequence[np.ndarray]]) -> Deviation:
    """Compare runs (one list of outputs per batch, in output order) with the reference runs."""
    gaps: list[OutputGap] = []
    for expected_outputs, actual_outputs in zip(expected, actual, strict=True):
        gaps = gaps or [OutputGap() for _ in expected_outputs]
        for gap, wanted, got in zip(gaps, expected_outputs, actual_outputs, strict=True):
            gap.add(wanted, got)
    if not gaps:
        raise CalibrationError("accuracy check needs at least one batch")
    cosine = float("nan") if not all(g.finite for g in gaps) else min(g.cosine for g in gaps)
    return Deviation(max(g.relative for g in gaps), cosine, max(g.max_error for g in gaps))
