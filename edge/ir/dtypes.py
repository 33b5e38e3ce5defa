"""Mapping between ONNX tensor element types and numpy dtypes."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

__all__ = ["from_onnx", "to_onnx", "is_float"]


def from_onnx(elem_type: int) -> np.dtype:
    """numpy dtype for an ONNX ``TensorProto.DataType`` value."""
    if elem_type == TensorProto.STRING:
        return np.dtype(object)
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def to_onnx(dtype: np.dtype) -> int:
    """ONNX ``TensorProto.DataType`` value for a numpy dtype."""
    dtype = np.dtype(dtype)
    if dtype == np.dtype(object):
        return TensorProto.STRING
    return helper.np_dtype_to_tensor_dtype(dtype)


def is_float(dtype: np.dtype | None) -> bool:
    return dtype is not None and np.issubdtype(np.dtype(dtype), np.floating)
