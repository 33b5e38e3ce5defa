"""Fitting cost-model constants to observed times (published numbers or a board's trtexec profiles).

An ``Observation`` pairs a measured value with a function that predicts it from a candidate
``CostSpec``. ``fit_constants`` moves the named constants (in log space, within bounds) to
minimise the log error of every prediction with scipy's robust least squares, so a
prediction 2x too high weighs like one 2x too low and a few outliers do not drag the rest.
Every engine (GPU, DLA, DLA + fallback) weighs the same in total, however many rows it has.
The fitted constants get ``source`` set to the caller's description of the fit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from edge.errors import EdgeError
from edge.profiles.schema import Constant, CostSpec

__all__ = ["Observation", "FitResult", "FIT_BOUNDS", "constant", "with_values", "fit_constants", "error_summary"]

FIT_BOUNDS: dict[str, tuple[float, float]] = {
    "gpu.launch_ms": (0.001, 0.1),
    "gpu.memory_eff": (0.2, 1.0),
    "gpu.int8_factor": (0.2, 1.5),
    "gpu.eff_conv": (0.02, 1.0),
    "gpu.eff_pointwise": (0.02, 1.0),
    "gpu.eff_depthwise": (0.005, 1.0),
    "gpu.eff_stem": (0.01, 1.0),
    "gpu.eff_gemm": (0.02, 1.0),
    "gpu.eff_elementwise": (0.05, 1.0),
    "gpu.eff_pool": (0.05, 1.0),
    "gpu.eff_data": (0.05, 1.0),
    "gpu.eff_norm": (0.01, 1.0),
    "dla.eff_conv": (0.05, 1.0),
    "dla.eff_pointwise": (0.02, 1.0),
    "dla.eff_depthwise": (0.005, 1.0),
    "dla.eff_stem": (0.02, 1.0),
    "dla.eff_other": (0.01, 1.0),
    "dla.bandwidth_gbps": (5.0, 200.0),
    "dla.layer_ms": (0.0005, 0.2),
    "dla.image_ms": (0.0005, 1.0),
    "dla.submit_ms": (0.001, 1.0),
    "dla.sparse_speedup": (1.0, 2.0),
    "dla.transition_sync_ms": (0.001, 1.0),
    "concurrency_slowdown": (0.0005, 0.5),
}
"""Dotted constant name -> (low, high): the physically sensible range a fit may move it in."""


@dataclass(frozen=True)
class Observation:
    """One measured value and how the model predicts it."""

    id: str
    engine: str
    measured: float
    predict: Callable[[CostSpec], float]


@dataclass(frozen=True)
class FitResult:
    """The fitted constants and, per observation, (id, engine, measured, predicted)."""

    cost: CostSpec
    rows: list[tuple[str, str, float, float]]


def constant(cost: CostSpec, name: str) -> Constant:
    """The constant at a dotted name (``"dla.layer_ms"``)."""
    value: object = cost
    for part in name.split("."):
        value = getattr(value, part, None)
        if value is None:
            raise EdgeError(f"cost constant '{name}' does not exist in this profile")
    assert isinstance(value, Constant)
    return value


def with_values(cost: CostSpec, values: Mapping[str, float], source: str) -> CostSpec:
    """A copy of ``cost`` with the named constants set (and their source replaced)."""
    changes: dict[str, dict[str, float]] = {}
    for name, value in values.items():
        head, _, tail = name.partition(".")
        changes.setdefault(head, {})[tail] = value
    fields: dict[str, object] = {}
    for head, sub in changes.items():
        if "" in sub:
            fields[head] = Constant(float(sub[""]), source)
        else:
            group = getattr(cost, head)
            fields[head] = dataclasses.replace(group, **{k: Constant(float(v), source) for k, v in sub.items()})
    return dataclasses.replace(cost, **fields)


def fit_constants(cost: CostSpec, observations: Sequence[Observation], names: Sequence[str], source: str) -> FitResult:
    """Fit ``names`` (keys of ``FIT_BOUNDS``) so predictions match the observations (see module docstring)."""
    if not observations:
        raise EdgeError("nothing to fit: no observations")
    low = np.log([FIT_BOUNDS[n][0] for n in names])
    high = np.log([FIT_BOUNDS[n][1] for n in names])
    start = np.clip(np.log([max(constant(cost, n).value, 1e-9) for n in names]), low + 1e-9, high - 1e-9)
    measured = np.array([o.measured for o in observations])
    engines = [o.engine for o in observations]
    weight = np.array([np.sqrt(len(engines) / (len(set(engines)) * engines.count(e))) for e in engines])

    def candidate(x: np.ndarray) -> CostSpec:
        return with_values(cost, dict(zip(names, np.exp(x))), source)

    def residuals(x: np.ndarray) -> np.ndarray:
        spec = candidate(x)
        predicted = np.array([o.predict(spec) for o in observations])
        return weight * np.log(np.maximum(predicted, 1e-12) / measured)

    solution = least_squares(residuals, start, bounds=(low, high), loss="soft_l1", f_scale=0.1, diff_step=1e-3)
    fitted = candidate(solution.x)
    rows = [(o.id, o.engine, o.measured, o.predict(fitted)) for o in observations]
    return FitResult(fitted, rows)


def error_summary(rows: Sequence[tuple[str, str, float, float]]) -> dict[str, dict[str, float]]:
    """Per engine: rows, median and worst error factor (max(pred/meas, meas/pred)), share within 25 %."""
    summary: dict[str, dict[str, float]] = {}
    for engine in sorted({r[1] for r in rows}):
        ratios = np.array([r[3] / r[2] for r in rows if r[1] == engine])
        factor = np.maximum(ratios, 1 / ratios)
        summary[engine] = {
            "rows": float(len(ratios)),
            "median_error": float(np.median(np.abs(ratios - 1))),
            "worst_factor": float(factor.max()),
            "within_25": float(np.mean(np.abs(ratios - 1) <= 0.25)),
        }
    return summary
