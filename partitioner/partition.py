"""Placement algorithms over one analysed graph: TensorRT-style greedy and a cost-driven optimizer.

``Analysis`` flattens a graph into data layers (indices in topological order) with their
DLA eligibility, per-device times and the tensors between them; shape computations are
set aside as host ("cpu") work that TensorRT folds at build time. A placement is a list of
booleans (True = DLA). ``group`` turns a placement into DLA subgraphs the way TensorRT
forms ForeignNodes: adjacent DLA layers join one subgraph unless that would create a cycle
through an outside layer, change the batch size, or push the subgraph's intermediate
tensors over the memory limit. ``evaluate`` prices a placement: layer times, a submission and a
per-image setup per subgraph, and a reformat + sync per boundary tensor.

The greedy baseline puts every eligible layer on the DLA and, past the loadable limit,
sends the later subgraphs to the GPU. The optimizer runs a best-improvement local search
(evict a subgraph, trim its first or last layer, add a neighbouring eligible layer) from
the greedy and the GPU-only placements and keeps the better result, so for the latency
objective it can never predict worse than greedy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edge.ir import Graph, Node, Value
from edge.partitioner.cost import CostModel, WorkArrays, network_work, tensor_bytes
from edge.partitioner.plan import Estimate, PartitionOptions
from edge.partitioner.rules import RuleContext, check_node, dla_batch, dla_precision
from edge.profiles import DeviceProfile, PowerMode
from edge.refusal import Refusal

__all__ = ["Analysis", "Placement", "group", "crossings", "evaluate", "greedy", "optimize", "objective_key"]

Placement = list[bool]
_SHAPE_OPS = frozenset({"Shape", "Size"})


@dataclass
class _Edge:
    """A tensor crossing between layers: producer (-1 = graph input), consumers, graph output?"""

    value: Value
    producer: int
    consumers: list[int]
    is_output: bool
    nbytes: float
    transition_ms: float = 0.0


class Analysis:
    """Everything the placement algorithms need, computed once per (graph, profile, mode, options).

    Attributes:
        layers: data nodes in topological order (the placement indexes these); the other
            nodes are shape computations (folded by TensorRT; run on the host CPU here).
        reasons: per layer, None when DLA-eligible, else the ``Refusal``.
        gpu_ms / dla_ms: per-layer time on each device (numpy arrays).
        preds: per layer, indices of the layers producing its inputs.
    """

    def __init__(self, graph: Graph, profile: DeviceProfile, mode: PowerMode, options: PartitionOptions) -> None:
        self.graph = graph
        self.profile = profile
        self.options = options
        self.cost = CostModel(profile, mode)
        folded = _folded_values(graph)
        self.layers = [n for n in graph.nodes if not _is_host(n, folded)]
        index = {id(n): i for i, n in enumerate(self.layers)}
        self.preds: list[list[int]] = []
        for node in self.layers:
            producers = {index[id(v.producer)] for v in node.inputs if v is not None and v.producer is not None and id(v.producer) in index}
            self.preds.append(sorted(producers))
        has_dla = profile.dla is not None and profile.gpu is not None
        ctx = RuleContext(profile.dla.version if has_dla else 0, options.dla_precision, frozenset(folded), graph.opset.get("", 17))
        no_dla = Refusal("dla.absent", "profile has no DLA")
        self.reasons: list[Refusal | None] = [check_node(n, ctx) if has_dla else no_dla for n in self.layers]
        self.eligible: Placement = [r is None for r in self.reasons]
        self.dla_precisions = [dla_precision(n, options.dla_precision) for n in self.layers]
        self.gpu_precision = options.gpu_precision
        self.work = WorkArrays(network_work(self.layers))
        self._price()
        self.batch = [_batch(n) for n in self.layers]
        self.memory = [sum(tensor_bytes(v, p) for v in n.outputs) for n, p in zip(self.layers, self.dla_precisions)]
        self.edges = self._edges(index, folded)
        self._price_edges()
        self.succs: list[list[int]] = [[] for _ in self.layers]
        for i, preds in enumerate(self.preds):
            for p in preds:
                self.succs[p].append(i)

    def _edges(self, index: dict[int, int], folded: set[int]) -> list[_Edge]:
        edges: dict[int, _Edge] = {}
        outputs = {id(v) for v in self.graph.outputs}
        boundary_precision = self.options.dla_precision

        def edge(value: Value) -> _Edge | None:
            if value.is_const or id(value) in folded:
                return None
            if id(value) not in edges:
                producer = index.get(id(value.producer), -2) if value.producer is not None else -1
                if producer == -2:
                    return None
                edges[id(value)] = _Edge(value, producer, [], id(value) in outputs, tensor_bytes(value, boundary_precision))
            return edges[id(value)]

        for i, node in enumerate(self.layers):
            for value in node.inputs:
                if value is not None and (e := edge(value)) is not None and i not in e.consumers:
                    e.consumers.append(i)
        for value in self.graph.outputs:
            edge(value)
        return list(edges.values())

    def _price(self) -> None:
        """Per-layer times on each device from ``self.cost``."""
        has_dla = self.profile.dla is not None and self.profile.gpu is not None
        if self.profile.gpu is not None:
            self.gpu_ms = self.cost.gpu_times(self.work, self.gpu_precision)
        else:
            self.gpu_ms = self.cost.cpu_times(self.work)
        if has_dla:
            dla = self.cost.dla_times(self.work, self.dla_precisions)
            self.dla_ms = np.where(self.eligible, dla, np.inf)
        else:
            self.dla_ms = np.full(len(self.layers), np.inf)

    def _price_edges(self) -> None:
        if self.profile.dla is None or self.profile.gpu is None:
            return
        for edge in self.edges:
            edge.transition_ms = self.cost.transition_ms(edge.nbytes)

    def reprice(self, cost: CostModel) -> None:
        """Recompute every time with other constants (the fit and ``calibrate`` use this)."""
        self.cost = cost
        self._price()
        self._price_edges()

    def subgraph_batch(self, groups: list[int]) -> dict[int, int]:
        """Batch of each DLA subgraph (that of its first layer)."""
        batches: dict[int, int] = {}
        for i, g in enumerate(groups):
            if g >= 0 and g not in batches:
                batches[g] = max(self.batch[i], 1)
        return batches

    def assume_eligible(self, i: int) -> Analysis:
        """A copy in which layer ``i`` passes the DLA rules (for what-if suggestions)."""
        clone = copy.copy(self)
        clone.reasons = list(self.reasons)
        clone.reasons[i] = None
        clone.eligible = list(self.eligible)
        clone.eligible[i] = True
        clone.dla_ms = self.dla_ms.copy()
        clone.dla_ms[i] = self.cost.dla_ms(self.layers[i], self.dla_precisions[i])
        return clone


def _folded_values(graph: Graph) -> set[int]:
    """Ids of Values known at build time: constants and outputs of shape computations."""
    known: set[int] = set()
    for node in graph.nodes:
        if _is_host(node, known):
            known.update(id(v) for v in node.outputs)
    return known


def _is_host(node: Node, known: set[int]) -> bool:
    if node.op_type in _SHAPE_OPS:
        return True
    inputs = [v for v in node.inputs if v is not None]
    return bool(inputs) and all(v.is_const or id(v) in known for v in inputs)


def _batch(node: Node) -> int:
    """DLA batch of the first output; -1 when its shape is not static."""
    if not node.outputs or not node.outputs[0].is_static:
        return -1
    return dla_batch(node.outputs[0].shape)


# -- grouping ----------------------------------------------------------------------------

def group(an: Analysis, on_dla: Sequence[bool]) -> list[int]:
    """Subgraph index per layer (-1 on the GPU), numbered in order of first layer."""
    parent: list[int] = []
    batch: list[int] = []
    memory: list[float] = []
    external: list[set[int]] = []  # groups reachable upstream through an outside layer
    limit = an.options.subgraph_memory_bytes

    def find(g: int) -> int:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    def canon(ids: set[int]) -> set[int]:
        return {find(g) for g in ids}

    group_of = [-1] * len(an.layers)
    reach: list[set[int]] = [set() for _ in an.layers]

    def outside_reaches(members: set[int], preds: list[int]) -> bool:
        """Would a producer outside ``members`` that itself descends from them close a cycle?"""
        return any((group_of[q] < 0 or find(group_of[q]) not in members) and canon(reach[q]) & members for q in preds)

    for i, preds in enumerate(an.preds):
        ancestors: set[int] = set()
        for p in preds:
            ancestors |= reach[p]
        if on_dla[i]:
            candidates = sorted({find(group_of[p]) for p in preds if group_of[p] >= 0})
            chosen = -1
            for g in candidates:
                if batch[g] == an.batch[i] and memory[g] + an.memory[i] <= limit and not outside_reaches({g}, preds):
                    chosen = g
                    break
            if chosen < 0:
                chosen = len(parent)
                parent.append(chosen)
                batch.append(an.batch[i])
                memory.append(0.0)
                external.append(set())
            else:
                for h in candidates:
                    if h == chosen or find(h) == chosen:
                        continue
                    pair = {chosen, h}
                    if (
                        batch[h] == batch[chosen]
                        and memory[h] + memory[chosen] + an.memory[i] <= limit
                        and h not in canon(external[chosen])
                        and chosen not in canon(external[h])
                        and not outside_reaches(pair, preds)
                    ):
                        parent[h] = chosen
                        memory[chosen] += memory[h]
                        external[chosen] |= external[h]
            group_of[i] = chosen
            memory[chosen] += an.memory[i]
            for q in preds:
                if group_of[q] < 0 or find(group_of[q]) != chosen:
                    external[chosen] |= reach[q]
            ancestors.add(chosen)
        reach[i] = ancestors
    numbering: dict[int, int] = {}
    result = []
    for g in group_of:
        if g < 0:
            result.append(-1)
        else:
            result.append(numbering.setdefault(find(g), len(numbering)))
    return result


# -- pricing ---------------------------------------------------------------------------

def crossings(an: Analysis, groups: list[int]) -> list[_Edge]:
    """Tensors crossing a DLA<->GPU boundary, once per subgraph (or the GPU) that reads them across it."""
    found = []
    for edge in an.edges:
        source = groups[edge.producer] if edge.producer >= 0 else -1
        targets = {groups[c] for c in edge.consumers} | ({-1} if edge.is_output else set())
        found.extend(edge for target in targets if target != source)
    return found


def evaluate(an: Analysis, on_dla: Sequence[bool], groups: list[int] | None = None) -> tuple[Estimate, list[int]]:
    """Estimate of a placement and its subgraph numbering (see module docstring)."""
    if groups is None:
        groups = group(an, on_dla)
    mask = np.asarray(on_dla, dtype=bool)
    subgraphs = max(groups, default=-1) + 1
    crossing = crossings(an, groups)
    transitions = len(crossing)
    transition_ms = sum(edge.transition_ms for edge in crossing)
    gpu = float(an.gpu_ms[~mask].sum()) + transition_ms
    fixed = sum(an.cost.dla_subgraph_ms(b) for b in an.subgraph_batch(groups).values())
    dla = float(an.dla_ms[mask].sum()) + fixed if mask.any() else 0.0
    energy = gpu * an.cost.gpu_power_w + dla * an.cost.dla_power_w if an.profile.gpu is not None else gpu * an.profile.max_power_w
    estimate = Estimate(
        latency_ms=gpu + dla,
        gpu_ms=gpu,
        dla_ms=dla,
        energy_mj=energy,
        dla_layers=int(mask.sum()),
        gpu_layers=int((~mask).sum()),
        subgraphs=subgraphs,
        transitions=transitions,
    )
    return estimate, groups


def greedy(an: Analysis) -> tuple[Placement, dict[int, Refusal]]:
    """TensorRT's behaviour: every eligible layer on the DLA; subgraphs past the loadable limit
    go to the GPU. Returns the placement and the reasons of the layers the limit displaced."""
    placement = list(an.eligible)
    displaced: dict[int, Refusal] = {}
    limit = an.options.max_loadables
    while True:
        groups = group(an, placement)
        if max(groups, default=-1) < limit:
            return placement, displaced
        for i, g in enumerate(groups):
            if g >= limit:
                placement[i] = False
                displaced[i] = Refusal(
                    "dla.loadable_limit",
                    f"{an.layers[i].op_type} '{an.layers[i].origin[0]}': DLA supports only {limit} loadables per core; "
                    "later subgraphs fall back to the GPU",
                )


def objective_key(objective: str, budget_ms: float | None, limit: int) -> Callable[[Estimate], tuple[float, ...]]:
    """Sort key of an estimate under ``objective`` (smaller is better); infeasible last."""

    def over(e: Estimate) -> float:
        return max(0.0, e.latency_ms - budget_ms) if budget_ms is not None else 0.0

    def key(e: Estimate) -> tuple[float, ...]:
        if e.subgraphs > limit:
            return (float("inf"),)
        if objective == "offload":
            return (over(e), e.gpu_ms, e.latency_ms)
        if objective == "energy":
            return (over(e), e.energy_mj, e.latency_ms)
        return (e.latency_ms, e.gpu_ms)

    return key


def optimize(an: Analysis, starts: Sequence[Placement], budget_ms: float | None) -> Placement:
    """Best placement found by local search from each start (see module docstring).

    ``budget_ms`` bounds the latency of the offload and energy objectives.
    """
    key = objective_key(an.options.objective, budget_ms, an.options.max_loadables)
    best: tuple[tuple[float, ...], Placement] | None = None
    for start in starts:
        placement, score = _local_search(an, list(start), key)
        if best is None or score < best[0]:
            best = (score, placement)
    return best[1]


def _local_search(an: Analysis, placement: Placement, key: Callable[[Estimate], tuple[float, ...]]) -> tuple[Placement, tuple[float, ...]]:
    estimate, groups = evaluate(an, placement)
    score = key(estimate)
    while True:
        best_move: tuple[tuple[float, ...], Placement] | None = None
        for move in _moves(an, placement, groups):
            candidate = list(placement)
            for i, value in move:
                candidate[i] = value
            candidate_score = key(evaluate(an, candidate)[0])
            if candidate_score < score and (best_move is None or candidate_score < best_move[0]):
                best_move = (candidate_score, candidate)
        if best_move is None:
            return placement, score
        score, placement = best_move
        groups = group(an, placement)


def _moves(an: Analysis, placement: Placement, groups: list[int]) -> list[list[tuple[int, bool]]]:
    """Neighbouring placements: evict a subgraph, trim its first/last layer, add a neighbour."""
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        if g >= 0:
            members.setdefault(g, []).append(i)
    moves: list[list[tuple[int, bool]]] = []
    for layers in members.values():
        moves.append([(i, False) for i in layers])
        if len(layers) > 1:
            moves.append([(layers[0], False)])
            moves.append([(layers[-1], False)])
    for i, on in enumerate(placement):
        if not on and an.eligible[i] and any(placement[j] for j in an.preds[i] + an.succs[i]):
            moves.append([(i, True)])
    return moves
