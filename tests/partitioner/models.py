"""Full-size test networks for the partitioner, written with onnx.helper as PyTorch exports them.

Weights are zeros (the partitioner reads shapes, not values), so the models stay cheap to
build and import. BatchNorm is already folded into conv biases, as ``torch.onnx.export``
does in eval mode.

- ``resnet50``: torchvision ResNet-50 (stem, 3-4-6-3 bottlenecks, GlobalAveragePool,
  Flatten, Gemm); 122 nodes.
- ``mobilenet_v2``: torchvision MobileNetV2 (ReLU6 as Clip, inverted residuals,
  GlobalAveragePool, Flatten, Gemm); 100 nodes.
- ``yolo_detector``: a YOLOv5-style detector (Conv+SiLU as Sigmoid*Mul, SPPF, a nearest
  Resize named 'up1' in the neck, two detection heads reshaped to 5-D and concatenated);
  48 nodes. ``resize_mode="cubic"`` makes 'up1' DLA-ineligible.
- ``conv_chain``: ``n`` convolutions with ReLU and a ReLU6/Softmax sprinkle, for timing
  the partitioner on large graphs.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tests.models import make_model

__all__ = ["resnet50", "mobilenet_v2", "yolo_detector", "conv_chain"]


class _Builder:
    """Collects nodes and zero initializers; names follow the exporter's style."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, name: str, inputs: list[str], **attrs: object) -> str:
        self.nodes.append(helper.make_node(op, inputs, [f"{name}_out"], name=name, **attrs))
        return f"{name}_out"

    def conv(self, name: str, x: str, cin: int, cout: int, k: int, stride: int = 1, group: int = 1) -> str:
        w = self.const(f"{name}.weight", np.zeros((cout, cin // group, k, k), np.float32))
        b = self.const(f"{name}.bias", np.zeros(cout, np.float32))
        return self.node("Conv", name, [x, w, b], kernel_shape=[k, k], pads=[k // 2] * 4, strides=[stride, stride], group=group)

    def relu6(self, name: str, x: str) -> str:
        lo = self.const(f"{name}.min", np.array(0.0, np.float32))
        hi = self.const(f"{name}.max", np.array(6.0, np.float32))
        return self.node("Clip", name, [x, lo, hi])


def _classifier(b: _Builder, x: str, channels: int, classes: int) -> str:
    pooled = b.node("GlobalAveragePool", "avgpool", [x])
    flat = b.node("Flatten", "flatten", [pooled], axis=1)
    w = b.const("fc.weight", np.zeros((classes, channels), np.float32))
    bias = b.const("fc.bias", np.zeros(classes, np.float32))
    return b.node("Gemm", "fc", [flat, w, bias], transB=1)


def resnet50(batch: int = 1, size: int = 224, classes: int = 1000) -> onnx.ModelProto:
    """torchvision ResNet-50: 53 Conv, 49 Relu, 16 Add, MaxPool, GlobalAveragePool, Flatten, Gemm."""
    b = _Builder()
    x = b.node("Relu", "relu", [b.conv("conv1", "input", 3, 64, 7, 2)])
    x = b.node("MaxPool", "maxpool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for stage, (blocks, width, stride) in enumerate(((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)), start=1):
        for block in range(blocks):
            p = f"layer{stage}.{block}"
            s = stride if block == 0 else 1
            y = b.node("Relu", f"{p}.relu1", [b.conv(f"{p}.conv1", x, cin, width, 1)])
            y = b.node("Relu", f"{p}.relu2", [b.conv(f"{p}.conv2", y, width, width, 3, s)])
            y = b.conv(f"{p}.conv3", y, width, width * 4, 1)
            shortcut = b.conv(f"{p}.downsample", x, cin, width * 4, 1, s) if block == 0 else x
            x = b.node("Relu", f"{p}.relu3", [b.node("Add", f"{p}.add", [y, shortcut])])
            cin = width * 4
    _classifier(b, x, 2048, classes)
    b.nodes[-1].output[0] = "logits"
    return make_model(b, [("input", [batch, 3, size, size])], [("logits", [batch, classes])], name="resnet50")


def mobilenet_v2(batch: int = 1, size: int = 224, classes: int = 1000) -> onnx.ModelProto:
    """torchvision MobileNetV2: 52 Conv, 35 Clip (ReLU6), 10 Add, GlobalAveragePool, Flatten, Gemm."""
    b = _Builder()
    x = b.relu6("features.0.relu6", b.conv("features.0.conv", "input", 3, 32, 3, 2))
    cin, index = 32, 1
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        for i in range(n):
            p = f"features.{index}"
            stride = s if i == 0 else 1
            hidden = cin * t
            y = x
            if t != 1:
                y = b.relu6(f"{p}.expand.relu6", b.conv(f"{p}.expand", y, cin, hidden, 1))
            y = b.relu6(f"{p}.dw.relu6", b.conv(f"{p}.dw", y, hidden, hidden, 3, stride, group=hidden))
            y = b.conv(f"{p}.project", y, hidden, c, 1)
            x = b.node("Add", f"{p}.add", [x, y]) if stride == 1 and cin == c else y
            cin, index = c, index + 1
    x = b.relu6("features.18.relu6", b.conv("features.18.conv", x, cin, 1280, 1))
    _classifier(b, x, 1280, classes)
    b.nodes[-1].output[0] = "logits"
    return make_model(b, [("input", [batch, 3, size, size])], [("logits", [batch, classes])], name="mobilenet_v2")


def yolo_detector(size: int = 320, classes: int = 3, resize_mode: str = "nearest") -> onnx.ModelProto:
    """YOLOv5-style detector: 10 Conv+SiLU, SPPF, Resize 'up1', 2 Concat, 2 heads, output [1, N, 5+classes]."""
    b = _Builder()

    def conv_silu(name: str, x: str, cin: int, cout: int, k: int, stride: int = 1) -> str:
        y = b.conv(name, x, cin, cout, k, stride)
        return b.node("Mul", f"{name}.silu", [y, b.node("Sigmoid", f"{name}.sigmoid", [y])])

    x = conv_silu("stem", "images", 3, 16, 3, 2)
    x = conv_silu("b1", x, 16, 32, 3, 2)
    p3 = conv_silu("b2", x, 32, 64, 3, 2)
    x = conv_silu("b3", p3, 64, 128, 3, 2)
    x = conv_silu("sppf.cv1", x, 128, 64, 1)
    m1 = b.node("MaxPool", "sppf.m1", [x], kernel_shape=[5, 5], pads=[2, 2, 2, 2])
    m2 = b.node("MaxPool", "sppf.m2", [m1], kernel_shape=[5, 5], pads=[2, 2, 2, 2])
    m3 = b.node("MaxPool", "sppf.m3", [m2], kernel_shape=[5, 5], pads=[2, 2, 2, 2])
    x = b.node("Concat", "sppf.cat", [x, m1, m2, m3], axis=1)
    x = conv_silu("sppf.cv2", x, 256, 128, 1)
    lateral = conv_silu("lat", x, 128, 64, 1)
    scales = b.const("up1.scales", np.array([1, 1, 2, 2], np.float32))
    up = b.node("Resize", "up1", [lateral, "", scales], mode=resize_mode)
    x = b.node("Concat", "cat1", [up, p3], axis=1)
    n1 = conv_silu("n1", x, 128, 64, 3)
    down = conv_silu("down", n1, 64, 64, 3, 2)
    x = b.node("Concat", "cat2", [down, lateral], axis=1)
    n2 = conv_silu("n2", x, 128, 128, 3)
    outputs = []
    for name, feature, channels, grid in (("det1", n1, 64, size // 8), ("det2", n2, 128, size // 16)):
        y = b.conv(name, feature, channels, 3 * (5 + classes), 1)
        y = b.node("Reshape", f"{name}.view", [y, b.const(f"{name}.shape5", np.array([1, 3, 5 + classes, grid, grid], np.int64))])
        y = b.node("Transpose", f"{name}.permute", [y], perm=[0, 1, 3, 4, 2])
        y = b.node("Sigmoid", f"{name}.sigmoid", [y])
        outputs.append(b.node("Reshape", f"{name}.flat", [y, b.const(f"{name}.shape3", np.array([1, -1, 5 + classes], np.int64))]))
    b.node("Concat", "detections", outputs, axis=1)
    boxes = 3 * ((size // 8) ** 2 + (size // 16) ** 2)
    return make_model(b, [("images", [1, 3, size, size])], [("detections_out", [1, boxes, 5 + classes])], name="yolo")


def conv_chain(layers: int = 500, channels: int = 32, size: int = 28) -> onnx.ModelProto:
    """``layers`` nodes: Conv/Relu pairs with a residual Add every 5th pair and a Softmax
    every 50th layer (GPU-only on Xavier, on the DLA on Orin), ending in one Conv."""
    b = _Builder()
    x = "input"
    count = 0
    while count < layers - 1:
        y = b.node("Relu", f"relu{count}", [b.conv(f"conv{count}", x, channels, channels, 3)])
        count += 2
        if count % 10 == 0:
            y = b.node("Add", f"add{count}", [y, x])
            count += 1
        if count % 50 < 3:
            y = b.node("Softmax", f"softmax{count}", [y], axis=1)
            count += 1
        x = y
    b.conv("head", x, channels, channels, 1)
    b.nodes[-1].output[0] = "output"
    return make_model(b, [("input", [1, channels, size, size])], [("output", [1, channels, size, size])], name="chain")
