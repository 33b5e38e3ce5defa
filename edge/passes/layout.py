"""Channels-last regions: a GPU's reduced-precision convolutions, and the layers between them,
in NHWC (TensorRT's choice of tensor formats, made in the IR).

cuDNN's tensor-core convolutions work in NHWC. Given NCHW, its engines transpose each
convolution's input and output around an NHWC kernel, or run slower native ones, and none
fuses a residual add. This pass finds the connected regions of layers that can work in NHWC
around at least one convolution, and converts a region when the Transposes at its boundary
move fewer elements than the convolutions inside would reformat in NCHW (each one's input
and output). Inside a converted region:

- Conv / FusedConv become FusedConv with ``channels_last=1``; the weight stays (M, C/g, kH, kW).
  A convolution reading the region's input with fewer channels than ``channel_multiple`` gets
  them padded with zeros (a Pad after the entry Transpose, zero weights for the new channels),
  as TensorRT pads an image's 3 channels for the tensor cores.
- MaxPool / AveragePool become edgetrt::MaxPool / edgetrt::AveragePool with ``channels_last=1``;
  GlobalAveragePool / GlobalMaxPool become ReduceMean / ReduceMax over the H and W axes.
- Concat over channels joins the last axis; elementwise ops keep their type, their constant
  operands transposed to broadcast the same way.

A Transpose (0, 2, 3, 1) feeds each tensor entering a region and a Transpose (0, 3, 1, 2)
brings back each region tensor read outside it; graph outputs keep their names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edge.ir import EDGETRT_DOMAIN, Graph, Node, Value, standard_domain
from edge.ir.layout import CHANNELS_LAST, TO_CHANNELS_FIRST, TO_CHANNELS_LAST, to_channels_last
from edge.passes.common import opset_of

__all__ = ["LayoutReport", "to_channels_last_regions", "CHANNEL_MULTIPLE"]

CHANNEL_MULTIPLE = 8
"""Channels per FP16 tensor-core operand (cuDNN's NHWC kernels want C a multiple of 8)."""

_CONVS = {("", "Conv"), (EDGETRT_DOMAIN, "FusedConv")}
_POOLS = {"MaxPool", "AveragePool"}
_GLOBAL_POOLS = {"GlobalAveragePool": "ReduceMean", "GlobalMaxPool": "ReduceMax"}
_UNARY = {
    "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Celu",
    "Softplus", "Gelu", "Clip", "Abs", "Neg", "Exp", "Sqrt", "Erf", "Identity",
}
_BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min", "PRelu", "Sum"}
_EDGETRT_UNARY = {"SiLU"}
_AXES_BECAME_INPUT = 18
"""Opset from which ReduceMean / ReduceMax take their axes as an input."""


@dataclass
class LayoutReport:
    """What the pass did: regions converted (their convolutions and boundary Transposes) and
    regions left in NCHW with the reason."""

    regions: list[dict] = field(default_factory=list)
    kept: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "converted_regions": len(self.regions),
            "channels_last_convs": sum(r["convs"] for r in self.regions),
            "transposes": sum(r["transposes"] for r in self.regions),
            "regions": self.regions,
            "kept_nchw": self.kept,
        }


def _image(value: Value | None) -> bool:
    """A 4-D float tensor of static shape: what a channels-last layer may read or write."""
    return (
        value is not None and value.const is None and value.dtype is not None and value.dtype.kind == "f"
        and value.is_static and len(value.shape) == 4
    )


def _kind(node: Node) -> str | None:
    """The node's role in a region ("conv", "pool", "global", "concat", "unary", "binary"),
    or None when it cannot work channels-last."""
    domain = standard_domain(node.domain)
    if not node.outputs or not all(_image(v) for v in node.outputs):
        return None
    if (domain, node.op_type) in _CONVS:
        w = node.inputs[1]
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        if w is None or w.const is None or len(w.shape) != 4 or (bias is not None and bias.const is None):
            return None
        return "conv" if _image(node.inputs[0]) and all(_image(z) for z in node.inputs[3:4] if z is not None) else None
    if domain == EDGETRT_DOMAIN:
        return "unary" if node.op_type in _EDGETRT_UNARY and _image(node.inputs[0]) else None
    if domain != "":
        return None
    if node.op_type in _POOLS and len(node.outputs) == 1 and _image(node.inputs[0]):
        return "pool"
    if node.op_type in _GLOBAL_POOLS and _image(node.inputs[0]):
        return "global"
    if node.op_type == "Concat" and node.attrs.get("axis") in (1, -3) and all(_image(v) for v in node.inputs):
        return "concat"
    if node.op_type in _UNARY and _image(node.inputs[0]):
        return "unary"
    if node.op_type in _BINARY and all(_image(v) or (v is not None and v.const is not None and v.const.ndim <= 4) for v in node.inputs):
        return "binary"
    return None


