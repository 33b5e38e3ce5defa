"""Pattern rewriting: the small matcher every fusion and canonicalization is written in.

A :class:`Rule` is three things, read top to bottom like the subgraph it replaces:

1. ``pattern`` — a tree of :class:`Op` / :class:`Var` / :class:`Const` rooted at the last node
   of the subgraph, e.g. ``Op("Relu", Op("Conv", name="conv"), name="relu")``;
2. ``check(graph, match) -> str | None`` — returns the reason the match may not be
   rewritten (weights not constant, shapes unknown, ...) or None to go ahead;
3. ``rewrite(builder, match) -> Value | list[Value]`` — builds the replacement nodes with
   a :class:`Builder` and returns the values that take over the root's outputs.

The framework does the bookkeeping that each rule would otherwise get wrong: it refuses a
match whose inner nodes feed anything outside the match (or a graph output), so a fusion
never duplicates work or swallows an output; it gives every new node the union of the
matched nodes' ``meta["origin"]``; it moves graph-output names onto the replacements; it
drops matched nodes once unused. :meth:`RuleSet.apply` runs rules to a fixed point and
returns how many rewrites fired; pass a ``trace`` list to learn why near-misses were refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.ir import Graph, Node, Value, standard_domain

__all__ = [
    "Pattern",
    "Op",
    "Var",
    "Const",
    "Match",
    "Builder",
    "Rule",
    "RuleSet",
    "Refusal",
    "replace_value",
    "replacement_refusal",
    "merge_origins",
]


class Pattern:
    """Base of pattern terms; each matches one Value (an Op matches the Value's producer)."""


@dataclass(frozen=True, init=False)
class Var(Pattern):
    """Any value; the same name used twice must bind the same value."""

    name: str

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)


@dataclass(frozen=True, init=False)
class Const(Pattern):
    """A constant value (initializer or folded), optionally with a test on its array."""

    name: str
    test: Callable[[np.ndarray], bool] | None

    def __init__(self, name: str, test: Callable[[np.ndarray], bool] | None = None) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "test", test)


@dataclass(frozen=True, init=False)
class Op(Pattern):
    """A node of one of ``op_types`` whose first inputs match ``inputs``.

    Args:
        op_types: one op type or a tuple of alternatives.
        inputs: patterns for the node's leading inputs; later inputs are not constrained
            (read them from the bound node).
        name: binds the node in the match; the same name twice must be the same node.
        domain: the node's domain ("" = standard ONNX, "*" = any).
        commute: for two-input patterns, also try the operands swapped.
        output: which output of the node the consuming pattern reads.
    """

    op_types: tuple[str, ...]
    inputs: tuple[Pattern, ...]
    name: str | None
    domain: str
    commute: bool
    output: int

    def __init__(
        self,
        op_types: str | tuple[str, ...],
        *inputs: Pattern,
        name: str | None = None,
        domain: str = "",
        commute: bool = False,
        output: int = 0,
    ) -> None:
        object.__setattr__(self, "op_types", (op_types,) if isinstance(op_types, str) else tuple(op_types))
        object.__setattr__(self, "inputs", tuple(inputs))
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "commute", commute)
        object.__setattr__(self, "output", output)


