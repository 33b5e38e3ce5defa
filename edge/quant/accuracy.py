"""How faithful a reduced-precision engine is: top-1 agreement with FP32 and output cosine."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from edge.errors import CalibrationError

__all__ = ["Agreement", "top1_agreement"]


@dataclass(frozen=True)
class Agreement:
    """Over ``samples`` rows of an output: the share whose argmax (last axis) matches the
    reference's, the cosine similarity of the two outputs taken whole, and their largest
    absolute difference."""

    output: str
    samples: int
    top1: float
    cosine: float
    max_error: float = 0.0


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
    dot = norm_ref = norm_cand = max_error = 0.0
    for batch in batches:
        feeds = dict(zip(names, batch))
        expected = np.asarray(reference.run(feeds)[chosen], np.float64)
        actual = np.asarray(candidate.run(feeds)[chosen], np.float64)
        flat_expected, flat_actual = expected.reshape(-1, expected.shape[-1]), actual.reshape(-1, actual.shape[-1])
        agree += int(np.count_nonzero(flat_expected.argmax(axis=1) == flat_actual.argmax(axis=1)))
        rows += len(flat_expected)
        dot += float(np.vdot(expected, actual))
        norm_ref += float(np.vdot(expected, expected))
        norm_cand += float(np.vdot(actual, actual))
        max_error = max(max_error, float(np.abs(expected - actual).max(initial=0.0)))
    if rows == 0:
        raise CalibrationError("accuracy check needs at least one batch")
    cosine = dot / np.sqrt(norm_ref * norm_cand) if norm_ref and norm_cand else float(norm_ref == norm_cand)
    return Agreement(chosen, rows, agree / rows, float(cosine), max_error)
