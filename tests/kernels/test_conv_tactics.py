"""Conv's registered tactics: every mode a step's tactics name computes the heuristic's result,
and that of an independent numpy convolution; a mode that cannot run the input falls back."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge.ir import Node, Value
from edge.kernels.backend import StepSpec, TensorInfo
from edge.kernels.registry import OpContext, lookup
from edge.kernels.tactics import Tactic

RNG = np.random.default_rng(5)

# (input shape, attributes, output channels)
CASES = {
    "pointwise": ((2, 8, 6, 7), dict(kernel_shape=[1, 1]), 12),
    "pointwise_strided": ((1, 8, 9, 9), dict(kernel_shape=[1, 1], strides=[2, 2]), 4),
    "3x3_s1": ((1, 8, 12, 12), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 6),
    "3x3_s1_wide": ((1, 32, 10, 9), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 32),
    "3x3_s2": ((2, 8, 15, 14), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]), 6),
    "3x3_few_outputs": ((1, 16, 20, 20), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 4),
    "depthwise": ((1, 6, 12, 12), dict(kernel_shape=[3, 3], group=6, pads=[1, 1, 1, 1]), 6),
    "depthwise_multiplier_s2": ((1, 4, 13, 13), dict(kernel_shape=[3, 3], group=4, strides=[2, 2]), 8),
    "grouped": ((1, 8, 11, 11), dict(kernel_shape=[3, 3], group=2, pads=[1, 1, 1, 1]), 6),
    "dilated": ((1, 4, 16, 16), dict(kernel_shape=[3, 3], dilations=[2, 2], pads=[2, 2, 2, 2]), 5),
    "asymmetric_pads": ((1, 32, 11, 8), dict(kernel_shape=[3, 3], pads=[0, 2, 2, 0]), 32),
    "same_upper_7x7_s2": ((1, 3, 20, 20), dict(kernel_shape=[7, 7], strides=[2, 2], auto_pad="SAME_UPPER"), 8),
    "conv1d": ((2, 4, 17), dict(kernel_shape=[5], strides=[2], pads=[2, 1]), 6),
}


def _step(shape: tuple[int, ...], attrs: dict, channels: int, bias: bool = True):
    """A Conv node with constant weights (and bias), its StepSpec, and the arrays."""
    group = attrs.get("group", 1)
    w = RNG.standard_normal((channels, shape[1] // group, *attrs["kernel_shape"])).astype(np.float32) * 0.2
    b = RNG.standard_normal(channels).astype(np.float32) if bias else None
    x = RNG.standard_normal(shape).astype(np.float32)
    inputs = [Value("x", np.float32, shape), Value("w", const=w)] + ([Value("b", const=b)] if bias else [])
    node = Node("Conv", inputs, [Value("y", np.float32)], attrs, name="conv")
    infos = [TensorInfo(v.name, v.dtype, v.shape, v.const) for v in inputs]
    spec = StepSpec(node, 19, "fp32", None, "NCHW", infos, [TensorInfo("y", np.dtype(np.float32), None)])
    return node, spec, x, w, b


def _run(node: Node, tactic: Tactic | None, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    kernel = lookup("Conv", backend="cpu", opset=19)
    return kernel.fn(OpContext(node, 19, tactic=tactic), x, w, *([] if b is None else [b]))


def _numpy_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, attrs: dict) -> np.ndarray:
    """Direct convolution in float64: each output pixel's window dotted with the kernels."""
    rank = x.ndim - 2
    kernel = tuple(attrs["kernel_shape"])
    strides = attrs.get("strides", [1] * rank)
    dilations = attrs.get("dilations", [1] * rank)
    group = attrs.get("group", 1)
    if attrs.get("auto_pad") == "SAME_UPPER":
        pads = []
        for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
            total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
            pads.append((total // 2, total - total // 2))
    else:
        flat = attrs.get("pads", [0] * 2 * rank)
        pads = list(zip(flat[:rank], flat[rank:]))
    padded = np.pad(x.astype(np.float64), [(0, 0), (0, 0), *pads])
    out = [(p - ((k - 1) * d + 1)) // s + 1 for p, k, s, d in zip(padded.shape[2:], kernel, strides, dilations)]
    n, m = x.shape[0], w.shape[0]
    cg, mg = x.shape[1] // group, m // group
    y = np.zeros((n, m, *out))
    for position in itertools.product(*(range(o) for o in out)):
        window = tuple(slice(o * s, o * s + (k - 1) * d + 1, d) for o, s, k, d in zip(position, strides, kernel, dilations))
        for g in range(group):
            patch = padded[(slice(None), slice(g * cg, (g + 1) * cg)) + window].reshape(n, -1)
            kernels = w[g * mg : (g + 1) * mg].reshape(mg, -1).astype(np.float64)
            y[(slice(None), slice(g * mg, (g + 1) * mg)) + position] = patch @ kernels.T
    if b is not None:
        y += b.reshape((-1,) + (1,) * rank)
    return y.astype(np.float32)


@pytest.mark.parametrize("jit", ["1", "0"], ids=["compiled", "numpy"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_every_tactic_matches_heuristic_and_numpy(case: str, jit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGETRT_JIT", jit)
    shape, attrs, channels = CASES[case]
    node, spec, x, w, b = _step(shape, attrs, channels, bias=case != "grouped")
    kernel = lookup("Conv", backend="cpu", opset=19)
    tactics = kernel.tactics(spec)
    names = [t.name for t in tactics]
    assert names and len(set(names)) == len(names), names
    heuristic = _run(node, None, x, w, b)
    assert _run(node, tactics[0], x, w, b).tobytes() == heuristic.tobytes(), "the first tactic is the heuristic's"
    np.testing.assert_allclose(heuristic, _numpy_conv(x, w, b, attrs), rtol=1e-4, atol=1e-4, err_msg="heuristic")
    for tactic in tactics[1:]:
        got = _run(node, tactic, x, w, b)
        np.testing.assert_allclose(got, heuristic, rtol=1e-5, atol=1e-5, err_msg=f"{tactic.name} vs heuristic")


def test_modes_cover_the_expected_variants(monkeypatch: pytest.MonkeyPatch) -> None:
    """The heuristic's choices stay what they were; the compiled kernels add their modes."""
    kernel = lookup("Conv", backend="cpu", opset=19)
    expectations = {
        "pointwise": ("pointwise", {"im2col", "gather", "tap-sum", "shifted"}),
        "3x3_s1_wide": ("winograd", {"im2col", "gather", "tap-sum", "shifted"}),
        "3x3_few_outputs": ("tap-sum", {"im2col", "gather", "shifted", "winograd"}),
        "3x3_s2": ("shifted", {"im2col", "gather", "tap-sum"}),
    }
    for case, (first, others) in expectations.items():
        names = [t.name for t in kernel.tactics(_step(*CASES[case])[1])]
        assert names[0] == first and set(names[1:]) == others, (case, names)
    monkeypatch.setenv("EDGETRT_JIT", "0")
    names = [t.name for t in kernel.tactics(_step(*CASES["3x3_s2"])[1])]
    assert names == ["gather", "tap-sum", "im2col"], names


@pytest.mark.parametrize("forced", ["winograd", "pointwise", "no-such-mode"])
def test_inapplicable_tactic_falls_back_to_heuristic(forced: str) -> None:
    node, _, x, w, b = _step(*CASES["3x3_s2"])  # strided: neither Winograd nor pointwise can run it
    heuristic = _run(node, None, x, w, b)
    assert _run(node, Tactic(forced), x, w, b).tobytes() == heuristic.tobytes()


def test_unknown_shapes_have_no_tactics() -> None:
    _, spec, *_ = _step(*CASES["3x3_s1"])
    spec.inputs[0] = TensorInfo("x", np.dtype(np.float32), None)
    assert lookup("Conv", backend="cpu").tactics(spec) == []


def test_fused_conv_shares_conv_tactics() -> None:
    assert lookup("FusedConv", domain="edgetrt", backend="cpu").tactics is lookup("Conv", backend="cpu").tactics


def test_symbolic_spatial_dims_have_no_tactics_and_the_model_builds_and_runs() -> None:
    """A Conv+Relu with dynamic height/width (as detection models carry) builds, and runs at
    two sizes like onnxruntime; the tuner used to add a dim name to an int (TypeError)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import edge
    from tests.conftest import ort_run

    _, spec, *_ = _step(*CASES["3x3_s1"])
    spec.inputs[0] = TensorInfo("x", np.dtype(np.float32), (1, 8, "h", "w"))
    assert lookup("Conv", backend="cpu").tactics(spec) == []
    weight = numpy_helper.from_array(RNG.standard_normal((6, 8, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "dynamic_hw",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, "h", "w"])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    context = edge.build(model.SerializeToString()).create_context()
    for size in ((9, 13), (16, 16)):
        x = RNG.standard_normal((1, 8, *size)).astype(np.float32)
        np.testing.assert_allclose(context.run({"x": x})["y"], ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)
