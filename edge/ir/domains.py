"""Operator domains: the two spellings of standard ONNX, and edgetrt's own fused ops."""

from __future__ import annotations

__all__ = ["EDGETRT_DOMAIN", "standard_domain"]

EDGETRT_DOMAIN = "edgetrt"
"""Domain of the fused ops the optimizer creates (FusedConv, FusedGemm, Attention, ...)."""


def standard_domain(domain: str) -> str:
    """``domain`` with standard ONNX's two spellings ("" and "ai.onnx") made one: ""."""
    return "" if domain in ("", "ai.onnx") else domain
