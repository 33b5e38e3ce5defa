"""The INT8 build stage: put calibrated scales on the optimized graph and settle each layer's precision.

Scales are keyed by ONNX tensor names (calibration runs before fusion). An optimized layer's
output keeps its ONNX name when it was not rewritten; a fused layer's output stands for the
same output of the last of its ``meta["origin"]`` nodes in ONNX order (the fusion's root),
and when a rewrite split one ONNX node into several layers only the last of them, in
execution order, produces that tensor. Each matched tensor gets ``meta["int8_scale"]``
(per-tensor, symmetric, zero point 0).

A layer asked to run INT8 does so only when every float activation it reads and every
float tensor it writes has a scale (TensorRT's rule); otherwise it runs FP16 and
``meta["precision_note"]`` says why, for ``inspect`` and ``build --verbose``. INT8 layers get
per-output-channel fake-quantized copies of their weights whose ``meta`` keeps the INT8
codes and scales (integer kernels use those); biases and other constants stay float32. A
tensor an INT8 layer writes and only INT8 layers read is marked ``meta["int8_output"]``: the
layer requantizes it to its scale, as INT8 hardware stores it.

Explicit Q/DQ scales (the optimizer's Q/DQ pass) are honoured at every build precision:
those tensors are marked ``meta["int8_source"] = "qdq"`` and quantized where produced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edge.ir import Graph, Node, Value
from edge.precision import computes_in_float, pin_precisions, round_weights
from edge.quant.numerics import has_int8_scales, quantizer_of, weight_axis, weight_codes

__all__ = ["NO_SCALES", "OnnxLayout", "apply_int8", "mark_explicit", "onnx_layout", "precision_label", "settle_precisions"]

NO_SCALES = "int8 requested, no scales"

OnnxLayout = Mapping[str, tuple[int, list[str]]]
"""ONNX node name -> (position in ONNX order, its output tensor names)."""


def onnx_layout(graph: Graph) -> dict[str, tuple[int, list[str]]]:
    """The layout of the imported (unfused) graph that fused layers are traced back to."""
    return {node.name: (index, [v.name for v in node.outputs]) for index, node in enumerate(graph.nodes)}


def onnx_tensor(node: Node, index: int, layout: OnnxLayout) -> str | None:
    """The ONNX tensor the ``index``-th output of a rewritten layer stands for: that output
    of the last of its origin nodes in ONNX order, or None when the layer has no known origin."""
    known = [layout[name] for name in node.origin if name in layout]
    if not known:
        return None
    outputs = max(known)[1]
    return outputs[index] if len(outputs) == len(node.outputs) else None


def precision_label(meta: Mapping[str, Any]) -> str:
    """A layer's precision as ``inspect`` shows it, e.g. "int8 requested, no scales: fp16"."""
    precision = str(meta.get("precision") or "fp32")
    note = meta.get("precision_note")
    return f"{note}: {precision}" if note else precision


def mark_explicit(graph: Graph) -> int:
    """Mark activations that carry explicit Q/DQ scales so the runtime re-quantizes them."""
    marked = 0
    for value in graph.values():
        if not value.is_const and "int8_scale" in value.meta and quantizer_of(value.meta) is not None:
            value.meta["int8_source"] = "qdq"
            marked += 1
    return marked


def _attach_scales(graph: Graph, scales: Mapping[str, float], layout: OnnxLayout) -> int:
    owner: dict[str, Value] = {}
    for value in graph.inputs:
        owner[value.name] = value
    for node in graph.nodes:
        for index, value in enumerate(node.outputs):
            name = value.name if value.name in scales else onnx_tensor(node, index, layout)
            if name is not None and not value.meta.get("omitted"):
                owner[name] = value
    attached = 0
    for name, value in owner.items():
        if name in scales and "int8_scale" not in value.meta:
            value.meta["int8_scale"] = float(np.float32(scales[name]))
            value.meta["int8_zero_point"] = 0
            attached += 1
    return attached


def _quantize_weights(graph: Graph, node: Node) -> None:
    for index, value in enumerate(node.inputs):
        axis = weight_axis(node.op_type, index, node.attrs)
        if value is None or axis is None or not value.is_const or value.dtype != np.float32 or "int8_weight" in value.meta:
            continue
        codes, scale = weight_codes(value.const, axis)
        weight = graph.make_const(value.name + "_int8", (codes * scale).astype(np.float32))
        weight.meta.update(
            int8_weight=codes, int8_scale=scale.reshape(-1), int8_zero_point=np.zeros((), np.int8), int8_axis=axis % codes.ndim
        )
        node.set_input(index, weight)


def _mark_int8_outputs(graph: Graph) -> int:
    """Mark the tensors INT8 layers write as INT8 (requantized to their own scale): those with
    a calibrated scale whose every reader is an INT8 layer. A network output, or a tensor a
    float layer reads, is written in float, as TensorRT writes them unless told otherwise."""
    outputs = {id(v) for v in graph.outputs}
    marked = 0
    for node in graph.walk():
        if node.meta.get("precision") != "int8":
            continue
        for value in node.outputs:
            readers = value.consumers
            if (
                readers
                and id(value) not in outputs
                and value.meta.get("int8_source") != "qdq"
                and quantizer_of(value.meta) is not None
                and all(reader.meta.get("precision") == "int8" for reader in readers)
            ):
                value.meta["int8_output"] = True
                marked += 1
    return marked


def apply_int8(graph: Graph, scales: Mapping[str, float] | None, layout: OnnxLayout) -> dict[str, Any]:
    """Mark explicit Q/DQ tensors, attach ``scales`` and settle every layer asked to run "int8"
    to int8 or fp16. Runs for every build (explicit Q/DQ applies at every precision).

    Returns a build record: tensors given scales, INT8 layers, and layers that fell back.
    """
    explicit = mark_explicit(graph)
    attached = _attach_scales(graph, scales, layout) if scales else 0
    int8, fallback = 0, []
    for node in graph.walk():
        if node.meta.get("precision") != "int8":
            continue
        if computes_in_float(node) and has_int8_scales(node):
            _quantize_weights(graph, node)
            int8 += 1
        else:
            node.meta["precision"] = "fp16"
            node.meta["precision_note"] = NO_SCALES
            fallback.append(node.name)
    requantized = _mark_int8_outputs(graph)
    return {
        "explicit_tensors": explicit,
        "scaled_tensors": attached,
        "int8_layers": int8,
        "int8_outputs": requantized,
        "fp16_fallback": fallback,
    }


def settle_precisions(
    graph: Graph, pins: Mapping[str, str] | None, build_precision: str, scales: Mapping[str, float] | None, layout: OnnxLayout
) -> dict[str, Any]:
    """The build's last precision step, once layers are placed (and ``--best`` has chosen):
    apply the ``--layer-precisions`` pins, settle INT8 (:func:`apply_int8`) and round FP16
    layers' weights. Returns :func:`apply_int8`'s record."""
    if pins:
        pin_precisions(graph, pins, build_precision)
    record = apply_int8(graph, scales, layout)
    round_weights(graph)
    return record