def _elements(value: Value) -> int:
    return value.nbytes() // value.dtype.itemsize


def _image_inputs(node: Node, kind: str) -> list[int]:
    """Indices of the inputs that are images in the region's layout."""
    if kind == "conv":
        return [i for i in (0, 3) if i < len(node.inputs) and node.inputs[i] is not None]
    if kind in ("pool", "global", "unary"):
        return [0]
    return [i for i, v in enumerate(node.inputs) if v is not None and v.const is None]


def to_channels_last_regions(graph: Graph, wants: Callable[[Node], bool], channel_multiple: int = CHANNEL_MULTIPLE) -> LayoutReport:
    """Convert the regions of nodes ``wants`` accepts (a GPU's FP16 layers) to NHWC where that
    saves reformatting; returns what was converted and what was kept, and why."""
    kinds = {id(n): k for n in graph.nodes if wants(n) and (k := _kind(n)) is not None}
    regions = _regions(graph, kinds)
    report = LayoutReport()
    for members in regions:
        convs = [n for n in members if kinds[id(n)] == "conv"]
        if not convs:
            continue
        entering, leaving = _boundary(graph, members, kinds)
        boundary = sum(_elements(v) for v in (*entering, *leaving))
        saved = sum(_elements(n.inputs[0]) + _elements(n.outputs[0]) for n in convs)
        record = {"first": members[0].name, "layers": len(members), "convs": len(convs), "boundary_elements": boundary, "conv_io_elements": saved}
        if boundary >= saved:
            report.kept.append({**record, "reason": "the boundary Transposes would move more than the NCHW convolutions reformat"})
            continue
        record["transposes"] = _convert(graph, members, kinds, entering, leaving, channel_multiple)
        report.regions.append(record)
    return report


def _regions(graph: Graph, kinds: dict[int, str]) -> list[list[Node]]:
    """Connected groups of convertible nodes (joined through the image tensors they pass), in graph order."""
    parent = {key: key for key in kinds}

    def root(key: int) -> int:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for node in graph.nodes:
        if id(node) not in kinds:
            continue
        for index in _image_inputs(node, kinds[id(node)]):
            producer = node.inputs[index].producer
            if producer is not None and id(producer) in kinds:
                parent[root(id(producer))] = root(id(node))
    groups: dict[int, list[Node]] = {}
    for node in graph.nodes:
        if id(node) in kinds:
            groups.setdefault(root(id(node)), []).append(node)
    return list(groups.values())


def _inside(members: list[Node]) -> set[int]:
    return {id(n) for n in members}


def _boundary(graph: Graph, members: list[Node], kinds: dict[int, str]) -> tuple[list[Value], list[Value]]:
    """(tensors entering the region, region tensors read outside it or returned)."""
    inside = _inside(members)
    entering: dict[int, Value] = {}
    leaving: dict[int, Value] = {}
    for node in members:
        for index in _image_inputs(node, kinds[id(node)]):
            value = node.inputs[index]
            if value.producer is None or id(value.producer) not in inside:
                entering.setdefault(id(value), value)
        for value in node.outputs:
            if graph.is_output(value) or any(id(user) not in inside for user, _ in value.uses):
                leaving.setdefault(id(value), value)
    return list(entering.values()), list(leaving.values())


def _new_node(graph: Graph, op: str, inputs: list[Value | None], output: Value, attrs: dict, like: Node) -> Node:
    """A node placed and typed like ``like`` (its device and precision)."""
    node = Node(op, inputs, [output], attrs, name=graph.unique_name(f"{output.name}/{op.lower()}"))
    node.meta.update({k: like.meta[k] for k in ("device", "precision") if k in like.meta})
    return node


