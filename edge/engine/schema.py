"""JSON Schemas of an engine file's header and document, and the validator that applies them.

An engine file is untrusted input: :mod:`edge.engine.format` validates its header and
document here before anything reads a field, so a malformed file gets a one-line
:class:`EngineFormatError` naming the field instead of a KeyError deep in the loader.

The document is a set of named sections (``DOCUMENT_SECTIONS``); the schema allows exactly
those. A new section (the execution ``plan``) is one more entry there, plus, for checks
against the graph, one more function in :mod:`edge.engine.checks`.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import numpy as np
from onnx import TensorProto, helper

from edge.errors import EngineFormatError
from edge.precision import PRECISIONS

__all__ = ["DTYPES", "HEADER_SCHEMA", "DOCUMENT_SECTIONS", "document_schema", "validate_header", "validate_document"]


def _dtype_strings() -> list[str]:
    """``numpy.dtype.str`` of every ONNX tensor element type (strings are numpy objects)."""
    names = {np.dtype(object).str}
    for elem_type in TensorProto.DataType.values():
        if elem_type in (TensorProto.UNDEFINED, TensorProto.STRING):
            continue
        try:
            names.add(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).str)
        except (KeyError, TypeError, ValueError):
            continue
    return sorted(names)


DTYPES: list[str] = _dtype_strings()
"""The dtype spellings an engine may record for values and tensor blobs."""

_COUNT = {"type": "integer", "minimum": 0}
_NAME = {"type": "string", "maxLength": 4096}
_INDEX = {"type": "integer", "minimum": 0}
_DIM = {"anyOf": [_COUNT, _NAME, {"type": "null"}]}

HEADER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "edgetrt_version", "profile", "precision", "created", "format_version", "body_length"],
    "properties": {
        "name": _NAME,
        "edgetrt_version": _NAME,
        "profile": _NAME,
        "precision": {"enum": list(PRECISIONS)},
        "created": _NAME,
        "format_version": {"type": "integer"},
        "body_length": _COUNT,
        "provenance": {
            "type": "object",
            "properties": {part: {"type": "object", "additionalProperties": {"type": ["string", "integer", "null"]}} for part in ("target", "built_with")},
            "additionalProperties": False,
        },
    },
    "additionalProperties": {"type": ["string", "integer", "number", "boolean", "null"]},
}

_DEFS: dict[str, Any] = {
    "tensor": {
        "type": "object",
        "required": ["offset", "dtype", "shape"],
        "properties": {"offset": _COUNT, "dtype": {"enum": DTYPES}, "shape": {"type": "array", "items": _COUNT}},
        "additionalProperties": False,
    },
    "encoded": {
        "anyOf": [
            {"type": ["null", "boolean", "number", "string"]},
            {"type": "array", "items": {"$ref": "#/$defs/encoded"}},
            {
                "type": "object",
                "required": ["__tensor__"],
                "properties": {"__tensor__": {"$ref": "#/$defs/tensor"}},
                "additionalProperties": False,
            },
            {
                "type": "object",
                "required": ["__graph__"],
                "properties": {"__graph__": {"$ref": "#/$defs/graph"}},
                "additionalProperties": False,
            },
            {
                "type": "object",
                "required": ["__strings__", "shape"],
                "properties": {"__strings__": {"type": "array"}, "shape": {"type": "array", "items": _COUNT}},
                "additionalProperties": False,
            },
            {"$ref": "#/$defs/mapping"},
        ]
    },
    "mapping": {
        "type": "object",
        "not": {"anyOf": [{"required": ["__tensor__"]}, {"required": ["__graph__"]}, {"required": ["__strings__"]}]},
        "additionalProperties": {"$ref": "#/$defs/encoded"},
    },
    "value": {
        "type": "object",
        "required": ["name", "dtype", "shape"],
        "properties": {
            "name": _NAME,
            "dtype": {"anyOf": [{"enum": DTYPES}, {"type": "null"}]},
            "shape": {"anyOf": [{"type": "array", "items": _DIM}, {"type": "null"}]},
            "const": {"$ref": "#/$defs/encoded"},
            "meta": {"$ref": "#/$defs/mapping"},
        },
        "additionalProperties": False,
    },
    "node": {
        "type": "object",
        "required": ["op", "name", "inputs", "outputs"],
        "properties": {
            "op": {"type": "string", "minLength": 1, "maxLength": 256},
            "name": _NAME,
            "domain": {"type": "string", "maxLength": 256},
            "inputs": {"type": "array", "items": {"anyOf": [_INDEX, {"type": "null"}]}},
            "outputs": {"type": "array", "items": _INDEX},
            "attrs": {"$ref": "#/$defs/mapping"},
            "meta": {"$ref": "#/$defs/mapping"},
        },
        "additionalProperties": False,
    },
    "graph": {
        "type": "object",
        "required": ["name", "opset", "inputs", "outputs", "nodes"],
        "properties": {
            "name": _NAME,
            "opset": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1, "maximum": 1000}},
            "inputs": {"type": "array", "items": _INDEX},
            "outputs": {"type": "array", "items": _INDEX},
            "nodes": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            "meta": {"$ref": "#/$defs/mapping"},
        },
        "additionalProperties": False,
    },
    "plan_record": {
        "type": "object",
        "required": ["arena_bytes", "naive_bytes", "lower_bound_bytes"],
        "properties": {
            "arena_bytes": _COUNT,
            "naive_bytes": _COUNT,
            "lower_bound_bytes": _COUNT,
            "tensors": {
                "type": "array",
                "items": {"type": "array", "prefixItems": [_NAME, _COUNT, _COUNT], "minItems": 3, "maxItems": 3},
            },
            "inplace": _COUNT,
            "concat_parts": _COUNT,
            "alignment": {"type": "integer", "minimum": 1},
        },
    },
    "memory": {
        "type": "object",
        "required": ["alignment", "static", "profiles"],
        "properties": {
            "alignment": {"type": "integer", "minimum": 1, "maximum": 4096},
            "static": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/plan_record"}]},
            "spaces": {"type": "object", "additionalProperties": {"$ref": "#/$defs/plan_record"}},
            "profiles": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"index": _COUNT, "arena_bytes": _COUNT, "max_shapes": {"type": "object"}, "error": _NAME},
                },
            },
            "arena_bytes": {"anyOf": [_COUNT, {"type": "null"}]},
            "naive_bytes": {"anyOf": [_COUNT, {"type": "null"}]},
            "lower_bound_bytes": {"anyOf": [_COUNT, {"type": "null"}]},
        },
    },
    "shape_range": {
        "type": "object",
        "required": ["min", "opt", "max"],
        "properties": {k: {"type": "array", "items": _COUNT, "maxItems": 64} for k in ("min", "opt", "max")},
        "additionalProperties": False,
    },
    "build": {
        "allOf": [
            {"$ref": "#/$defs/mapping"},
            {
                "type": "object",
                "properties": {
                    "memory": {"$ref": "#/$defs/memory"},
                    "optimization_profiles": {
                        "type": "array",
                        "items": {"type": "object", "additionalProperties": {"$ref": "#/$defs/shape_range"}},
                    },
                },
            },
        ]
    },
}

_OPTIONAL_NAME = {"anyOf": [{"type": "null"}, _NAME]}
_NAMES = {"type": "array", "items": _NAME}
_DEFS["plan_step"] = {
    "type": "object",
    "required": ["kind", "op", "device", "backend", "inputs", "outputs"],
    "properties": {
        "kind": {"enum": ["kernel", "transfer", "reformat"]},
        "op": _NAME,
        "device": {"enum": ["cpu", "gpu", "dla"]},
        "backend": _NAME,
        "inputs": {"type": "array", "items": _OPTIONAL_NAME},
        "outputs": _NAMES,
        "node": _OPTIONAL_NAME,
        "kernel": _OPTIONAL_NAME,
        "tactic": {"anyOf": [{"type": "null"}, {"type": "object", "required": ["name"], "properties": {"name": _NAME, "params": {"type": "object"}}}]},
        "precision": {"enum": ["fp32", "fp16", "int8"]},
        "layout": _NAME,
        "fallback": {"anyOf": [{"type": "null"}, {"type": "object", "additionalProperties": {"type": "string"}}]},
    },
    "additionalProperties": False,
}
_DEFS["plan"] = {
    "type": "object",
    "required": ["steps", "segments", "tensors", "spaces", "outputs"],
    "properties": {
        "steps": {"type": "array", "items": {"$ref": "#/$defs/plan_step"}},
        "segments": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "device", "backend", "space", "emulated", "steps"],
                "properties": {
                    "index": _COUNT, "device": _NAME, "backend": _NAME, "space": _NAME, "emulated": {"type": "boolean"},
                    "steps": {"type": "array", "prefixItems": [_COUNT, _COUNT], "minItems": 2, "maxItems": 2},
                    "inputs": _NAMES, "outputs": _NAMES,
                },
                "additionalProperties": False,
            },
        },
        "tensors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "source", "space", "dtype"],
                "properties": {"name": _NAME, "source": _NAME, "space": _NAME, "dtype": _NAME},
                "additionalProperties": False,
            },
        },
        "spaces": {"type": "object", "additionalProperties": _NAME},
        "outputs": _NAMES,
        "storage": {"type": "object", "additionalProperties": {"enum": ["float16", "float32", "int8"]}},
    },
    "additionalProperties": False,
}

DOCUMENT_SECTIONS: dict[str, dict[str, Any]] = {
    "values": {"type": "array", "items": {"$ref": "#/$defs/value"}},
    "graph": {"$ref": "#/$defs/graph"},
    "build": {"$ref": "#/$defs/build"},
    "plan": {"$ref": "#/$defs/plan"},
}
"""Top-level document keys and their schemas (all required); add a section here."""


def document_schema(sections: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The document's JSON Schema for ``sections`` (default: :data:`DOCUMENT_SECTIONS`)."""
    chosen = DOCUMENT_SECTIONS if sections is None else sections
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": sorted(chosen),
        "properties": dict(chosen),
        "additionalProperties": False,
        "$defs": _DEFS,
    }


_HEADER_VALIDATOR = jsonschema.Draft202012Validator(HEADER_SCHEMA)
_DOCUMENT_VALIDATOR = jsonschema.Draft202012Validator(document_schema())


def _check(validator: jsonschema.protocols.Validator, instance: Any, what: str) -> None:
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    except RecursionError:
        raise EngineFormatError(f"{what} is corrupted: nested too deeply") from None
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise EngineFormatError(f"{what} is corrupted: field {where}: {error.message[:200]}")


def validate_header(header: Any, name: str) -> None:
    """Raise EngineFormatError naming the first header field that breaks :data:`HEADER_SCHEMA`."""
    _check(_HEADER_VALIDATOR, header, f"{name} header")


def validate_document(document: Any, name: str) -> None:
    """Raise EngineFormatError naming the first document field that breaks the schema."""
    _check(_DOCUMENT_VALIDATOR, document, f"{name} document")
