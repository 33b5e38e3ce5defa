"""Trial precisions: a model run with chosen per-layer precisions on fixed batches, against FP32.

``build --best`` and ``calibrate --sensitivity`` both ask "how far do the outputs move from
FP32 when these layers run in these precisions?". The builder hands a :class:`PrecisionProbe`
the optimized graph once every layer has its device and default precision, before pins and
INT8 settle it. Each trial copies that graph (constants are shared: settling writes new
ones, never into the old), gives the named layers their precision, settles it exactly as the
build does (:func:`edge.quant.apply.settle_precisions`, so ``--layer-precisions`` pins hold in
every trial), lowers it to the build's backends with each kernel's default tactic and runs the
batches. The reference is the same graph with every layer in FP32.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edge.ir import Graph
from edge.plan import lower
from edge.precision import assign_precision, computes_in_float, pinned_precision
from edge.quant.accuracy import Deviation, deviation
from edge.quant.apply import OnnxLayout, settle_precisions
from edge.runtime.interpreter import Schedule

__all__ = ["PrecisionProbe", "TrialLayer"]


@dataclass(frozen=True)
class TrialLayer:
    """A layer whose precision trials may choose: not pinned by ``--layer-precisions``, float.

    ``widest`` is the widest precision its device runs (FP32; FP16 on the DLA), ``int8``
    whether it has the scales to run INT8.
    """

    name: str
    onnx_nodes: list[str]
    widest: str
    int8: bool


class PrecisionProbe:
    """Runs trials of one placed graph (see the module docstring); ``runs`` counts the runs
    over every batch made so far, the FP32 reference's included."""

    def __init__(
        self,
        graph: Graph,
        scales: Mapping[str, float] | None,
        layout: OnnxLayout,
        targets: Mapping[str, str],
        batches: Sequence[Sequence[np.ndarray]],
        pins: Mapping[str, str] | None = None,
        build_precision: str = "int8",
    ) -> None:
        self._graph = graph
        self._scales = scales
        self._layout = layout
        self._targets = dict(targets)
        self._pins = pins
        self._build_precision = build_precision
        self.batches = [list(batch) for batch in batches]
        self.runs = 0
        self._measured: dict[frozenset[tuple[str, str]], Deviation] = {}
        reference = self._copy()
        assign_precision(reference, "fp32")
        settle_precisions(reference, None, "fp32", None, layout)  # explicit Q/DQ scales hold in FP32 too
        self._reference = self._run(reference)
        default = self._settled({})
        self.layers = [
            TrialLayer(
                node.name,
                list(node.origin),
                "fp16" if node.meta.get("device") == "dla" else "fp32",
                node.meta.get("precision") == "int8",
            )
            for node in default.nodes
            if computes_in_float(node) and (not pins or pinned_precision(node, pins) is None)
        ]

    @property
    def samples(self) -> int:
        """Rows of the first input over all batches (what the errors are measured on)."""
        return sum(len(batch[0]) if np.ndim(batch[0]) else 1 for batch in self.batches)

    def widest(self) -> dict[str, str]:
        """Every trial layer at its widest precision: the start of every search."""
        return {layer.name: layer.widest for layer in self.layers}

    def measure(self, choice: Mapping[str, str]) -> Deviation:
        """The outputs' deviation from FP32 with the layers named in ``choice`` at its
        precisions (the others at the build's default: INT8 where they have scales). A
        combination measured before is not run again."""
        key = frozenset(choice.items())
        if key not in self._measured:
            self._measured[key] = deviation(self._reference, self._run(self._settled(choice)))
        return self._measured[key]

    def _copy(self) -> Graph:
        shared = {id(value.const): value.const for value in self._graph.constants()}
        return copy.deepcopy(self._graph, shared)

    def _settled(self, choice: Mapping[str, str]) -> Graph:
        trial = self._copy()
        for node in trial.nodes:
            if node.name in choice:
                node.meta["precision"] = choice[node.name]
        settle_precisions(trial, self._pins, self._build_precision, self._scales, self._layout)
        return trial

    def _run(self, graph: Graph) -> list[list[np.ndarray]]:
        self.runs += 1
        schedule = Schedule(graph, plan=lower(graph, self._targets))
        with np.errstate(all="ignore"):  # an overflow is an infinite error, not a warning
            return [schedule.run(batch) for batch in self.batches]
