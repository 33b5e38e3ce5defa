"""KServe v2 wire format: datatypes, inference request decoding and response encoding.

Framework-free on purpose: the HTTP layer hands in raw body bytes and gets bytes back, so
the JSON and binary-tensor rules (``binary_data_size``, ``binary_data``,
``binary_data_output``, ``Inference-Header-Content-Length``) are testable without a server.

JSON ``data`` must hold the element type the datatype names: numbers for FP*, integers for
INT*/UINT*, ``true``/``false`` for BOOL; ``null``, strings such as ``"1.5"`` and booleans
in number tensors are refused, never coerced. Non-finite floats travel as Triton writes and
reads them (its rapidjson runs with ``kWriteNanAndInfFlag``/``kParseNanAndInfFlag``): the bare
tokens ``NaN``, ``Infinity`` and ``-Infinity``, which Python's ``json`` (and so tritonclient)
reads back as floats. Clients that need strict RFC 8259 JSON ask for binary outputs.
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from edge.errors import EdgeError

__all__ = [
    "ServeError",
    "RequestedOutput",
    "InferRequest",
    "datatype_of",
    "dtype_of",
    "decode_infer_request",
    "encode_infer_response",
]

# v2 datatype name <-> numpy dtype. BYTES and BF16 have no numpy counterpart an engine uses.
_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
_DATATYPES: dict[np.dtype, str] = {dtype: name for name, dtype in _DTYPES.items()}
# Python types that JSON ``data`` elements may decode to, per numpy dtype kind.
_JSON_ELEMENTS: dict[str, frozenset[type]] = {
    "f": frozenset({int, float}),
    "i": frozenset({int}),
    "u": frozenset({int}),
    "b": frozenset({bool}),
}
_JSON_NAMES: dict[type, str] = {
    type(None): "null", bool: "a boolean", str: "a string", float: "a fractional number", int: "an integer",
    dict: "an object", list: "a ragged nested list",
}
_NON_FINITE = {"nan": b"NaN", "inf": b"Infinity", "-inf": b"-Infinity"}


class ServeError(EdgeError):
    """A request the server refuses; ``status`` is the HTTP code sent with ``{"error": msg}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RequestedOutput:
    """An entry of the request's ``outputs``; ``binary`` None means "use the request default"."""

    name: str
    binary: bool | None


@dataclass
class InferRequest:
    """A decoded inference request: named input arrays plus what to send back and how."""

    id: str | None
    inputs: dict[str, np.ndarray]
    datatypes: dict[str, str]
    outputs: list[RequestedOutput] | None
    binary_output: bool


def datatype_of(dtype: np.dtype) -> str:
    """The v2 datatype name of a numpy dtype; raises ServeError for ones v2 cannot carry."""
    name = _DATATYPES.get(np.dtype(dtype))
    if name is None:
        raise ServeError(500, f"dtype {np.dtype(dtype)} has no KServe v2 datatype")
    return name


def dtype_of(datatype: str) -> np.dtype:
    """The numpy dtype of a v2 datatype name; raises a 400 ServeError for unknown names."""
    dtype = _DTYPES.get(datatype)
    if dtype is None:
        raise ServeError(400, f"datatype '{datatype}' is not supported; expected one of {sorted(_DTYPES)}")
    return dtype


def decode_infer_request(body: bytes, json_length: int | None) -> InferRequest:
    """Parse an ``/infer`` body (JSON, optionally followed by binary tensor blobs).

    Args:
        body: the whole (already decompressed) request body.
        json_length: the ``Inference-Header-Content-Length`` header, None when absent.

    Raises:
        ServeError: 400 naming the first malformed field.
    """
    if json_length is None:
        header, blobs = body, memoryview(b"")
    else:
        if not 0 <= json_length <= len(body):
            raise ServeError(400, f"Inference-Header-Content-Length {json_length} is outside the body of {len(body)} bytes")
        header, blobs = body[:json_length], memoryview(body)[json_length:]
    doc = _loads(header)
    if not isinstance(doc, dict):
        raise ServeError(400, "request must be a JSON object")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ServeError(400, "request 'id' must be a string")
    params = _parameters(doc, "request")
    inputs_doc = doc.get("inputs")
    if not isinstance(inputs_doc, list) or not inputs_doc:
        raise ServeError(400, "request needs a non-empty 'inputs' list")
    inputs: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    offset = 0
    for entry in inputs_doc:
        name, datatype, array, used = _decode_input(entry, blobs, offset)
        if name in inputs:
            raise ServeError(400, f"input '{name}' is given twice")
        inputs[name], datatypes[name] = array, datatype
        offset += used
    if offset != len(blobs):
        raise ServeError(400, f"{len(blobs) - offset} bytes of binary data follow the JSON but no input claims them")
    return InferRequest(
        id=request_id,
        inputs=inputs,
        datatypes=datatypes,
        outputs=_requested_outputs(doc.get("outputs")),
        binary_output=_flag(params, "binary_data_output", "request"),
    )


