"""Optimization profiles: the shape ranges an engine with dynamic inputs accepts.

As in TensorRT, a profile gives every dynamic input a (min, opt, max) shape; an engine may
carry several. The builder validates them against the model (:func:`validate_profiles`) and
stores them in ``engine.build["optimization_profiles"]``; at run time an execution context
runs any shape inside its chosen profile (or the first profile that fits) and refuses others
with the input, its shape and the allowed range (:func:`select_profile`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge.errors import EdgeError, InputError
from edge.ir import Dim, Value

__all__ = [
    "ShapeRange",
    "OptimizationProfile",
    "validate_profiles",
    "profiles_from_record",
    "profiles_from_shape_options",
    "select_profile",
]

Shape = tuple[int, ...]


def _dims(shape: Sequence[Dim]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape) or "scalar"


@dataclass(frozen=True)
class ShapeRange:
    """One input's (min, opt, max) shapes."""

    min: Shape
    opt: Shape
    max: Shape

    def contains(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.min) and all(lo <= d <= hi for lo, d, hi in zip(self.min, shape, self.max))

    def describe(self) -> str:
        return f"min {_dims(self.min)}, opt {_dims(self.opt)}, max {_dims(self.max)}"


@dataclass(frozen=True)
class OptimizationProfile:
    """Shape ranges for an engine's dynamic inputs (static inputs need no entry)."""

    ranges: dict[str, ShapeRange]

    def first_mismatch(self, shapes: Mapping[str, Sequence[int]]) -> str | None:
        """Name of the first input whose shape is outside this profile, or None."""
        for name, allowed in self.ranges.items():
            if name in shapes and not allowed.contains(shapes[name]):
                return name
        return None

    def shapes(self, which: str) -> dict[str, Shape]:
        """The "min", "opt" or "max" shape of every input in the profile."""
        return {name: getattr(allowed, which) for name, allowed in self.ranges.items()}

    def to_record(self) -> dict[str, dict[str, list[int]]]:
        """JSON-able form stored in the engine file."""
        return {n: {"min": list(r.min), "opt": list(r.opt), "max": list(r.max)} for n, r in self.ranges.items()}


def validate_profiles(
    inputs: Sequence[Value], profiles: Sequence[Mapping[str, Sequence[Sequence[int]]]] | None
) -> list[OptimizationProfile]:
    """Check user-given profiles against the model's inputs and normalise them.

    Args:
        inputs: the graph inputs (their dims: int static, str/None dynamic).
        profiles: one ``{input: (min, opt, max)}`` mapping per profile.

    Raises:
        EdgeError: unknown input, a dynamic input left out, a rank or static-dim mismatch,
            or min <= opt <= max violated — naming the profile, the input and the shapes.
    """
    if not profiles:
        return []
    by_name = {v.name: v for v in inputs}
    dynamic = [v.name for v in inputs if v.shape is None or not v.is_static]
    result = []
    for index, profile in enumerate(profiles):
        where = f"optimization profile {index}"
        unknown = [name for name in profile if name not in by_name]
        if unknown:
            raise EdgeError(f"{where}: '{unknown[0]}' is not an input of the model (inputs: {list(by_name)})")
        missing = [name for name in dynamic if name not in profile]
        if missing:
            shape = by_name[missing[0]].shape
            raise EdgeError(f"{where}: dynamic input '{missing[0]}' (shape {_dims(shape or ())}) has no min/opt/max shapes")
        ranges = {}
        for name, triple in profile.items():
            ranges[name] = _check_range(where, by_name[name], triple)
        result.append(OptimizationProfile(ranges))
    return result


