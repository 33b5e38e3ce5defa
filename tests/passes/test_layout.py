"""Channels-last regions (edge.passes.layout): converted graphs compute what onnxruntime
computes on the original model, with Transposes only at region boundaries."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from edge.frontend.onnx_import import load_onnx
from edge.ir import EDGETRT_DOMAIN, verify
from edge.ir.layout import is_channels_last
from edge.passes import optimize
from edge.passes.layout import to_channels_last_regions
from edge.runtime.interpreter import run_graph
from tests.conftest import LIGHT_DIR, ort_run
from tests.models import mobile_cnn, random_feeds, resnet_block_cnn
from tests.passes.helpers import const, model_of
from tests.test_light_models import randomize_weights


def _converted(model: onnx.ModelProto, wants=lambda node: True):
    """(graph after optimize + the pass, its report, its outputs, onnxruntime's on the original)."""
    feeds = random_feeds(model)
    graph = load_onnx(model)
    optimize(graph)
    report = to_channels_last_regions(graph, wants)
    verify(graph)
    return graph, report, run_graph(graph, feeds), ort_run(model, feeds)


def _transposes(graph):
    return [n for n in graph.nodes if n.op_type == "Transpose"]


@pytest.mark.parametrize("make", [resnet_block_cnn, mobile_cnn], ids=["resnet", "mobile"])
def test_cnn_runs_nhwc_between_one_transpose_in_and_one_out(make):
    model = make()
    graph, report, outputs, expected = _converted(model)
    convs = [n for n in graph.nodes if n.op_type == "FusedConv"]
    assert report.to_dict()["converted_regions"] == 1
    assert len(_transposes(graph)) == 2
    assert [is_channels_last(n) for n in convs].count(True) == report.to_dict()["channels_last_convs"] >= 3
    for value, reference in zip(graph.outputs, expected):
        assert outputs[value.name].shape == reference.shape
        np.testing.assert_allclose(outputs[value.name], reference, rtol=1e-4, atol=1e-5)


def test_pools_and_global_pool_take_their_nhwc_forms():
    graph, _, outputs, expected = _converted(resnet_block_cnn())
    kinds = {(n.domain, n.op_type) for n in graph.nodes}
    assert (EDGETRT_DOMAIN, "MaxPool") in kinds and ("", "ReduceMean") in kinds
    assert ("", "GlobalAveragePool") not in kinds
    np.testing.assert_allclose(outputs["probs"], expected[0], rtol=1e-4, atol=1e-6)


def test_image_input_channels_are_padded_for_the_tensor_cores():
    model = model_of(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["y"], ["r"]),
         helper.make_node("Conv", ["r", "w2"], ["out"], strides=[2, 2])],
        {"x": [2, 3, 10, 10]}, {"out": [2, 8, 5, 5]},
        [const("w", np.random.default_rng(0).standard_normal((16, 3, 3, 3))), const("b", np.linspace(-1, 1, 16)),
         const("w2", np.random.default_rng(1).standard_normal((8, 16, 1, 1)))],
    )
    graph, _, outputs, expected = _converted(model)
    pad = next(n for n in graph.nodes if n.op_type == "Pad")
    first = pad.outputs[0].uses[0][0]
    assert first.op_type == "FusedConv" and pad.outputs[0].shape == (2, 10, 10, 8) and first.inputs[1].shape == (16, 8, 3, 3)
    assert graph.outputs[0].name == "out" and graph.outputs[0].shape == (2, 8, 5, 5)
    np.testing.assert_allclose(outputs["out"], expected[0], rtol=1e-4, atol=1e-4)


