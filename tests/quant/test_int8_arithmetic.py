"""The CPU INT8 path against onnxruntime running the same model with Q/DQ at the calibrated scales.

The reference is written here from the INT8 rules alone (TensorRT's, calibration.md §6):
weights quantized per output channel from max |w| / 127, every activation an INT8 layer
reads passed through Clip(±127 s) -> QuantizeLinear -> DequantizeLinear at its calibrated
scale, and onnxruntime evaluating the graph as ONNX defines it (no graph optimizations, so
no fusion of its own). edgetrt's tensors that INT8 layers write as INT8 must then equal the
reference's dequantized tensors, up to the rare value whose real-valued result sits on a
rounding boundary (float32 sums in onnxruntime, exact integer sums in edgetrt).
"""

from __future__ import annotations


import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

import edge
from edge.frontend import load_onnx
from edge.ir import Value, verify
from edge.ir.layout import is_channels_last
from edge.passes.layout import to_channels_last_regions
from edge.quant import onnx_layout, onnx_tensor
from edge.quant.integer import integer_operands
from edge.refusal import Refusal
from edge.runtime.interpreter import Step, run_graph
from tests.models import _Net, make_model


def _plain_cnn() -> onnx.ModelProto:
    """Conv+ReLU, a residual Conv+Add+ReLU, max pool, a 1x1 conv, global pool, Gemm and MatMul heads."""
    net = _Net(21)
    x = net.op("Relu", [net.op("Conv", ["image", net.weight((8, 3, 3, 3)), net.vector(8)], pads=[1] * 4)])
    y = net.op("Conv", [x, net.weight((8, 8, 3, 3)), net.vector(8)], pads=[1] * 4)
    x = net.op("Relu", [net.op("Add", [y, x])])
    x = net.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    x = net.op("Conv", [x, net.weight((16, 8, 1, 1)), net.vector(16)])
    x = net.op("Flatten", [net.op("GlobalAveragePool", [x])], axis=1)
    x = net.op("Relu", [net.op("Gemm", [x, net.weight((12, 16)), net.vector(12)], transB=1)])
    net.op("MatMul", [x, net.weight((12, 6))])
    net.nodes[-1].output[0] = "out"
    return make_model(net, [("image", [2, 3, 12, 12])], [("out", [2, 6])], name="plain_cnn")


def _weight_qdq(weight: np.ndarray, axis: int, name: str) -> tuple[list[onnx.TensorProto], onnx.NodeProto]:
    """Per-channel symmetric INT8 codes of ``weight`` (scale max |w| / 127 along ``axis``) behind a DequantizeLinear."""
    moved = np.moveaxis(weight, axis, 0)
    scale = (np.abs(moved).reshape(len(moved), -1).max(axis=1) / np.float32(127)).astype(np.float32)
    shape = [1] * weight.ndim
    shape[axis] = -1
    codes = np.clip(np.rint(weight / scale.reshape(shape)), -127, 127).astype(np.int8)
    inits = [numpy_helper.from_array(codes, f"{name}_q"), numpy_helper.from_array(scale, f"{name}_s"),
             numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{name}_z")]
    return inits, helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [name], axis=axis)


def _with_qdq(model: onnx.ModelProto, scales: dict[str, float]) -> onnx.ModelProto:
    """``model`` with every tensor of ``scales`` fake-quantized symmetrically (-127..127) where
    produced, each one also a graph output (as ``<name>_dq``), and INT8 weights, in dependency order."""
    graph = onnx.GraphProto()
    graph.CopyFrom(model.graph)
    weights = {init.name: init for init in graph.initializer}
    axes = {"Conv": 0, "MatMul": 1}
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and node.input[1] in weights:
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            axis = axes.get(node.op_type, 0 if trans_b else 1)
            inits, dq = _weight_qdq(numpy_helper.to_array(weights[node.input[1]]), axis, node.input[1])
            graph.initializer.remove(weights[node.input[1]])
            graph.initializer.extend(inits)
            nodes.append(dq)
        nodes.append(node)
    renamed = {name: f"{name}_dq" for name in scales}
    for node in nodes:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    for name, scale in scales.items():
        s = np.float32(scale)
        graph.initializer.extend([
            numpy_helper.from_array(np.float32(-127) * s, f"{name}_lo"), numpy_helper.from_array(np.float32(127) * s, f"{name}_hi"),
            numpy_helper.from_array(s, f"{name}_scale"), numpy_helper.from_array(np.int8(0), f"{name}_zero"),
        ])
        nodes += [
            helper.make_node("Clip", [name, f"{name}_lo", f"{name}_hi"], [f"{name}_clip"]),
            helper.make_node("QuantizeLinear", [f"{name}_clip", f"{name}_scale", f"{name}_zero"], [f"{name}_q8"]),
            helper.make_node("DequantizeLinear", [f"{name}_q8", f"{name}_scale", f"{name}_zero"], [f"{name}_dq"]),
        ]
        graph.output.append(helper.make_empty_tensor_value_info(f"{name}_dq"))
    del graph.node[:]
    graph.node.extend(nodes)
    result = helper.make_model(graph, opset_imports=model.opset_import)
    result.ir_version = model.ir_version
    return _sorted(result)


