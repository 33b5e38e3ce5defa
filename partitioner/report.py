"""Partition report: per-layer table, summary per power mode, throughput per deployment (GPU,
DLA, GPU + both DLAs), measured vs predicted from a trtexec profile, suggestions, notes; JSON and HTML.

Suggestions come from what-if runs: for a layer refused with a fixable refusal code (a cubic
Resize, a GlobalAveragePool the DLA could run as an AveragePool, a dynamic shape, ...) the
greedy placement is recomputed with the layer assumed eligible, and the report says how
many layers after it would then share its DLA subgraph and how subgraphs and transitions
change. Notes are the plan's own remarks (e.g. no placement met the latency budget); they
are kept apart from the suggestions, which are model changes.
"""

from __future__ import annotations

import dataclasses
import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from edge.version import __version__
from edge.ir import Graph, Node
from edge.partitioner import PartitionOptions, PartitionPlan, plan_partition
from edge.partitioner.cost import CostModel
from edge.partitioner.measured import ProfileMatch
from edge.partitioner.trtexec_layers import TrtexecLayerInfo
from edge.partitioner.partition import Analysis, evaluate, greedy
from edge.partitioner.throughput import deployments
from edge.partitioner.trtexec_profile import TrtexecProfile
from edge.partitioner.rules import node_label, reduce_axes
from edge.profiles import DeviceProfile, load_profile
from edge.refusal import Refusal

__all__ = ["PartitionReport", "build_report", "FIXES"]

FixFn = Callable[[Node], "tuple[str, str] | None"]


def _fix_dynamic_shape(node: Node) -> tuple[str, str]:
    return "has a dynamic shape", "with fixed input shapes (--shapes)"


def _fix_resize_sizes(node: Node) -> tuple[str, str]:
    return "uses explicit output sizes", "with constant scales"


def _fix_resize_bilinear_scale(node: Node) -> tuple[str, str]:
    return "uses a bilinear scale above 4", "with nearest"


def _fix_resize_mode(node: Node) -> tuple[str, str]:
    mode = node.attrs.get("mode", "nearest")
    return f"uses {mode if mode != 'linear' else 'bilinear'} mode", "with nearest"


def _fix_resize_coordinates(node: Node) -> tuple[str, str]:
    return f"uses {node.attrs.get('coordinate_transformation_mode', 'half_pixel')} coordinates", "with half_pixel"


def _fix_global_average(node: Node) -> tuple[str, str] | None:
    shape = node.inputs[0].shape
    if shape is None or len(shape) != 4 or not all(isinstance(d, int) for d in shape):
        return None
    h, w = shape[2], shape[3]
    if node.op_type == "ReduceMean":
        axes = reduce_axes(node)
        if axes is None or sorted(axes) != [2, 3] or not int(node.attrs.get("keepdims", 1)):
            return None
    if h > 8 or w > 8:
        return None
    return "is a mean Reduce in TensorRT", f"as an AveragePool with a {h}x{w} window"


def _fix_hardswish(node: Node) -> tuple[str, str] | None:
    if node.op_type != "HardSwish" and node.attrs.get("activation", "") != "HardSwish":
        return None
    return "uses HardSwish, which TensorRT does not expose to the DLA", "rewritten as x * Clip(x + 3, 0, 6) * (1/6)"


def _fix_qdq(node: Node) -> tuple[str, str]:
    return "uses explicit quantization (Q/DQ)", "with INT8 calibration instead"


FIXES: dict[str, FixFn] = {
    "dla.dynamic_shape": _fix_dynamic_shape,
    "dla.resize_sizes": _fix_resize_sizes,
    "dla.resize_bilinear_scale": _fix_resize_bilinear_scale,
    "dla.resize_mode": _fix_resize_mode,
    "dla.resize_coordinates": _fix_resize_coordinates,
    "dla.global_average_pool": _fix_global_average,
    "dla.reduce_mean": _fix_global_average,
    "dla.not_exposed": _fix_hardswish,
    "dla.activation_not_exposed": _fix_hardswish,
    "dla.qdq": _fix_qdq,
}
"""Refusal code -> (problem, fix) phrases for refusals a model change can remove."""


def _fix_for(node: Node, refusal: Refusal) -> tuple[str, str] | None:
    fix = FIXES.get(refusal.code)
    return fix(node) if fix is not None else None