def test_constants_broadcast_per_channel_are_transposed():
    scale = np.random.default_rng(2).uniform(0.5, 1.5, (6, 1, 1))
    model = model_of(
        [helper.make_node("Conv", ["x", "w"], ["y"]), helper.make_node("Mul", ["y", "s"], ["m"]),
         helper.make_node("Add", ["m", "row"], ["a"]), helper.make_node("Conv", ["a", "w2"], ["out"])],
        {"x": [1, 4, 5, 7]}, {"out": [1, 6, 5, 7]},
        [const("w", np.random.default_rng(0).standard_normal((6, 4, 1, 1))), const("s", scale),
         const("row", np.arange(7.0)), const("w2", np.random.default_rng(1).standard_normal((6, 6, 1, 1)))],
    )
    graph, report, outputs, expected = _converted(model)
    assert report.to_dict()["converted_regions"] == 1
    np.testing.assert_allclose(outputs["out"], expected[0], rtol=1e-4, atol=1e-4)


def test_a_lone_convolution_stays_nchw_with_the_reason():
    model = model_of(
        [helper.make_node("Conv", ["x", "w"], ["y"]), helper.make_node("Flatten", ["y"], ["out"])],
        {"x": [1, 8, 6, 6]}, {"out": [1, 288]}, [const("w", np.random.default_rng(0).standard_normal((8, 8, 1, 1)))],
    )
    graph, report, outputs, expected = _converted(model)
    assert not _transposes(graph) and not report.regions
    assert "boundary" in report.kept[0]["reason"]
    np.testing.assert_allclose(outputs["out"], expected[0], rtol=1e-5, atol=1e-5)


def test_layers_the_caller_keeps_out_bound_the_regions():
    model = resnet_block_cnn()
    graph, report, outputs, expected = _converted(model, wants=lambda node: node.op_type != "MaxPool")
    assert not any(n.domain == EDGETRT_DOMAIN and n.op_type == "MaxPool" for n in graph.nodes)
    # the stem before the NCHW MaxPool is one conv: Transposes around it would move as much
    # as NCHW costs it, so it stays; the blocks after it go NHWC
    assert len(report.kept) == 1 and report.kept[0]["convs"] == 1 and len(report.regions) == 1
    assert _transposes(graph)[0].inputs[0].producer.op_type == "MaxPool"
    np.testing.assert_allclose(outputs["probs"], expected[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["squeezenet", "inception_v1", "densenet121"])
def test_light_models_keep_their_outputs(name):
    """Concat over channels (SqueezeNet's fire modules, DenseNet), average and max pools and
    LRN-bounded regions (Inception) converted, against onnxruntime on random weights."""
    model = randomize_weights(onnx.load(LIGHT_DIR / f"light_{name}.onnx"))
    graph, report, outputs, expected = _converted(model)
    assert report.to_dict()["channels_last_convs"] > 0
    for value, reference in zip(graph.outputs, expected):
        scale = float(np.abs(reference).max())
        np.testing.assert_allclose(outputs[value.name], reference, rtol=1e-3, atol=1e-4 * scale)


def test_a_tensor_an_if_body_reads_leaves_the_region_in_nchw():
    """An If body reading a region's tensor reads it back in NCHW, under its own name."""
    w = const("w", np.random.default_rng(0).standard_normal((8, 8, 3, 3)) * 0.2)
    body = helper.make_graph([helper.make_node("Relu", ["c2"], ["branch"])], "body", [],
                             [helper.make_tensor_value_info("branch", onnx.TensorProto.FLOAT, [1, 8, 6, 6])])
    model = model_of(
        [helper.make_node("Conv", ["x", "w"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Conv", ["c1", "w"], ["c2"], pads=[1, 1, 1, 1]),
         helper.make_node("If", ["flag"], ["out"], then_branch=body, else_branch=body)],
        {"x": [1, 8, 6, 6]}, {"out": [1, 8, 6, 6]}, [w, const("flag", np.array(True))],
    )
    graph, report, outputs, expected = _converted(model)
    producer = next(n for n in graph.nodes if "c2" in [v.name for v in n.outputs])
    assert producer.op_type == "Transpose" and producer.outputs[0].shape == (1, 8, 6, 6)
    np.testing.assert_allclose(outputs["out"], expected[0], rtol=1e-4, atol=1e-4)
