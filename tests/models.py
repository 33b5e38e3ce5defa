"""Test-model builders shared by the suite: each returns an onnx.ModelProto with deterministic
random weights (seeded), written with onnx.helper in the shapes exporters produce.

- ``resnet_block_cnn``: normalize (Sub/Div), stem conv+BN+ReLU, max pool, two residual
  blocks (the second with a strided 1x1 projection), global pool, flatten, FC, softmax.
- ``mobile_cnn``: Pad->Conv, depthwise conv, ReLU6 (Clip), decomposed HardSwish and SiLU,
  per-channel Mul/Add after a conv, ConvTranspose+BN, residual add.
- ``transformer_encoder``: multi-head self-attention with an additive mask, decomposed
  LayerNorm, GELU (erf form in layer 0, tanh form in layer 1), 3-D MatMul+Add projections.
- ``lstm_model``: LSTM over a sequence, Squeeze, then a linear head.
- ``qdq_cnn``: explicitly quantized conv net (int8 weights behind DequantizeLinear, Q/DQ on
  activations).
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge.ir import Graph

__all__ = [
    "GraphParts",
    "make_model",
    "resnet_block_cnn",
    "mobile_cnn",
    "transformer_encoder",
    "lstm_model",
    "qdq_cnn",
    "random_feeds",
    "randomize_constant_of_shape",
    "ALL_BUILDERS",
]


class GraphParts(Protocol):
    """What ``make_model`` wraps: a builder's nodes and initializers."""

    nodes: list[onnx.NodeProto]
    inits: list[onnx.TensorProto]


