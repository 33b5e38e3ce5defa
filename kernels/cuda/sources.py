"""Tactic sources: where the candidate kernels of a hot op family ("conv", "gemm") come from.

Each source offers the tactics that apply to a step and builds the chosen one. This package
registers its NVRTC kernels as source "nvrtc"; cuDNN execution plans and cuBLASLt algorithms
(issue 20) join as further sources of the same families, so the auto-tuner times all of
them through one ``tactics`` function per registration and the engine records the winner
with its source in ``Tactic.params["source"]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.kernels.backend import StepSpec
from edge.kernels.cuda.launch import Body, Step
from edge.kernels.tactics import Tactic

__all__ = ["TacticSource", "add_source", "family_tactics", "build_tactic"]


@dataclass(frozen=True)
class TacticSource:
    """One provider of kernels for a family.

    Attributes:
        name: recorded in each of its tactics' params ("nvrtc", "cudnn", "cublaslt").
        candidates: ``fn(spec) -> [Tactic]``, the applicable variants, best guess first.
        build: ``fn(step, tactic, *family_args) -> body``, the chosen variant prepared.
    """

    name: str
    candidates: Callable[[StepSpec], list[Tactic]]
    build: Callable[..., Body]


_SOURCES: dict[str, list[TacticSource]] = {}
DEFAULT_SOURCE = "nvrtc"


def add_source(family: str, source: TacticSource) -> None:
    """Make ``source`` offer tactics for ``family`` (a later source with the same name replaces it)."""
    kept = [s for s in _SOURCES.get(family, []) if s.name != source.name]
    _SOURCES[family] = kept + [source]


def family_tactics(family: str) -> Callable[[StepSpec], list[Tactic]]:
    """The registry's ``tactics`` function of ``family``: every source's candidates in source
    order, each tagged with its source."""

    def tactics(spec: StepSpec) -> list[Tactic]:
        found = []
        for source in _SOURCES.get(family, []):
            for tactic in source.candidates(spec):
                found.append(Tactic(tactic.name, {**tactic.params, "source": source.name}))
        return found

    tactics.__name__ = f"{family}_tactics"
    return tactics


def build_tactic(family: str, step: Step, *args: Any) -> Body:
    """The body of the step's tactic (None: the first candidate), built by its source."""
    tactic = step.spec.tactic or family_tactics(family)(step.spec)[0]
    wanted = tactic.params.get("source", DEFAULT_SOURCE)
    for source in _SOURCES.get(family, []):
        if source.name == wanted:
            return source.build(step, tactic, *args)
    raise ValueError(f"node '{step.node.name}': tactic '{tactic.name}' comes from source '{wanted}', which is not installed")
