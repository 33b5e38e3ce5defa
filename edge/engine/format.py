"""The ``.engine`` container: a checked header, a JSON description and raw tensor blobs.

Layout (little endian)::

    magic        8 bytes   b"EDGETRT\\0"
    version      u32       container format version
    header_len   u32
    header       JSON      edgetrt version, target profile, precision, body length + SHA-256
    body         bytes     u64 doc_len, JSON document (graph, plan, build info), zero padding
                           to 64 bytes, then every tensor blob at a 64-byte aligned offset

Files are data only (never pickle). Reading checks, in order: length, magic, version,
header, body length, checksum — and names the first thing that is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import EngineFormatError
from edge.fileio import write_atomic

__all__ = ["MAGIC", "FORMAT_VERSION", "BlobWriter", "EngineBlob", "write_engine", "read_engine"]

MAGIC = b"EDGETRT\0"
FORMAT_VERSION = 1
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
        count = int(np.prod(shape, dtype=np.int64))
        end = ref["offset"] + count * dtype.itemsize
        if end > len(self.blobs):
            raise EngineFormatError(f"engine is corrupted: tensor data at offset {ref['offset']} runs past the file end")
        return np.frombuffer(self.blobs, dtype=dtype, count=count, offset=ref["offset"]).reshape(shape)


def write_engine(path: str | os.PathLike, header: dict[str, Any], document: dict[str, Any], blobs: bytes) -> None:
    """Write the engine file atomically (see :mod:`edge.fileio`)."""
    doc = json.dumps(document, separators=(",", ":"), allow_nan=True).encode("utf-8")
    doc_part = struct.pack("<Q", len(doc)) + doc
    doc_part += b"\0" * ((-len(doc_part)) % _ALIGN)
    body = doc_part + blobs
    full_header = dict(header)
    full_header.update(format_version=FORMAT_VERSION, body_length=len(body), body_sha256=hashlib.sha256(body).hexdigest())
    head = json.dumps(full_header, sort_keys=True).encode("utf-8")
    write_atomic(path, _PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)) + head + body)


def read_engine(path: str | os.PathLike) -> EngineBlob:
    """Parse and verify an engine file; raise EngineFormatError with a one-line reason."""
    target = Path(path)
    if not target.is_file():
        raise EngineFormatError(f"engine file '{target}' does not exist")
    data = target.read_bytes()
    name = f"'{target}'"
    if len(data) < _PREFIX.size:
        raise EngineFormatError(f"{name} is truncated: {len(data)} bytes, shorter than the {_PREFIX.size}-byte prefix")
    magic, version, head_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise EngineFormatError(f"{name} is not an edgetrt engine (magic {magic!r}, expected {MAGIC!r})")
    if version > FORMAT_VERSION:
        raise EngineFormatError(
            f"{name} has engine format {version}, newer than this edgetrt reads ({FORMAT_VERSION}); upgrade edgetrt"
        )
    if version < 1:
        raise EngineFormatError(f"{name} has invalid engine format version {version}")
    head_end = _PREFIX.size + head_len
    if len(data) < head_end:
        raise EngineFormatError(f"{name} is truncated inside its header ({len(data)} of {head_end} bytes)")
    try:
        header = json.loads(data[_PREFIX.size : head_end].decode("utf-8"))
        body_length = int(header["body_length"])
        checksum = str(header["body_sha256"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise EngineFormatError(f"{name} is corrupted: its header is not valid") from None
    body = memoryview(data)[head_end:]
    if len(body) < body_length:
        raise EngineFormatError(f"{name} is truncated: body has {len(body)} of {body_length} bytes")
    if len(body) > body_length:
        raise EngineFormatError(f"{name} is corrupted: {len(body) - body_length} unexpected bytes after the body")
    if hashlib.sha256(body).hexdigest() != checksum:
        raise EngineFormatError(f"{name} is corrupted: checksum mismatch")
    (doc_len,) = struct.unpack_from("<Q", body)
    document = json.loads(bytes(body[8 : 8 + doc_len]).decode("utf-8"))
    blob_start = 8 + doc_len + ((-(8 + doc_len)) % _ALIGN)
    return EngineBlob(header, document, body[blob_start:])