def encode_infer_response(
    model_name: str,
    model_version: str,
    request: InferRequest,
    outputs: dict[str, np.ndarray],
    order: list[str],
) -> tuple[bytes, int | None]:
    """Encode the response body; returns ``(body, json_length)``.

    ``json_length`` is None when every output went as JSON, else the value for the
    ``Inference-Header-Content-Length`` header. ``order`` lists all output names in model
    order, used when the request did not choose outputs.
    """
    chosen = request.outputs or [RequestedOutput(name, None) for name in order]
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    spliced: list[bytes] = []  # outputs with NaN/inf, written into the header after orjson
    nonce = secrets.token_hex(8)
    for want in chosen:
        array = outputs[want.name]
        entry: dict[str, Any] = {"name": want.name, "datatype": datatype_of(array.dtype), "shape": list(array.shape)}
        if request.binary_output if want.binary is None else want.binary:
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            data = _json_array(array)
            if isinstance(data, bytes):
                entry["data"] = _splice_marker(nonce, len(spliced))
                spliced.append(data)
            else:
                entry["data"] = data
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": entries}
    if request.id is not None:
        doc["id"] = request.id
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    for index, data in enumerate(spliced):
        header = header.replace(orjson.dumps(_splice_marker(nonce, index)), data, 1)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def _loads(header: bytes | memoryview) -> Any:
    """Parse the JSON header; the slower stdlib parser is the fallback for NaN/Infinity tokens."""
    try:
        return orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        error = exc
    try:
        return json.loads(bytes(header))
    except (ValueError, RecursionError):
        raise ServeError(400, f"malformed JSON in request: {error}") from None


def _json_data(name: str, datatype: str, dtype: np.dtype, data: Any) -> np.ndarray:
    """A JSON ``data`` value (flat or nested lists) as an array, refusing mistyped elements."""
    try:
        elements = np.asarray(data, dtype=object)
    except ValueError:  # ragged nesting numpy cannot even hold as objects
        raise ServeError(400, f"input '{name}': 'data' is a ragged nested list") from None
    found = set(map(type, elements.reshape(-1)))
    wrong = found - _JSON_ELEMENTS[dtype.kind]
    if wrong:
        what = _JSON_NAMES.get(next(iter(wrong)), "a non-number")
        raise ServeError(400, f"input '{name}': 'data' holds {what}, expected {datatype} values")
    try:
        with np.errstate(over="raise"):  # a finite number past the float type's range
            return np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError, FloatingPointError) as exc:
        raise ServeError(400, f"input '{name}': 'data' does not fit {datatype} ({exc})") from None


def _json_array(array: np.ndarray) -> bytes | np.ndarray:
    """What goes in an output's ``data``: the array itself, or pre-encoded JSON when it has NaN/inf."""
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.dtype.kind != "f" or np.isfinite(flat).all():
        return flat
    tokens = orjson.dumps(flat, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")  # non-finite -> null
    for index in np.flatnonzero(~np.isfinite(flat)):
        tokens[index] = _NON_FINITE[str(flat[index])]
    return b"[" + b",".join(tokens) + b"]"


def _decode_input(entry: Any, blobs: memoryview, offset: int) -> tuple[str, str, np.ndarray, int]:
    """One ``inputs`` entry -> (name, datatype, array, binary bytes consumed)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ServeError(400, "every input needs a string 'name'")
    name = entry["name"]
    datatype = entry.get("datatype")
    if not isinstance(datatype, str):
        raise ServeError(400, f"input '{name}' needs a string 'datatype'")
    dtype = dtype_of(datatype)
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise ServeError(400, f"input '{name}' needs 'shape' as a list of non-negative integers, got {shape!r}")
    count = math.prod(shape)
    if math.prod(d for d in shape if d) * dtype.itemsize >= 2**63:  # numpy cannot even describe it
        raise ServeError(400, f"input '{name}': shape {shape} is too large for any tensor")
    params = _parameters(entry, f"input '{name}'")
    size = params.get("binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0:
            raise ServeError(400, f"input '{name}': binary_data_size must be a non-negative integer")
        if "data" in entry:
            raise ServeError(400, f"input '{name}' has both 'data' and binary_data_size")
        if size != count * dtype.itemsize:
            raise ServeError(
                400, f"input '{name}': shape {shape} of {datatype} needs {count * dtype.itemsize} bytes, binary_data_size is {size}"
            )
        if offset + size > len(blobs):
            raise ServeError(400, f"input '{name}': binary data ends after {len(blobs) - offset} of {size} bytes")
        array = np.frombuffer(blobs[offset : offset + size], dtype=dtype.newbyteorder("<")).reshape(shape)
        return name, datatype, array.astype(dtype, copy=False), size
    if "data" not in entry:
        raise ServeError(400, f"input '{name}' has neither 'data' nor a binary_data_size parameter")
    array = _json_data(name, datatype, dtype, entry["data"])
    if array.size != count:
        raise ServeError(400, f"input '{name}': shape {shape} holds {count} elements, 'data' has {array.size}")
    return name, datatype, array.reshape(shape), 0


def _splice_marker(nonce: str, index: int) -> str:
    # A random nonce per response, so no tensor name or request id can equal a marker.
    return f"edgetrt-data-{nonce}-{index}"


def _requested_outputs(doc: Any) -> list[RequestedOutput] | None:
    if doc is None:
        return None
    if not isinstance(doc, list):
        raise ServeError(400, "request 'outputs' must be a list")
    chosen = []
    for entry in doc:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ServeError(400, "every requested output needs a string 'name'")
        label = f"output '{entry['name']}'"
        params = _parameters(entry, label)
        chosen.append(RequestedOutput(entry["name"], _flag(params, "binary_data", label) if "binary_data" in params else None))
    return chosen or None


def _parameters(doc: dict, where: str) -> dict:
    params = doc.get("parameters", {})
    if not isinstance(params, dict):
        raise ServeError(400, f"{where}: 'parameters' must be a JSON object")
    return params


def _flag(params: dict, key: str, where: str) -> bool:
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise ServeError(400, f"{where}: parameter '{key}' must be true or false")
    return value
