"""Sanity of sliding-window attributes (kernel_shape, pads, strides, dilations, group).

The compiled convolution and pooling kernels index memory with these numbers unchecked, so
a negative pad or a zero stride read from a hostile model or engine file would crash the
process. Both the importer and the engine reader run :func:`window_attribute_problem` and
refuse the graph with its one-line message naming the node, the attribute and the value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edge.ir import EDGETRT_DOMAIN, Graph, Node, Value, standard_domain
from edge.ir.layout import channels_first_shape

__all__ = ["WINDOW_OPS", "window_attribute_problem"]

WINDOW_OPS = frozenset(
    {
        ("", "Conv"),
        ("", "ConvTranspose"),
        ("", "ConvInteger"),
        ("", "QLinearConv"),
        ("", "DeformConv"),
        ("", "MaxPool"),
        ("", "AveragePool"),
        ("", "LpPool"),
        ("", "MaxUnpool"),
        (EDGETRT_DOMAIN, "FusedConv"),
        (EDGETRT_DOMAIN, "FusedConvTranspose"),
        (EDGETRT_DOMAIN, "MaxPool"),
        (EDGETRT_DOMAIN, "AveragePool"),
    }
)
"""(domain, op type) of the ops whose window attributes are checked."""

_AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
_GROWING_OPS = {"ConvTranspose", "FusedConvTranspose", "MaxUnpool"}  # outputs larger than inputs: no fit check
_WEIGHT_INPUT = {"QLinearConv": 3}  # other convolutions take their weight as input 1


def window_attribute_problem(graph: Graph) -> str | None:
    """The first bad window attribute in ``graph`` (subgraphs included), or None."""
    for node in graph.walk():
        if (standard_domain(node.domain), node.op_type) in WINDOW_OPS:
            problem = _node_problem(node)
            if problem is not None:
                return f"node '{node.name}' ({node.op_type}): {problem}"
    return None


def _ints(node: Node, name: str) -> tuple[list[int] | None, str | None]:
    value = node.attrs.get(name)
    if value is None:
        return None, None
    if isinstance(value, bool) or not isinstance(value, (list, tuple)) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return None, f"attribute {name}={value!r} is not a list of integers"
    return list(value), None


def _node_problem(node: Node) -> str | None:
    lists: dict[str, list[int] | None] = {}
    for name in ("kernel_shape", "strides", "dilations", "pads", "output_padding", "output_shape"):
        lists[name], problem = _ints(node, name)
        if problem:
            return problem
    weight_kernel = _weight_kernel(node)
    kernel = lists["kernel_shape"] or weight_kernel
    for name, least in (("kernel_shape", 1), ("strides", 1), ("dilations", 1), ("pads", 0), ("output_padding", 0), ("output_shape", 1)):
        values = lists[name]
        if values is not None and any(v < least for v in values):
            return f"attribute {name}={values} must hold integers >= {least}"
    if lists["kernel_shape"] is not None and weight_kernel is not None and lists["kernel_shape"] != weight_kernel:
        return f"attribute kernel_shape={lists['kernel_shape']} does not match the weight's spatial dims {weight_kernel}"
    if kernel is not None:
        rank = len(kernel)
        for name, length in (("strides", rank), ("dilations", rank), ("pads", 2 * rank), ("output_padding", rank)):
            values = lists[name]
            if values is not None and len(values) != length:
                return f"attribute {name}={values} has {len(values)} entries, expected {length} for a {rank}-d kernel"
    group = node.attrs.get("group", 1)
    if not isinstance(group, int) or isinstance(group, bool) or group < 1:
        return f"attribute group={group!r} must be an integer >= 1"
    problem = _group_problem(node, group)
    if problem:
        return problem
    pads = lists["pads"]
    if "Pool" in node.op_type and kernel is not None and pads is not None and len(pads) == 2 * len(kernel):
        # A window wholly inside the padding has no element: -inf (max) or 0/0 (average).
        if any(p >= kernel[i % len(kernel)] for i, p in enumerate(pads)):
            return f"attribute pads={pads} must each be smaller than kernel_shape={list(kernel)}"
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if auto_pad not in _AUTO_PADS:
        return f"attribute auto_pad={auto_pad!r} is not one of {list(_AUTO_PADS)}"
    if kernel is not None and auto_pad in ("NOTSET", "VALID") and node.op_type not in _GROWING_OPS:
        return _window_fits(node, kernel, lists, auto_pad)
    return None


def _group_problem(node: Node, group: int) -> str | None:
    """A convolution's input channels must split into ``group`` equal parts the weight matches."""
    weight = _weight(node)
    source = node.inputs[0] if node.inputs else None
    shape = channels_first_shape(node, source)
    if weight is None or shape is None or weight.shape is None:
        return None
    if len(weight.shape) < 2 or len(shape) < 2:
        return None
    channels = shape[1]
    # Conv weights are (M, C/group, ...), ConvTranspose weights (C, M/group, ...).
    transposed = "Transpose" in node.op_type
    per_group = weight.shape[0] if transposed else weight.shape[1]
    if not isinstance(channels, int) or not isinstance(per_group, int):
        return None
    if channels % group or per_group != (channels if transposed else channels // group):
        return (
            f"input '{source.name}' has {channels} channels, which group={group} and weight "
            f"'{weight.name}' of shape {list(weight.shape)} do not match"
        )
    return None


def _weight(node: Node) -> Value | None:
    """A convolution's weight input (None for pooling or when absent)."""
    index = _WEIGHT_INPUT.get(node.op_type, 1)
    if "Pool" in node.op_type or len(node.inputs) <= index:
        return None
    return node.inputs[index]


def _weight_kernel(node: Node) -> list[int] | None:
    """Spatial dims of a convolution's weight when its shape is known."""
    weight = _weight(node)
    shape = None if weight is None else weight.shape
    if shape is None or len(shape) < 3 or not all(isinstance(d, int) for d in shape[2:]):
        return None
    return list(shape[2:])


def _window_fits(node: Node, kernel: Sequence[int], lists: dict[str, Any], auto_pad: str) -> str | None:
    """With a static input, every output dim must be at least 1 (no window outside the data)."""
    source = node.inputs[0] if node.inputs else None
    shape = channels_first_shape(node, source)
    if shape is None or len(shape) != len(kernel) + 2:
        return None
    rank = len(kernel)
    pads = [0] * (2 * rank) if auto_pad == "VALID" else (lists["pads"] or [0] * (2 * rank))
    dilations = lists["dilations"] or [1] * rank
    for axis, (size, k, d) in enumerate(zip(shape[2:], kernel, dilations)):
        if not isinstance(size, int):
            continue
        padded = size + pads[axis] + pads[axis + rank]
        extent = (k - 1) * d + 1
        if extent > padded:
            return (
                f"window {extent} (kernel_shape {k}, dilation {d}) is larger than input '{source.name}' "
                f"spatial dim {axis} of {size} plus pads {pads[axis]}+{pads[axis + rank]}"
            )
    return None
