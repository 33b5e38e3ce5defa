"""edgetrt's plan mapped onto TensorRT's network, as plain data.

TensorRT names a parsed network's layers after the ONNX nodes and its tensors after the ONNX
tensors, and fuses on its own. So the exported ONNX keeps the graph before edgetrt's fusions
and every node of it takes the device and precision of the engine layer it became part of
(found through the layer's ``origin``, the ONNX node names it stands for). This one structure
feeds the trtexec command line, the README and the TensorRT backend's network definition.

INT8 needs a scale on every activation a layer reads or writes, as in edgetrt's own rule;
tensors inside one engine layer (a conv output its fused ReLU consumes) need none, since
TensorRT fuses that pair too. A node asked for INT8 without its scales is set to FP16, noted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from edge.engine import Engine
from edge.errors import EdgeError
from edge.ir import Graph, Node, Value
from edge.precision import computes_in_float
from edge.quant.apply import OnnxLayout, onnx_tensor

__all__ = ["LayerSetting", "NetworkSettings", "network_settings", "onnx_names"]

_DEVICES = {"dla": "DLA", "gpu": "GPU"}
_QDQ = ("QuantizeLinear", "DequantizeLinear")
_MIN_TRACED = 0.5
"""Below this share of the ONNX nodes found in the engine, the engine was built from another model."""


@dataclass(frozen=True)
class LayerSetting:
    """One network layer (ONNX node): TensorRT device type and precision, and its edgetrt layer."""

    name: str
    op: str
    device: str | None
    precision: str | None
    engine_layer: str | None


@dataclass
class NetworkSettings:
    """What TensorRT's builder is told, per network and per layer.

    Attributes:
        precision: the build's widest precision ("fp32", "fp16", "int8").
        dla_core: default DLA core, or None for a GPU-only engine.
        gpu_fallback: layers the DLA cannot run may go to the GPU.
        layers: every ONNX node in graph order.
        scales: activation tensor -> INT8 scale (amax / 127), the calibration cache's lines.
        quantized: activation tensors an INT8 layer reads across an engine-layer boundary (where
            the Q/DQ ONNX quantizes; an INT8 layer's outputs stay float until an INT8 reader, as in
            edgetrt's emulation).
        memory_pools: TensorRT pool name -> bytes.
        io: (tensor name, numpy dtype string, is input) of every network input and output.
        notes: where TensorRT will not get exactly edgetrt's plan, and why.
    """

    precision: str
    dla_core: int | None
    gpu_fallback: bool
    layers: list[LayerSetting]
    scales: dict[str, float]
    quantized: list[str]
    memory_pools: dict[str, int]
    io: list[tuple[str, str, bool]]
    notes: list[str] = field(default_factory=list)

    def devices(self) -> dict[str, str]:
        return {layer.name: layer.device for layer in self.layers if layer.device is not None}

    def precisions(self) -> dict[str, str]:
        return {layer.name: layer.precision for layer in self.layers if layer.precision is not None}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _float_tensors(values: Any) -> list[Value]:
    return [v for v in values if v is not None and not v.is_const and v.dtype is not None and v.dtype.kind == "f" and not v.meta.get("omitted")]


def _internal(value: Value, owner: dict[int, str | None], layer: str | None, graph: Graph) -> bool:
    """True when ``value`` never leaves edgetrt layer ``layer`` (made and read only inside it)."""
    if layer is None or value.producer is None or owner.get(id(value.producer)) != layer or graph.is_output(value):
        return False
    return all(owner.get(id(consumer)) == layer for consumer in value.consumers)


def onnx_names(graph: Graph, layout: OnnxLayout) -> dict[str, str]:
    """Tensor name in ``graph`` -> the imported ONNX tensor it stands for (where a rewrite renamed it)."""
    known = {name for _, outputs in layout.values() for name in outputs} | {v.name for v in graph.inputs}
    found = {v.name: v.name for v in graph.inputs}
    for node in graph.nodes:
        for index, value in enumerate(node.outputs):
            name = value.name if value.name in known else onnx_tensor(node, index, layout)
            if name is not None:
                found[value.name] = name
    return found


_LayerIndex = tuple[dict[str, str], dict[str, str], dict[str, str]]


def _layer_index(engine_graph: Graph) -> _LayerIndex:
    """Engine layer names by name, by the tensors they write, and by the ONNX nodes they stand for."""
    by_name = {node.name: node.name for node in engine_graph.nodes}
    by_output = {value.name: node.name for node in engine_graph.nodes for value in node.outputs}
    by_origin: dict[str, str] = {}
    for node in engine_graph.nodes:
        for name in node.origin:
            by_origin.setdefault(name, node.name)
    return by_name, by_output, by_origin


def _engine_layer(node: Node, index: _LayerIndex) -> str | None:
    """The engine layer ``node`` became part of: the same name, else the one writing its output
    (a rewrite split an ONNX node into several layers), else the first standing for its origin."""
    by_name, by_output, by_origin = index
    if node.name in by_name:
        return node.name
    written = next((by_output[v.name] for v in node.outputs if v.name in by_output), None)
    return written or next((by_origin[name] for name in node.origin if name in by_origin), None)


def network_settings(
    engine: Engine, graph: Graph, scales: Mapping[str, float], layout: OnnxLayout, memory_pools: Mapping[str, int]
) -> NetworkSettings:
    """Settings for the portable ``graph`` (the ONNX TensorRT parses) from ``engine``'s plan;
    ``scales`` are keyed by the imported ONNX's tensor names, whose ``layout`` maps rewritten tensors.

    Raises:
        EdgeError: ``engine`` was not built from the model ``graph`` came from.
    """
    config = engine.build.get("config", {})
    index = _layer_index(engine.graph)
    owner = {id(node): _engine_layer(node, index) for node in graph.nodes}
    computing = [node for node in graph.nodes if node.op_type not in _QDQ]  # edgetrt folds Q/DQ into scales
    traced = sum(owner[id(node)] is not None for node in computing)
    if computing and traced < _MIN_TRACED * len(computing):
        raise EdgeError(f"engine '{engine.name}' was not built from this model: {traced} of its {len(computing)} ONNX nodes are in the engine")
    engine_nodes = {node.name: node for node in engine.graph.nodes}
    settings = NetworkSettings(
        precision=engine.precision,
        dla_core=config.get("dla_core"),
        gpu_fallback=bool(config.get("gpu_fallback")),
        layers=[],
        scales={},
        quantized=[],
        memory_pools=dict(memory_pools),
        io=[(v.name, v.dtype.str, True) for v in graph.inputs] + [(v.name, v.dtype.str, False) for v in graph.outputs],
    )
    settings.scales = {name: float(scales[onnx]) for name, onnx in onnx_names(graph, layout).items() if onnx in scales}
    quantized: dict[str, None] = {}
    short: list[str] = []
    for node in graph.nodes:
        layer_name = owner[id(node)]
        layer = engine_nodes.get(layer_name) if layer_name else None
        device = _DEVICES.get(layer.meta.get("device", "")) if layer is not None else None
        precision = str(layer.meta.get("precision", "fp32")) if layer is not None and computes_in_float(node) else None
        if precision == "int8":
            reads = [v for v in _float_tensors(node.inputs) if not _internal(v, owner, layer_name, graph)]
            writes = [v for v in _float_tensors(node.outputs) if not _internal(v, owner, layer_name, graph)]
            if all(v.name in settings.scales for v in reads + writes):
                quantized.update(dict.fromkeys(v.name for v in reads))
            else:
                precision = "fp16"
                short.append(node.name)
        settings.layers.append(LayerSetting(node.name, node.op_type, device, precision, layer_name))
    settings.quantized = list(quantized)
    if short:
        settings.notes.append(f"{len(short)} layer(s) planned INT8 lack a scale on a tensor TensorRT keeps between layers and are set to FP16: {', '.join(short[:5])}")
    untraced = [node.name for node in computing if owner[id(node)] is None]
    if untraced:
        settings.notes.append(f"{len(untraced)} ONNX node(s) are not in the engine; TensorRT places them itself: {', '.join(untraced[:5])}")
    return settings
