"""Structured refusals: why a target (a backend, the DLA) will not take a layer.

A refusal carries a stable machine-readable ``code`` that reports, fix suggestions and tests
match on, and a ``detail`` sentence for people. It replaces grepping reason prose.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Refusal"]


@dataclass(frozen=True)
class Refusal:
    """Why a layer cannot go to a target.

    Attributes:
        code: a short stable identifier, dotted by family (e.g. ``"dla.kernel_size"``,
            ``"backend.no_kernel"``, ``"dtype.unsupported"``).
        detail: the one-line human reason, naming the layer, the limit and the actual value.
    """

    code: str
    detail: str

    def __str__(self) -> str:
        return self.detail

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "detail": self.detail}
