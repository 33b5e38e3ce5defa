"""ONNX ModelProto -> IR. The only module (with its exporter twin) that touches protobuf.

Import runs in this order: read the model (path or bytes, external data), override input
shapes if asked, refuse unsupported operators all at once, run onnx's shape inference with
data propagation, then convert to the IR and fill in the shapes onnx could not infer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import AttributeProto, GraphProto, ModelProto, numpy_helper

from edge.errors import ModelImportError, UnsupportedOperatorError
from edge.frontend.attributes import window_attribute_problem
from edge.frontend.budget import format_bytes, oversized_tensor, physical_memory, tensor_bytes
from edge.frontend.shapes import infer_missing_shapes
from edge.ir import Dim, Graph, Node, Shape, Value, standard_domain
from edge.ir.dtypes import from_onnx
from edge.kernels.registry import supported_ops

__all__ = ["load_model_proto", "import_model", "load_onnx", "unsupported_operators"]

ModelSource = str | os.PathLike | bytes | ModelProto
_FOLDED_AT_IMPORT = {"Constant"}


def load_model_proto(source: ModelSource) -> ModelProto:
    """Read a model from a path, serialized bytes, or pass a ModelProto through."""
    if isinstance(source, ModelProto):
        return source
    if isinstance(source, bytes):
        try:
            return onnx.load_from_string(source)
        except Exception as exc:  # protobuf raises DecodeError and friends
            raise ModelImportError(f"bytes are not a valid ONNX model: {_first_line(exc)}") from None
    path = Path(source)
    if not path.is_file():
        raise ModelImportError(f"model file '{path}' does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelImportError(f"'{path}' is not a valid ONNX model: {_first_line(exc)}") from None
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
    except Exception as exc:
        raise ModelImportError(f"'{path}': cannot read its external data: {_first_line(exc)}") from None
    if not model.graph.node and not model.graph.output:
        raise ModelImportError(f"'{path}' holds no ONNX graph (empty or not a model file)")
    return model


def unsupported_operators(model: ModelProto, backend: str = "cpu") -> dict[str, list[str]]:
    """Every op type in ``model`` (subgraphs included) that ``backend`` lacks, with node names."""
    known = supported_ops(backend)
    missing: dict[str, list[str]] = {}

    def scan(graph: GraphProto) -> None:
        for index, node in enumerate(graph.node):
            domain = standard_domain(node.domain)
            if node.op_type not in known.get(domain, set()) and node.op_type not in _FOLDED_AT_IMPORT:
                label = node.op_type if not domain else f"{domain}::{node.op_type}"
                missing.setdefault(label, []).append(node.name or f"#{index}")
            for attr in node.attribute:
                if attr.type == AttributeProto.GRAPH:
                    scan(attr.g)
                elif attr.type == AttributeProto.GRAPHS:
                    for sub in attr.graphs:
                        scan(sub)

    scan(model.graph)
    return missing


def load_onnx(
    source: ModelSource,
    input_shapes: Mapping[str, Sequence[Dim]] | None = None,
    backend: str = "cpu",
) -> Graph:
    """Read and import an ONNX model into the IR.

    Args:
        source: a path, serialized bytes, or a ModelProto.
        input_shapes: overrides for graph input shapes (e.g. a fixed batch size).
        backend: the backend whose operator coverage is checked before any work is done.

    Raises:
        ModelImportError: unreadable or invalid model, unknown input name in ``input_shapes``.
        UnsupportedOperatorError: listing every unsupported op type and its nodes.
    """
    return import_model(load_model_proto(source), input_shapes, backend)


def import_model(
    model: ModelProto,
    input_shapes: Mapping[str, Sequence[Dim]] | None = None,
    backend: str = "cpu",
) -> Graph:
    """Convert a ModelProto (see :func:`load_onnx`)."""
    missing = unsupported_operators(model, backend)
    if missing:
        raise UnsupportedOperatorError(missing)
    model = _copy(model)
    if input_shapes:
        _override_input_shapes(model, input_shapes)
    _check(model)
    model = _infer_shapes(model)
    opset = {standard_domain(o.domain): o.version for o in model.opset_import}
    opset.setdefault("", 1)
    graph = _GraphImporter(opset).convert(model.graph, scope={})
    problem = window_attribute_problem(graph)
    if problem is not None:
        raise ModelImportError(f"invalid model: {problem}")
    problem = oversized_tensor(graph)
    if problem is not None:
        raise ModelImportError(f"model cannot be built here: {problem}")
    graph.meta["producer"] = f"{model.producer_name} {model.producer_version}".strip()
    graph.meta["ir_version"] = model.ir_version
    infer_missing_shapes(graph)
    return graph


# onnx's checker demands a shape on graph outputs; exporters and onnxruntime accept outputs
# of unknown rank, and inference below fills them in, so that one complaint is not fatal.
_TOLERATED_CHECKER_ERRORS = ("Field 'shape' of 'type' is required but missing",)


def _check(model: ModelProto) -> None:
    """Run onnx's checker; a structural error becomes a one-line ModelImportError."""
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        if not any(text in str(exc) for text in _TOLERATED_CHECKER_ERRORS):
            raise ModelImportError(f"invalid ONNX model: {_first_line(exc)}") from None