@dataclass
class PartitionReport:
    """Everything ``edgetrt partition`` shows; ``to_dict`` / ``to_html`` render it."""

    model: str
    device: str
    plan: PartitionPlan
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    per_mode: list[dict[str, Any]]
    suggestions: list[str]
    batch: int = 1
    throughput: list[dict[str, Any]] = field(default_factory=list)
    measured: dict[str, Any] | None = None
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))

    @property
    def notes(self) -> list[str]:
        """The plan's remarks about the placement itself (not model changes)."""
        return self.plan.notes

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "device": self.device,
            "created": self.created,
            "edgetrt_version": __version__,
            "summary": self.summary,
            "per_power_mode": self.per_mode,
            "suggestions": self.suggestions,
            "notes": self.notes,
            "batch": self.batch,
            "throughput": self.throughput,
            "measured": self.measured,
            "layers": self.rows,
            "plan": self.plan.to_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_html(self) -> str:
        """A self-contained page (inline CSS, no scripts or external assets)."""
        esc = html.escape
        summary_rows = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(_fmt(v))}</td></tr>" for k, v in self.summary.items())
        mode_head = "".join(f"<th>{esc(k)}</th>" for k in (self.per_mode[0] if self.per_mode else {}))
        mode_rows = "".join("<tr>" + "".join(f"<td>{esc(_fmt(v))}</td>" for v in row.values()) + "</tr>" for row in self.per_mode)
        layer_rows = "".join(
            f"<tr class='{esc(r['device'])}'><td>{esc(r['layer'])}</td><td>{esc(r['op'])}</td><td>{esc(r['device'])}</td>"
            f"<td>{esc(r['precision'])}</td><td>{esc(r['reason'] or '')}</td></tr>"
            for r in self.rows
        )
        tips = "".join(f"<li>{esc(s)}</li>" for s in self.suggestions) or "<li>none</li>"
        throughput = _html_table("Estimated throughput at batch " + str(self.batch), self.throughput)
        measured = ""
        if self.measured is not None:
            measured = _html_table("Measured vs predicted per segment (ms)", self.measured["segments"])
            measured += _html_table("Measured vs predicted per trtexec layer (ms)", self.measured["layers"])
            measured += _html_table("Measured vs planned device and precision per engine layer", self.measured["placement"])
        notes = f"<h2>Notes</h2><ul>{''.join(f'<li>{esc(n)}</li>' for n in self.notes)}</ul>\n" if self.notes else ""
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>edgetrt partition: {esc(self.model)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;margin-bottom:1.5em}}
th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}} th{{background:#f2f2f2}}
tr.dla td:nth-child(3){{color:#0a7d2c;font-weight:600}} tr.gpu td:nth-child(3){{color:#1f4fbf}} tr.cpu td:nth-child(3){{color:#777}}
</style></head><body>
<h1>Partition of {esc(self.model)}</h1>
<p>{esc(self.device)}; generated {esc(self.created)} by edgetrt {esc(__version__)}. Latencies are cost-model estimates.</p>
<h2>Summary</h2><table>{summary_rows}</table>
<h2>Estimated latency per power mode (ms)</h2><table><tr>{mode_head}</tr>{mode_rows}</table>
{throughput}{measured}<h2>Suggestions</h2><ul>{tips}</ul>
{notes}<h2>Layers</h2><table><tr><th>layer</th><th>op</th><th>device</th><th>precision</th><th>reason</th></tr>{layer_rows}</table>
</body></html>
"""


def _html_table(title: str, rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    esc = html.escape
    head = "".join(f"<th>{esc(k)}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{esc(_fmt(v))}</td>" for v in row.values()) + "</tr>" for row in rows)
    return f"<h2>{esc(title)}</h2><table><tr>{head}</tr>{body}</table>\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "-" if value is None else str(value)


def build_report(
    graph: Graph,
    profile: DeviceProfile | str,
    options: PartitionOptions | None = None,
    model: str = "model",
    measured: TrtexecProfile | None = None,
    layer_info: TrtexecLayerInfo | None = None,
) -> PartitionReport:
    """Partition ``graph`` (without modifying it) and assemble the report; with ``measured``
    (a trtexec --exportProfile run of the same model and flags) add measured vs predicted times,
    with ``layer_info`` (its --exportLayerInfo) measured vs planned devices and precisions."""
    options = options or PartitionOptions()
    if isinstance(profile, str):
        profile = load_profile(profile)
    plan = plan_partition(graph, profile, options)
    rows = [
        {"layer": "+".join(layer.origin), "op": layer.op, "device": layer.device, "precision": layer.precision, "reason": layer.reason,
         "code": layer.code}
        for layer in plan.layers
    ]
    estimates = plan.estimates
    summary: dict[str, Any] = {
        "profile": f"{profile.name} ({profile.module})",
        "power mode": f"{plan.power_mode} {plan.power_mode_name}",
        "dla core": plan.dla_core,
        "precision": plan.precision,
        "objective": plan.objective if plan.dla_core is not None else None,
        "latency budget (ms)": None if plan.latency_budget_ms is None else round(plan.latency_budget_ms, 4),
        "applied": plan.algorithm,
        "DLA layers": plan.applied.dla_layers,
        "GPU layers": plan.applied.gpu_layers,
        "host layers": len(plan.layers) - plan.applied.dla_layers - plan.applied.gpu_layers,
        "DLA subgraphs": plan.applied.subgraphs,
        "transitions": plan.applied.transitions,
    }
    for key in ("gpu_only", "greedy", "optimized"):
        if key in estimates:
            summary[f"latency {key.replace('_', '-')} (ms)"] = round(estimates[key].latency_ms, 4)
    per_mode = []
    for mode in profile.power_modes:
        mode_plan = plan if mode.id == plan.power_mode else plan_partition(graph, profile, _with(options, power_mode=mode.id))
        row: dict[str, Any] = {"mode": f"{mode.id} {mode.name}"}
        for key in ("gpu_only", "greedy", "optimized"):
            if key in mode_plan.estimates:
                row[key.replace("_", "-")] = round(mode_plan.estimates[key].latency_ms, 4)
        per_mode.append(row)
    suggestions = _suggestions(graph, profile, options) if options.dla_core is not None and profile.dla is not None else []
    device = f"{profile.module} ({profile.name}), power mode {plan.power_mode_name}"
    batch = _batch(graph)
    summary["batch"] = batch
    comparison = None
    if measured is not None or layer_info is not None:
        match = ProfileMatch(graph, profile, options, measured)
        comparison = {"source": None, "segments": [], "layers": [], "unmatched_ir_layers": [], "placement": []}
        if measured is not None:
            comparison.update(source=measured.source, segments=match.segment_rows(), layers=match.layer_rows(),
                              unmatched_ir_layers=match.unmatched_ir_layers())
        if layer_info is not None:
            comparison.update(layer_info=layer_info.source, placement=match.placement_rows(layer_info))
    return PartitionReport(model, device, plan, rows, summary, per_mode, suggestions, batch,
                           _throughput(graph, profile, options, plan, batch), comparison)


def _batch(graph: Graph) -> int:
    """Leading dimension of the first graph input (1 when unknown)."""
    shape = graph.inputs[0].shape if graph.inputs else None
    return shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else 1


def _throughput(graph: Graph, profile: DeviceProfile, options: PartitionOptions, plan: PartitionPlan, batch: int) -> list[dict[str, Any]]:
    """Deployments at this batch: GPU, one DLA core, all cores, GPU + all cores (DLA copies placed as TensorRT would)."""
    if profile.gpu is None:
        return []
    dla = None
    if profile.dla is not None:
        dla_plan = plan if plan.dla_core is not None else plan_partition(graph, profile, _with(options, dla_core=0, gpu_fallback=True))
        dla = dla_plan.estimates.get("greedy")
    cost = CostModel(profile, profile.power_mode(options.power_mode))
    found = deployments(plan.estimates["gpu_only"], dla, profile.dla_cores, batch, cost)
    return [d.to_dict() for d in found]


def _with(options: PartitionOptions, **changes: Any) -> PartitionOptions:
    return dataclasses.replace(options, **changes)


def _suggestions(graph: Graph, profile: DeviceProfile, options: PartitionOptions, limit: int = 10) -> list[str]:
    """What-if greedy runs for each fixable refusal; best gains first."""
    fallback = _with(options, gpu_fallback=True)
    an = Analysis(graph, profile, profile.power_mode(options.power_mode), fallback)
    base_estimate = evaluate(an, greedy(an)[0])[0]
    found: list[tuple[tuple[int, int], str]] = []
    for i, reason in enumerate(an.reasons):
        if reason is None:
            continue
        node = an.layers[i]
        fix = _fix_for(node, reason)
        if fix is None:
            continue
        what_if = an.assume_eligible(i)
        placement, _ = greedy(what_if)
        estimate, groups = evaluate(what_if, placement)
        if estimate.subgraphs >= base_estimate.subgraphs and estimate.transitions >= base_estimate.transitions and estimate.dla_layers <= base_estimate.dla_layers:
            continue
        after = _descendants_in_group(what_if, i, groups) if placement[i] else 0
        problem, remedy = fix
        gain = f"it and the {after} layer{'s' if after != 1 else ''} after it could stay on the DLA" if after else "it could run on the DLA"
        text = (
            f"{node_label(node)} {problem}; {remedy} {gain} "
            f"(DLA subgraphs {base_estimate.subgraphs} -> {estimate.subgraphs}, transitions {base_estimate.transitions} -> {estimate.transitions})"
        )
        found.append(((after, base_estimate.transitions - estimate.transitions), text))
    found.sort(key=lambda item: item[0], reverse=True)
    return [text for _, text in found[:limit]]


def _descendants_in_group(an: Analysis, start: int, groups: list[int]) -> int:
    target = groups[start]
    seen = {start}
    stack = [start]
    while stack:
        i = stack.pop()
        for j in an.succs[i]:
            if j not in seen and groups[j] == target:
                seen.add(j)
                stack.append(j)
    return len(seen) - 1
