"""Measured (a trtexec ``--exportProfile`` run) against predicted, with the same cost model,
and the engine's layers (``--exportLayerInfo``) against the planned devices and precisions.

``ProfileMatch`` partitions the graph as the flags say, then maps every trtexec layer to the
IR layers it ran: a DLA subgraph ``{ForeignNode[first...last]}`` covers the DLA layers from
``first`` to ``last``; other names list fused ONNX node names (joined by " + " or inside
``PWN(...)``); reformat / copy layers TensorRT inserted are the DLA<->GPU transitions. The plan
is TensorRT's greedy placement, the one trtexec ran. It
prices each row with the cost model (per layer, per DLA subgraph including its fixed costs,
and all transitions together) and turns the rows into fit observations for ``calibrate``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from edge.ir import Graph
from edge.partitioner import PartitionOptions, PartitionPlan, plan_partition
from edge.partitioner.cost import CostModel
from edge.partitioner.fit import Observation
from edge.partitioner.partition import Analysis, crossings, group
from edge.partitioner.trtexec_layers import TrtexecLayerInfo
from edge.partitioner.trtexec_profile import TrtexecProfile
from edge.profiles import DeviceProfile
from edge.profiles.schema import CostSpec

__all__ = ["MatchedRow", "ProfileMatch"]

_FOREIGN = re.compile(r"ForeignNode\[(.+?)(?:\.\.\.(.+?))?\]")
_TOKEN = re.compile(r"[^\s+(),{}\[\]]+")
_TRANSITION = re.compile(r"reformat|copynode|\bcopy\b|input to nvm|output from nvm", re.IGNORECASE)


@dataclass(frozen=True)
class MatchedRow:
    """One trtexec layer: ``kind`` is gpu, dla (a DLA subgraph), transition or unmatched."""

    name: str
    kind: str
    layers: tuple[int, ...]
    measured_ms: float


class ProfileMatch:
    """A trtexec profile (None: only layer infos are matched) matched to the plan of ``graph``
    under ``options`` (see module docstring)."""

    def __init__(self, graph: Graph, profile: DeviceProfile, options: PartitionOptions, trtexec: TrtexecProfile | None) -> None:
        options = dataclasses.replace(options, algorithm="greedy")  # trtexec places layers as TensorRT does
        self.profile = profile
        self.mode = profile.power_mode(options.power_mode)
        self.plan: PartitionPlan = plan_partition(graph, profile, options)
        self.analysis = Analysis(graph, profile, self.mode, options)
        devices = {layer.name: layer.device for layer in self.plan.layers}
        self.placement = [devices[n.name] == "dla" for n in self.analysis.layers]
        self.groups = group(self.analysis, self.placement)
        self.trtexec = trtexec
        self.rows = self._match()
        self._priced: tuple[CostSpec | None] | None = None

    def _match(self) -> list[MatchedRow]:
        if self.trtexec is None:
            return []
        matched = self.match_names([layer.name for layer in self.trtexec.layers])
        return [MatchedRow(layer.name, kind, members, layer.average_ms) for layer, (kind, members) in zip(self.trtexec.layers, matched)]

    def match_names(self, names: list[str]) -> list[tuple[str, tuple[int, ...]]]:
        """(kind, IR layer indices) per trtexec layer name, in engine order (each IR layer claimed once)."""
        index: dict[str, int] = {}
        for i, node in enumerate(self.analysis.layers):
            for name in (node.name, *node.origin):
                index.setdefault(name, i)
        claimed: set[int] = set()
        found = []
        for name in names:
            foreign = _FOREIGN.search(name)
            if foreign is not None and foreign.group(1) in index:
                first = index[foreign.group(1)]
                last = index.get(foreign.group(2) or foreign.group(1), first)
                members = tuple(i for i in range(first, last + 1) if self.placement[i] and i not in claimed)
                kind = "dla"
            elif _TRANSITION.search(name):
                members, kind = (), "transition"
            else:
                members = tuple(sorted({index[t] for t in _TOKEN.findall(name) if t in index} - claimed))
                kind = "gpu" if members else "unmatched"
            claimed.update(members)
            found.append((kind, members))
        return found

    def placement_rows(self, info: TrtexecLayerInfo) -> list[dict]:
        """Per engine layer of ``--exportLayerInfo``: measured device and precision next to the plan's."""
        precisions = {layer.name: layer.precision for layer in self.plan.layers}
        rows = []
        for layer, (kind, members) in zip(info.layers, self.match_names([layer.name for layer in info.layers])):
            devices = sorted({"dla" if self.placement[i] else "gpu" for i in members})
            planned = sorted({precisions.get(self.analysis.layers[i].name, "fp32") for i in members})
            predicted_device = "+".join(devices) or None
            predicted_precision = "+".join(planned) or None
            agrees = None if not members else predicted_device == layer.device and (layer.precision is None or predicted_precision == layer.precision)
            rows.append({
                "layer": layer.name, "type": layer.layer_type, "ir_layers": len(members),
                "measured_device": layer.device, "predicted_device": predicted_device,
                "measured_precision": layer.precision, "predicted_precision": predicted_precision, "agrees": agrees,
            })
        return rows

    # -- prices -------------------------------------------------------------------------
    def _reprice(self, cost: CostSpec | None) -> None:
        if self._priced is None or self._priced[0] is not cost:  # identity: a fit passes a new spec per step
            self.analysis.reprice(CostModel(self.profile, self.mode, cost))
            self._priced = (cost,)

    def predicted(self, row: MatchedRow, cost: CostSpec | None = None) -> float | None:
        """The model's time for one matched row (None for transitions and unmatched rows)."""
        self._reprice(cost)
        an = self.analysis
        if row.kind == "gpu":
            return float(sum(an.gpu_ms[i] for i in row.layers))
        if row.kind == "dla" and row.layers:
            return float(sum(an.dla_ms[i] for i in row.layers)) + an.cost.dla_subgraph_ms(max(an.batch[row.layers[0]], 1))
        return None

    def predicted_transitions(self, cost: CostSpec | None = None) -> float:
        self._reprice(cost)
        return float(sum(e.transition_ms for e in crossings(self.analysis, self.groups)))

    # -- views --------------------------------------------------------------------------
    def layer_rows(self) -> list[dict]:
        """Per trtexec layer: name, kind, IR layers, measured, predicted, ratio."""
        out = []
        for row in self.rows:
            predicted = self.predicted(row)
            out.append({
                "layer": row.name,
                "kind": row.kind,
                "ir_layers": len(row.layers),
                "measured_ms": round(row.measured_ms, 6),
                "predicted_ms": None if predicted is None else round(predicted, 6),
                "ratio": None if not predicted or not row.measured_ms else round(predicted / row.measured_ms, 3),
            })
        return out

    def segment_rows(self) -> list[dict]:
        """Per DLA subgraph, GPU layers together, transitions together, and the total."""
        segments: dict[str, list[float]] = {}

        def add(name: str, measured: float, predicted: float | None) -> None:
            totals = segments.setdefault(name, [0.0, 0.0])
            totals[0] += measured
            totals[1] += predicted or 0.0

        for row in self.rows:
            if row.kind == "dla" and row.layers:
                add(f"DLA subgraph {self.groups[row.layers[0]]}", row.measured_ms, self.predicted(row))
            elif row.kind == "gpu":
                add("GPU layers", row.measured_ms, self.predicted(row))
            elif row.kind == "transition":
                add("transitions", row.measured_ms, 0.0)
        if "transitions" in segments or any(self.placement):
            segments.setdefault("transitions", [0.0, 0.0])[1] = self.predicted_transitions()
        unmatched = sum(r.measured_ms for r in self.rows if r.kind == "unmatched")
        if unmatched:
            add("unmatched trtexec layers", unmatched, None)
        total = [sum(v[0] for v in segments.values()), sum(v[1] for v in segments.values())]
        segments["total"] = total
        return [
            {"segment": name, "measured_ms": round(m, 6), "predicted_ms": round(p, 6), "ratio": round(p / m, 3) if m else None}
            for name, (m, p) in segments.items()
        ]

    def unmatched_ir_layers(self) -> list[str]:
        """IR layers no trtexec row accounts for (TensorRT fused or removed them, or the names differ)."""
        covered = {i for row in self.rows for i in row.layers}
        return [n.name for i, n in enumerate(self.analysis.layers) if i not in covered]

    # -- calibration ------------------------------------------------------------------
    def observations(self) -> list[Observation]:
        """Fit observations: every priced trtexec row, plus all transitions together."""
        tag = self.trtexec.source
        found = []
        for k, row in enumerate(self.rows):
            if row.kind in ("gpu", "dla") and row.layers and row.measured_ms > 0:
                found.append(Observation(f"{tag}#{k}", row.kind, row.measured_ms, lambda cost, row=row: self.predicted(row, cost)))
        measured = sum(r.measured_ms for r in self.rows if r.kind == "transition")
        if measured > 0 and crossings(self.analysis, self.groups):
            found.append(Observation(f"{tag}#transitions", "transition", measured, self.predicted_transitions))
        return found

    def engines(self) -> set[str]:
        return {row.kind for row in self.rows if row.kind in ("gpu", "dla") and row.layers}

    def op_classes(self) -> set[str]:
        """Op classes of the layers the profile times (what a calibration can learn about)."""
        works = self.analysis.work.works
        return {works[i].op_class for row in self.rows for i in row.layers}
