"""``build --best``: each layer's precision chosen among INT8, FP16 and FP32 so that the outputs
stay within a tolerance of FP32, preferring INT8, then FP16.

trtexec's ``--best`` enables every precision and lets the fastest kernel win, whatever the
accuracy. With calibration data edgetrt measures it instead. The metric is the relative L2
error of each output against the FP32 build on the search batches, ``||y - y_fp32|| /
||y_fp32||`` over all their samples, the worst output counting (:class:`edge.quant.accuracy.Deviation`);
the engine's must stay within ``tolerance``.

The search, each step measuring the model with the real combination of precisions (a
:class:`~edge.quant.probe.PrecisionProbe` trial), never a sum of per-layer errors:

1. every layer with INT8 scales in INT8 at once: within the tolerance, that is the answer;
2. else those layers are ranked by their error when quantized alone
   (:func:`edge.quant.sensitivity.layer_sensitivity`) and, least sensitive first, each is
   kept in INT8 when the model's error with it added stays within the tolerance; a layer
   whose error alone already exceeds it is not tried;
3. the layers left at FP32 (no INT8 scales, or refused in 2) go FP16 all at once when that
   stays within the tolerance, else one by one in graph order, each FP16 if the error stays
   within it, else FP32. DLA layers never go FP32 (the DLA runs FP16/INT8 only).

Cost, in trials (each a graph copy and a run of every search batch, the FP32 reference
included; a combination is never run twice): 2 when everything fits INT8; at most 4 + 2N + M
otherwise, for N INT8-capable layers and M layers left out of INT8.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from edge.quant.probe import PrecisionProbe, TrialLayer
from edge.quant.sensitivity import layer_sensitivity

__all__ = ["CHOSEN", "DEFAULT_TOLERANCE", "METRIC", "BestChoice", "LayerChoice", "choose_precisions"]

DEFAULT_TOLERANCE = 0.01
"""Default ``--best-tolerance``: 1 % relative L2 error of every output vs FP32."""
METRIC = "relative L2 error of each output vs FP32 (||y - y_fp32|| / ||y_fp32||), the worst output"
CHOSEN = "chosen by --best"
"""``meta["precision_note"]`` of a layer whose precision ``--best`` chose (the reason is in the build record)."""


@dataclass(frozen=True)
class LayerChoice:
    """One layer's precision and the errors that decided it (None: not measured).

    ``int8_alone``: the model's error with only this layer in INT8; ``int8`` / ``fp16``: the
    model's error when this layer was tried in that precision on top of the decisions before.
    ``reason`` says it in words, e.g. "int8 alone: error 0.031 > 0.01; fp16: error 0.004 within 0.01".
    """

    layer: str
    onnx_nodes: list[str]
    precision: str
    reason: str
    int8_alone: float | None = None
    int8: float | None = None
    fp16: float | None = None


@dataclass(frozen=True)
class BestChoice:
    """The search's answer: every trial layer's precision, the engine's error and the cost."""

    tolerance: float
    error: float
    samples: int
    trials: int
    layers: list[LayerChoice]

    def precisions(self) -> dict[str, int]:
        """How many trial layers each precision got."""
        return dict(Counter(layer.precision for layer in self.layers))

    def to_record(self) -> dict[str, Any]:
        """The JSON-able build record (``Engine.build["best"]``)."""
        return {"metric": METRIC, **asdict(self), "precisions": self.precisions()}


def choose_precisions(probe: PrecisionProbe, tolerance: float) -> BestChoice:
    """Each trial layer's precision: INT8 where the model stays within ``tolerance``, else
    FP16 where it does, else FP32 (see the module docstring for the order of the search)."""
    current = probe.widest()
    error: float | None = None  # the model's error with ``current``, once measured
    alone: dict[str, float] = {}
    tried: dict[str, dict[str, float]] = {layer.name: {} for layer in probe.layers}

    def accept(change: dict[str, str]) -> bool:
        """Measure ``current`` with ``change``; keep it when within the tolerance. The error
        is each layer's verdict when kept, or when the change was that layer alone."""
        nonlocal current, error
        trial = {**current, **change}
        found = probe.measure(trial).relative
        if found <= tolerance or len(change) == 1:
            for name, precision in change.items():
                tried[name][precision] = found
        if found > tolerance:
            return False
        current, error = trial, found
        return True

    int8 = [layer.name for layer in probe.layers if layer.int8]
    if int8 and not accept(dict.fromkeys(int8, "int8")):
        for entry in reversed(layer_sensitivity(probe)):
            alone[entry.layer] = entry.deviation.relative
            if alone[entry.layer] <= tolerance:
                accept({entry.layer: "int8"})
    rest = [name for name, precision in current.items() if precision == "fp32"]
    if rest and not accept(dict.fromkeys(rest, "fp16")):
        for name in rest:
            accept({name: "fp16"})
    if error is None:
        error = probe.measure(current).relative
    layers = [
        _choice(layer, current[layer.name], alone.get(layer.name), tried[layer.name], tolerance) for layer in probe.layers
    ]
    return BestChoice(tolerance, error, probe.samples, probe.runs, layers)


def _choice(layer: TrialLayer, precision: str, alone: float | None, tried: dict[str, float], tolerance: float) -> LayerChoice:
    """The decision record of one layer, its reason given in the measured numbers."""
    parts = []
    if not layer.int8:
        parts.append("no int8 scales")
    elif alone is not None and alone > tolerance:
        parts.append(f"int8 alone: error {alone:.3g} > {tolerance:g}")
    elif "int8" in tried:
        parts.append(f"int8: error {tried['int8']:.3g} {'within' if precision == 'int8' else '>'} {tolerance:g}")
    if precision != "int8":
        if "fp16" in tried:
            parts.append(f"fp16: error {tried['fp16']:.3g} {'within' if precision == 'fp16' else '>'} {tolerance:g}")
        elif layer.widest == "fp16":
            parts.append("the DLA runs no fp32")
    return LayerChoice(
        layer.name, layer.onnx_nodes, precision, "; ".join(parts), alone, tried.get("int8"), tried.get("fp16")
    )
