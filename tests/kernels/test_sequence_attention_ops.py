"""Sequence/optional values, Attention, RoiAlign and TensorScatter on the CPU backend against
onnxruntime on random inputs: the corners ONNX's node cases leave out (SequenceErase,
ConcatFromSequence, negative positions, GQA with a KV cache and a float mask, random
regions), and a sequence model built into an engine, saved, loaded and run."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import edge
from edge.builder import BuilderConfig
from edge.cli import main
from edge.errors import KernelError
from edge.frontend import load_onnx
from edge.runtime.interpreter import run_graph

RNG = np.random.default_rng(26)
F32 = TensorProto.FLOAT


def _model(nodes: list, inputs: dict[str, np.ndarray], outputs: list[tuple[str, int, int]], opset: int, consts: dict | None = None):
    """A model over ``nodes``; ``outputs`` lists (name, element type, rank)."""
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info(name, elem, [None] * rank) for name, elem, rank in outputs],
        [numpy_helper.from_array(v, k) for k, v in (consts or {}).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _onnxruntime(model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _sequence_model():
    """Split x [4, 6] into its columns, drop the last, put a doubled column 0 at the front,
    read element -2, and stack what is left along a new axis 1."""
    nodes = [
        helper.make_node("SplitToSequence", ["x"], ["columns"], axis=1, keepdims=0),
        helper.make_node("SequenceErase", ["columns"], ["kept"]),
        helper.make_node("SequenceAt", ["kept", "zero"], ["first"]),
        helper.make_node("Add", ["first", "first"], ["doubled"]),
        helper.make_node("SequenceInsert", ["kept", "doubled", "zero"], ["grown"]),
        helper.make_node("SequenceAt", ["grown", "minus_two"], ["second_last"]),
        helper.make_node("SequenceLength", ["grown"], ["count"]),
        helper.make_node("ConcatFromSequence", ["grown"], ["stacked"], axis=1, new_axis=1),
    ]
    consts = {"zero": np.array(0, np.int64), "minus_two": np.array(-2, np.int64)}
    x = RNG.standard_normal((4, 6)).astype(np.float32)
    outputs = [("stacked", F32, 2), ("second_last", F32, 1), ("count", TensorProto.INT64, 0)]
    return _model(nodes, {"x": x}, outputs, 17, consts), {"x": x}


def test_sequence_ops_match_onnxruntime_in_a_saved_engine(tmp_path) -> None:
    model, feeds = _sequence_model()
    want = _onnxruntime(model, feeds)
    path = tmp_path / "seq.engine"
    edge.build(model.SerializeToString(), BuilderConfig()).save(path)
    got = edge.load(path).create_context().run(feeds)
    for name, expected in zip(("stacked", "second_last", "count"), want):
        assert got[name].dtype == expected.dtype and got[name].shape == expected.shape
        np.testing.assert_array_equal(got[name], expected)


def test_a_sequence_graph_output_is_refused_by_build_in_one_line(tmp_path, capsys) -> None:
    x = helper.make_tensor_value_info("x", F32, [2, 3])
    columns = helper.make_tensor_sequence_value_info("columns", F32, None)
    graph = helper.make_graph([helper.make_node("SplitToSequence", ["x"], ["columns"], axis=1)], "g", [x], [columns])
    path = tmp_path / "seq.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert main(["build", str(path), "-o", str(tmp_path / "seq.engine")]) != 0
    err = capsys.readouterr().err
    assert "graph output 'columns' is a sequence" in err and "Traceback" not in err
    assert not (tmp_path / "seq.engine").exists()


def test_sequence_position_out_of_range_is_a_one_line_error() -> None:
    nodes = [
        helper.make_node("SplitToSequence", ["x"], ["columns"], axis=1),
        helper.make_node("SequenceAt", ["columns", "nine"], ["y"]),
    ]
    x = np.ones((2, 3), np.float32)
    graph = load_onnx(_model(nodes, {"x": x}, [("y", F32, 2)], 17, {"nine": np.array(9, np.int64)}))
    with pytest.raises(KernelError, match=r"position 9 is outside \[-3, 2\] for a sequence of 3"):
        run_graph(graph, {"x": x})


@pytest.mark.parametrize("split", [np.array(3, np.int64), np.array([2, 4, 1], np.int64)])
def test_split_to_sequence_by_lengths_matches_onnxruntime(split: np.ndarray) -> None:
    """A scalar split gives chunks of 3 (the last one shorter), a list gives its lengths."""
    nodes = [
        helper.make_node("SplitToSequence", ["x", "split"], ["parts"], axis=0),
        helper.make_node("SequenceAt", ["parts", "last"], ["tail"]),
        helper.make_node("SequenceLength", ["parts"], ["count"]),
        helper.make_node("ConcatFromSequence", ["parts"], ["y"], axis=0),
    ]
    x = RNG.standard_normal((7, 3)).astype(np.float32)
    consts = {"split": split, "last": np.array(-1, np.int64)}
    outputs = [("tail", F32, 2), ("count", TensorProto.INT64, 0), ("y", F32, 2)]
    model = _model(nodes, {"x": x}, outputs, 17, consts)
    got = run_graph(load_onnx(model), {"x": x})
    for (name, _, _), expected in zip(outputs, _onnxruntime(model, {"x": x})):
        assert got[name].shape == expected.shape, name
        np.testing.assert_array_equal(got[name], expected)


@pytest.mark.parametrize("causal", [0, 1])
def test_attention_gqa_with_cache_and_float_mask_matches_onnxruntime(causal: int) -> None:
    """3-D inputs, 4 query heads over 2 KV heads, a past cache and a float mask shorter
    than the keys: Y, the grown cache and the raw scores."""
    batch, q_len, past, head = 2, 3, 4, 8
    feeds = {
        "q": RNG.standard_normal((batch, q_len, 4 * head)).astype(np.float32),
        "k": RNG.standard_normal((batch, q_len, 2 * head)).astype(np.float32),
        "v": RNG.standard_normal((batch, q_len, 2 * head)).astype(np.float32),
        "mask": RNG.standard_normal((q_len, past + q_len)).astype(np.float32),
        "past_k": RNG.standard_normal((batch, 2, past, head)).astype(np.float32),
        "past_v": RNG.standard_normal((batch, 2, past, head)).astype(np.float32),
    }
    node = helper.make_node(
        "Attention", list(feeds), ["y", "present_k", "present_v", "qk"],
        q_num_heads=4, kv_num_heads=2, is_causal=causal, scale=0.3,
    )
    outputs = [("y", F32, 3), ("present_k", F32, 4), ("present_v", F32, 4), ("qk", F32, 4)]
    model = _model([node], feeds, outputs, 23)
    want = _onnxruntime(model, feeds)
    got = run_graph(load_onnx(model), feeds)
    for (name, _, _), expected in zip(outputs, want):
        assert got[name].shape == expected.shape, name
        np.testing.assert_allclose(got[name], expected, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("mode", ["half_pixel", "output_half_pixel"])
def test_roi_align_matches_onnxruntime(mode: str) -> None:
    x = RNG.standard_normal((2, 3, 10, 12)).astype(np.float32)
    corners = RNG.uniform(0, 18, (5, 2, 2))
    rois = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1).astype(np.float32)  # some past the image
    batch_indices = np.array([0, 1, 1, 0, 1], np.int64)
    node = helper.make_node(
        "RoiAlign", ["x", "rois", "batch_indices"], ["y"], output_height=3, output_width=4,
        spatial_scale=0.5, sampling_ratio=0, coordinate_transformation_mode=mode,
    )
    feeds = {"x": x, "rois": rois, "batch_indices": batch_indices}
    model = _model([node], feeds, [("y", F32, 4)], 16)
    (want,) = _onnxruntime(model, feeds)
    np.testing.assert_allclose(run_graph(load_onnx(model), feeds)["y"], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["linear", "circular"])
def test_tensor_scatter_matches_onnxruntime(mode: str) -> None:
    feeds = {
        "past": RNG.standard_normal((2, 3, 6, 4)).astype(np.float32),
        "update": RNG.standard_normal((2, 3, 2, 4)).astype(np.float32),
        "write_indices": np.array([1, 4] if mode == "linear" else [3, 5], np.int64),
    }
    node = helper.make_node("TensorScatter", list(feeds), ["y"], mode=mode)
    model = _model([node], feeds, [("y", F32, 4)], 24)
    (want,) = _onnxruntime(model, feeds)
    np.testing.assert_array_equal(run_graph(load_onnx(model), feeds)["y"], want)


def test_deform_conv_matches_onnxruntime() -> None:
    """Two offset groups, two convolution groups, a mask, stride, padding and dilation,
    with offsets large enough to send samples off the image."""
    feeds = {
        "x": RNG.standard_normal((2, 4, 7, 6)).astype(np.float32),
        "w": RNG.standard_normal((6, 2, 3, 2)).astype(np.float32),
        "offset": (3 * RNG.standard_normal((2, 2 * 3 * 2 * 2, 4, 3))).astype(np.float32),
        "b": RNG.standard_normal(6).astype(np.float32),
        "mask": RNG.uniform(0, 1, (2, 2 * 3 * 2, 4, 3)).astype(np.float32),
    }
    node = helper.make_node(
        "DeformConv", list(feeds), ["y"], group=2, offset_group=2, strides=[2, 2], pads=[1, 0, 1, 1], dilations=[1, 2],
    )
    model = _model([node], feeds, [("y", F32, 4)], 22)
    (want,) = _onnxruntime(model, feeds)
    got = run_graph(load_onnx(model), feeds)["y"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
