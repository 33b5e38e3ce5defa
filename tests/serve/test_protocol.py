"""The v2 wire format without a server: binary blobs, nested JSON data, mixed binary/JSON outputs."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from edge.serve.protocol import InferRequest, RequestedOutput, ServeError, decode_infer_request, encode_infer_response


def test_binary_inputs_in_json_order_and_nested_json_data():
    flags = np.array([True, False, True])
    half = np.array([[1.5, -2.0]], np.float16)
    header = json.dumps(
        {
            "id": "9",
            "inputs": [
                {"name": "flags", "shape": [3], "datatype": "BOOL", "parameters": {"binary_data_size": 3}},
                {"name": "nested", "shape": [2, 2], "datatype": "INT64", "data": [[1, 2], [3, 4]]},
                {"name": "half", "shape": [1, 2], "datatype": "FP16", "parameters": {"binary_data_size": 4}},
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    body = header + bytes([1, 0, 1]) + struct.pack("<2e", 1.5, -2.0)
    request = decode_infer_request(body, len(header))
    assert request.id == "9" and request.binary_output
    np.testing.assert_array_equal(request.inputs["flags"], flags)
    np.testing.assert_array_equal(request.inputs["nested"], np.array([[1, 2], [3, 4]], np.int64))
    assert request.inputs["half"].dtype == np.float16
    np.testing.assert_array_equal(request.inputs["half"], half)
    assert request.datatypes == {"flags": "BOOL", "nested": "INT64", "half": "FP16"}


def test_response_mixes_binary_and_json_outputs_in_requested_order():
    outputs = {"a": np.arange(3, dtype=np.int32), "b": np.array([[0.5, 1.0]], np.float32), "c": np.array([True])}
    request = InferRequest(
        id=None,
        inputs={},
        datatypes={},
        outputs=[RequestedOutput("c", None), RequestedOutput("b", False), RequestedOutput("a", True)],
        binary_output=True,
    )
    body, json_length = encode_infer_response("m", "1", request, outputs, ["a", "b", "c"])
    doc = json.loads(body[:json_length])
    assert [o["name"] for o in doc["outputs"]] == ["c", "b", "a"] and "id" not in doc
    assert doc["outputs"][1]["data"] == [0.5, 1.0] and doc["outputs"][1]["shape"] == [1, 2]
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": 1}
    assert doc["outputs"][2]["parameters"] == {"binary_data_size": 12}
    assert body[json_length:] == b"\x01" + struct.pack("<3i", 0, 1, 2)


def test_all_json_response_has_no_header_length():
    request = InferRequest("x", {}, {}, None, False)
    body, json_length = encode_infer_response("m", "1", request, {"y": np.array([1.0], np.float64)}, ["y"])
    assert json_length is None
    assert json.loads(body) == {
        "model_name": "m", "model_version": "1", "id": "x", "outputs": [{"name": "y", "datatype": "FP64", "shape": [1], "data": [1.0]}]
    }


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"inputs": [{"name": "x", "shape": [2], "datatype": "UINT8", "data": [1, 300]}]}, "does not fit UINT8"),
        ({"inputs": [{"name": "x", "shape": [2], "datatype": "INT8", "data": [1, 2]}] * 2}, "given twice"),
        ({"inputs": [{"name": "x", "shape": [1], "datatype": "INT8"}]}, "neither 'data' nor"),
        ({"inputs": [{"name": "x", "shape": [1], "datatype": "INT8", "data": [1]}], "id": 5}, "'id' must be a string"),
        (
            {
                "inputs": [{"name": "x", "shape": [1], "datatype": "INT8", "data": [1]}],
                "outputs": [{"name": "y", "parameters": {"binary_data": 1}}],
            },
            "true or false",
        ),
        ({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}, "needs 8 bytes"),
        # 2**64 elements once the zero dim is left out: numpy cannot describe the shape (was a 500).
        ({"inputs": [{"name": "x", "shape": [2**32, 2**32, 0], "datatype": "FP32", "data": []}]}, "is too large for any tensor"),
        ({"inputs": [{"name": "x", "shape": [2], "datatype": "FP16", "data": [1e6, 1.0]}]}, "does not fit FP16"),
    ],
)
def test_bad_documents_name_the_problem(doc, fragment):
    with pytest.raises(ServeError) as info:
        decode_infer_request(json.dumps(doc).encode(), None)
    assert info.value.status == 400 and fragment in str(info.value)


@pytest.mark.parametrize(
    ("datatype", "data", "what"),
    [
        ("FP32", [None, 1.0], "holds null"),
        ("FP32", [True, 1.0], "holds a boolean"),
        ("FP32", ["1.5", 1.0], "holds a string"),
        ("FP32", [[1.0], [2.0, 3.0]], "ragged"),
        ("INT32", [1.5, 2], "holds a fractional number"),
        ("BOOL", [1, 0], "holds an integer"),
    ],
)
def test_json_data_of_the_wrong_element_type_is_refused(datatype, data, what):
    doc = {"inputs": [{"name": "pixels", "shape": [2], "datatype": datatype, "data": data}]}
    with pytest.raises(ServeError) as info:
        decode_infer_request(json.dumps(doc).encode(), None)
    message = str(info.value)
    assert info.value.status == 400 and "\n" not in message
    assert message.startswith("input 'pixels': ") and what in message and datatype in message


def test_integers_are_valid_float_data_and_nan_tokens_are_read_as_triton_writes_them():
    body = b'{"inputs":[{"name":"x","shape":[4],"datatype":"FP32","data":[1, NaN, Infinity, -Infinity]}]}'
    x = decode_infer_request(body, None).inputs["x"]
    assert x.dtype == np.float32 and x[0] == 1.0 and np.isnan(x[1]) and x[2] == np.inf and x[3] == -np.inf


def test_non_finite_json_outputs_are_nan_and_infinity_tokens_read_back_by_tritonclient():
    from tritonclient.http import InferResult

    y = np.array([[np.nan, 1.25], [np.inf, -np.inf]], np.float32)
    request = InferRequest(id="n", inputs={}, datatypes={}, outputs=None, binary_output=False)
    body, header_length = encode_infer_response("m", "1", request, {"y": y, "ok": np.ones(2, np.float32)}, ["y", "ok"])
    assert header_length is None
    assert b'"data":[NaN,1.25,Infinity,-Infinity]' in body and b"null" not in body
    result = InferResult.from_response_body(body)
    np.testing.assert_array_equal(result.as_numpy("y"), y)  # assert_array_equal treats NaN == NaN
    np.testing.assert_array_equal(result.as_numpy("ok"), np.ones(2, np.float32))