def _sorted(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph's nodes in dependency order (the Q/DQ chains were appended at the end)."""
    ready = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer}
    pending, ordered = list(model.graph.node), []
    while pending:
        node = next(n for n in pending if all(not name or name in ready for name in n.input))
        pending.remove(node)
        ordered.append(node)
        ready.update(node.output)
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    return model


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """The INT8 engine, its tensors on a test batch, onnxruntime's Q/DQ reference, the scales."""
    model = _plain_cnn()
    folder = tmp_path_factory.mktemp("int8-calib")
    rng = np.random.default_rng(5)
    np.save(folder / "batch.npy", rng.standard_normal((8, 3, 12, 12)).astype(np.float32))
    engine = edge.build(model.SerializeToString(), edge.BuilderConfig(precision="int8", calib_data=folder))
    image = rng.standard_normal((2, 3, 12, 12)).astype(np.float32)
    tensors: dict[str, np.ndarray] = {}

    def record(step: Step, results: list[np.ndarray]) -> None:
        tensors.update((v.name, np.array(r)) for v, r in zip(step.node.outputs, results))

    context = engine.create_context()
    context.profiler = record
    tensors["out"] = context.run({"image": image})["out"]
    layout = onnx_layout(load_onnx(model))

    def onnx_name(value: Value) -> str:  # a fused layer's output stands for its root's ONNX tensor
        producer = value.producer
        if producer is None or value.name in names:
            return value.name
        return onnx_tensor(producer, producer.outputs.index(value), layout)

    names = {t for n in model.graph.node for t in n.output} | {"image"}
    read: dict[str, float] = {}  # the activations INT8 layers read, with the scales they are quantized at
    for node in engine.graph.nodes:
        if node.meta["precision"] == "int8":
            read.update((onnx_name(v), v.meta["int8_scale"]) for v in node.inputs if v is not None and not v.is_const)
    assert set(read) <= names
    tensors.update({onnx_name(v): tensors[v.name] for node in engine.graph.nodes for v in node.outputs if v.name in tensors})
    written = {onnx_name(v) for node in engine.graph.nodes for v in node.outputs if v.meta.get("int8_output")}
    reference = _with_qdq(model, read)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(reference.SerializeToString(), options, providers=["CPUExecutionProvider"])
    expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": image})))
    return engine, tensors, expected, read, written


def test_int8_layers_write_requantized_int8(int8_run) -> None:
    _, tensors, expected, scales, written = int8_run
    assert len(written) >= 6  # conv+relu, conv+add+relu, pool, 1x1 conv, global pool, flatten, gemm+relu
    assert written <= set(scales)
    mismatched = total = 0
    for name in written:
        scale = np.float32(scales[name])
        codes = tensors[name] / scale
        np.testing.assert_allclose(codes, np.rint(codes), atol=1e-3, err_msg=name)  # on the INT8 grid
        assert np.abs(codes).max() <= 127.0 + 1e-3
        steps = np.abs(tensors[name] - expected[f"{name}_dq"]) / scale
        assert steps.max() <= 1.0 + 1e-3, name  # at most one quantization step apart
        mismatched += int(np.count_nonzero(steps > 1e-3))
        total += steps.size
    assert mismatched <= 0.01 * total  # and equal elsewhere


def test_int8_network_output_is_float_and_matches_the_reference(int8_run) -> None:
    engine, tensors, expected, _, _ = int8_run
    out = next(v for v in engine.graph.outputs)
    assert not out.meta.get("int8_output")
    matmul = out.producer
    assert matmul.meta["precision"] == "int8"
    np.testing.assert_allclose(tensors["out"], expected["out"], rtol=1e-4, atol=1e-5)


def test_int8_layers_accumulate_exact_integers(int8_run) -> None:
    """An INT8 MatMul's result is float32(Σ q_x q_w) · (s_x · s_w[n]) exactly, which a float32
    product of the dequantized values only approximates."""
    engine, tensors, _, _, _ = int8_run
    matmul = engine.graph.outputs[0].producer
    x, weight = matmul.inputs[0], matmul.inputs[1]
    s_x = np.float32(x.meta["int8_scale"])
    codes_x = np.rint(tensors[x.name] / s_x).astype(np.int64)
    acc = codes_x @ weight.meta["int8_weight"].astype(np.int64)
    multiplier = (s_x * weight.meta["int8_scale"]).astype(np.float32)
    np.testing.assert_array_equal(tensors["out"], acc.astype(np.float32) * multiplier)


def test_int8_layers_compute_the_same_in_channels_last_regions(tmp_path) -> None:
    """A GPU build puts INT8 convolutions in NHWC regions (edge.builder._channels_last). The
    CPU's integer kernels then compute the same sums and epilogue in NHWC, and the image's
    3 channels padded to 8 keep the input's scale and the weight's INT8 codes, so every conv
    keeps its integer form and the network computes what it did in NCHW (up to a code that the
    NHWC global pool's other summation order moves across a rounding boundary)."""
    rng = np.random.default_rng(9)
    np.save(tmp_path / "batch.npy", rng.standard_normal((8, 3, 12, 12)).astype(np.float32))
    engine = edge.build(_plain_cnn().SerializeToString(), edge.BuilderConfig(precision="int8", calib_data=tmp_path))
    feeds = {"image": rng.standard_normal((2, 3, 12, 12)).astype(np.float32)}
    expected = run_graph(engine.graph, feeds)["out"]
    graph = engine.graph
    report = to_channels_last_regions(graph, lambda node: node.meta.get("precision") in ("fp16", "int8")).to_dict()
    verify(graph)
    convs = [n for n in graph.nodes if n.op_type == "FusedConv" and is_channels_last(n)]
    assert report["converted_regions"] == 1 and len(convs) == report["channels_last_convs"] == 3
    assert any(n.op_type == "Pad" for n in graph.nodes) and convs[0].inputs[1].meta["int8_weight"].shape == (8, 8, 3, 3)
    assert all(not isinstance(integer_operands(n), Refusal) for n in convs), [integer_operands(n) for n in convs]
    got = run_graph(graph, feeds)["out"]
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * float(np.abs(expected).max()))