def _convert(graph: Graph, members: list[Node], kinds: dict[int, str], entering: list[Value], leaving: list[Value], multiple: int) -> int:
    """Rewrite the region in NHWC in place; returns the Transposes it added."""
    inside = _inside(members)
    transposes = 0
    for value in entering:  # one Transpose per entering tensor, before its first reader
        readers = [n for n, _ in value.uses if id(n) in inside]
        first = min(readers, key=graph.nodes.index)
        nhwc = graph.make_value(f"{value.name}_nhwc", value.dtype, to_channels_last(value.shape))
        nhwc.meta.update(value.meta)  # per-tensor facts (INT8 scales) hold in either layout
        graph.insert_before(first, _new_node(graph, "Transpose", [value], nhwc, {"perm": list(TO_CHANNELS_LAST)}, first))
        transposes += 1
        for reader, index in list(value.uses):
            if id(reader) in inside:
                reader.set_input(index, nhwc)
    for node in members:
        for value in node.outputs:
            value.shape = to_channels_last(value.shape)
    for value in leaving:  # the NCHW tensor outside keeps the name and every outside reader
        producer = value.producer
        nchw = Value(value.name, value.dtype, tuple(value.shape[axis] for axis in TO_CHANNELS_FIRST))
        nchw.meta.update(value.meta)
        value.name = graph.unique_name(f"{value.name}_nhwc")
        outside = [(n, i) for n, i in value.uses if id(n) not in inside]
        back = _new_node(graph, "Transpose", [value], nchw, {"perm": list(TO_CHANNELS_FIRST)}, producer)
        graph.nodes.insert(graph.nodes.index(producer) + 1, back)
        transposes += 1
        for reader, index in outside:
            reader.set_input(index, nchw)
        if graph.is_output(value):
            graph.outputs = [nchw if v is value else v for v in graph.outputs]
    for node in members:
        _rewrite(graph, node, kinds[id(node)], multiple)
    return transposes


def _rewrite(graph: Graph, node: Node, kind: str, multiple: int) -> None:
    """One region node in its NHWC form."""
    if kind == "conv":
        node.op_type, node.domain = "FusedConv", EDGETRT_DOMAIN
        node.attrs[CHANNELS_LAST] = 1
        _pad_channels(graph, node, multiple)
    elif kind == "pool":
        node.domain = EDGETRT_DOMAIN
        node.attrs[CHANNELS_LAST] = 1
    elif kind == "global":
        node.op_type = _GLOBAL_POOLS[node.op_type]
        node.attrs = {"keepdims": 1}
        if opset_of(graph, node) >= _AXES_BECAME_INPUT:
            node.set_inputs([node.inputs[0], graph.make_const(f"{node.name}_axes", np.array([1, 2], np.int64))])
        else:
            node.attrs["axes"] = [1, 2]
    elif kind == "concat":
        node.attrs["axis"] = 3
    elif kind == "binary":
        for index, value in enumerate(node.inputs):
            if value is not None and value.const is not None and value.const.size > 1:
                array = value.const.reshape((1,) * (4 - value.const.ndim) + value.const.shape)
                node.set_input(index, graph.make_const(f"{value.name}_nhwc", np.ascontiguousarray(array.transpose(TO_CHANNELS_LAST))))


def _pad_channels(graph: Graph, conv: Node, multiple: int) -> None:
    """Zero channels up to ``multiple`` for a convolution reading the region's entry Transpose."""
    x, w = conv.inputs[0], conv.inputs[1]
    channels = x.shape[3]
    entry = x.producer
    if conv.attrs.get("group", 1) != 1 or channels % multiple == 0 or entry is None or entry.op_type != "Transpose":
        return
    extra = multiple - channels % multiple
    padded = graph.make_value(f"{x.name}_padded", x.dtype, (*x.shape[:3], channels + extra))
    padded.meta.update(x.meta)  # zeros sit on any INT8 grid: the input's scale holds
    pads = [0, 0, 0, 0, 0, 0, 0, extra]
    if opset_of(graph, entry) >= 11:
        pad = _new_node(graph, "Pad", [x, graph.make_const(f"{conv.name}_pads", np.array(pads, np.int64))], padded, {}, conv)
    else:
        pad = _new_node(graph, "Pad", [x], padded, {"pads": pads}, conv)
    graph.insert_before(conv, pad)
    conv.set_input(0, padded)
    conv.set_input(1, graph.make_const(f"{w.name}_padded", _zero_channels(w.const, extra)))
    conv.inputs[1].meta.update({**w.meta, **({"int8_weight": _zero_channels(w.meta["int8_weight"], extra)} if "int8_weight" in w.meta else {})})


def _zero_channels(weight: np.ndarray, extra: int) -> np.ndarray:
    """An (M, C, kH, kW) weight with ``extra`` zero input channels appended."""
    return np.concatenate([weight, np.zeros((weight.shape[0], extra, *weight.shape[2:]), weight.dtype)], axis=1)
