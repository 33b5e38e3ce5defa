"""Operator facts several stages need: the activations a fused op's epilogue can carry, and
how a window op's ``auto_pad`` resolves into explicit pads.

One table, so the optimizer (which activations to fuse), the partitioner (which of them the
DLA takes) and the kernels (their parameter defaults) cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge.ir.domains import EDGETRT_DOMAIN

__all__ = ["Activation", "ACTIVATIONS", "DLA_ACTIVATIONS", "activation_params", "resolve_pads"]


@dataclass(frozen=True)
class Activation:
    """An activation op a fused Conv/ConvTranspose/Gemm/BatchNormalization can apply.

    Attributes:
        name: its op type, also the fused op's ``activation`` attribute value.
        domain: its ONNX domain ("" standard, or edgetrt for SiLU).
        params: (attribute, ONNX default) pairs, in ``activation_params`` order (Clip's
            bounds are inputs from opset 11, so the optimizer reads them itself).
        dla: TensorRT exposes it to the DLA (SiLU as Sigmoid + elementwise product).
    """

    name: str
    domain: str = ""
    params: tuple[tuple[str, float], ...] = ()
    dla: bool = False


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("Relu", dla=True),
        Activation("Clip", dla=True),
        Activation("LeakyRelu", params=(("alpha", 0.01),), dla=True),
        Activation("Sigmoid", dla=True),
        Activation("HardSigmoid", params=(("alpha", 0.2), ("beta", 0.5))),
        Activation("HardSwish"),
        Activation("SiLU", domain=EDGETRT_DOMAIN, dla=True),
        Activation("Gelu"),
        Activation("Tanh", dla=True),
    )
}
"""Epilogue activations by name."""

DLA_ACTIVATIONS = frozenset({""} | {name for name, a in ACTIVATIONS.items() if a.dla})
"""Activations (and "" for none) a fused op may carry on the DLA."""


def activation_params(name: str, given: Sequence[float] = ()) -> list[float]:
    """``given`` completed with the ONNX defaults of activation ``name``'s parameters."""
    defaults = [default for _, default in ACTIVATIONS[name].params]
    return list(given) + defaults[len(given) :]


def resolve_pads(
    auto_pad: str,
    pads: Sequence[int] | None,
    size_in: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(pads at the start, pads at the end) per spatial dim of a conv or pool window.

    SAME_UPPER / SAME_LOWER pad so that output = ceil(input / stride), the odd pad at the
    end (UPPER) or the start (LOWER); VALID pads nothing; NOTSET uses ``pads`` (ONNX order:
    all starts, then all ends; None for none).
    """
    rank = len(kernel)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(size_in, kernel, strides, dilations):
            total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
            small = total // 2
            begin.append(small if auto_pad == "SAME_UPPER" else total - small)
            end.append(total - begin[-1])
        return tuple(begin), tuple(end)
    if auto_pad == "VALID" or not pads:
        return (0,) * rank, (0,) * rank
    return tuple(int(p) for p in pads[:rank]), tuple(int(p) for p in pads[rank:])