def _check_range(where: str, value: Value, triple: Sequence[Sequence[int]]) -> ShapeRange:
    if len(triple) != 3:
        raise EdgeError(f"{where}: input '{value.name}' needs (min, opt, max) shapes, got {len(triple)}")
    try:
        lo, opt, hi = (tuple(int(d) for d in shape) for shape in triple)
    except (TypeError, ValueError):
        raise EdgeError(f"{where}: input '{value.name}' shapes must be sequences of integers, got {triple}") from None
    model = value.shape
    for label, shape in (("min", lo), ("opt", opt), ("max", hi)):
        if model is not None and len(shape) != len(model):
            raise EdgeError(
                f"{where}: input '{value.name}' {label} shape {_dims(shape)} has rank {len(shape)}, "
                f"the model's input is {_dims(model)} (rank {len(model)})"
            )
        if any(d < 0 for d in shape):
            raise EdgeError(f"{where}: input '{value.name}' {label} shape {_dims(shape)} has a negative dim")
        for axis, (want, got) in enumerate(zip(model or (), shape)):
            if isinstance(want, int) and want != got:
                raise EdgeError(
                    f"{where}: input '{value.name}' {label} shape {_dims(shape)} differs from the model's "
                    f"static dim {axis} ({_dims(model)})"
                )
    if len({len(lo), len(opt), len(hi)}) != 1:
        raise EdgeError(f"{where}: input '{value.name}' min/opt/max shapes have different ranks")
    for axis, (a, b, c) in enumerate(zip(lo, opt, hi)):
        if not a <= b <= c:
            raise EdgeError(
                f"{where}: input '{value.name}' dim {axis} needs min <= opt <= max, got "
                f"min {_dims(lo)}, opt {_dims(opt)}, max {_dims(hi)}"
            )
    return ShapeRange(lo, opt, hi)


def profiles_from_record(record: Sequence[Mapping[str, Any]] | None) -> list[OptimizationProfile]:
    """Inverse of :meth:`OptimizationProfile.to_record` (engine file -> profiles)."""
    return [
        OptimizationProfile(
            {name: ShapeRange(tuple(r["min"]), tuple(r["opt"]), tuple(r["max"])) for name, r in profile.items()}
        )
        for profile in record or []
    ]


def profiles_from_shape_options(
    mins: Sequence[Mapping[str, Shape]], opts: Sequence[Mapping[str, Shape]], maxs: Sequence[Mapping[str, Shape]]
) -> list[dict[str, tuple[Shape, Shape, Shape]]]:
    """Pair trtexec-style ``--min-shapes/--opt-shapes/--max-shapes`` values into profiles.

    The i-th occurrence of each option forms profile i; each must name the same inputs.
    """
    if not (len(mins) == len(opts) == len(maxs)):
        raise EdgeError(
            f"give --min-shapes, --opt-shapes and --max-shapes once per profile "
            f"(got {len(mins)}, {len(opts)} and {len(maxs)})"
        )
    profiles = []
    for index, (lo, opt, hi) in enumerate(zip(mins, opts, maxs)):
        if not (set(lo) == set(opt) == set(hi)):
            raise EdgeError(
                f"optimization profile {index}: --min-shapes, --opt-shapes and --max-shapes name different inputs "
                f"({sorted(lo)}, {sorted(opt)}, {sorted(hi)})"
            )
        profiles.append({name: (lo[name], opt[name], hi[name]) for name in lo})
    return profiles


def select_profile(
    profiles: Sequence[OptimizationProfile], shapes: Mapping[str, Sequence[int]], index: int | None = None
) -> int | None:
    """The profile to run ``shapes`` under: ``index`` if given, else the first that fits.

    Returns None for an engine without profiles.

    Raises:
        InputError: a shape outside the chosen profile (or outside every profile), naming the
            input, its shape and the allowed range.
    """
    if not profiles:
        return None
    candidates = [index] if index is not None else range(len(profiles))
    for candidate in candidates:
        if profiles[candidate].first_mismatch(shapes) is None:
            return candidate
    if index is not None:
        name = profiles[index].first_mismatch(shapes)
        allowed = profiles[index].ranges[name].describe()
        raise InputError(
            f"input '{name}' has shape {_dims(shapes[name])}, outside optimization profile {index} ({allowed})"
        )
    for name, shape in shapes.items():
        ranges = [(i, p.ranges[name]) for i, p in enumerate(profiles) if name in p.ranges]
        if ranges and not any(allowed.contains(shape) for _, allowed in ranges):
            where = "optimization profile 0" if len(profiles) == 1 else "every optimization profile"
            allowed = "; ".join(r.describe() if len(profiles) == 1 else f"profile {i}: {r.describe()}" for i, r in ranges)
            raise InputError(f"input '{name}' has shape {_dims(shape)}, outside {where} ({allowed})")
    shown = ", ".join(f"'{n}' {_dims(s)}" for n, s in shapes.items())
    raise InputError(f"inputs {shown} fit no single optimization profile (each fits a different one)")
