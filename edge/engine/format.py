"""The ``.engine`` container: a checked header, a JSON description and raw tensor blobs.

Layout (little endian)::

    magic        8 bytes   b"EDGETRT\\0"
    version      u32       container format version
    header_len   u32
    header       JSON      edgetrt version, target profile, precision, body length
    body         bytes     u64 doc_len, JSON document (graph, plan, build info), zero padding
                           to 64 bytes, then every tensor blob at a 64-byte aligned offset
    checksum     32 bytes  SHA-256 of every byte before it (prefix and header included)

Files are data only (never pickle) and untrusted: reading checks, in order, length, magic,
version, checksum, the header against its schema, body length, the document against its
schema (:mod:`edge.engine.schema`), and names the first thing that is wrong. Format 1 kept
the header outside the checksum; it is refused with a request to rebuild. Format 3 is format
2's container, but its graphs may hold what a format-2 reader would run wrongly without a
word (Attention reading heads on axis 2, ``bshd``). So an older edgetrt refuses it, and this
one reads both.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.engine.schema import validate_document, validate_header
from edge.errors import EngineFormatError
from edge.fileio import write_atomic

__all__ = ["MAGIC", "FORMAT_VERSION", "BlobWriter", "EngineBlob", "write_engine", "read_engine"]

MAGIC = b"EDGETRT\0"
FORMAT_VERSION = 3
_READABLE = (2, 3)
"""Formats this reader takes: the current one and format 2, whose graphs it runs as written."""
_DIGEST = 32
_MAX_JSON_DEPTH = 64
_PREFIX = struct.Struct("<8sII")
_ALIGN = 64


class BlobWriter:
    """Collects tensors into one aligned byte buffer and hands out references to them."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0

    def add(self, array: np.ndarray) -> dict[str, Any]:
        """Append ``array``; return the JSON reference that :func:`read_tensor` resolves."""
        data = array if array.flags.c_contiguous else array.copy(order="C")
        pad = (-self._size) % _ALIGN
        if pad:
            self._chunks.append(b"\0" * pad)
            self._size += pad
        ref = {"offset": self._size, "dtype": data.dtype.str, "shape": list(data.shape)}
        raw = data.tobytes()
        self._chunks.append(raw)
        self._size += len(raw)
        return ref

    def getvalue(self) -> bytes:
        return b"".join(self._chunks)


@dataclass
class EngineBlob:
    """A parsed engine file: its header, its JSON document and its tensor data."""

    header: dict[str, Any]
    document: dict[str, Any]
    blobs: memoryview

    def tensor(self, ref: dict[str, Any]) -> np.ndarray:
        """The array a :class:`BlobWriter` reference points at (zero-copy, read-only)."""
        dtype = np.dtype(ref["dtype"])
        shape = tuple(ref["shape"])
        count = math.prod(shape)
        end = ref["offset"] + count * dtype.itemsize
        if dtype.hasobject or end > len(self.blobs):
            raise EngineFormatError(f"engine is corrupted: tensor data at offset {ref['offset']} runs past the file end")
        return np.frombuffer(self.blobs, dtype=dtype, count=count, offset=ref["offset"]).reshape(shape)


def write_engine(path: str | os.PathLike, header: dict[str, Any], document: dict[str, Any], blobs: bytes) -> None:
    """Write the engine file atomically (see :mod:`edge.fileio`)."""
    doc = json.dumps(document, separators=(",", ":"), allow_nan=True).encode("utf-8")
    doc_part = struct.pack("<Q", len(doc)) + doc
    doc_part += b"\0" * ((-len(doc_part)) % _ALIGN)
    body = doc_part + blobs
    full_header = dict(header)
    full_header.update(format_version=FORMAT_VERSION, body_length=len(body))
    head = json.dumps(full_header, sort_keys=True).encode("utf-8")
    content = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)) + head + body
    write_atomic(path, content + hashlib.sha256(content).digest())


