"""DLA/GPU partitioner: eligibility rules, cost model, greedy and optimizing placement, report.

``partition(graph, profile, options)`` is the builder's entry point: it checks the flags
against the profile the way trtexec does, places every layer, writes
``node.meta["device"]`` ("dla" / "gpu" / "cpu"), ``node.meta["precision"]`` ("fp16" /
"int8" / "fp32") and, for layers kept off the DLA, ``node.meta["dla_reason"]`` (the sentence) and
``node.meta["dla_reason_code"]`` (the refusal code), and returns
the JSON-able PartitionPlan. ``plan_partition`` computes the same plan without touching
the graph (the report uses it for what-if runs).
"""

from __future__ import annotations

from edge.errors import EdgeError, ProfileError
from edge.ir import Graph
from edge.partitioner.partition import Analysis, Placement, evaluate, greedy, optimize
from edge.partitioner.plan import OBJECTIVES, Estimate, LayerPlan, PartitionOptions, PartitionPlan, SubgraphPlan
from edge.profiles import DeviceProfile, load_profile
from edge.refusal import Refusal

__all__ = [
    "PartitionError",
    "PartitionOptions",
    "PartitionPlan",
    "Estimate",
    "LayerPlan",
    "SubgraphPlan",
    "OBJECTIVES",
    "partition",
    "plan_partition",
    "check_options",
]


class PartitionError(EdgeError):
    """A layer cannot go where the flags put it (e.g. --dla without --gpu-fallback)."""


def check_options(profile: DeviceProfile, options: PartitionOptions) -> None:
    """trtexec's flag semantics against the profile; raises ProfileError with the fix."""
    if options.objective not in OBJECTIVES:
        raise ProfileError(f"--dla-objective '{options.objective}' is not one of {', '.join(OBJECTIVES)}")
    if options.algorithm not in ("optimized", "greedy"):
        raise ProfileError(f"partition algorithm '{options.algorithm}' is not 'optimized' or 'greedy'")
    if options.precision not in ("fp32", "fp16", "int8"):
        raise ProfileError(f"precision '{options.precision}' is not fp32, fp16 or int8")
    if options.latency_budget_ms is not None and options.latency_budget_ms <= 0:
        raise ProfileError(f"--latency-budget-ms must be positive, got {options.latency_budget_ms}")
    profile.power_mode(options.power_mode)
    if options.dla_core is None:
        return
    if profile.dla is None or profile.gpu is None:
        raise ProfileError(
            f"--dla {options.dla_core}: profile '{profile.name}' ({profile.module}) has no DLA; "
            "drop --dla or pick a module with DLA cores (AGX Orin, Orin NX, AGX Xavier, Xavier NX)"
        )
    if not 0 <= options.dla_core < profile.dla.cores:
        valid = ", ".join(str(c) for c in range(profile.dla.cores))
        raise ProfileError(
            f"--dla {options.dla_core}: profile '{profile.name}' has {profile.dla.cores} DLA "
            f"core{'s' if profile.dla.cores > 1 else ''} (valid: {valid})"
        )


def plan_partition(graph: Graph, profile: DeviceProfile | str, options: PartitionOptions | None = None) -> PartitionPlan:
    """Place every layer of ``graph`` without modifying it.

    Raises:
        ProfileError: a flag does not fit the profile (DLA core, power mode, objective).
        PartitionError: --dla without --gpu-fallback and a layer the DLA cannot run, or
            more DLA subgraphs than loadables per core.
    """
    options = options or PartitionOptions()
    if isinstance(profile, str):
        profile = load_profile(profile)
    check_options(profile, options)
    mode = profile.power_mode(options.power_mode)
    an = Analysis(graph, profile, mode, options)
    gpu_only: Placement = [False] * len(an.layers)
    # (estimate, subgraph numbering) per algorithm; each placement is evaluated once
    results = {"gpu_only": evaluate(an, gpu_only)}
    reasons: dict[int, Refusal] = {i: r for i, r in enumerate(an.reasons) if r is not None}
    notes: list[str] = []
    budget = options.latency_budget_ms
    applied = gpu_only
    algorithm = "gpu_only"
    if options.dla_core is not None:
        if not options.gpu_fallback:
            applied, result = _dla_only(an)
            results["greedy"] = results["optimized"] = result
        else:
            base, displaced = greedy(an)
            reasons.update(displaced)
            results["greedy"] = evaluate(an, base)
            if budget is None and options.objective != "latency":
                # Without a budget, offload/energy may not be slower than TensorRT's greedy placement.
                budget = results["greedy"][0].latency_ms
            best = optimize(an, [base, gpu_only], budget)
            results["optimized"] = evaluate(an, best)
            applied = best if options.algorithm == "optimized" else base
            if options.algorithm == "optimized":
                reasons.update(_kept_on_gpu_reasons(an, results["greedy"][1], best))
            if options.latency_budget_ms is not None and results[options.algorithm][0].latency_ms > budget:
                notes.append(
                    f"no placement found within the {budget:g} ms budget; "
                    f"best estimate {results[options.algorithm][0].latency_ms:.3f} ms"
                )
        algorithm = options.algorithm
    groups = results[algorithm][1]
    estimates = {key: estimate for key, (estimate, _) in results.items()}
    return PartitionPlan(
        profile=profile.name,
        power_mode=mode.id,
        power_mode_name=mode.name,
        dla_core=options.dla_core,
        dla_version=profile.dla.version if profile.dla is not None else None,
        gpu_fallback=options.gpu_fallback,
        precision=options.precision,
        objective=options.objective,
        latency_budget_ms=budget,
        algorithm=algorithm,
        layers=_layer_plans(an, applied, groups, reasons),
        subgraphs=_subgraph_plans(an, groups),
        estimates=estimates,
        notes=notes,
    )


