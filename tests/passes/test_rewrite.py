"""The pattern matcher and rule application: matching, commuting, refusals, origins, interface."""

from __future__ import annotations

import numpy as np
from onnx import helper

from edge.frontend.onnx_import import load_onnx
from edge.passes.rewrite import Builder, Const, Match, Op, Refusal, Rule, RuleSet, Var, match_pattern
from tests.passes.helpers import const, model_of, ops, run_pass


def _relu_add_rule() -> Rule:
    """Add(Relu(x), c) -> Sum(Relu(x), c) with a fresh Relu (a toy rewrite)."""

    def rewrite(b: Builder, m: Match):
        relu = b.op("Relu", [m["x"]], like=m.node("r").outputs[0])
        return b.op("Sum", [relu, m["c"]], like=m.root.outputs[0])

    return Rule("toy", Op("Add", Op("Relu", Var("x"), name="r"), Const("c"), commute=True), rewrite)


def _relu_add_model(order: tuple[str, str], extra_output: bool = False):
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Add", list(order), ["y"], name="add"),
    ]
    outputs = {"y": [2, 3]} | ({"r": [2, 3]} if extra_output else {})
    return model_of(nodes, {"x": [2, 3]}, outputs, [const("c", np.ones(3))])


def test_commuted_operands_match_both_orders() -> None:
    for order in (("r", "c"), ("c", "r")):
        graph = load_onnx(_relu_add_model(order))
        match = match_pattern(_relu_add_rule().pattern, graph.node("add"))
        assert match is not None and match.value("c").is_const and match.node("r").name == "relu"


def test_pattern_without_commute_rejects_swapped_operands() -> None:
    graph = load_onnx(_relu_add_model(("c", "r")))
    assert match_pattern(Op("Add", Op("Relu", Var("x")), Const("c")), graph.node("add")) is None


def test_repeated_variable_must_bind_the_same_value() -> None:
    nodes = [helper.make_node("Sigmoid", ["b"], ["s"]), helper.make_node("Mul", ["a", "s"], ["y"], name="mul")]
    graph = load_onnx(model_of(nodes, {"a": [4], "b": [4]}, {"y": [4]}))
    silu = Op("Mul", Var("x"), Op("Sigmoid", Var("x")), commute=True)
    assert match_pattern(silu, graph.node("mul")) is None
    nodes = [helper.make_node("Sigmoid", ["a"], ["s"]), helper.make_node("Mul", ["s", "a"], ["y"], name="mul")]
    graph = load_onnx(model_of(nodes, {"a": [4]}, {"y": [4]}))
    assert match_pattern(silu, graph.node("mul")) is not None


def test_rule_fires_counts_and_merges_origins() -> None:
    graph, fired = run_pass(_relu_add_model(("r", "c")), RuleSet([_relu_add_rule()]).apply)
    assert fired == 1
    assert ops(graph) == ["Relu", "Sum"]
    assert all(n.meta["origin"] == ["relu", "add"] for n in graph.nodes)
    assert graph.outputs[0].name == "y"


def test_refuses_when_an_inner_value_is_a_graph_output() -> None:
    graph = load_onnx(_relu_add_model(("r", "c"), extra_output=True))
    trace: list[Refusal] = []
    assert RuleSet([_relu_add_rule()]).apply(graph, trace) == 0
    assert trace and trace[0].rule == "toy" and "graph output" in trace[0].reason


def test_refuses_when_an_inner_value_has_an_outside_consumer() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Add", ["r", "c"], ["y"], name="add"),
        helper.make_node("Neg", ["r"], ["z"], name="neg"),
    ]
    graph = load_onnx(model_of(nodes, {"x": [3]}, {"y": [3], "z": [3]}, [const("c", np.ones(3))]))
    trace: list[Refusal] = []
    assert RuleSet([_relu_add_rule()]).apply(graph, trace) == 0
    assert "consumer outside the pattern" in trace[0].reason


def test_check_reason_is_reported_and_graph_untouched() -> None:
    rule = _relu_add_rule()
    rule.check = lambda graph, match: "weights are not constant"
    graph = load_onnx(_relu_add_model(("r", "c")))
    trace: list[Refusal] = []
    assert RuleSet([rule]).apply(graph, trace) == 0
    assert trace == [Refusal("toy", "add", "weights are not constant")]
    assert ops(graph) == ["Relu", "Add"] and graph.nodes[0].name == "relu"


def test_bypass_never_renames_a_graph_input() -> None:
    """Replacing an output by a graph input would rename the input: refused, graph intact."""
    bypass = Rule("bypass", Op("Identity", Var("x")), lambda b, m: m.value("x"))
    graph = load_onnx(model_of([helper.make_node("Identity", ["x"], ["y"])], {"x": [2]}, {"y": [2]}))
    assert RuleSet([bypass]).apply(graph) == 0
    assert [v.name for v in graph.inputs] == ["x"] and [v.name for v in graph.outputs] == ["y"]


def test_rewrite_at_the_output_keeps_the_output_name() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Identity", ["r"], ["y"])]
    bypass = Rule("bypass", Op("Identity", Var("x")), lambda b, m: m.value("x"))
    graph, fired = run_pass(model_of(nodes, {"x": [2]}, {"y": [2]}), RuleSet([bypass]).apply)
    assert fired == 1 and ops(graph) == ["Relu"] and graph.nodes[0].outputs[0].name == "y"


def test_a_rule_that_keeps_matching_stops_at_the_round_cap() -> None:
    rebuild = Rule("rebuild", Op("Relu", Var("x")), lambda b, m: b.op("Relu", [m["x"]], like=m.root.outputs[0]))
    graph = load_onnx(model_of([helper.make_node("Relu", ["x"], ["y"])], {"x": [2]}, {"y": [2]}))
    assert RuleSet([rebuild], max_rounds=5).apply(graph) == 5
    assert ops(graph) == ["Relu"] and graph.outputs[0].name == "y"
