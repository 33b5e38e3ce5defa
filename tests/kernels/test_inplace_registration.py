"""In-place ability is declared by kernel registration: the CPU kernels flagged ``inplace``
are exactly the ops the memory planner's op-type table listed before it moved there."""

from __future__ import annotations

from edge.ir import EDGETRT_DOMAIN
from edge.kernels.registry import lookup, supported_ops

# the memory planner's former INPLACE_OPS table (edge/runtime/memory.py), copied as the expected value
EXPECTED = {
    "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign",
    "Sin", "Cos", "Tan", "Tanh", "Sigmoid", "Relu", "LeakyRelu", "Elu", "Selu", "Celu",
    "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Gelu", "Erf", "Mish", "Clip",
    "ThresholdedRelu", "Shrink", "Not", "Identity", "Dropout", "PRelu", "SiLU", "Swish",
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where",
    "And", "Or", "Xor", "Mod",
    "BatchNormalization",
    "Reshape", "Flatten", "Squeeze", "Unsqueeze",
}  # fmt: skip

OPSETS = range(1, 26)


def _versions(op: str, domain: str) -> list:
    """Every registered version of the op's CPU kernel (one per opset where it changes)."""
    return list({id(k): k for k in (lookup(op, domain, "cpu", opset) for opset in OPSETS) if k is not None}.values())


def test_inplace_kernels_are_the_former_table() -> None:
    ops = supported_ops("cpu")
    flagged = {
        op
        for domain in ("", EDGETRT_DOMAIN)
        for op in ops.get(domain, ())
        if any(k.inplace for k in _versions(op, domain))
    }
    assert flagged == EXPECTED


def test_every_version_of_an_inplace_op_is_flagged() -> None:
    ops = supported_ops("cpu")
    for domain in ("", EDGETRT_DOMAIN):
        for op in ops.get(domain, ()):
            flags = {k.inplace for k in _versions(op, domain)}
            assert len(flags) == 1, f"{op}: some versions in place, others not"
