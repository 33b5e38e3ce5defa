"""The pass manager: fixed points, statistics, verification, errors naming the pass."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper

from edge.frontend.onnx_import import load_onnx
from edge.ir import Graph
from edge.passes import PIPELINE, Pass, PassError, optimize, run_passes
from edge.passes.dce import eliminate_dead_code
from tests.passes.helpers import const, model_of


def _chain_model():
    nodes = [
        helper.make_node("Identity", ["x"], ["a"], name="id1"),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Neg", ["a"], ["dead"], name="dead_neg"),
        helper.make_node("Add", ["b", "c"], ["y"], name="add"),
    ]
    return model_of(nodes, {"x": [2, 3]}, {"y": [2, 3]}, [const("c", np.ones(3))])


def test_fixed_point_pass_repeats_until_no_change() -> None:
    graph = load_onnx(_chain_model())
    budget = iter([1, 1, 0, 0, 0])

    report = run_passes(graph, [Pass("countdown", lambda g: next(budget), fixed_point=True)], max_rounds=1)
    assert report.stats("countdown").runs == 3 and report.stats("countdown").changes == 2


def test_stats_count_removed_nodes_and_time() -> None:
    graph = load_onnx(_chain_model())
    report = run_passes(graph, [Pass("dce", eliminate_dead_code)], check=True)
    stats = report.stats("dce")
    assert stats.changes == 1 and stats.nodes_removed == 1 and stats.seconds >= 0
    assert report.nodes_before == 4 and report.nodes_after == 3
    assert report.rows()[0]["pass"] == "dce" and report.rows()[0]["removed"] == 1
    assert "dce" in report.format() and "nodes 4 -> 3" in report.format()
    record = report.to_dict()
    assert record["nodes_before"] == 4 and record["passes"][0]["nodes_before"] == 4
    assert record["passes"][0]["nodes_after"] == 3 and record["passes"][0]["changes"] == 1
    json.dumps(record)


def test_crashing_pass_names_itself_and_the_passes_before_it() -> None:
    def broken(graph: Graph) -> int:
        raise ValueError("boom")

    graph = load_onnx(_chain_model())
    with pytest.raises(PassError, match=r"pass 'broken' crashed \(after dce\).*boom"):
        run_passes(graph, [Pass("dce", eliminate_dead_code), Pass("broken", broken)])


def test_verification_catches_a_pass_that_breaks_the_ir() -> None:
    def reorder(graph: Graph) -> int:
        graph.nodes.reverse()  # consumers before producers, and no change reported so no re-sort
        return 0

    graph = load_onnx(_chain_model())
    with pytest.raises(PassError, match="pass 'reorder' failed.*used before it is defined"):
        run_passes(graph, [Pass("reorder", reorder)], check=True)


def test_default_pipeline_reports_every_pass_once() -> None:
    graph = load_onnx(_chain_model())
    report = optimize(graph, check=True)
    assert [row["pass"] for row in report.rows()] == list(dict.fromkeys(p.name for p in PIPELINE))
    assert [n.op_type for n in graph.nodes] == ["Relu", "Add"]