def _copy(model: ModelProto) -> ModelProto:
    clone = ModelProto()
    clone.CopyFrom(model)
    return clone


def _override_input_shapes(model: ModelProto, shapes: Mapping[str, Sequence[Dim]]) -> None:
    inputs = {i.name: i for i in model.graph.input}
    initializers = {t.name for t in model.graph.initializer}
    for name, shape in shapes.items():
        if name not in inputs or name in initializers:
            real = [n for n in inputs if n not in initializers]
            raise ModelImportError(f"--shapes names input '{name}', but the model's inputs are {real}")
        dims = inputs[name].type.tensor_type.shape.dim
        if len(dims) and len(dims) != len(shape):
            raise ModelImportError(
                f"--shapes gives input '{name}' rank {len(shape)} ({_dims(shape)}), the model has rank {len(dims)}"
            )
        for index, (dim, new) in enumerate(zip(dims, shape)):
            if dim.HasField("dim_value") and dim.dim_value >= 0 and isinstance(new, int) and dim.dim_value != new:
                raise ModelImportError(
                    f"--shapes sets input '{name}' dim {index} to {new}, but the model fixes it to {dim.dim_value}"
                )
        del dims[:]
        for new in shape:
            dim = inputs[name].type.tensor_type.shape.dim.add()
            if isinstance(new, int):
                dim.dim_value = new
            elif isinstance(new, str):
                dim.dim_param = new


