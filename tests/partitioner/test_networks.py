"""Benchmark networks keep the published shapes: FLOPs and parameter counts match the authors' figures."""

from __future__ import annotations

import numpy as np
import pytest

import edge
from benchmarks.networks import resnet, ssd_mobilenet_v1, yolov5s, yolov7
from edge.partitioner.cost import node_flops

# (builder, published GFLOPs (2 x multiply-adds), published parameters in millions, source)
PUBLISHED = {
    "resnet50": (lambda: resnet(50, 224), 8.2, 25.6, "torchvision ResNet-50: 4.09 GMACs, 25.6 M parameters"),
    "resnet18": (lambda: resnet(18, 224), 3.64, 11.7, "torchvision ResNet-18: 1.82 GMACs, 11.7 M parameters"),
    "yolov5s": (lambda: yolov5s(640), 16.5, 7.2, "Ultralytics YOLOv5s v6.0 at 640: 16.5 GFLOPs, 7.2 M parameters"),
    "yolov7": (lambda: yolov7(640), 104.7, 36.9, "WongKinYiu/yolov7 README at 640: 104.7 GFLOPs, 36.9 M parameters"),
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_flops_and_parameters_match_the_published_network(name: str) -> None:
    build, gflops, params_m, _ = PUBLISHED[name]
    model = build()
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)  # weights and biases (+ a few scalars)
    graph = edge.load_onnx(model)
    flops = sum(node_flops(n) for n in graph.nodes if n.op_type in ("Conv", "Gemm"))
    assert flops / 1e9 == pytest.approx(gflops, rel=0.03)
    assert params / 1e6 == pytest.approx(params_m, rel=0.05)


def test_ssd_mobilenet_feature_maps() -> None:
    """TF SSD-MobileNetV1 at 300x300: box predictors on 19, 10, 5, 3, 2 and 1 pixel maps."""
    graph = edge.load_onnx(ssd_mobilenet_v1(300))
    sides = sorted({o.shape[2] for o in graph.outputs}, reverse=True)
    assert sides == [19, 10, 5, 3, 2, 1]
