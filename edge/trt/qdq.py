"""The explicitly quantized (Q/DQ) ONNX for TensorRT 11, which has no calibrators.

Every activation in ``NetworkSettings.quantized`` (the ones INT8 layers read) gets
``QuantizeLinear -> DequantizeLinear`` with its calibrated scale where it is produced (zero
point 0, symmetric INT8), so its readers see the INT8-grid value, as edgetrt's INT8 layers do;
graph outputs stay float unless an INT8 layer also reads them. The weights of INT8 Conv, ConvTranspose,
Gemm and MatMul layers become INT8 initializers behind a per-output-channel DequantizeLinear
(scale max|w| / 127, the rule TensorRT applies itself in implicit mode).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import ModelProto, helper, numpy_helper

from edge.errors import EdgeError
from edge.quant.numerics import SYMMETRIC_MAX, weight_axis
from edge.trt.settings import NetworkSettings

__all__ = ["add_qdq"]

_MIN_OPSET = 13  # per-channel DequantizeLinear


def _pair(tensor: str, source: str, scale: float, nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto]) -> None:
    """``source -> Q -> DQ -> tensor`` with ``scale``."""
    inits += [numpy_helper.from_array(np.array(scale, np.float32), f"{tensor}_scale"), numpy_helper.from_array(np.array(0, np.int8), f"{tensor}_zero_point")]
    nodes.append(helper.make_node("QuantizeLinear", [source, f"{tensor}_scale", f"{tensor}_zero_point"], [f"{tensor}_quantized"], name=f"{tensor}_QuantizeLinear"))
    nodes.append(helper.make_node("DequantizeLinear", [f"{tensor}_quantized", f"{tensor}_scale", f"{tensor}_zero_point"], [tensor], name=f"{tensor}_DequantizeLinear"))


def _weight(name: str, array: np.ndarray, axis: int, nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto]) -> str:
    """An INT8 copy of weight ``name`` behind a per-channel DequantizeLinear; returns its output."""
    axis %= array.ndim
    reduce = tuple(a for a in range(array.ndim) if a != axis)
    scale = (np.abs(array).max(axis=reduce) / np.float32(SYMMETRIC_MAX)).astype(np.float32)
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    shape = [1] * array.ndim
    shape[axis] = -1
    codes = np.clip(np.rint(array / scale.reshape(shape)), -SYMMETRIC_MAX, SYMMETRIC_MAX).astype(np.int8)
    inits += [numpy_helper.from_array(codes, f"{name}_int8"), numpy_helper.from_array(scale, f"{name}_scale"),
              numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{name}_zero_point")]
    nodes.append(helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zero_point"], [f"{name}_dequantized"],
                                  name=f"{name}_DequantizeLinear", axis=axis))
    return f"{name}_dequantized"


def add_qdq(model: ModelProto, settings: NetworkSettings) -> ModelProto:
    """A copy of ``model`` with Q/DQ at the INT8 boundaries and INT8 weights (see module docstring).

    Raises:
        EdgeError: the model's opset is below 13 (no per-channel DequantizeLinear).
    """
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < _MIN_OPSET:
        raise EdgeError(f"the Q/DQ ONNX needs opset {_MIN_OPSET} or newer (per-channel DequantizeLinear); the model has opset {opset}")
    out = ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    quantized = set(settings.quantized)
    int8_layers = {layer.name for layer in settings.layers if layer.precision == "int8"}
    weights = {t.name: t for t in graph.initializer}
    dequantized: dict[str, str] = {}
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    for value in graph.input:
        if value.name in quantized:
            _pair(value.name + "_dq", value.name, settings.scales[value.name], nodes, inits)
    renamed = {v.name: v.name + "_dq" for v in graph.input if v.name in quantized}
    for original in graph.node:
        node = onnx.NodeProto()
        node.CopyFrom(original)
        for index, name in enumerate(node.input):
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            axis = weight_axis(node.op_type, index, attrs) if node.name in int8_layers else None
            if axis is not None and name in weights and weights[name].data_type == onnx.TensorProto.FLOAT:
                if name not in dequantized:
                    dequantized[name] = _weight(name, numpy_helper.to_array(weights[name]), axis, nodes, inits)
                node.input[index] = dequantized[name]
            elif name in renamed:
                node.input[index] = renamed[name]
        produced = [(index, name) for index, name in enumerate(node.output) if name in quantized]
        for index, name in produced:
            node.output[index] = name + "_prequantized"
        nodes.append(node)
        for _, name in produced:
            _pair(name, name + "_prequantized", settings.scales[name], nodes, inits)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    read = {name for node in graph.node for name in node.input} | {v.name for v in graph.output}
    kept = [t for t in graph.initializer if t.name in read]  # float weights now replaced by their INT8 copies
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return out
