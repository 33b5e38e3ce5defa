"""Operator implementations per backend, found through one registry."""

from edge.kernels.registry import (
    Kernel,
    OpContext,
    lookup,
    lookup_shape,
    register,
    register_custom_op,
    register_shape,
    supported_ops,
)

__all__ = [
    "Kernel",
    "OpContext",
    "lookup",
    "lookup_shape",
    "register",
    "register_custom_op",
    "register_shape",
    "supported_ops",
]
