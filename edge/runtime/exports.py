"""trtexec's export files, in trtexec's own JSON layouts, so scripts written for trtexec and
TensorRT Engine Explorer (``trex``) read edgetrt's:

- ``--exportTimes``: a list, one object per timed query, with ``startEnqMs`` ... ``endD2hMs``
  time stamps and ``h2dMs`` / ``computeMs`` / ``d2hMs`` / ``latencyMs`` durations.
- ``--exportProfile``: a list whose first element is ``{"count": runs}`` and whose others are
  ``{"name", "timeMs", "averageMs", "medianMs", "percentage"}``, one per layer.
- ``--exportLayerInfo``: TensorRT's engine inspector layout, ``{"Layers": [...], "Bindings":
  [...]}``, one layer object with ``Name``, ``LayerType``, ``Inputs``/``Outputs`` (``Name``,
  ``Location``, ``Dimensions``, ``Format/Datatype``), ``TacticName`` and ``Metadata``.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.errors import EdgeError
from edge.fileio import write_atomic
from edge.inspect import layer_rows
from edge.plan import HOST

if TYPE_CHECKING:
    from edge.engine import Engine
    from edge.ir import Node, Value
    from edge.plan.model import PlanTensor
    from edge.runtime.bench import BenchResult

__all__ = ["write_layer_info", "write_profile", "write_times"]

# TensorRT's names for the formats of row-major (linear) tensors, as its inspector writes them.
_FORMATS = {
    "float32": "Row major linear FP32",
    "float16": "Row major linear FP16 format",
    "bfloat16": "Row major linear BFloat16 format",
    "int8": "Row major Int8 format",
    "uint8": "Row major linear UInt8 format",
    "int32": "Row major linear Int32",
    "int64": "Row major linear Int64 format",
    "bool": "Row major linear BOOL",
    "float64": "Double",
}
# TensorRT layer kinds (ParameterType) of the ONNX ops (and edgetrt fusions) that have one.
_PARAMETER_TYPES = {
    **dict.fromkeys(("Conv", "FusedConv"), "Convolution"),
    **dict.fromkeys(("ConvTranspose", "FusedConvTranspose"), "Deconvolution"),
    **dict.fromkeys(("MatMul", "Gemm", "FusedMatMul", "FusedGemm"), "MatrixMultiply"),
    **dict.fromkeys(("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"), "Pooling"),
    **dict.fromkeys(("Softmax", "LogSoftmax"), "SoftMax"),
    "Concat": "Concatenation",
    **dict.fromkeys(("Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze"), "Shuffle"),
    **dict.fromkeys(("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"), "ElementWise"),
    **dict.fromkeys(("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Selu", "Softplus", "Clip", "HardSigmoid"), "Activation"),
    **dict.fromkeys(("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"), "Reduce"),
    "Resize": "Resize",
    "Slice": "Slice",
    "Gather": "Gather",
    "TopK": "TopK",
    "Pad": "Padding",
    "Shape": "Shape",
    "Identity": "Identity",
    "Constant": "Constant",
}
_WEIGHT_TYPES = {"float32": "Float", "float16": "Half", "int8": "Int8", "int32": "Int32"}


def write_times(result: BenchResult, path: str | os.PathLike) -> None:
    """Per-query timings (trtexec ``--exportTimes``), ms since timing began.

    The runtime measures durations, not when each part began, so a query's parts are laid
    end to end from its start: H2D, then compute, then D2H. A part the backend did not
    measure is 0 ms, except compute, which then is the query's whole latency.
    """
    times = result.times_ms
    rows = []
    for index, start_s in enumerate(result.start_times_s):
        start = float(start_s) * 1000.0
        h2d, d2h = _known(times["h2d"][index]), _known(times["d2h"][index])
        compute = float(times["compute"][index]) if np.isfinite(times["compute"][index]) else float(times["latency"][index])
        enqueue = float(times["enqueue"][index]) if np.isfinite(times["enqueue"][index]) else float(times["host"][index])
        rows.append(
            {
                "startEnqMs": start,
                "endEnqMs": start + enqueue,
                "startH2dMs": start,
                "endH2dMs": start + h2d,
                "startComputeMs": start + h2d,
                "endComputeMs": start + h2d + compute,
                "startD2hMs": start + h2d + compute,
                "endD2hMs": start + h2d + compute + d2h,
                "h2dMs": h2d,
                "computeMs": compute,
                "d2hMs": d2h,
                "latencyMs": h2d + compute + d2h,
            }
        )
    _write_json(path, rows)


def _known(value: float) -> float:
    return float(value) if np.isfinite(value) else 0.0


def write_profile(result: BenchResult, path: str | os.PathLike) -> None:
    """Per-layer times of the separate profile runs (trtexec ``--exportProfile``)."""
    if not result.layers:
        raise EdgeError("no layer profile was recorded: benchmark with profile_layers=True (--export-profile)")
    rows: list[dict[str, Any]] = [{"count": result.profile_runs}]
    for layer in result.layers:
        rows.append(
            {
                "name": layer["name"],
                "timeMs": layer["total_ms"],
                "averageMs": layer["ms_per_run"],
                "medianMs": layer["median_ms"],
                "percentage": layer["percent"],
            }
        )
    _write_json(path, rows)


def write_layer_info(engine: Engine, path: str | os.PathLike) -> None:
    """The engine's layers in TensorRT's engine inspector layout (trtexec ``--exportLayerInfo``).

    A tensor's format is its storage as the plan keeps it: a CPU layer that emulates FP16
    numerics on float32 storage shows FP32, as TensorRT shows what the memory holds.
    """
    graph, plan = engine.graph, engine.plan
    nodes = {node.name: node for node in graph.nodes}
    values = {value.name: value for value in graph.values()}
    copies = {tensor.name: tensor for tensor in plan.tensors} if plan is not None else {}
    spaces = _spaces(engine)
    layers = []
    for row in layer_rows(graph, plan):
        node = nodes[row["name"]]
        step = plan.kernel_step(node.name) if plan is not None else None
        location = "Host" if spaces.get(node.name, HOST) == HOST else "Device"

        def tensors(names: list[str]) -> list[dict[str, Any]]:
            return [_tensor(values, copies, name, location) for name in names if not values[copies[name].source if name in copies else name].is_const]

        layer: dict[str, Any] = {
            "Name": node.name,
            "LayerType": row["kernel"] or row["op"],
            "Inputs": tensors(step.inputs if step else [v.name for v in node.inputs if v is not None]),
            "Outputs": tensors(step.outputs if step else [v["name"] for v in row["outputs"]]),
        }
        kind = _PARAMETER_TYPES.get(node.op_type)
        storage = {copies[name].source: copies[name].dtype for name in (step.inputs if step else []) if name in copies}
        convolution = _conv_fields(node, storage) if kind == "Convolution" else None
        if kind and (kind != "Convolution" or convolution):
            layer["ParameterType"] = kind
            layer.update(convolution or {})
        layer["TacticName"] = row["tactic"] or row["kernel"] or ""
        layer["StreamId"] = 0
        layer["Metadata"] = "\x1e".join(f"[ONNX Layer: {name}]" for name in row["origin"])
        layers.append(layer)
    bindings = [v.name for v in (*graph.inputs, *graph.outputs)]
    _write_json(path, {"Layers": layers, "Bindings": bindings})


def _spaces(engine: Engine) -> dict[str, str]:
    """The memory space each layer runs in, by node name."""
    plan = engine.plan
    if plan is None:
        return {}
    return {plan.steps[i].node: segment.space for segment in plan.segments for i in range(*segment.steps) if plan.steps[i].kind == "kernel"}


def _tensor(values: dict[str, Value], copies: dict[str, PlanTensor], name: str, location: str) -> dict[str, Any]:
    """One tensor of a layer: a graph value, or a copy the plan made of one (its own dtype)."""
    copy = copies.get(name)
    value = values[copy.source if copy else name]
    dtype = copy.dtype if copy else (np.dtype(value.dtype).name if value.dtype is not None else "float32")
    return {
        "Name": name,
        "Location": location,
        "Dimensions": [d if isinstance(d, int) else -1 for d in (value.shape or ())],
        "Format/Datatype": _FORMATS.get(np.dtype(dtype).name, "Unknown format"),
    }


def _conv_fields(node: Node, storage: dict[str, str]) -> dict[str, Any] | None:
    """The attributes trex reads of a 2-D convolution (None for other ranks: TensorRT's own
    inspector and trex's convolution analysis describe 2-D ones); ``storage``: the dtype of
    weights the plan keeps in another one, by value name."""
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    if weight is None or weight.shape is None or len(weight.shape) != 4:
        return None
    out_maps, _, kh, kw = weight.shape
    pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    fields = {
        "Kernel": [kh, kw],
        "PaddingMode": "kEXPLICIT_ROUND_DOWN",
        "PrePadding": pads[:2],
        "PostPadding": pads[2:],
        "Stride": list(node.attrs.get("strides", [1, 1])),
        "Dilation": list(node.attrs.get("dilations", [1, 1])),
        "OutMaps": out_maps,
        "Groups": int(node.attrs.get("group", 1)),
        "Weights": _weights(weight, storage),
        "HasBias": int(bias is not None),
    }
    if bias is not None:
        fields["Bias"] = _weights(bias, storage)
    return fields


def _weights(value: Value, storage: dict[str, str]) -> dict[str, Any]:
    dtype = storage.get(value.name) or (np.dtype(value.dtype).name if value.dtype is not None else "float32")
    return {"Type": _WEIGHT_TYPES.get(dtype, "Float"), "Count": int(np.prod(value.shape))}


def _write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write JSON atomically: a temp file in the target folder, then rename."""
    write_atomic(path, json.dumps(payload, indent=1))
