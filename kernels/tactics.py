"""Tactics: the interchangeable implementations of one kernel that the builder times.

A kernel registers ``tactics(spec) -> [Tactic, ...]`` (the variants applicable to that step,
the heuristic's choice first); the auto-tuner (:mod:`edge.kernels.autotune`) times them on
the target and the plan records the winner per step, so a run never re-decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Tactic"]


@dataclass(frozen=True)
class Tactic:
    """One variant of a kernel.

    Attributes:
        name: stable identifier within its kernel ("im2col", "winograd", "tile64x4").
        params: JSON-able parameters the kernel reads (tile sizes, vector width, plan index);
            ``min_level``, where present, is the lowest builder optimization level whose
            auto-tuner times this variant (a deeper search that costs build time).
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Tactic | None:
        if data is None:
            return None
        return cls(str(data["name"]), dict(data.get("params", {})))
