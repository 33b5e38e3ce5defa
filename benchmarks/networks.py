"""Published networks at their published shapes, as ONNX models with random weights, for the
cost-model fit (benchmarks/cost_model_fit.py) and anyone costing a real workload.

Every builder keeps the layer shapes of the published network so FLOPs match it (checked in
``tests/partitioner/test_networks.py`` against the figures the model authors publish):

- ``resnet``: torchvision ResNet-18/34/50 and ResNeXt-50 32x4d (v1.5: stride on the 3x3 conv).
  ``classifier=True`` ends in a DLA-friendly AveragePool + 1x1-conv classifier, the form
  NVIDIA's DLA scripts prepare; ``outputs`` picks feature maps (C3..C5) for detectors.
- ``retinanet``: torchvision-style RetinaNet (FPN P3-P7, 4-conv heads, 9 anchors) on a ResNet or
  ResNeXt backbone, cut before the box decoding as NVIDIA's DLA scripts cut it.
- ``ssd_resnet34``: MLPerf SSD-ResNet-34 1200x1200 (layer3 at stride 1, head strides 3).
- ``ssd_mobilenet_v1``: TF object-detection SSD-MobileNetV1 300x300 (1x1 box predictors, 91 classes).
- ``yolov5s`` / ``yolov7``: the Ultralytics v6 and WongKinYiu YOLOv7 layouts, heads without NMS.
- ``dla_tutorial_cnn``: the 4-conv CIFAR net of NVIDIA's jetson_dla_tutorial with GroupNorm or BatchNorm.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "NETWORKS",
    "build",
    "resnet",
    "retinanet",
    "ssd_resnet34",
    "ssd_mobilenet_v1",
    "yolov5s",
    "yolov7",
    "dla_tutorial_cnn",
]


class _Net:
    """Collects nodes and seeded random initializers; every tensor carries its channel count."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def _name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, array: np.ndarray, hint: str = "c") -> str:
        name = self._name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs: object) -> str:
        name = self._name(op_type)
        self.nodes.append(helper.make_node(op_type, inputs, [f"{name}_out"], name=name, **attrs))
        return f"{name}_out"

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, pad: int | None = None,
             group: int = 1, act: str | None = "relu") -> str:
        """Conv (+ bias) and an activation: relu, silu (Sigmoid * x) or None."""
        fan_in = cin // group * k * k
        w = self.const((self.rng.standard_normal((cout, cin // group, k, k), dtype=np.float32) / np.sqrt(fan_in)), "w")
        b = self.const(np.zeros(cout, np.float32), "b")
        pad = k // 2 if pad is None else pad
        y = self.op("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=group)
        if act == "relu":
            return self.op("Relu", [y])
        if act == "silu":
            return self.op("Mul", [y, self.op("Sigmoid", [y])])
        return y

    def maxpool(self, x: str, k: int, stride: int, pad: int) -> str:
        return self.op("MaxPool", [x], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)

    def upsample2(self, x: str) -> str:
        return self.op("Resize", [x, "", self.const(np.array([1, 1, 2, 2], np.float32), "scales")], mode="nearest")

    def model(self, name: str, inputs: dict[str, Sequence[int]], outputs: list[str], opset: int = 17) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs.items()],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgetrt-benchmarks")
        model.ir_version = 8
        return model


# -- ResNet family ---------------------------------------------------------------------

_RESNET_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}


def _resnet_body(net: _Net, x: str, depth: int, groups: int = 1, layer3_stride: int = 2) -> list[tuple[str, int]]:
    """Stem and layer1..4; returns (tensor, channels) after each layer."""
    x = net.maxpool(net.conv(x, 3, 64, 7, 2), 3, 2, 1)
    bottleneck = depth == 50
    cin, outs = 64, []
    for stage, blocks in enumerate(_RESNET_BLOCKS[depth]):
        planes = 64 * 2**stage
        stride = (1, 2, layer3_stride, 2)[stage]
        cout = planes * 4 if bottleneck else planes
        for block in range(blocks):
            s = stride if block == 0 else 1
            if bottleneck:
                width = planes * 2 if groups > 1 else planes  # ResNeXt-50 32x4d doubles the bottleneck width
                y = net.conv(x, cin, width, 1)
                y = net.conv(y, width, width, 3, s, group=groups)
                y = net.conv(y, width, cout, 1, act=None)
            else:
                y = net.conv(net.conv(x, cin, cout, 3, s), cout, cout, 3, act=None)
            shortcut = net.conv(x, cin, cout, 1, s, act=None) if (s != 1 or cin != cout) else x
            x = net.op("Relu", [net.op("Add", [y, shortcut])])
            cin = cout
        outs.append((x, cout))
    return outs


def resnet(depth: int = 50, height: int = 224, width: int | None = None, batch: int = 1, groups: int = 1,
           classifier: bool = True, classes: int = 1000, outputs: Sequence[int] = (), seed: int = 0) -> onnx.ModelProto:
    """ResNet-``depth`` (ResNeXt with ``groups=32``); ``outputs`` = layer indices (2..4 = C3..C5)."""
    net = _Net(seed)
    width = height if width is None else width
    feats = _resnet_body(net, "input", depth, groups)
    outs = [feats[i - 1][0] for i in outputs]
    if classifier:
        x, channels = feats[-1]
        pooled = net.op("AveragePool", [x], kernel_shape=[height // 32, width // 32])
        outs.append(net.conv(pooled, channels, classes, 1, act=None))
    name = f"resnext{depth}" if groups > 1 else f"resnet{depth}"
    return net.model(name, {"input": (batch, 3, height, width)}, outs)


def retinanet(backbone: str = "resnext50", height: int = 800, width: int = 800, classes: int = 264,
              anchors: int = 9, seed: int = 0) -> onnx.ModelProto:
    """RetinaNet: ``backbone`` resnext50 / resnet34 / resnet18, FPN with P6/P7 from P5, 10 head outputs."""
    net = _Net(seed)
    depth, groups = {"resnext50": (50, 32), "resnet34": (34, 1), "resnet18": (18, 1)}[backbone]
    c3, c4, c5 = _resnet_body(net, "input", depth, groups)[1:]
    inner = [net.conv(t, c, 256, 1, act=None) for t, c in (c3, c4, c5)]
    top = inner[2]
    merged = [top]
    for lateral in (inner[1], inner[0]):
        top = net.op("Add", [lateral, net.upsample2(top)])
        merged.insert(0, top)
    levels = [net.conv(t, 256, 256, 3, act=None) for t in merged]
    p6 = net.conv(levels[2], 256, 256, 3, 2, act=None)
    p7 = net.conv(net.op("Relu", [p6]), 256, 256, 3, 2, act=None)
    levels += [p6, p7]
    outs = []
    for out_channels in (anchors * classes, anchors * 4):
        for level in levels:
            y = level
            for _ in range(4):
                y = net.conv(y, 256, 256, 3)
            outs.append(net.conv(y, 256, out_channels, 3, act=None))
    return net.model(f"retinanet_{backbone}", {"input": (1, 3, height, width)}, outs)


def ssd_resnet34(size: int = 1200, classes: int = 81, seed: int = 0) -> onnx.ModelProto:
    """MLPerf SSD-ResNet-34: ResNet-34 to layer3 (stride 1), five extra blocks, 3x3 heads at stride 3."""
    net = _Net(seed)
    x, channels = _resnet_body_to_layer3(net)
    sources = [(x, channels)]
    extra = ((256, 512, 2, 1), (256, 512, 2, 1), (128, 256, 2, 1), (128, 256, 2, 0), (128, 256, 1, 0))
    for mid, out, stride, pad in extra:
        x = net.conv(net.conv(x, channels, mid, 1), mid, out, 3, stride, pad)
        channels = out
        sources.append((x, channels))
    outs = []
    for (t, c), defaults in zip(sources, (4, 6, 6, 6, 4, 4)):
        outs.append(net.conv(t, c, defaults * 4, 3, 3, 1, act=None))
        outs.append(net.conv(t, c, defaults * classes, 3, 3, 1, act=None))
    return net.model("ssd_resnet34", {"image": (1, 3, size, size)}, outs)


def _resnet_body_to_layer3(net: _Net) -> tuple[str, int]:
    """SSD-ResNet-34's backbone: stem, layer1-3 of ResNet-34 with layer3 at stride 1 (256 channels)."""
    x = net.maxpool(net.conv("image", 3, 64, 7, 2), 3, 2, 1)
    cin = 64
    for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 1)):
        for block in range(blocks):
            s = stride if block == 0 else 1
            y = net.conv(net.conv(x, cin, planes, 3, s), planes, planes, 3, act=None)
            shortcut = net.conv(x, cin, planes, 1, s, act=None) if (s != 1 or cin != planes) else x
            x = net.op("Relu", [net.op("Add", [y, shortcut])])
            cin = planes
    return x, cin


def ssd_mobilenet_v1(size: int = 300, batch: int = 1, classes: int = 91, seed: int = 0) -> onnx.ModelProto:
    """SSD-MobileNetV1 (ReLU6 as Clip): 13 depthwise-separable blocks, 4 extra layers, 1x1 box predictors."""
    net = _Net(seed)
    lo, hi = net.const(np.array(0.0, np.float32)), net.const(np.array(6.0, np.float32))

    def conv6(x: str, cin: int, cout: int, k: int, stride: int = 1, group: int = 1) -> str:
        return net.op("Clip", [net.conv(x, cin, cout, k, stride, group=group, act=None), lo, hi])

    x = conv6("input", 3, 32, 3, 2)
    cin, sources = 32, []
    for i, (cout, stride) in enumerate(((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
                                        (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))):
        x = conv6(conv6(x, cin, cin, 3, stride, group=cin), cin, cout, 1)
        cin = cout
        if i in (10, 12):
            sources.append((x, cout))
    for mid, out in ((256, 512), (128, 256), (128, 256), (64, 128)):
        x = conv6(conv6(x, cin, mid, 1), mid, out, 3, 2)
        cin = out
        sources.append((x, out))
    outs = []
    for (t, c), boxes in zip(sources, (3, 6, 6, 6, 6, 6)):
        outs.append(net.conv(t, c, boxes * 4, 1, act=None))
        outs.append(net.conv(t, c, boxes * classes, 1, act=None))
    return net.model("ssd_mobilenet_v1", {"input": (batch, 3, size, size)}, outs)


# -- YOLO ------------------------------------------------------------------------------

def _c3(net: _Net, x: str, cin: int, cout: int, n: int, shortcut: bool = True) -> str:
    """YOLOv5 C3: two 1x1 branches, n bottlenecks on one, concat, 1x1."""
    hidden = cout // 2
    a = net.conv(x, cin, hidden, 1, act="silu")
    b = net.conv(x, cin, hidden, 1, act="silu")
    for _ in range(n):
        y = net.conv(net.conv(a, hidden, hidden, 1, act="silu"), hidden, hidden, 3, act="silu")
        a = net.op("Add", [a, y]) if shortcut else y
    return net.conv(net.op("Concat", [a, b], axis=1), 2 * hidden, cout, 1, act="silu")


def _sppf(net: _Net, x: str, cin: int, cout: int) -> str:
    hidden = cin // 2
    x = net.conv(x, cin, hidden, 1, act="silu")
    pools = [x]
    for _ in range(3):
        pools.append(net.maxpool(pools[-1], 5, 1, 2))
    return net.conv(net.op("Concat", pools, axis=1), 4 * hidden, cout, 1, act="silu")


def yolov5s(size: int = 672, batch: int = 1, classes: int = 80, seed: int = 0) -> onnx.ModelProto:
    """Ultralytics YOLOv5s v6 (depth 0.33, width 0.5); three 1x1 detection convs, no decode/NMS."""
    net = _Net(seed)
    x = net.conv("images", 3, 32, 6, 2, 2, act="silu")
    x = _c3(net, net.conv(x, 32, 64, 3, 2, act="silu"), 64, 64, 1)
    p3 = _c3(net, net.conv(x, 64, 128, 3, 2, act="silu"), 128, 128, 2)
    p4 = _c3(net, net.conv(p3, 128, 256, 3, 2, act="silu"), 256, 256, 3)
    x = _c3(net, net.conv(p4, 256, 512, 3, 2, act="silu"), 512, 512, 1)
    x = _sppf(net, x, 512, 512)
    h10 = net.conv(x, 512, 256, 1, act="silu")
    x = _c3(net, net.op("Concat", [net.upsample2(h10), p4], axis=1), 512, 256, 1, shortcut=False)
    h14 = net.conv(x, 256, 128, 1, act="silu")
    out3 = _c3(net, net.op("Concat", [net.upsample2(h14), p3], axis=1), 256, 128, 1, shortcut=False)
    x = net.op("Concat", [net.conv(out3, 128, 128, 3, 2, act="silu"), h14], axis=1)
    out4 = _c3(net, x, 256, 256, 1, shortcut=False)
    x = net.op("Concat", [net.conv(out4, 256, 256, 3, 2, act="silu"), h10], axis=1)
    out5 = _c3(net, x, 512, 512, 1, shortcut=False)
    outs = [net.conv(t, c, 3 * (5 + classes), 1, act=None) for t, c in ((out3, 128), (out4, 256), (out5, 512))]
    return net.model("yolov5s", {"images": (batch, 3, size, size)}, outs)


def _elan(net: _Net, x: str, cin: int, branch: int, cout: int) -> str:
    """YOLOv7 ELAN block: two 1x1 branches, four 3x3 convs on one, concat of 4 (backbone) outputs, 1x1."""
    a = net.conv(x, cin, branch, 1, act="silu")
    b = net.conv(x, cin, branch, 1, act="silu")
    c1 = net.conv(b, branch, branch, 3, act="silu")
    c2 = net.conv(c1, branch, branch, 3, act="silu")
    c3 = net.conv(c2, branch, branch, 3, act="silu")
    c4 = net.conv(c3, branch, branch, 3, act="silu")
    return net.conv(net.op("Concat", [c4, c2, b, a], axis=1), 4 * branch, cout, 1, act="silu")


def _elan_head(net: _Net, x: str, cin: int, branch: int, inner: int, cout: int) -> str:
    """YOLOv7 head ELAN-H: concat of six outputs (2 branches + 4 narrower 3x3 convs), 1x1."""
    a = net.conv(x, cin, branch, 1, act="silu")
    b = net.conv(x, cin, branch, 1, act="silu")
    convs, y, c = [], b, branch
    for _ in range(4):
        y = net.conv(y, c, inner, 3, act="silu")
        convs.append(y)
        c = inner
    return net.conv(net.op("Concat", [*reversed(convs), b, a], axis=1), 2 * branch + 4 * inner, cout, 1, act="silu")


def _mp_down(net: _Net, x: str, cin: int, half: int) -> str:
    """YOLOv7 MP transition: max-pool + 1x1 on one branch, 1x1 + 3x3/2 on the other, concat."""
    a = net.conv(net.maxpool(x, 2, 2, 0), cin, half, 1, act="silu")
    b = net.conv(net.conv(x, cin, half, 1, act="silu"), half, half, 3, 2, act="silu")
    return net.op("Concat", [b, a], axis=1)


def _sppcspc(net: _Net, x: str, cin: int, cout: int) -> str:
    hidden = cout
    a = net.conv(net.conv(net.conv(x, cin, hidden, 1, act="silu"), hidden, hidden, 3, act="silu"), hidden, hidden, 1, act="silu")
    pools = [a] + [net.maxpool(a, k, 1, k // 2) for k in (5, 9, 13)]
    a = net.conv(net.conv(net.op("Concat", pools, axis=1), 4 * hidden, hidden, 1, act="silu"), hidden, hidden, 3, act="silu")
    b = net.conv(x, cin, hidden, 1, act="silu")
    return net.conv(net.op("Concat", [a, b], axis=1), 2 * hidden, cout, 1, act="silu")


def yolov7(size: int = 640, batch: int = 1, classes: int = 80, seed: int = 0) -> onnx.ModelProto:
    """YOLOv7 (yolov7.yaml, RepConv re-parameterized to 3x3 convs): backbone, SPPCSPC, PAN head, 3 detection convs."""
    net = _Net(seed)
    x = net.conv("images", 3, 32, 3, act="silu")
    x = net.conv(x, 32, 64, 3, 2, act="silu")
    x = net.conv(x, 64, 64, 3, act="silu")
    x = net.conv(x, 64, 128, 3, 2, act="silu")
    x = _elan(net, x, 128, 64, 256)
    c3 = _elan(net, _mp_down(net, x, 256, 128), 256, 128, 512)
    c4 = _elan(net, _mp_down(net, c3, 512, 256), 512, 256, 1024)
    c5 = _elan(net, _mp_down(net, c4, 1024, 512), 1024, 256, 1024)
    p5 = _sppcspc(net, c5, 1024, 512)
    x = net.op("Concat", [net.conv(c4, 1024, 256, 1, act="silu"), net.upsample2(net.conv(p5, 512, 256, 1, act="silu"))], axis=1)
    h63 = _elan_head(net, x, 512, 256, 128, 256)
    x = net.op("Concat", [net.conv(c3, 512, 128, 1, act="silu"), net.upsample2(net.conv(h63, 256, 128, 1, act="silu"))], axis=1)
    h75 = _elan_head(net, x, 256, 128, 64, 128)
    x = net.op("Concat", [_mp_down(net, h75, 128, 128), h63], axis=1)
    h88 = _elan_head(net, x, 512, 256, 128, 256)
    x = net.op("Concat", [_mp_down(net, h88, 256, 256), p5], axis=1)
    h101 = _elan_head(net, x, 1024, 512, 256, 512)
    outs = []
    for t, c in ((h75, 128), (h88, 256), (h101, 512)):
        y = net.conv(t, c, 2 * c, 3, act="silu")  # RepConv after re-parameterization
        outs.append(net.conv(y, 2 * c, 3 * (5 + classes), 1, act=None))
    return net.model("yolov7", {"images": (batch, 3, size, size)}, outs)


def dla_tutorial_cnn(norm: str = "bn", batch: int = 32, classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """jetson_dla_tutorial ModelGN / ModelBN: 4 x [3x3/2 conv, GroupNorm(8)|BatchNorm, ReLU], 64->512 ch,
    global average pool, flatten, linear."""
    net = _Net(seed)
    x, cin, side = "input", 3, 32
    for cout in (64, 128, 256, 512):
        side //= 2
        x = net.conv(x, cin, cout, 3, 2, act=None)
        if norm == "gn":  # as torch.onnx exports GroupNorm(8): reshape, InstanceNorm, reshape back, affine
            y = net.op("Reshape", [x, net.const(np.array([batch, 8, -1], np.int64))])
            y = net.op("InstanceNormalization", [y, net.const(np.ones(8, np.float32)), net.const(np.zeros(8, np.float32))], epsilon=1e-5)
            y = net.op("Reshape", [y, net.const(np.array([batch, cout, side, side], np.int64))])
            # the affine as a trained net has it (an untrained one's ones and zeros would fold away)
            gamma = net.rng.uniform(0.5, 1.5, (cout, 1, 1)).astype(np.float32)
            beta = (0.1 * net.rng.standard_normal((cout, 1, 1))).astype(np.float32)
            x = net.op("Add", [net.op("Mul", [y, net.const(gamma)]), net.const(beta)])
        else:
            params = [net.const(np.ones(cout, np.float32)), net.const(np.zeros(cout, np.float32)),
                      net.const(np.zeros(cout, np.float32)), net.const(np.ones(cout, np.float32))]
            x = net.op("BatchNormalization", [x, *params], epsilon=1e-5)
        x = net.op("Relu", [x])
        cin = cout
    x = net.op("Flatten", [net.op("GlobalAveragePool", [x])], axis=1)
    w = net.const(net.rng.standard_normal((classes, cin), dtype=np.float32) / np.sqrt(cin))
    out = net.op("Gemm", [x, w, net.const(np.zeros(classes, np.float32))], transB=1)
    return net.model(f"dla_tutorial_{norm}", {"input": (batch, 3, 32, 32)}, [out], opset=17)


NETWORKS = {
    "resnet50": lambda batch=1: resnet(50, 224, batch=batch),
    "resnet34": lambda batch=1: resnet(34, 224, batch=batch),
    "resnet18": lambda batch=1: resnet(18, 224, batch=batch),
    "resnet34_backbone_1280x768": lambda batch=1: resnet(34, 768, 1280, batch=batch, classifier=False, outputs=(2, 3, 4)),
    "retinanet_resnext50_800": lambda batch=1: retinanet("resnext50", 800, 800, classes=264),
    "retinanet_resnet34_1280x768": lambda batch=1: retinanet("resnet34", 768, 1280, classes=3),
    "ssd_resnet34_1200": lambda batch=1: ssd_resnet34(1200),
    "ssd_mobilenet_v1_300": lambda batch=1: ssd_mobilenet_v1(300, batch=batch),
    "yolov5s_672": lambda batch=1: yolov5s(672, batch=batch),
    "yolov7_640": lambda batch=1: yolov7(640, batch=batch),
    "dla_tutorial_gn": lambda batch=32: dla_tutorial_cnn("gn", batch=batch),
    "dla_tutorial_bn": lambda batch=32: dla_tutorial_cnn("bn", batch=batch),
}
"""Network name (as the calibration data names it) -> builder taking the batch size."""


def build(name: str, batch: int | None = None) -> onnx.ModelProto:
    """The named network at ``batch`` (the builder's default when None)."""
    builder = NETWORKS[name]
    return builder() if batch is None else builder(batch)
