"""Recognition of decomposed LayerNorm, GELU, SiLU, HardSwish and attention."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import helper

from edge.frontend.onnx_import import load_onnx
from edge.passes.recognize import RECOGNIZE_RULES, recognize
from edge.runtime.interpreter import run_graph
from tests.passes.helpers import const, feeds_for, model_of, ops, run_pass

RNG = np.random.default_rng(3)
N = helper.make_node


def _layernorm_nodes(axes: list[int], square: str = "Pow") -> tuple[list, list]:
    nodes = [
        N("ReduceMean", ["x"], ["mean"], axes=axes),
        N("Sub", ["x", "mean"], ["d"]),
        N("Pow", ["d", "two"], ["sq"]) if square == "Pow" else N("Mul", ["d", "d"], ["sq"]),
        N("ReduceMean", ["sq"], ["var"], axes=axes),
        N("Add", ["var", "eps"], ["ve"]),
        N("Sqrt", ["ve"], ["std"]),
        N("Div", ["d", "std"], ["n"]),
        N("Mul", ["n", "gamma"], ["scaled"]),
        N("Add", ["scaled", "beta"], ["y"]),
    ]
    inits = [
        const("two", np.float32(2)),
        const("eps", np.float32(1e-5)),
        const("gamma", RNG.uniform(0.5, 1.5, 6)),
        const("beta", RNG.standard_normal(6)),
    ]
    return nodes, inits


@pytest.mark.parametrize("square", ["Pow", "Mul"])
def test_decomposed_layernorm_with_affine_becomes_one_op(square: str) -> None:
    nodes, inits = _layernorm_nodes([-1], square)
    graph, fired = run_pass(model_of(nodes, {"x": [2, 3, 6]}, {"y": [2, 3, 6]}, inits), recognize, rtol=1e-4, atol=1e-5)
    assert fired == 3 and ops(graph) == ["LayerNormalization"]
    assert graph.nodes[0].attrs == {"axis": 2, "epsilon": pytest.approx(1e-5)}
    assert len(graph.nodes[0].meta["origin"]) == 9


def test_layernorm_over_a_leading_axis_is_not_recognized() -> None:
    nodes, inits = _layernorm_nodes([1])
    inits[2:] = [const("gamma", RNG.uniform(0.5, 1.5, (3, 1))), const("beta", RNG.standard_normal((3, 1)))]
    graph = load_onnx(model_of(nodes, {"x": [2, 3, 6]}, {"y": [2, 3, 6]}, inits))
    trace: list = []
    RECOGNIZE_RULES.apply(graph, trace)
    assert "LayerNormalization" not in ops(graph)
    assert any("not the trailing axes" in r.reason for r in trace)


def _gelu_erf(half: float = 0.5) -> tuple[list, list]:
    nodes = [
        N("Div", ["x", "sqrt2"], ["s"]),
        N("Erf", ["s"], ["e"]),
        N("Add", ["e", "one"], ["g"]),
        N("Mul", ["x", "g"], ["xg"]),
        N("Mul", ["xg", "half"], ["y"]),
    ]
    inits = [const("sqrt2", np.float32(math.sqrt(2))), const("one", np.float32(1)), const("half", np.float32(half))]
    return nodes, inits


def test_gelu_erf_form() -> None:
    from edge.passes.canonicalize import canonicalize

    nodes, inits = _gelu_erf()
    graph, fired = run_pass(
        model_of(nodes, {"x": [4, 5]}, {"y": [4, 5]}, inits), lambda g: canonicalize(g) + recognize(g), rtol=1e-5
    )
    assert ops(graph) == ["Gelu"] and graph.nodes[0].attrs == {}


def test_gelu_with_a_wrong_constant_is_not_recognized() -> None:
    nodes, inits = _gelu_erf(half=0.6)
    graph, fired = run_pass(model_of(nodes, {"x": [4, 5]}, {"y": [4, 5]}, inits), recognize)
    assert fired == 0 and "Gelu" not in ops(graph)


def test_gelu_tanh_form() -> None:
    nodes = [
        N("Mul", ["x", "half"], ["hx"]),
        N("Pow", ["x", "three"], ["cube"]),
        N("Mul", ["c3", "cube"], ["k"]),
        N("Add", ["x", "k"], ["p"]),
        N("Mul", ["p", "c2"], ["q"]),
        N("Tanh", ["q"], ["t"]),
        N("Add", ["one", "t"], ["g"]),
        N("Mul", ["hx", "g"], ["y"]),
    ]
    inits = [
        const("half", np.float32(0.5)),
        const("three", np.float32(3)),
        const("c3", np.float32(0.044715)),
        const("c2", np.float32(0.7978845608)),
        const("one", np.float32(1)),
    ]
    graph, fired = run_pass(model_of(nodes, {"x": [4, 5]}, {"y": [4, 5]}, inits, opset=20), recognize, rtol=1e-5)
    assert fired == 1 and ops(graph) == ["Gelu"] and graph.nodes[0].attrs == {"approximate": "tanh"}


def test_silu_and_its_near_miss() -> None:
    nodes = [N("Sigmoid", ["x"], ["s"]), N("Mul", ["s", "x"], ["y"])]
    graph, fired = run_pass(model_of(nodes, {"x": [3, 4]}, {"y": [3, 4]}), recognize)
    assert fired == 1 and ops(graph) == ["SiLU"] and graph.nodes[0].domain == "edgetrt"
    nodes = [N("Sigmoid", ["x"], ["s"]), N("Mul", ["s", "z"], ["y"])]
    graph, fired = run_pass(model_of(nodes, {"x": [3, 4], "z": [3, 4]}, {"y": [3, 4]}), recognize)
    assert fired == 0


def test_hard_swish_forms() -> None:
    nodes = [N("HardSigmoid", ["x"], ["h"], alpha=1 / 6, beta=0.5), N("Mul", ["x", "h"], ["y"])]
    graph, fired = run_pass(model_of(nodes, {"x": [3, 4]}, {"y": [3, 4]}), recognize)
    assert fired == 1 and ops(graph) == ["HardSwish"]
    nodes = [
        N("Add", ["x", "three"], ["a"]),
        N("Clip", ["a", "zero", "six"], ["c"]),
        N("Mul", ["x", "c"], ["m"]),
        N("Mul", ["m", "sixth"], ["y"]),
    ]
    inits = [
        const("three", np.float32(3)),
        const("zero", np.float32(0)),
        const("six", np.float32(6)),
        const("sixth", np.float32(1 / 6)),
    ]
    graph, fired = run_pass(model_of(nodes, {"x": [3, 4]}, {"y": [3, 4]}, inits), recognize, rtol=1e-5)
    assert fired == 1 and ops(graph) == ["HardSwish"]
    nodes = [N("HardSigmoid", ["x"], ["h"]), N("Mul", ["x", "h"], ["y"])]  # default alpha 0.2: not hard-swish
    assert run_pass(model_of(nodes, {"x": [3, 4]}, {"y": [3, 4]}), recognize)[1] == 0


def _attention(scale: bool, mask: bool, k_perm: list[int], axis: int = -1) -> tuple[list, list, dict]:
    nodes = [N("Transpose", ["k"], ["kt"], perm=k_perm), N("MatMul", ["q", "kt"], ["s0"])]
    last = "s0"
    if scale:
        nodes.append(N("Mul", [last, "scale"], ["s1"]))
        last = "s1"
    if mask:
        nodes.append(N("Add", ["mask", last], ["s2"]))
        last = "s2"
    nodes += [N("Softmax", [last], ["p"], axis=axis), N("MatMul", ["p", "v"], ["y"])]
    k_shape = [2, 5, 3, 4] if k_perm == [0, 2, 3, 1] else [2, 3, 5, 4]
    inputs = {"q": [2, 3, 6, 4], "k": k_shape, "v": [2, 3, 5, 4]} | ({"mask": [2, 1, 1, 5]} if mask else {})
    return nodes, [const("scale", np.float32(0.5))] if scale else [], inputs


@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("mask", [True, False])
@pytest.mark.parametrize("k_perm", [[0, 1, 3, 2], [0, 2, 3, 1]])
def test_attention(scale: bool, mask: bool, k_perm: list[int]) -> None:
    nodes, inits, inputs = _attention(scale, mask, k_perm)
    graph, fired = run_pass(model_of(nodes, inputs, {"y": [2, 3, 6, 4]}, inits), recognize, rtol=1e-5)
    assert fired == 1 and "Attention" in ops(graph)
    node = [n for n in graph.nodes if n.op_type == "Attention"][0]
    assert node.attrs["scale"] == (0.5 if scale else 1.0) and len(node.inputs) == 3 + mask
    assert ops(graph).count("Transpose") == (0 if k_perm == [0, 1, 3, 2] else 1)


@pytest.mark.parametrize("sides", [("q", "k"), ("q",), ("k",)])
def test_attention_with_the_scale_split_onto_q_and_k(sides: tuple[str, ...]) -> None:
    """transformers' SDPA export scales Q and Kᵀ by √(1/√d) each: one Attention whose scale is
    the product (checked against the unfused graph's outputs by run_pass)."""
    nodes = [N("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2])]
    q, kt = "q", "kt"
    if "q" in sides:
        nodes.append(N("Mul", ["q", "q_scale"], ["qs"]))
        q = "qs"
    if "k" in sides:
        nodes.append(N("Mul", ["k_scale", "kt"], ["kts"]))
        kt = "kts"
    nodes += [N("MatMul", [q, kt], ["s"]), N("Softmax", ["s"], ["p"], axis=-1), N("MatMul", ["p", "v"], ["y"])]
    inits = [const("q_scale", np.float32(0.5)), const("k_scale", np.float32(0.25))]
    inputs = {"q": [2, 3, 6, 4], "k": [2, 3, 5, 4], "v": [2, 3, 5, 4]}
    graph, fired = run_pass(model_of(nodes, inputs, {"y": [2, 3, 6, 4]}, inits), recognize, rtol=1e-5)
    assert fired == 1 and ops(graph) == ["Attention"]
    expected = {("q", "k"): 0.125, ("q",): 0.5, ("k",): 0.25}[sides]
    assert graph.nodes[0].attrs["scale"] == pytest.approx(expected)


def _guarded_attention(mask: str | None) -> tuple[list, list, dict]:
    """torch's SDPA export: softmax rows that a mask blanks out entirely are NaN, and
    ``Where(IsNaN(p), 0, p)`` zeroes them."""
    nodes = [N("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]), N("MatMul", ["q", "kt"], ["s"])]
    scores = "s"
    if mask is not None:
        nodes.append(N("Add", ["s", "mask"], ["sm"]))
        scores = "sm"
    nodes += [
        N("Softmax", [scores], ["p"], axis=-1),
        N("IsNaN", ["p"], ["nan"]),
        N("Where", ["nan", "zero", "p"], ["pz"]),
        N("MatMul", ["pz", "v"], ["y"]),
    ]
    inits = [const("zero", np.float32(0))]
    inputs = {"q": [2, 3, 6, 4], "k": [2, 3, 5, 4], "v": [2, 3, 5, 4]}
    if mask == "constant":
        inits.append(const("mask", np.where(RNG.random((1, 1, 6, 5)) < 0.3, -1e4, 0.0)))
    elif mask == "input":
        inputs["mask"] = [2, 1, 1, 5]
    return nodes, inits, inputs


@pytest.mark.parametrize("mask", [None, "constant"])
def test_attention_behind_torchs_nan_guard(mask: str | None) -> None:
    """Without a mask, or with a finite constant one, no row is blanked out: one Attention,
    equal to onnxruntime on the exported form."""
    import onnxruntime as ort

    nodes, inits, inputs = _guarded_attention(mask)
    model = model_of(nodes, inputs, {"y": [2, 3, 6, 4]}, inits)
    graph, fired = run_pass(model, recognize, rtol=1e-5)
    assert fired == 1 and ops(graph) == ["Attention"]
    feeds = feeds_for(graph, seed=1)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(run_graph(graph, feeds)["y"], expected, rtol=1e-5, atol=1e-6)


def test_nan_guard_with_a_runtime_mask_is_kept() -> None:
    """A mask computed at run time may blank out a row, where the guard's zeros differ from
    what a plain Attention gives: not recognized."""
    nodes, inits, inputs = _guarded_attention("input")
    graph, fired = run_pass(model_of(nodes, inputs, {"y": [2, 3, 6, 4]}, inits), recognize)
    assert fired == 0 and "IsNaN" in ops(graph)


def _multi_head(out_perm: list[int]) -> tuple[list, list, dict]:
    """A multi-head block as exporters write it: Q, K, V projections reshaped to (batch,
    sequence, heads, size) and moved to (batch, heads, sequence, size), attention, moved back
    by ``out_perm`` and merged."""
    b, s, h, d = 2, 6, 3, 4
    nodes = []
    for role in "qkv":
        nodes += [N("MatMul", ["x", f"w{role}"], [f"{role}p"]), N("Reshape", [f"{role}p", "split"], [f"{role}s"]),
                  N("Transpose", [f"{role}s"], [f"{role}h"], perm=[0, 2, 1, 3])]
    nodes += [
        N("Transpose", ["kh"], ["kt"], perm=[0, 1, 3, 2]), N("MatMul", ["qh", "kt"], ["s0"]), N("Mul", ["s0", "scale"], ["s1"]),
        N("Add", ["s1", "mask"], ["s2"]), N("Softmax", ["s2"], ["p"], axis=-1), N("MatMul", ["p", "vh"], ["o"]),
        N("Transpose", ["o"], ["om"], perm=out_perm), N("Reshape", ["om", "merge"], ["y"]),
    ]
    inits = [const(f"w{role}", RNG.standard_normal((h * d, h * d)) / 4) for role in "qkv"]
    inits += [const("split", np.array([b, s, h, d], np.int64)), const("merge", np.array([b, s, h * d], np.int64)),
              const("scale", np.float32(0.5))]
    return nodes, inits, {"x": [b, s, h * d], "mask": [b, 1, 1, s]}


def test_head_split_transposes_fold_into_the_attention() -> None:
    """The four Transposes of the head split go: one Attention reading (batch, sequence,
    heads, size) in place, equal to onnxruntime on the exported form."""
    import onnxruntime as ort

    nodes, inits, inputs = _multi_head([0, 2, 1, 3])
    model = model_of(nodes, inputs, {"y": [2, 6, 12]}, inits)
    graph, _ = run_pass(model, recognize, rtol=1e-5)
    assert "Transpose" not in ops(graph) and ops(graph).count("Attention") == 1
    assert [n for n in graph.nodes if n.op_type == "Attention"][0].attrs["bshd"] == 1
    feeds = feeds_for(graph, seed=2)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(run_graph(graph, feeds)["y"], expected, rtol=1e-5, atol=1e-6)


def test_an_output_moved_otherwise_keeps_the_head_transposes() -> None:
    nodes, inits, inputs = _multi_head([0, 2, 3, 1])
    nodes[-1] = N("Reshape", ["om", "merge"], ["y"])
    inits[-2] = const("merge", np.array([2, 3, 24], np.int64))
    graph, _ = run_pass(model_of(nodes, inputs, {"y": [2, 3, 24]}, inits), recognize, rtol=1e-5)
    attention = [n for n in graph.nodes if n.op_type == "Attention"][0]
    assert not attention.attrs.get("bshd") and ops(graph).count("Transpose") == 4


def test_softmax_over_another_axis_is_not_attention() -> None:
    nodes, inits, inputs = _attention(True, False, [0, 1, 3, 2], axis=2)
    graph, fired = run_pass(model_of(nodes, inputs, {"y": [2, 3, 6, 4]}, inits), recognize)
    assert fired == 0


def _channel_shuffle(perm: list[int], merge: list[int]) -> tuple[list, list]:
    """Reshape (1, 12, 5, 6) into 3 groups of 4 channels, transpose by ``perm``, reshape to ``merge``."""
    nodes = [
        N("Reshape", ["x", "split"], ["s"]),
        N("Transpose", ["s"], ["t"], perm=perm),
        N("Reshape", ["t", "merge"], ["y"]),
    ]
    inits = [const("split", np.array([1, 3, 4, 5, 6], np.int64)), const("merge", np.array(merge, np.int64))]
    return nodes, inits


def test_channel_shuffle_becomes_one_op_matching_the_three_layers() -> None:
    """run_pass compares the ChannelShuffle output with the original reshape-transpose-reshape, exactly."""
    nodes, inits = _channel_shuffle([0, 2, 1, 3, 4], [1, 12, 5, 6])
    graph, fired = run_pass(model_of(nodes, {"x": [1, 12, 5, 6]}, {"y": [1, 12, 5, 6]}, inits), recognize, 0, 0)
    assert fired == 1 and ops(graph) == ["ChannelShuffle"]
    assert graph.nodes[0].domain == "edgetrt" and graph.nodes[0].attrs == {"groups": 3}


def test_other_permutations_are_not_a_channel_shuffle() -> None:
    nodes, inits = _channel_shuffle([0, 1, 2, 4, 3], [1, 12, 6, 5])  # swaps the spatial axes instead
    graph, fired = run_pass(model_of(nodes, {"x": [1, 12, 5, 6]}, {"y": [1, 12, 6, 5]}, inits), recognize)
    assert fired == 0 and ops(graph) == ["Reshape", "Transpose", "Reshape"]
