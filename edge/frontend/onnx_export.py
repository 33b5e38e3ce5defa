"""IR -> ONNX ModelProto, the importer's twin: standard-domain graphs only.

Node names and tensor names are written as the IR holds them, so a consumer that names its
layers after ONNX nodes (TensorRT's parser) and its tensors after ONNX tensors (calibration
caches) sees edgetrt's names. Constants become initializers; every typed intermediate value
gets a ``value_info``. edgetrt's fused ops have no ONNX form here: a graph holding one is
refused with the node's name (export the graph before the fusion passes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import AttributeProto, GraphProto, ModelProto, helper, numpy_helper

from edge.errors import EdgeError
from edge.ir import Graph, Value, standard_domain
from edge.ir.dtypes import to_onnx
from edge.version import __version__

__all__ = ["export_model"]


def export_model(graph: Graph, name: str | None = None) -> ModelProto:
    """The ONNX model of ``graph`` (opsets, IR version and producer set; onnx.checker-valid).

    Raises:
        EdgeError: a node of a non-standard domain (names it).
    """
    for node in graph.walk():
        if standard_domain(node.domain) != "":
            raise EdgeError(f"node '{node.name}' is {node.domain}::{node.op_type}, which has no standard ONNX form")
    opsets = [helper.make_opsetid(domain, version) for domain, version in sorted(graph.opset.items()) if standard_domain(domain) == ""]
    body = _graph(graph, name or graph.name)
    model = helper.make_model(body, opset_imports=opsets, producer_name="edgetrt", producer_version=__version__)
    model.ir_version = max(int(graph.meta.get("ir_version") or 0), helper.find_min_ir_version_for(opsets, ignore_unknown=True), 4)
    return model


def _value_info(value: Value) -> onnx.ValueInfoProto:
    shape = None if value.shape is None else [d if isinstance(d, (int, str)) else None for d in value.shape]
    return helper.make_tensor_value_info(value.name, to_onnx(value.dtype), shape)


def _graph(graph: Graph, name: str) -> GraphProto:
    initializers: dict[str, onnx.TensorProto] = {}
    nodes = []
    for node in graph.nodes:
        inputs = []
        for value in node.inputs:
            if value is None:
                inputs.append("")
                continue
            if value.is_const and value.name not in initializers:
                initializers[value.name] = numpy_helper.from_array(np.asarray(value.const), value.name)
            inputs.append(value.name)
        outputs = ["" if value.meta.get("omitted") else value.name for value in node.outputs]
        attributes = [_attribute(key, item) for key, item in node.attrs.items()]
        proto = helper.make_node(node.op_type, inputs, outputs, name=node.name, domain=node.domain or None)
        proto.attribute.extend(attributes)
        nodes.append(proto)
    for value in graph.outputs:
        if value.is_const and value.name not in initializers:
            initializers[value.name] = numpy_helper.from_array(np.asarray(value.const), value.name)
    boundary = {v.name for v in (*graph.inputs, *graph.outputs)}
    infos = [
        _value_info(value)
        for node in graph.nodes
        for value in node.outputs
        if value.dtype is not None and value.name not in boundary and not value.meta.get("omitted")
    ]
    inputs = [_value_info(v) for v in graph.inputs]
    outputs = [_value_info(v) if v.dtype is not None else helper.make_empty_tensor_value_info(v.name) for v in graph.outputs]
    return helper.make_graph(nodes, name, inputs, outputs, list(initializers.values()), value_info=infos)


def _attribute(key: str, item: Any) -> AttributeProto:
    if isinstance(item, Graph):
        return helper.make_attribute(key, _graph(item, item.name))
    if isinstance(item, np.ndarray):
        return helper.make_attribute(key, numpy_helper.from_array(item))
    if isinstance(item, np.generic):
        item = item.item()
    if isinstance(item, bool):
        item = int(item)
    if isinstance(item, (list, tuple)):
        values = [v.item() if isinstance(v, np.generic) else v for v in item]
        if not values:
            return helper.make_attribute(key, [], attr_type=AttributeProto.INTS)
        if all(isinstance(v, Graph) for v in values):
            return helper.make_attribute(key, [_graph(v, v.name) for v in values])
        if all(isinstance(v, np.ndarray) for v in values):
            return helper.make_attribute(key, [numpy_helper.from_array(v) for v in values])
        return helper.make_attribute(key, [int(v) if isinstance(v, bool) else v for v in values])
    if isinstance(item, Mapping):
        raise EdgeError(f"attribute '{key}' is a mapping, which ONNX cannot hold")
    return helper.make_attribute(key, item)