class _Net:
    """Accumulates nodes and seeded initializers while a builder writes the graph."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, array: np.ndarray, hint: str = "c") -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, shape: tuple[int, ...], hint: str = "w") -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        return self.const((self.rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32), hint)

    def vector(self, n: int, low: float = -0.5, high: float = 0.5, hint: str = "v") -> str:
        return self.const(self.rng.uniform(low, high, n).astype(np.float32), hint)

    def op(self, op_type: str, inputs: list[str], outputs: int = 1, **attrs: object) -> str | list[str]:
        name = self.name(op_type.lower())
        outs = [f"{name}_out{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, **attrs))
        return outs[0] if outputs == 1 else outs

    def conv_bn(self, x: str, cin: int, cout: int, k: int, stride: int = 1, group: int = 1, relu: bool = True) -> str:
        w = self.weight((cout, cin // group, k, k))
        y = self.op("Conv", [x, w], pads=[k // 2] * 4, strides=[stride, stride], group=group)
        y = self.op(
            "BatchNormalization",
            [y, self.vector(cout, 0.5, 1.5), self.vector(cout), self.vector(cout), self.vector(cout, 0.5, 1.5)],
            epsilon=1e-5,
        )
        return self.op("Relu", [y]) if relu else y


def make_model(
    net: GraphParts,
    inputs: list[tuple[str, list]],
    outputs: list[tuple[str, list | None]],
    opset: int = 17,
    name: str = "model",
) -> onnx.ModelProto:
    """Wrap a builder's nodes into a checked ModelProto (float32 inputs/outputs)."""
    graph = helper.make_graph(
        net.nodes,
        name,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
        net.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgetrt-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def resnet_block_cnn(
    batch: int = 1, size: int = 16, width: int = 8, classes: int = 10, seed: int = 0
) -> onnx.ModelProto:
    """A small ResNet: stem, max pool, an identity block and a projection block, FC head."""
    net = _Net(seed)
    x = net.op("Sub", ["image", net.const(np.array([0.5, 0.4, 0.3], np.float32).reshape(1, 3, 1, 1), "mean")])
    x = net.op("Div", [x, net.const(np.array([0.2, 0.25, 0.3], np.float32).reshape(1, 3, 1, 1), "std")])
    x = net.conv_bn(x, 3, width, 3)
    x = net.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    # identity block
    y = net.conv_bn(x, width, width, 3)
    y = net.conv_bn(y, width, width, 3, relu=False)
    x = net.op("Relu", [net.op("Add", [y, x])])
    # projection block (stride 2)
    y = net.conv_bn(x, width, 2 * width, 3, stride=2)
    y = net.conv_bn(y, 2 * width, 2 * width, 3, relu=False)
    shortcut = net.conv_bn(x, width, 2 * width, 1, stride=2, relu=False)
    x = net.op("Relu", [net.op("Add", [shortcut, y])])
    x = net.op("GlobalAveragePool", [x])
    x = net.op("Flatten", [x], axis=1)
    x = net.op("Gemm", [x, net.weight((classes, 2 * width)), net.vector(classes)], transB=1)
    net.op("Softmax", [x], axis=-1)
    net.nodes[-1].output[0] = "probs"
    return make_model(net, [("image", [batch, 3, size, size])], [("probs", [batch, classes])], name="resnet_block_cnn")


def mobile_cnn(batch: int = 1, size: int = 12, seed: int = 1) -> onnx.ModelProto:
    """Mobile-style blocks whose activations are spelled out as exporters write them."""
    net = _Net(seed)
    x = net.op("Pad", ["image", net.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")], mode="constant")
    x = net.op("Conv", [x, net.weight((8, 3, 3, 3)), net.vector(8)])
    x = net.op("Clip", [x, net.const(np.float32(0.0)), net.const(np.float32(6.0))])
    # depthwise conv + decomposed hard-swish x * clip(x + 3, 0, 6) / 6
    x = net.conv_bn(x, 8, 8, 3, group=8, relu=False)
    gate = net.op(
        "Clip", [net.op("Add", [x, net.const(np.float32(3.0))]), net.const(np.float32(0.0)), net.const(np.float32(6.0))]
    )
    x = net.op("Div", [net.op("Mul", [x, gate]), net.const(np.float32(6.0))])
    # pointwise conv, per-channel scale and shift, decomposed SiLU
    skip = x
    x = net.op("Conv", [x, net.weight((8, 8, 1, 1))])
    x = net.op("Mul", [x, net.const(net.rng.uniform(0.5, 1.5, (1, 8, 1, 1)).astype(np.float32))])
    x = net.op("Add", [net.const(net.rng.uniform(-0.5, 0.5, (8, 1, 1)).astype(np.float32)), x])
    x = net.op("Mul", [x, net.op("Sigmoid", [x])])
    x = net.op("Add", [x, skip])
    # upsampling by a transposed conv with BN and LeakyRelu
    x = net.op("ConvTranspose", [x, net.weight((8, 4, 2, 2))], strides=[2, 2])
    x = net.op(
        "BatchNormalization",
        [x, net.vector(4, 0.5, 1.5), net.vector(4), net.vector(4), net.vector(4, 0.5, 1.5)],
    )
    x = net.op("LeakyRelu", [x], alpha=0.1)
    net.nodes[-1].output[0] = "features"
    return make_model(
        net, [("image", [batch, 3, size, size])], [("features", [batch, 4, 2 * size, 2 * size])], name="mobile_cnn"
    )


def _layer_norm(net: _Net, x: str, d: int) -> str:
    mean = net.op("ReduceMean", [x], axes=[-1])
    diff = net.op("Sub", [x, mean])
    var = net.op("ReduceMean", [net.op("Pow", [diff, net.const(np.float32(2.0))])], axes=[-1])
    std = net.op("Sqrt", [net.op("Add", [var, net.const(np.float32(1e-5))])])
    normed = net.op("Div", [diff, std])
    return net.op("Add", [net.op("Mul", [normed, net.vector(d, 0.5, 1.5)]), net.vector(d)])


def _gelu(net: _Net, x: str, form: str) -> str:
    if form == "erf":
        erf = net.op("Erf", [net.op("Div", [x, net.const(np.float32(math.sqrt(2.0)))])])
        return net.op(
            "Mul", [net.op("Mul", [x, net.op("Add", [erf, net.const(np.float32(1.0))])]), net.const(np.float32(0.5))]
        )
    cube = net.op("Pow", [x, net.const(np.float32(3.0))])
    inner = net.op("Add", [x, net.op("Mul", [cube, net.const(np.float32(0.044715))])])
    tanh = net.op("Tanh", [net.op("Mul", [inner, net.const(np.float32(math.sqrt(2 / math.pi)))])])
    half_x = net.op("Mul", [x, net.const(np.float32(0.5))])
    return net.op("Mul", [half_x, net.op("Add", [tanh, net.const(np.float32(1.0))])])


def _linear(net: _Net, x: str, d_in: int, d_out: int) -> str:
    return net.op("Add", [net.op("MatMul", [x, net.weight((d_in, d_out))]), net.vector(d_out)])


def transformer_encoder(
    batch: int = 2, seq: int = 8, d_model: int = 16, heads: int = 2, layers: int = 2, seed: int = 2
) -> onnx.ModelProto:
    """Post-norm encoder layers as exported from PyTorch, with an additive attention mask input."""
    net = _Net(seed)
    head = d_model // heads
    x = "tokens"
    split = net.const(np.array([batch, seq, heads, head], np.int64), "split")
    merge = net.const(np.array([batch, seq, d_model], np.int64), "merge")
    for layer in range(layers):
        q = net.op("Transpose", [net.op("Reshape", [_linear(net, x, d_model, d_model), split])], perm=[0, 2, 1, 3])
        kt = net.op("Transpose", [net.op("Reshape", [_linear(net, x, d_model, d_model), split])], perm=[0, 2, 3, 1])
        v = net.op("Transpose", [net.op("Reshape", [_linear(net, x, d_model, d_model), split])], perm=[0, 2, 1, 3])
        scores = net.op("Div", [net.op("MatMul", [q, kt]), net.const(np.float32(math.sqrt(head)))])
        probs = net.op("Softmax", [net.op("Add", [scores, "mask"])], axis=-1)
        context = net.op("Transpose", [net.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        attended = _linear(net, net.op("Reshape", [context, merge]), d_model, d_model)
        x = _layer_norm(net, net.op("Add", [x, attended]), d_model)
        hidden = _gelu(net, _linear(net, x, d_model, 4 * d_model), "erf" if layer % 2 == 0 else "tanh")
        x = _layer_norm(net, net.op("Add", [x, _linear(net, hidden, 4 * d_model, d_model)]), d_model)
    net.nodes[-1].output[0] = "encoded"
    return make_model(
        net,
        [("tokens", [batch, seq, d_model]), ("mask", [batch, 1, 1, seq])],
        [("encoded", [batch, seq, d_model])],
        name="transformer_encoder",
    )


def lstm_model(seq: int = 6, batch: int = 2, features: int = 5, hidden: int = 8, seed: int = 3) -> onnx.ModelProto:
    """One forward LSTM layer (all four gates, biases) and a linear head on every step."""
    net = _Net(seed)
    w = net.const((net.rng.standard_normal((1, 4 * hidden, features)) * 0.3).astype(np.float32), "W")
    r = net.const((net.rng.standard_normal((1, 4 * hidden, hidden)) * 0.3).astype(np.float32), "R")
    b = net.const((net.rng.standard_normal((1, 8 * hidden)) * 0.1).astype(np.float32), "B")
    y, _, _ = net.op("LSTM", ["sequence", w, r, b], outputs=3, hidden_size=hidden)
    y = net.op("Squeeze", [y, net.const(np.array([1], np.int64))])
    _linear(net, y, hidden, 3)
    net.nodes[-1].output[0] = "scores"
    return make_model(net, [("sequence", [seq, batch, features])], [("scores", [seq, batch, 3])], name="lstm_model")


def qdq_cnn(batch: int = 1, size: int = 8, seed: int = 4) -> onnx.ModelProto:
    """Explicitly quantized conv -> relu -> conv, int8 weights and activation Q/DQ pairs."""
    net = _Net(seed)
    x_scale, zero = net.const(np.float32(0.02)), net.const(np.int8(0))
    x = net.op("DequantizeLinear", [net.op("QuantizeLinear", ["image", x_scale, zero]), x_scale, zero])
    w_int = net.const(net.rng.integers(-127, 128, (6, 3, 3, 3)).astype(np.int8), "w_int8")
    w_scale = net.const(net.rng.uniform(0.002, 0.004, 6).astype(np.float32), "w_scale")
    w = net.op("DequantizeLinear", [w_int, w_scale, net.const(np.zeros(6, np.int8))], axis=0)
    x = net.op("Relu", [net.op("Conv", [x, w, net.vector(6)], pads=[1, 1, 1, 1])])
    a_scale = net.const(np.float32(0.05))
    x = net.op("DequantizeLinear", [net.op("QuantizeLinear", [x, a_scale, zero]), a_scale, zero])
    w2 = net.weight((4, 6, 1, 1))
    w2_scale = net.const(np.float32(0.01))
    w2 = net.op("DequantizeLinear", [net.op("QuantizeLinear", [w2, w2_scale, zero]), w2_scale, zero])
    net.op("Conv", [x, w2])
    net.nodes[-1].output[0] = "logits"
    return make_model(net, [("image", [batch, 3, size, size])], [("logits", [batch, 4, size, size])], name="qdq_cnn")


def random_feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal float32 inputs for every graph input (initializers excluded)."""
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in inits:
            continue
        shape = tuple(d.dim_value if d.dim_value > 0 else 1 for d in value.type.tensor_type.shape.dim)
        feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def randomize_constant_of_shape(graph: Graph, seed: int = 0) -> None:
    """Give an imported light model's ConstantOfShape weights seeded random values, in the IR.

    He-scaled normals for 2-D/4-D tensors (conv/gemm weights), values in [0.5, 1.5] for
    vectors (biases, BatchNorm statistics: variances stay positive). Working on the IR keeps
    import fast: the model file stays small, with no large initializers to check.
    """
    rng = np.random.default_rng(seed)
    for node in list(graph.nodes):
        if node.op_type != "ConstantOfShape" or node.inputs[0].const is None:
            continue
        shape = tuple(int(d) for d in node.inputs[0].const)
        if len(shape) >= 2:
            array = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / np.prod(shape[1:])))
        else:
            array = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        graph.replace_all_uses(node.outputs[0], graph.make_const("weight", array))
        graph.remove_node(node)


ALL_BUILDERS = {
    "resnet_block_cnn": resnet_block_cnn,
    "mobile_cnn": mobile_cnn,
    "transformer_encoder": transformer_encoder,
    "lstm_model": lstm_model,
    "qdq_cnn": qdq_cnn,
}
"""Every builder by name (model-level tests parametrize over it)."""