def partition(graph: Graph, profile: DeviceProfile | str, options: PartitionOptions | None = None) -> PartitionPlan:
    """Place every layer and record the decision in ``node.meta`` (see module docstring)."""
    plan = plan_partition(graph, profile, options)
    by_name = {layer.name: layer for layer in plan.layers}
    for node in graph.nodes:
        layer = by_name[node.name]
        node.meta["device"] = layer.device
        node.meta["precision"] = layer.precision
        if layer.subgraph is not None:
            node.meta["dla_subgraph"] = layer.subgraph
            node.meta["dla_core"] = plan.dla_core
        else:
            node.meta.pop("dla_subgraph", None)
            node.meta.pop("dla_core", None)
        if layer.reason is not None and plan.dla_core is not None:
            node.meta["dla_reason"] = layer.reason
            node.meta["dla_reason_code"] = layer.code
        else:
            node.meta.pop("dla_reason", None)
            node.meta.pop("dla_reason_code", None)
    graph.meta["partition"] = plan.to_dict()
    return plan


def _dla_only(an: Analysis) -> tuple[Placement, tuple[Estimate, list[int]]]:
    """--dla without --gpu-fallback: every layer on the DLA (with its evaluation), or an error
    naming the first layer that cannot be."""
    for reason in an.reasons:
        if reason is not None:
            raise PartitionError(f"{reason.detail} (add --gpu-fallback to run such layers on the GPU)")
    placement = [True] * len(an.layers)
    result = evaluate(an, placement)
    subgraphs = result[0].subgraphs
    if subgraphs > an.options.max_loadables:
        raise PartitionError(
            f"the model needs {subgraphs} DLA subgraphs; DLA supports only {an.options.max_loadables} "
            "loadables per core (add --gpu-fallback)"
        )
    return placement, result


def _kept_on_gpu_reasons(an: Analysis, groups: list[int], best: Placement) -> dict[int, Refusal]:
    """Why the optimizer kept eligible layers on the GPU, per greedy subgraph (``groups``) it shrank."""
    moved: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        if g >= 0 and not best[i]:
            moved.setdefault(g, []).append(i)
    reasons: dict[int, Refusal] = {}
    for g, layers in moved.items():
        members = [i for i, h in enumerate(groups) if h == g]
        gpu = sum(an.gpu_ms[i] for i in layers)
        dla = sum(an.dla_ms[i] for i in layers)
        what = "the whole DLA subgraph" if len(layers) == len(members) else f"{len(layers)} of its {len(members)} layers"
        for i in layers:
            reasons[i] = Refusal(
                "dla.kept_by_objective",
                f"{an.layers[i].op_type} '{an.layers[i].origin[0]}': DLA-eligible, kept on the GPU by the "
                f"{an.options.objective} objective ({what}: GPU {gpu:.3f} ms vs DLA {dla:.3f} ms "
                f"+ {an.cost.dla_subgraph_ms(max(an.batch[layers[0]], 1)):.3f} ms submission + transitions)",
            )
    return reasons


def _layer_plans(an: Analysis, placement: Placement, groups: list[int], reasons: dict[int, Refusal]) -> list[LayerPlan]:
    index = {id(n): i for i, n in enumerate(an.layers)}
    host_device = "cpu"
    gpu_device = "gpu" if an.profile.gpu is not None else "cpu"
    plans = []
    for node in an.graph.nodes:
        i = index.get(id(node))
        if i is None:
            plans.append(LayerPlan(node.name, node.op_type, list(node.origin), host_device, "fp32", "shape computation, folded at build time", code="host.folded"))
            continue
        on_dla = placement[i]
        refusal = None if on_dla else reasons.get(i)
        float_out = all(v.dtype is None or v.dtype.kind == "f" for v in node.outputs)
        precision = an.dla_precisions[i] if on_dla else (an.gpu_precision if float_out else "fp32")
        plans.append(
            LayerPlan(
                name=node.name,
                op=node.op_type,
                origin=list(node.origin),
                device="dla" if on_dla else gpu_device,
                precision=precision,
                reason=None if refusal is None else refusal.detail,
                code=None if refusal is None else refusal.code,
                subgraph=groups[i] if on_dla else None,
                gpu_ms=round(float(an.gpu_ms[i]), 6),
                dla_ms=round(float(an.dla_ms[i]), 6) if an.eligible[i] else None,
            )
        )
    return plans


def _subgraph_plans(an: Analysis, groups: list[int]) -> list[SubgraphPlan]:
    count = max(groups, default=-1) + 1
    layers: list[list[str]] = [[] for _ in range(count)]
    inputs: list[list[str]] = [[] for _ in range(count)]
    outputs: list[list[str]] = [[] for _ in range(count)]
    for i, g in enumerate(groups):
        if g >= 0:
            layers[g].append(an.layers[i].name)
    for edge in an.edges:
        source = groups[edge.producer] if edge.producer >= 0 else -1
        targets = {groups[c] for c in edge.consumers} | ({-1} if edge.is_output else set())
        for target in sorted(targets):
            if target >= 0 and target != source:
                inputs[target].append(edge.value.name)
        if source >= 0 and any(t != source for t in targets):
            outputs[source].append(edge.value.name)
    core = an.options.dla_core if an.options.dla_core is not None else 0
    return [SubgraphPlan(g, core, layers[g], inputs[g], outputs[g]) for g in range(count)]