def read_engine(path: str | os.PathLike) -> EngineBlob:
    """Parse and verify an engine file; raise EngineFormatError with a one-line reason."""
    target = Path(path)
    name = f"'{target}'"
    if not target.is_file():
        raise EngineFormatError(f"engine file {name} does not exist or is not a regular file")
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise EngineFormatError(f"engine file {name} cannot be read: {exc.strerror or exc}") from None
    # the magic is checked on what there is first: a short file that does not start like an
    # engine is some other file, not a truncated engine
    magic = data[: len(MAGIC)]
    if not data:
        raise EngineFormatError(f"{name} is empty (0 bytes), not an edgetrt engine")
    if not MAGIC.startswith(magic):
        raise EngineFormatError(f"{name} is not an edgetrt engine (starts with {magic!r}, expected {MAGIC!r})")
    if len(data) < _PREFIX.size:
        raise EngineFormatError(f"{name} is truncated: {len(data)} bytes, shorter than the {_PREFIX.size}-byte prefix")
    _, version, head_len = _PREFIX.unpack_from(data)
    if version > FORMAT_VERSION:
        raise EngineFormatError(
            f"{name} has engine format {version}, newer than this edgetrt reads ({FORMAT_VERSION}); upgrade edgetrt"
        )
    if version not in _READABLE:
        raise EngineFormatError(
            f"{name} has engine format {version}, older than this edgetrt reads ({FORMAT_VERSION}); "
            "rebuild it from the ONNX model with `edgetrt build`"
        )
    head_end = _PREFIX.size + head_len
    if len(data) < head_end + _DIGEST:
        raise EngineFormatError(f"{name} is truncated inside its header ({len(data)} of {head_end + _DIGEST} bytes)")
    if hashlib.sha256(memoryview(data)[:-_DIGEST]).digest() != data[-_DIGEST:]:
        raise EngineFormatError(f"{name} is corrupted: checksum mismatch")
    header = _json(data[_PREFIX.size : head_end], f"{name} header")
    validate_header(header, name)
    if header["format_version"] != version:
        raise EngineFormatError(f"{name} is corrupted: header says format {header['format_version']}, prefix {version}")
    body = memoryview(data)[head_end:-_DIGEST]
    if len(body) != header["body_length"]:
        raise EngineFormatError(f"{name} is corrupted: body has {len(body)} bytes, the header says {header['body_length']}")
    if len(body) < 8:
        raise EngineFormatError(f"{name} is truncated: no document length")
    (doc_len,) = struct.unpack_from("<Q", body)
    if doc_len > len(body) - 8:
        raise EngineFormatError(f"{name} is corrupted: document length {doc_len} exceeds the body's {len(body) - 8} bytes")
    document = _json(bytes(body[8 : 8 + doc_len]), f"{name} document")
    validate_document(document, name)
    blob_start = 8 + doc_len + ((-(8 + doc_len)) % _ALIGN)
    return EngineBlob(header, document, body[blob_start:])


def _json(raw: bytes, what: str) -> Any:
    """Parse JSON that must not nest deeper than the engine writer ever does."""
    try:
        text = raw.decode("utf-8")
        item = json.loads(text)
    except RecursionError:
        raise EngineFormatError(f"{what} is corrupted: JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise EngineFormatError(f"{what} is corrupted: not valid UTF-8 JSON ({str(exc)[:120]})") from None
    if _depth(item) > _MAX_JSON_DEPTH:
        raise EngineFormatError(f"{what} is corrupted: JSON nested deeper than {_MAX_JSON_DEPTH} levels")
    return item


def _depth(item: Any) -> int:
    """Nesting depth of a parsed JSON item, without recursion."""
    deepest, stack = 0, [(item, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(current, dict):
            stack.extend((v, level + 1) for v in current.values())
        elif isinstance(current, list):
            stack.extend((v, level + 1) for v in current)
    return deepest
