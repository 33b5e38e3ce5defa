"""Resize/Upsample CPU kernels against onnxruntime on random inputs, mode by mode."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from edge.frontend import load_onnx
from edge.runtime.interpreter import run_graph

RNG = np.random.default_rng(7)
COORDINATE_MODES = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric"]
NEAREST_MODES = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]


def _model(attrs: dict, x: np.ndarray, scales=None, sizes=None, roi=None, opset: int = 19, axes_rank: int | None = None):
    """A one-node Resize model; scales/sizes/roi become initializers."""
    inits, names = [], ["x", "", "", ""]
    for index, (name, value, dtype) in enumerate(
        [("roi", roi, np.float32), ("scales", scales, np.float32), ("sizes", sizes, np.int64)], start=1
    ):
        if value is not None:
            inits.append(helper.make_tensor(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), [len(value)], list(value)))
            names[index] = name
    while names[-1] == "":
        names.pop()
    node = helper.make_node("Resize", names, ["y"], **attrs)
    elem = helper.np_dtype_to_tensor_dtype(x.dtype)
    graph = helper.make_graph(
        [node], "resize", [helper.make_tensor_value_info("x", elem, list(x.shape))],
        [helper.make_tensor_value_info("y", elem, [None] * x.ndim)], inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _compare(model, x: np.ndarray, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = run_graph(load_onnx(model), {"x": x})["y"]
    assert got.dtype == want.dtype and got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("coordinate_mode", [m for m in COORDINATE_MODES if m != "align_corners"])
@pytest.mark.parametrize("nearest_mode", NEAREST_MODES)
@pytest.mark.parametrize("scales", [[1, 1, 2.0, 3.0], [1, 1, 0.5, 0.75], [1, 1, 1.7, 0.65]])
def test_nearest_every_mode_scales(coordinate_mode: str, nearest_mode: str, scales: list[float]) -> None:
    x = RNG.standard_normal((2, 3, 5, 7)).astype(np.float32)
    attrs = {"mode": "nearest", "coordinate_transformation_mode": coordinate_mode, "nearest_mode": nearest_mode}
    _compare(_model(attrs, x, scales=scales), x)


@pytest.mark.parametrize("coordinate_mode", COORDINATE_MODES)
@pytest.mark.parametrize("nearest_mode", NEAREST_MODES)
def test_nearest_every_mode_sizes(coordinate_mode: str, nearest_mode: str) -> None:
    x = RNG.standard_normal((2, 3, 5, 7)).astype(np.float32)
    attrs = {"mode": "nearest", "coordinate_transformation_mode": coordinate_mode, "nearest_mode": nearest_mode}
    _compare(_model(attrs, x, sizes=[2, 3, 9, 4]), x)


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_align_corners_fractional_scale_follows_onnx(mode: str) -> None:
    """With scales whose in*scale is fractional, align_corners divides by that fractional
    length (ONNX's reference and node cases); onnxruntime divides by the floored size."""
    x = RNG.standard_normal((1, 2, 5, 7)).astype(np.float32)
    model = _model({"mode": mode, "coordinate_transformation_mode": "align_corners"}, x, scales=[1, 1, 0.5, 1.3])
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(run_graph(load_onnx(model), {"x": x})["y"], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("coordinate_mode", COORDINATE_MODES)
@pytest.mark.parametrize("sizes", [[2, 3, 11, 4], [2, 3, 3, 13], [2, 3, 1, 7]])
def test_linear_cubic_sizes(mode: str, coordinate_mode: str, sizes: list[int]) -> None:
    x = RNG.standard_normal((2, 3, 6, 5)).astype(np.float32)
    attrs = {"mode": mode, "coordinate_transformation_mode": coordinate_mode}
    _compare(_model(attrs, x, sizes=sizes), x)


@pytest.mark.parametrize("exclude_outside", [0, 1])
@pytest.mark.parametrize("a", [-0.5, -0.75])
def test_cubic_coefficient_and_exclude_outside(exclude_outside: int, a: float) -> None:
    x = RNG.standard_normal((1, 2, 8, 8)).astype(np.float32)
    attrs = {"mode": "cubic", "cubic_coeff_a": a, "exclude_outside": exclude_outside}
    _compare(_model(attrs, x, scales=[1, 1, 1.5, 0.6]), x)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_antialias_downsample(mode: str) -> None:
    x = RNG.standard_normal((1, 2, 16, 12)).astype(np.float32)
    attrs = {"mode": mode, "antialias": 1}
    _compare(_model(attrs, x, sizes=[1, 2, 5, 7]), x, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_tf_crop_and_resize(mode: str) -> None:
    x = RNG.standard_normal((1, 1, 10, 10)).astype(np.float32)
    attrs = {"mode": mode, "coordinate_transformation_mode": "tf_crop_and_resize", "extrapolation_value": 7.5}
    roi = [0, 0, -0.2, 0.3, 1, 1, 0.6, 1.3]
    _compare(_model(attrs, x, sizes=[1, 1, 6, 9], roi=roi), x)


@pytest.mark.parametrize("policy", ["not_larger", "not_smaller"])
def test_axes_and_keep_aspect_ratio(policy: str) -> None:
    x = RNG.standard_normal((2, 3, 9, 6)).astype(np.float32)
    attrs = {"mode": "linear", "axes": [3, 2], "keep_aspect_ratio_policy": policy}
    _compare(_model(attrs, x, sizes=[10, 4]), x)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_integer_input(mode: str) -> None:
    x = RNG.integers(0, 256, (1, 1, 5, 5)).astype(np.uint8)
    _compare(_model({"mode": mode}, x, scales=[1, 1, 1.8, 1.8]), x, rtol=0, atol=1)


def test_integer_cubic_rounds_and_saturates() -> None:
    """Cubic overshoots past 0/255 near sharp edges; integer outputs are rounded and clipped."""
    x = np.array([[[[0, 0, 0, 255, 255, 255]]]], np.uint8)
    model = _model({"mode": "cubic"}, x, scales=[1, 1, 1, 2.0])
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    got = run_graph(load_onnx(model), {"x": x})["y"]
    assert got.dtype == np.uint8 and got.min() == 0 and got.max() == 255
    np.testing.assert_array_equal(got, want)


def test_large_upsample_is_vectorised_and_matches() -> None:
    """A detection-model-sized 2x nearest and linear upsample (fast only if vectorised)."""
    x = RNG.standard_normal((1, 64, 80, 80)).astype(np.float32)
    for attrs in ({"mode": "nearest"}, {"mode": "linear"}):
        _compare(_model(attrs, x, scales=[1, 1, 2, 2]), x)


@pytest.mark.parametrize("opset,mode", [(9, "nearest"), (9, "linear"), (7, "nearest")])
def test_upsample(opset: int, mode: str) -> None:
    x = RNG.standard_normal((1, 2, 4, 5)).astype(np.float32)
    scales = [1.0, 1.0, 2.0, 3.0]
    if opset == 7:
        node = helper.make_node("Upsample", ["x"], ["y"], mode=mode, scales=scales)
        inits = []
    else:
        node = helper.make_node("Upsample", ["x", "s"], ["y"], mode=mode)
        inits = [helper.make_tensor("s", TensorProto.FLOAT, [4], scales)]
    graph = helper.make_graph(
        [node], "up", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)], inits,
    )
    _compare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), x)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_opset10(mode: str) -> None:
    x = RNG.standard_normal((1, 2, 6, 6)).astype(np.float32)
    node = helper.make_node("Resize", ["x", "s"], ["y"], mode=mode)
    graph = helper.make_graph(
        [node], "r10", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)],
        [helper.make_tensor("s", TensorProto.FLOAT, [4], [1.0, 1.0, 0.5, 2.5])],
    )
    _compare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)]), x)
