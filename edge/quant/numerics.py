"""INT8 numerics of the CPU backend: quantization of activations and weights.

TensorRT's INT8 code is symmetric: ``q = clamp(round_half_even(x / s), lo, hi)`` and
``x' = q * s``. Calibrated (implicit) scales use the symmetric range -127..127 (amax = 127 s);
explicit Q/DQ scales keep the zero point and the integer range of their ONNX type, so the
emulation equals onnxruntime's QuantizeLinear -> DequantizeLinear bit for bit. Weights are
quantized per output channel from their max |w| (TensorRT does this itself; they are never
calibrated). The host backends hold an INT8 tensor as float32 ``q * s`` (exact: |q| <= 128
needs 8 of float32's 24 significand bits), so INT8 and float layers read it alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.ir import Node, Value

__all__ = [
    "SYMMETRIC_MAX",
    "Quantizer",
    "explicit_quantizer",
    "has_int8_scales",
    "input_quantizers",
    "quantize_weight",
    "quantizer_of",
    "weight_axis",
    "weight_codes",
]

SYMMETRIC_MAX = 127
"""Largest INT8 code of symmetric quantization; a scale is amax / SYMMETRIC_MAX."""


@dataclass(frozen=True)
class Quantizer:
    """Fake quantization of one tensor: round to the INT8 grid, then back to float32."""

    scale: np.float32
    zero_point: int = 0
    low: int = -SYMMETRIC_MAX
    high: int = SYMMETRIC_MAX

    def __call__(self, array: np.ndarray) -> np.ndarray:
        if array.dtype != np.float32:
            return array
        codes = np.rint(array / self.scale)
        if self.zero_point:
            codes += np.float32(self.zero_point)
        np.clip(codes, self.low, self.high, out=codes)
        if self.zero_point:
            codes -= np.float32(self.zero_point)
        codes *= self.scale
        return codes


def quantizer_of(meta: dict[str, Any]) -> Quantizer | None:
    """The quantizer a tensor's ``meta`` describes, or None without a per-tensor INT8 scale.

    ``meta["int8_source"] == "qdq"`` (explicit Q/DQ, from the optimizer's Q/DQ pass) keeps
    the zero point and its type's range; other scales (calibration) are symmetric -127..127.
    Per-channel scales (weights) are not activation quantizers and give None.
    """
    scale = meta.get("int8_scale")
    if scale is None or np.size(scale) != 1:
        return None
    scale = np.float32(np.asarray(scale).reshape(()))
    if meta.get("int8_source") != "qdq":
        return Quantizer(scale)
    zero_point = np.asarray(meta.get("int8_zero_point", np.int8(0)))
    info = np.iinfo(zero_point.dtype) if zero_point.dtype.kind in "iu" else np.iinfo(np.int8)
    return Quantizer(scale, int(zero_point.reshape(())), int(info.min), int(info.max))


def explicit_quantizer(value: Value) -> Quantizer | None:
    """The quantizer of an explicit Q/DQ activation (applied wherever the tensor is produced)."""
    return quantizer_of(value.meta) if value.meta.get("int8_source") == "qdq" and not value.is_const else None


def has_int8_scales(node: Node) -> bool:
    """Whether every float activation ``node`` reads and every float tensor it writes has a
    per-tensor scale: TensorRT's condition for running a layer in INT8."""
    activations = [v for v in node.inputs if v is not None and not v.is_const and v.dtype is not None and v.dtype.kind == "f"]
    outputs = [v for v in node.outputs if not v.meta.get("omitted") and v.dtype is not None and v.dtype.kind == "f"]
    return all(quantizer_of(v.meta) is not None for v in activations + outputs)


def input_quantizers(node: Node) -> tuple[tuple[int, Quantizer], ...]:
    """(input index, quantizer) for the float activation inputs of an INT8 layer.

    Empty unless ``node.meta["precision"] == "int8"`` (set only where every such input has
    a scale); weights are quantized once at build, not here, and tensors an INT8 layer
    already wrote as INT8 (``meta["int8_output"]``) are on their grid.
    """
    if node.meta.get("precision") != "int8":
        return ()
    found = []
    for index, value in enumerate(node.inputs):
        if value is None or value.is_const or value.meta.get("int8_output"):
            continue
        quantizer = quantizer_of(value.meta)
        if quantizer is not None:
            found.append((index, quantizer))
    return tuple(found)


def weight_axis(op_type: str, index: int, attrs: dict[str, Any]) -> int | None:
    """Output-channel axis of a layer's weight input, or None when input ``index`` is no weight.

    Conv (K, C, R, S): axis 0. ConvTranspose (C, K/g, R, S): axis 1. Gemm B: axis 0 when
    transB else 1. MatMul B (K, N): the last axis.
    """
    if op_type in ("Conv", "FusedConv") and index == 1:
        return 0
    if op_type in ("ConvTranspose", "FusedConvTranspose") and index == 1:
        return 1
    if op_type in ("Gemm", "FusedGemm") and index == 1:
        return 0 if attrs.get("transB", 0) else 1
    if op_type == "MatMul" and index == 1:
        return -1
    return None


def weight_codes(weight: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric INT8 codes of a float32 weight and their scales (max |w| / 127 per channel
    along ``axis``, else one for the tensor), the scales shaped to broadcast against it.
    An all-zero channel gets codes 0 and scale 1."""
    magnitude = np.abs(weight)
    if axis is None or weight.ndim == 0:
        amax = magnitude.max(initial=0.0)
    else:
        reduce = tuple(a for a in range(weight.ndim) if a != axis % weight.ndim)
        amax = magnitude.max(axis=reduce, keepdims=True, initial=0.0)
    scale = (np.asarray(amax, np.float32) / np.float32(SYMMETRIC_MAX)).astype(np.float32)
    scale = np.where(scale > 0, scale, np.float32(1.0))
    codes = np.clip(np.rint(weight / scale), -SYMMETRIC_MAX, SYMMETRIC_MAX).astype(np.int8)
    return codes, scale


def quantize_weight(weight: np.ndarray, axis: int | None) -> np.ndarray:
    """Fake-quantize a float32 weight symmetrically: per channel along ``axis``, else per tensor."""
    codes, scale = weight_codes(weight, axis)
    return (codes * scale).astype(np.float32)

