"""Shape, layout and indexing CPU kernels against onnxruntime on random inputs, covering
the corners ONNX's node cases touch lightly (negative steps, clamping, reductions, batch dims)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from edge.frontend import load_onnx
from edge.runtime.interpreter import run_graph

RNG = np.random.default_rng(11)


def _check(op: str, data: dict[str, np.ndarray], consts: dict[str, np.ndarray | None], n_out: int = 1,
           opset: int = 18, **attrs) -> None:
    """One-node model: ``data`` become graph inputs, ``consts`` initializers (None = omitted);
    input order is data then consts as listed."""
    names = [*data, *consts]
    while names and names[-1] in consts and consts[names[-1]] is None:
        names.pop()
    node_inputs = ["" if n in consts and consts[n] is None else n for n in names]
    outputs = [f"y{i}" for i in range(n_out)]
    graph = helper.make_graph(
        [helper.make_node(op, node_inputs, outputs, **attrs)], op,
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in data.items()],
        [helper.make_empty_tensor_value_info(o) for o in outputs],
        [numpy_helper.from_array(v, k) for k, v in consts.items() if v is not None],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, data)
    # onnx's checker wants typed outputs: declare dtype and rank only, never the sizes.
    for value, expected in zip(model.graph.output, want):
        typed = helper.make_tensor_value_info(value.name, helper.np_dtype_to_tensor_dtype(expected.dtype), [None] * expected.ndim)
        value.CopyFrom(typed)
    got = run_graph(load_onnx(model), data)
    for name, expected in zip(outputs, want):
        assert got[name].dtype == expected.dtype and got[name].shape == expected.shape, (got[name].shape, expected.shape)
        np.testing.assert_array_equal(got[name], expected)


def _i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


@pytest.mark.parametrize(
    "starts,ends,axes,steps",
    [
        ((-1, 10), (-100, -2), (0, 2), (-1, -3)),
        ((9223372036854775807,), (-9223372036854775807,), (1,), (-2,)),
        ((2, -3), (100, 9999), (-1, 0), (2, 1)),
        ((5,), (1,), (1,), (1,)),
        ((3, 0), (-100, 1), (0, 1), (-1, 1)),
    ],
)
def test_slice_negative_steps_and_clamping(starts, ends, axes, steps) -> None:
    x = RNG.standard_normal((4, 6, 7)).astype(np.float32)
    _check("Slice", {"x": x}, {"starts": _i64(*starts), "ends": _i64(*ends), "axes": _i64(*axes), "steps": _i64(*steps)})


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize("pads,axes", [((1, 2, 2, 1), (1, 2)), ((0, -1, 1, 2), (-2, -1)), ((2, 0, 0, 2, 1, 0), None)])
def test_pad_modes(mode: str, pads, axes) -> None:
    x = RNG.standard_normal((3, 4, 5)).astype(np.float32)
    if axes is None and len(pads) != 2 * x.ndim:
        pytest.skip("pads must cover every axis without axes")
    consts = {"pads": _i64(*pads), "value": np.array(1.5, np.float32) if mode == "constant" else None,
              "axes": None if axes is None else _i64(*axes)}
    _check("Pad", {"x": x}, consts, opset=19, mode=mode)


@pytest.mark.parametrize("batch_dims", [0, 1, 2])
def test_gather_nd_batch_dims(batch_dims: int) -> None:
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    depth = 2
    shape = (2, 3)[:batch_dims] + (6, depth)
    limits = np.array(x.shape[batch_dims : batch_dims + depth])
    indices = (RNG.integers(0, 1 << 20, shape) % limits) - RNG.integers(0, 2, shape) * limits  # some negative
    _check("GatherND", {"x": x}, {"i": indices.astype(np.int64)}, batch_dims=batch_dims)


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_nd_reductions(reduction: str) -> None:
    x = RNG.standard_normal((4, 3, 5)).astype(np.float32)
    repeat = reduction != "none"  # duplicates only where the result is defined
    indices = np.array([[1, 2], [3, 0], [1, 2] if repeat else [0, 0], [-1, 1]], np.int64)
    updates = RNG.standard_normal((4, 5)).astype(np.float32)
    _check("ScatterND", {"x": x}, {"i": indices, "u": updates}, reduction=reduction)


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
@pytest.mark.parametrize("axis", [0, -1])
def test_scatter_elements_reductions(reduction: str, axis: int) -> None:
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    updates = RNG.standard_normal((2, 4)).astype(np.float32)
    dim = x.shape[axis]
    if reduction == "none":  # distinct targets per line along the axis
        indices = np.stack([RNG.permutation(dim)[:2] for _ in range(4)], axis=1) if axis == 0 else \
            np.stack([RNG.permutation(dim)[:4] for _ in range(2)]) - dim
        updates = updates if axis == 0 else RNG.standard_normal((2, 4)).astype(np.float32)
    else:
        indices = RNG.integers(-dim, dim, (2, 4))
    _check("ScatterElements", {"x": x}, {"i": indices.astype(np.int64), "u": updates}, axis=axis, reduction=reduction)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_and_gather_elements_negative_indices(axis: int) -> None:
    x = RNG.standard_normal((3, 4, 5)).astype(np.float32)
    dim = x.shape[axis]
    _check("Gather", {"x": x}, {"i": RNG.integers(-dim, dim, (2, 3)).astype(np.int64)}, axis=axis)
    shape = list(x.shape)
    shape[axis] = 6
    _check("GatherElements", {"x": x}, {"i": RNG.integers(-dim, dim, shape).astype(np.int64)}, axis=axis)


@pytest.mark.parametrize("length,parts", [(10, 3), (7, 4), (8, 2)])
def test_split_num_outputs_uneven(length: int, parts: int) -> None:
    x = RNG.standard_normal((2, length)).astype(np.float32)
    _check("Split", {"x": x}, {}, n_out=parts, axis=1, num_outputs=parts)


def test_split_sizes_input() -> None:
    x = RNG.standard_normal((9, 2)).astype(np.float32)
    _check("Split", {"x": x}, {"s": _i64(2, 0, 7)}, n_out=3)


@pytest.mark.parametrize("shape,allowzero", [((0, -1), 0), ((3, 0, 2), 0), ((2, -1, 0), 0), ((0, 4), 1)])
def test_reshape_zero_and_infer(shape, allowzero: int) -> None:
    x = RNG.standard_normal((3, 4, 2) if not allowzero else (0, 2, 2)).astype(np.float32)
    _check("Reshape", {"x": x}, {"s": _i64(*shape)}, allowzero=allowzero)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_one_hot_negative_and_out_of_range(axis: int) -> None:
    indices = np.array([[0, -1, 3], [5, -6, 2]], np.int64)
    _check("OneHot", {"i": indices}, {"d": np.array(4.0, np.float32), "v": np.array([-2, 7], np.int32)}, axis=axis)


@pytest.mark.parametrize("batch_axis,time_axis", [(1, 0), (0, 1)])
def test_reverse_sequence(batch_axis: int, time_axis: int) -> None:
    x = RNG.standard_normal((4, 4, 3)).astype(np.float32)
    _check("ReverseSequence", {"x": x}, {"l": _i64(4, 1, 0, 3)}, batch_axis=batch_axis, time_axis=time_axis)


@pytest.mark.parametrize("op,mode", [("DepthToSpace", "DCR"), ("DepthToSpace", "CRD"), ("SpaceToDepth", None)])
def test_depth_space(op: str, mode: str | None) -> None:
    x = RNG.standard_normal((2, 12, 4, 6) if op == "DepthToSpace" else (2, 3, 4, 6)).astype(np.float32)
    attrs = {"blocksize": 2} | ({"mode": mode} if mode else {})
    _check(op, {"x": x}, {}, **attrs)


def test_expand_tile_where_trilu() -> None:
    x = RNG.standard_normal((3, 1, 4)).astype(np.float32)
    _check("Expand", {"x": x}, {"s": _i64(2, 1, 5, 1)})
    _check("Tile", {"x": x}, {"r": _i64(2, 3, 1)})
    _check("Where", {"c": RNG.random((1, 5, 4)) > 0.5, "a": x, "b": np.float32([7.0])[None]}, {})
    _check("Trilu", {"x": RNG.standard_normal((2, 4, 5)).astype(np.float32)}, {"k": np.array(-1, np.int64)}, upper=0)


@pytest.mark.parametrize("start,limit,delta,dtype", [(0, 10, 3, np.int64), (1.5, -2.0, -0.7, np.float32), (5, 5, 1, np.int32)])
def test_range(start, limit, delta, dtype) -> None:
    _check("Range", {}, {"a": np.array(start, dtype), "b": np.array(limit, dtype), "c": np.array(delta, dtype)})


@pytest.mark.parametrize("to", [np.int8, np.uint8, np.int32, np.bool_, np.float16, np.float64])
def test_cast_from_float(to) -> None:
    x = np.array([[-3.7, -0.5, 0.0, 0.49, 2.5, 100.9]], np.float32)
    _check("Cast", {"x": x}, {}, to=helper.np_dtype_to_tensor_dtype(np.dtype(to)))


def test_cast_strings_both_ways() -> None:
    text = np.array(["1.5", "-0.25", "1e3", "NaN", "INF", "-INF"], dtype=object)
    graph_in = {"x": text}
    model_attrs = {"to": helper.np_dtype_to_tensor_dtype(np.dtype(np.float32))}
    _check("Cast", graph_in, {}, **model_attrs)
    numbers = np.array([0.1, -2.5, 3.0e-5, 12345678.0, np.inf, np.nan], np.float32)
    got = run_graph(load_onnx(helper.make_model(helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=8)], "c",
        [helper.make_tensor_value_info("x", 1, [6])], [helper.make_tensor_value_info("y", 8, [6])],
    ), opset_imports=[helper.make_opsetid("", 18)])), {"x": numbers})["y"]
    back = np.array([float(s) for s in got], np.float32)
    np.testing.assert_array_equal(back[:5], numbers[:5])  # text round-trips to the same float32
    assert got[5] == "NaN" and got[4] == "INF"