class Match:
    """Bindings of one successful match: ``match["conv"]`` is a Node, ``match["x"]`` a Value."""

    def __init__(self, root: Node) -> None:
        self.root = root
        self.bindings: dict[str, Node | Value] = {}
        self.nodes: list[Node] = []

    def __getitem__(self, name: str) -> Any:
        return self.bindings[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.bindings.get(name, default)

    def node(self, name: str) -> Node:
        bound = self.bindings[name]
        assert isinstance(bound, Node)
        return bound

    def value(self, name: str) -> Value:
        bound = self.bindings[name]
        assert isinstance(bound, Value)
        return bound

    def const(self, name: str) -> np.ndarray:
        """The array of a bound constant value."""
        bound = self.value(name)
        assert bound.const is not None
        return bound.const

    def _snapshot(self) -> tuple[dict[str, Node | Value], int]:
        return dict(self.bindings), len(self.nodes)

    def _restore(self, state: tuple[dict[str, Node | Value], int]) -> None:
        self.bindings = dict(state[0])
        del self.nodes[state[1] :]


def _match_value(pattern: Pattern, value: Value | None, match: Match) -> bool:
    if value is None:
        return False
    if isinstance(pattern, Var):
        bound = match.bindings.get(pattern.name)
        if bound is not None:
            return bound is value
        match.bindings[pattern.name] = value
        return True
    if isinstance(pattern, Const):
        if value.const is None or (pattern.test is not None and not pattern.test(value.const)):
            return False
        bound = match.bindings.get(pattern.name)
        if bound is not None:
            return bound is value
        match.bindings[pattern.name] = value
        return True
    assert isinstance(pattern, Op)
    node = value.producer
    if node is None or pattern.output >= len(node.outputs) or node.outputs[pattern.output] is not value:
        return False
    return _match_node(pattern, node, match)


def _match_node(pattern: Op, node: Node, match: Match) -> bool:
    if node.op_type not in pattern.op_types:
        return False
    if pattern.domain != "*" and standard_domain(node.domain) != standard_domain(pattern.domain):
        return False
    if pattern.name is not None:
        bound = match.bindings.get(pattern.name)
        if bound is not None:
            return bound is node
    if len(node.inputs) < len(pattern.inputs):
        return False
    orders = [pattern.inputs]
    if pattern.commute and len(pattern.inputs) == 2:
        orders.append(pattern.inputs[::-1])
    for order in orders:
        state = match._snapshot()
        if pattern.name is not None:
            match.bindings[pattern.name] = node
        if not any(n is node for n in match.nodes):
            match.nodes.append(node)
        if all(_match_value(p, v, match) for p, v in zip(order, node.inputs)):
            return True
        match._restore(state)
    return False


def match_pattern(pattern: Op, node: Node) -> Match | None:
    """Match ``pattern`` with ``node`` as its root, or None."""
    match = Match(node)
    return match if _match_node(pattern, node, match) else None


def merge_origins(nodes: Sequence[Node]) -> list[str]:
    """Union of the nodes' original ONNX names, in first-seen order."""
    merged: dict[str, None] = {}
    for node in nodes:
        for name in node.origin:
            merged.setdefault(name, None)
    return list(merged)


def replacement_refusal(graph: Graph, old: Value, new: Value) -> str | None:
    """Why ``old`` cannot be replaced by ``new`` without changing the graph's interface."""
    if old is new:
        return "value would replace itself"
    if graph.is_output(old) and (new.is_const or graph.is_output(new) or any(v is new for v in graph.inputs)):
        return f"graph output '{old.name}' would lose its name to '{new.name}'"
    if old.dtype is not None and new.dtype is not None and old.dtype != new.dtype:
        return f"dtype would change from {old.dtype} to {new.dtype}"
    return None


def replace_value(graph: Graph, old: Value, new: Value) -> None:
    """Point every use of ``old`` at ``new``; ``new`` inherits a graph output's name, dtype and shape."""
    if new.dtype is None:
        new.dtype = old.dtype
    if old.shape is not None and (new.shape is None or graph.is_output(old)):
        new.shape = old.shape
    for key, item in old.meta.items():
        new.meta.setdefault(key, item)
    graph.replace_all_uses(old, new)


class Builder:
    """Creates the replacement nodes of one rewrite; they are inserted before ``anchor``."""

    def __init__(self, graph: Graph, anchor: Node) -> None:
        self.graph = graph
        self.anchor = anchor
        self.created: list[Node] = []

    @property
    def opset(self) -> int:
        return self.graph.opset.get("", 1)

    def const(self, array: np.ndarray | float | int | Sequence[Any], dtype: Any = None, hint: str = "const") -> Value:
        return self.graph.make_const(hint, np.asarray(array, dtype=dtype))

    def op(
        self,
        op_type: str,
        inputs: Sequence[Value | None],
        attrs: dict[str, Any] | None = None,
        *,
        domain: str = "",
        like: Value | None = None,
        dtype: Any = None,
        shape: tuple | None = None,
        name: str | None = None,
    ) -> Value:
        """Add a one-output node; ``like`` copies dtype and shape from an existing value."""
        return self.op_multi(
            op_type, inputs, attrs, 1, domain=domain, like=[like], dtype=dtype, shape=shape, name=name
        )[0]

    def op_multi(
        self,
        op_type: str,
        inputs: Sequence[Value | None],
        attrs: dict[str, Any] | None,
        num_outputs: int,
        *,
        domain: str = "",
        like: Sequence[Value | None] = (),
        dtype: Any = None,
        shape: tuple | None = None,
        name: str | None = None,
    ) -> list[Value]:
        """Add a node with ``num_outputs`` outputs (``like[i]`` types output i)."""
        base = name or f"{self.anchor.name}/{op_type}"
        outputs = []
        for index in range(num_outputs):
            model = like[index] if index < len(like) else None
            value = self.graph.make_value(f"{base}_out{index}")
            value.dtype = model.dtype if model is not None else (np.dtype(dtype) if dtype is not None else None)
            value.shape = model.shape if model is not None else (tuple(shape) if shape is not None else None)
            outputs.append(value)
        node = Node(op_type, inputs, outputs, attrs, name=self.graph.unique_name(base), domain=domain)
        self.graph.insert_before(self.anchor, node)
        self.created.append(node)
        return outputs


RewriteFn = Callable[[Builder, Match], "Value | Sequence[Value]"]
CheckFn = Callable[[Graph, Match], "str | None"]


@dataclass
class Rule:
    """One rewrite: ``pattern`` + optional ``check`` + ``rewrite`` (see the module docstring).

    ``shared_ok`` lists pattern node names whose outputs may also feed nodes outside the
    match (the rewrite then keeps them alive instead of fusing them away).
    """

    name: str
    pattern: Op
    rewrite: RewriteFn
    check: CheckFn | None = None
    shared_ok: tuple[str, ...] = ()

    def try_node(self, graph: Graph, node: Node) -> tuple[Match | None, str | None]:
        """(match, None) when the rule may fire on ``node``; (match or None, reason) otherwise."""
        match = match_pattern(self.pattern, node)
        if match is None:
            return None, None
        allowed = {id(match.get(n)) for n in self.shared_ok}
        inner = {id(n) for n in match.nodes}
        for matched in match.nodes:
            if matched is node or id(matched) in allowed:
                continue
            for value in matched.outputs:
                if graph.is_output(value):
                    return match, f"'{value.name}' of '{matched.name}' is a graph output"
                if any(id(user) not in inner for user in value.consumers):
                    return match, f"'{value.name}' of '{matched.name}' has a consumer outside the pattern"
        if self.check is not None:
            reason = self.check(graph, match)
            if reason is not None:
                return match, reason
        return match, None

    def apply_match(self, graph: Graph, match: Match) -> list[Node] | None:
        """Run the rewrite; returns the nodes it removed, or None (graph untouched) when refused."""
        builder = Builder(graph, match.root)
        result = self.rewrite(builder, match)
        new_values = [result] if isinstance(result, Value) else list(result)
        old_values = match.root.outputs[: len(new_values)]
        refusal = next(
            (r for old, new in zip(old_values, new_values) if (r := replacement_refusal(graph, old, new))), None
        )
        if refusal is not None or any(v.uses or graph.is_output(v) for v in match.root.outputs[len(new_values) :]):
            for created in reversed(builder.created):
                graph.remove_node(created)
            return None
        position = {id(n): i for i, n in enumerate(graph.nodes)}
        origin = merge_origins(sorted(match.nodes, key=lambda n: position.get(id(n), -1)))
        for created in builder.created:
            created.meta["origin"] = list(origin)
            for key in ("device", "precision"):
                if key in match.root.meta:
                    created.meta[key] = match.root.meta[key]
        for old, new in zip(old_values, new_values):
            replace_value(graph, old, new)
        return _remove_dead(graph, match.nodes)


def _remove_dead(graph: Graph, nodes: Sequence[Node]) -> list[Node]:
    """Remove matched nodes whose outputs lost every use, consumers first; returns them."""
    pending = list(nodes)
    removed: list[Node] = []
    progress = True
    while pending and progress:
        progress = False
        for node in list(pending):
            if not any(v.uses or graph.is_output(v) for v in node.outputs):
                graph.remove_node(node)
                pending.remove(node)
                removed.append(node)
                progress = True
    return removed


@dataclass(frozen=True)
class Refusal:
    """A near-miss: the pattern matched at ``node`` but ``rule`` refused, for ``reason``."""

    rule: str
    node: str
    reason: str


@dataclass
class RuleSet:
    """Rules applied together; :meth:`apply` loops over the graph until none fires."""

    rules: list[Rule]
    max_rounds: int = 32
    _by_op: dict[str, list[Rule]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_op = {}
        for rule in self.rules:
            for op_type in rule.pattern.op_types:
                self._by_op.setdefault(op_type, []).append(rule)

    def apply(self, graph: Graph, trace: list[Refusal] | None = None) -> int:
        """Rewrite ``graph`` in place; returns the number of rewrites that fired."""
        fired = 0
        for _ in range(self.max_rounds):
            fired_now = self._round(graph, trace)
            fired += fired_now
            if not fired_now:
                break
        return fired

    def _round(self, graph: Graph, trace: list[Refusal] | None) -> int:
        fired = 0
        removed: set[int] = set()
        for node in list(graph.nodes):
            if id(node) in removed:
                continue
            for rule in self._by_op.get(node.op_type, ()):
                match, reason = rule.try_node(graph, node)
                if match is None:
                    continue
                if reason is not None:
                    if trace is not None:
                        trace.append(Refusal(rule.name, node.name, reason))
                    continue
                gone = rule.apply_match(graph, match)
                if gone is not None:
                    fired += 1
                    removed.update(id(n) for n in gone)
                    break
                if trace is not None:
                    trace.append(Refusal(rule.name, node.name, "replacement would change the graph's interface"))
        return fired