def _dims(shape: Sequence[Dim]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def _infer_shapes(model: ModelProto) -> ModelProto:
    """onnx's shape inference with data propagation; a model it rejects is kept as is."""
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:
        return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


class _GraphImporter:
    """Converts one GraphProto (recursively its subgraphs) with a name scope."""

    def __init__(self, opset: dict[str, int]) -> None:
        self.opset = opset

    def convert(self, proto: GraphProto, scope: dict[str, Value]) -> Graph:
        scope = dict(scope)  # inner names shadow outer ones
        types = {vi.name: vi for vi in [*proto.value_info, *proto.input, *proto.output]}
        for init in proto.initializer:
            scope[init.name] = Value(init.name, const=_to_array(init))
        for sparse in proto.sparse_initializer:
            scope[sparse.values.name] = Value(sparse.values.name, const=_sparse_to_dense(sparse))
        inputs = []
        for vi in proto.input:
            if vi.name in scope and scope[vi.name].is_const and any(t.name == vi.name for t in proto.initializer):
                continue  # an initializer listed as input (IR < 4): a constant, as TensorRT treats it
            value = _typed_value(vi)
            scope[vi.name] = value
            inputs.append(value)
        graph = Graph(name=proto.name or "graph", inputs=inputs, opset=self.opset)
        for index, node_proto in enumerate(proto.node):
            name = node_proto.name or f"{node_proto.op_type}_{index}"
            if node_proto.op_type == "Constant" and standard_domain(node_proto.domain) == "":
                scope[node_proto.output[0]] = Value(node_proto.output[0], const=_constant_value(node_proto, name))
                continue
            node_inputs: list[Value | None] = []
            for input_name in node_proto.input:
                if not input_name:
                    node_inputs.append(None)
                    continue
                if input_name not in scope:
                    raise ModelImportError(f"node '{name}' ({node_proto.op_type}) reads undefined tensor '{input_name}'")
                node_inputs.append(scope[input_name])
            attrs = {a.name: self._attribute(a, scope) for a in node_proto.attribute}
            outputs = []
            for output_name in node_proto.output:
                if output_name:
                    value = _typed_value(types[output_name]) if output_name in types else Value(output_name)
                    scope[output_name] = value
                else:
                    value = Value(graph.unique_name(f"{name}_unused"))
                    value.meta["omitted"] = True
                outputs.append(value)
            node = Node(node_proto.op_type, node_inputs, outputs, attrs, name=name, domain=node_proto.domain)
            node.meta["origin"] = [name]
            graph.nodes.append(node)
        for vi in proto.output:
            if vi.name not in scope:
                raise ModelImportError(f"graph output '{vi.name}' is never produced")
            value = scope[vi.name]
            typed = _typed_value(vi)
            value.meta.update(typed.meta)
            if value.dtype is None:
                value.dtype = typed.dtype
            if value.shape is None or (typed.shape is not None and _more_specific(typed.shape, value.shape)):
                value.shape = typed.shape if value.const is None else value.shape
            graph.outputs.append(value)
        return graph

    def _attribute(self, attr: AttributeProto, scope: dict[str, Value]) -> Any:
        if attr.type == AttributeProto.GRAPH:
            return self.convert(attr.g, scope)
        if attr.type == AttributeProto.GRAPHS:
            return [self.convert(g, scope) for g in attr.graphs]
        if attr.type == AttributeProto.TENSOR:
            return _to_array(attr.t)
        if attr.type == AttributeProto.TENSORS:
            return [_to_array(t) for t in attr.tensors]
        if attr.type == AttributeProto.SPARSE_TENSOR:
            return _sparse_to_dense(attr.sparse_tensor)
        value = onnx.helper.get_attribute_value(attr)
        try:
            if isinstance(value, bytes):
                return value.decode("utf-8")
            if isinstance(value, list):
                return [v.decode("utf-8") if isinstance(v, bytes) else v for v in value]
        except UnicodeDecodeError:
            raise ModelImportError(f"attribute '{_printable(attr.name)}' holds a string that is not valid UTF-8") from None
        if attr.type == AttributeProto.TYPE_PROTO:
            return int(value.tensor_type.elem_type)
        return value


def _to_array(tensor: onnx.TensorProto) -> np.ndarray:
    """The tensor's data; a declared size that is too large or disagrees with the stored
    data, an unknown element type or an undecodable string is a one-line error."""
    label = f"tensor '{_printable(tensor.name)}'"
    if any(d < 0 for d in tensor.dims):
        raise ModelImportError(f"{label} has negative dims {list(tensor.dims)}")
    nbytes = tensor_bytes(tuple(tensor.dims), _element_dtype(tensor.data_type, label))
    if nbytes is not None and nbytes > physical_memory():
        raise ModelImportError(f"{label} {list(tensor.dims)} would need {format_bytes(nbytes)}, more than this machine's RAM")
    try:
        array = numpy_helper.to_array(tensor)
    except UnicodeDecodeError:
        raise ModelImportError(f"{label} holds strings that are not valid UTF-8") from None
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ModelImportError(f"{label} cannot be read: {_first_line(exc)}") from None
    return array if array.flags.c_contiguous else array.copy(order="C")


def _sparse_to_dense(sparse: onnx.SparseTensorProto) -> np.ndarray:
    """Densify a COO sparse tensor (linear or per-dimension indices), refusing one whose
    dense form would not fit in RAM or whose indices fall outside its dims."""
    label = f"sparse tensor '{_printable(sparse.values.name)}'"
    values = _to_array(sparse.values)
    dims = tuple(sparse.dims)
    nbytes = tensor_bytes(dims, values.dtype)
    if any(d < 0 for d in dims) or nbytes is None or nbytes > physical_memory():
        raise ModelImportError(f"{label} has dims {list(dims)}: its dense form would need {format_bytes(max(nbytes or 0, 0))}, more than this machine's RAM")
    indices = _to_array(sparse.indices)
    full = np.zeros(dims, values.dtype)
    try:
        flat = indices.reshape(-1) if indices.ndim == 1 else np.ravel_multi_index(tuple(indices.T), full.shape)
        full.reshape(-1)[flat] = values
    except (ValueError, IndexError) as exc:
        raise ModelImportError(f"{label}: indices do not fit dims {list(dims)} ({_first_line(exc)})") from None
    return full


def _element_dtype(elem_type: int, label: str) -> np.dtype:
    try:
        return from_onnx(elem_type)
    except (KeyError, ValueError, TypeError):
        raise ModelImportError(f"{label} has ONNX element type {elem_type}, which is not a known type") from None


def _printable(name: str) -> str:
    return name.encode("unicode_escape").decode("ascii") if not name.isprintable() else name


def _constant_value(node: onnx.NodeProto, name: str) -> np.ndarray:
    """The tensor held by a Constant node, whichever attribute carries it."""
    for attr in node.attribute:
        if attr.name == "value":
            return _to_array(attr.t)
        if attr.name == "sparse_value":
            return _sparse_to_dense(attr.sparse_tensor)
        if attr.name == "value_float":
            return np.array(attr.f, np.float32)
        if attr.name == "value_floats":
            return np.array(list(attr.floats), np.float32)
        if attr.name == "value_int":
            return np.array(attr.i, np.int64)
        if attr.name == "value_ints":
            return np.array(list(attr.ints), np.int64)
        try:
            if attr.name == "value_string":
                return np.array(attr.s.decode("utf-8"), dtype=object)
            if attr.name == "value_strings":
                return np.array([s.decode("utf-8") for s in attr.strings], dtype=object)
        except UnicodeDecodeError:
            raise ModelImportError(f"Constant node '{name}' holds a string that is not valid UTF-8") from None
    raise ModelImportError(f"Constant node '{name}' carries no value attribute")


def _typed_value(vi: onnx.ValueInfoProto) -> Value:
    tensor_type = vi.type.tensor_type
    dtype = _element_dtype(tensor_type.elem_type, f"tensor '{_printable(vi.name)}'") if tensor_type.elem_type else None
    shape: Shape | None = None
    if tensor_type.HasField("shape"):
        dims: list[Dim] = []
        for dim in tensor_type.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value >= 0:  # exporters store a dynamic dim as -1
                dims.append(int(dim.dim_value))
            elif dim.HasField("dim_param"):
                dims.append(dim.dim_param)
            else:
                dims.append(None)
        shape = tuple(dims)
    value = Value(vi.name, dtype, shape)
    kind = vi.type.WhichOneof("value")
    if kind in ("sequence_type", "optional_type"):  # run as TensorSequence / None (edge.ir.sequence)
        value.meta["container"] = kind.removesuffix("_type")
    return value


def _more_specific(a: Shape, b: Shape) -> bool:
    return len(a) == len(b) and sum(isinstance(d, int) for d in a) > sum(isinstance(d, int) for d in b)
