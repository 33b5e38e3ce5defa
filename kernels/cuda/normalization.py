"""CUDA builders of the normalizations: LayerNormalization, GroupNormalization,
InstanceNormalization and inference BatchNormalization (plain and fused with an activation).
Parameters are constants folded on the host once and kept as float32 on the device."""

from __future__ import annotations

import ctypes
import math

import numpy as np

from edge.ir import EDGETRT_DOMAIN, Node
from edge.kernels.cuda.launch import BLOCK, PRECISIONS, Body, Step, activation_code, float_suffix, grid_1d, static_refusal
from edge.kernels.cuda.reduce import reduce_threads
from edge.kernels.registry import register
from edge.refusal import Refusal

__all__ = ["batch_norm_affine"]

FLOATS = (np.float32, np.float16)


def _constant_parameters(node: Node) -> Refusal | None:
    """Refuse unless every parameter input (1..) is a constant and only one output is used."""
    for index, value in enumerate(node.inputs[1:], start=1):
        if value is not None and not value.is_const:
            return Refusal("cuda.dynamic_attribute", f"{node.op_type} '{node.name}': parameter input {index} is not a constant")
    if len(node.outputs) > 1:
        return Refusal("cuda.outputs", f"{node.op_type} '{node.name}': the cuda kernel gives only the normalized output")
    if node.attrs.get("training_mode", 0):
        return Refusal("cuda.attribute", f"{node.op_type} '{node.name}': training mode runs on the CPU")
    return static_refusal(node, FLOATS)


def _floats(array: np.ndarray | None, size: int) -> np.ndarray:
    """A parameter as ``size`` float32s (broadcast when it holds one value)."""
    return np.ascontiguousarray(np.broadcast_to(np.asarray(array, np.float32).reshape(-1), (size,)))


@register("LayerNormalization", backend="cuda", precisions=PRECISIONS, supports=_constant_parameters)
def layer_normalization(step: Step) -> Body:
    """Normalize each row of the dims from ``axis`` on (float statistics)."""
    shape = tuple(step.input(0).shape)
    axis = step.attr("axis", -1) % len(shape)
    length = math.prod(shape[axis:])
    rows = math.prod(shape[:axis])
    scale = step.place(1, np.broadcast_to(np.asarray(step.const(1), np.float32), shape[axis:]).reshape(-1))
    bias = None if step.const(2) is None else step.place(2, np.broadcast_to(np.asarray(step.const(2), np.float32), shape[axis:]).reshape(-1))
    fn = step.function("normalization", f"layer_norm_{float_suffix(step.input(0).dtype)}")
    block = (reduce_threads(length), 1, 1)
    args = (ctypes.c_int64(length), ctypes.c_float(step.attr("epsilon", 1e-5)))

    def body(inputs: list, outputs: list, state) -> None:
        fn(state, (rows, 1, 1), block, inputs[0], outputs[0], scale, bias, *args)

    return body


def _group_norm_body(step: Step, groups: int, scale: np.ndarray, bias: np.ndarray) -> Body:
    shape = tuple(step.input(0).shape)
    n, channels = shape[0], shape[1]
    hw = math.prod(shape[2:])
    cpg = channels // groups
    scale_d, bias_d = step.upload(_floats(scale, channels)), step.upload(_floats(bias, channels))
    fn = step.function("normalization", f"group_norm_{float_suffix(step.input(0).dtype)}")
    block = (reduce_threads(cpg * hw), 1, 1)
    args = (ctypes.c_int32(groups), ctypes.c_int64(cpg), ctypes.c_int64(hw), ctypes.c_float(step.attr("epsilon", 1e-5)))

    def body(inputs: list, outputs: list, state) -> None:
        fn(state, (n * groups, 1, 1), block, inputs[0], outputs[0], scale_d, bias_d, *args)

    return body


@register("InstanceNormalization", backend="cuda", precisions=PRECISIONS, supports=_constant_parameters)
def instance_normalization(step: Step) -> Body:
    return _group_norm_body(step, step.input(0).shape[1], step.const(1), step.const(2))


@register("GroupNormalization", backend="cuda", since=18, precisions=PRECISIONS, supports=_constant_parameters)
def group_normalization_18(step: Step) -> Body:
    """Opset 18: one scale and bias per group, repeated over the group's channels."""
    groups = step.attr("num_groups")
    cpg = step.input(0).shape[1] // groups
    return _group_norm_body(step, groups, np.repeat(_floats(step.const(1), groups), cpg), np.repeat(_floats(step.const(2), groups), cpg))


@register("GroupNormalization", backend="cuda", since=21, precisions=PRECISIONS, supports=_constant_parameters)
def group_normalization(step: Step) -> Body:
    return _group_norm_body(step, step.attr("num_groups"), step.const(1), step.const(2))


def batch_norm_affine(scale: np.ndarray, bias: np.ndarray, mean: np.ndarray, var: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) per channel, float32, with y = x * a + b the inference BatchNormalization."""
    factor = np.asarray(scale, np.float64) / np.sqrt(np.asarray(var, np.float64) + epsilon)
    shift = np.asarray(bias, np.float64) - np.asarray(mean, np.float64) * factor
    return factor.astype(np.float32).reshape(-1), shift.astype(np.float32).reshape(-1)


def _batch_norm_body(step: Step, activation: str, params) -> Body:
    shape = tuple(step.input(0).shape)
    channels = shape[1] if len(shape) > 1 else 1
    factor, shift = batch_norm_affine(*(step.const(i) for i in range(1, 5)), step.attr("epsilon", 1e-5))
    a, b = step.upload(_floats(factor, channels)), step.upload(_floats(shift, channels))
    total = math.prod(shape)
    fn = step.function("normalization", f"channel_affine_{float_suffix(step.input(0).dtype)}")
    act, p0, p1 = activation_code(activation, params)
    args = (ctypes.c_int64(total), ctypes.c_int64(channels), ctypes.c_int64(math.prod(shape[2:])),
            ctypes.c_int32(act), ctypes.c_float(p0), ctypes.c_float(p1))
    grid = grid_1d(total)

    def body(inputs: list, outputs: list, state) -> None:
        fn(state, grid, (BLOCK, 1, 1), inputs[0], outputs[0], a, b, *args)

    return body


def _batch_norm_refusal(node: Node) -> Refusal | None:
    refusal = _constant_parameters(node)
    if refusal is None and any(v is not None and v.shape is not None and math.prod(v.shape) != node.inputs[0].shape[1]
                               for v in node.inputs[1:5] if len(node.inputs[0].shape or ()) > 1):
        return Refusal("cuda.attribute", f"{node.op_type} '{node.name}': only per-channel parameters run on the cuda backend")
    return refusal


@register("BatchNormalization", backend="cuda", precisions=PRECISIONS, supports=_batch_norm_refusal, inplace=True)
def batch_normalization(step: Step) -> Body:
    return _batch_norm_body(step, "", ())


@register("FusedBatchNormalization", backend="cuda", domain=EDGETRT_DOMAIN, precisions=PRECISIONS, supports=_batch_norm_refusal, inplace=True)
def fused_batch_normalization(step: Step) -> Body:
    """act(BatchNormalization) in one pass."""
    return _batch_norm_body(step, step.attr("activation", ""), step.attr("activation_params", ()) or ())
