"""CUDA builders of the data-movement ops: reshapes as aliases, strided copies (Transpose,
Slice, Concat, Split, Expand, ChannelShuffle, DepthToSpace, SpaceToDepth), Pad, Gather,
Resize (separable taps) and QuantizeLinear / DequantizeLinear. Copies work on bytes, so they
serve every dtype and precision."""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence

import numpy as np

from edge.ir import EDGETRT_DOMAIN, Node
from edge.kernels import registry
from edge.kernels.cuda.launch import (
    BLOCK,
    Body,
    DeviceTensor,
    Dims,
    Step,
    broadcast_strides,
    bytes_suffix,
    contiguous_strides,
    float_suffix,
    grid_1d,
    merge_axes,
    static_refusal,
)
from edge.kernels.registry import OpContext, register
from edge.refusal import Refusal

__all__ = ["StridedCopy", "slice_plan", "transpose_plan", "resize_taps"]

ANY = ("fp32", "fp16", "int8")
FLOATS = (np.float32, np.float16)


def _offset(tensor: DeviceTensor, elements: int) -> DeviceTensor:
    return DeviceTensor(tensor.ptr + elements * np.dtype(tensor.dtype).itemsize, tensor.shape, tensor.dtype)


class StridedCopy:
    """One strided copy kernel launch: ``shape`` read at ``src_strides`` from ``src_offset``
    elements into ``dst`` at ``dst_strides`` from ``dst_offset`` (axes merged)."""

    def __init__(self, step: Step, dtype: np.dtype, shape: Sequence[int], src_strides: Sequence[int], dst_strides: Sequence[int],
                 src_offset: int = 0, dst_offset: int = 0) -> None:
        merged, (src, dst) = merge_axes(shape, src_strides, dst_strides)
        self.n = math.prod(shape)
        self.fn = step.function("copy", f"strided_copy_{bytes_suffix(dtype)}")
        self.grid = grid_1d(self.n)
        self.args = (ctypes.c_int64(self.n), ctypes.c_int32(len(merged)), Dims.of(merged), Dims.of(src), Dims.of(dst))
        self.src_offset, self.dst_offset = src_offset, dst_offset

    def __call__(self, state, src: DeviceTensor, dst: DeviceTensor) -> None:
        self.fn(state, self.grid, (BLOCK, 1, 1), _offset(src, self.src_offset), _offset(dst, self.dst_offset), *self.args)


def _static(node: Node) -> Refusal | None:
    return static_refusal(node)


def _const_inputs(*indices: int):
    """A refusal for nodes whose inputs ``indices`` (attribute-like: shapes, starts) are not
    constants, on top of the static-shape rule."""

    def refusal(node: Node) -> Refusal | None:
        for index in indices:
            value = node.inputs[index] if index < len(node.inputs) else None
            if value is not None and not value.is_const:
                return Refusal("cuda.dynamic_attribute", f"{node.op_type} '{node.name}': input {index} is not a constant")
        return static_refusal(node)

    return refusal


# -- aliases: the planner usually gives output and input the same bytes ---------------------


def alias(step: Step) -> Body:
    """Reshape-family ops: nothing to do when planned in place, else one device copy."""
    device = step.backend.device

    def body(inputs: list, outputs: list, state) -> None:
        if inputs[0].ptr != outputs[0].ptr:
            device.copy_d2d(outputs[0].ptr, inputs[0].ptr, outputs[0].nbytes, state.stream)

    return body


for _op, _since in (("Reshape", 1), ("Reshape", 5), ("Flatten", 1), ("Squeeze", 1), ("Squeeze", 13),
                    ("Unsqueeze", 1), ("Unsqueeze", 13), ("Identity", 1)):
    register(_op, backend="cuda", since=_since, precisions=ANY, supports=_const_inputs(1), inplace=True)(alias)


def _dropout_refusal(node: Node) -> Refusal | None:
    if len(node.outputs) > 1 or node.attrs.get("training_mode"):
        return Refusal("cuda.outputs", f"Dropout '{node.name}': only inference Dropout without a mask runs on the cuda backend")
    training = node.inputs[2] if len(node.inputs) > 2 else None
    if training is not None and (not training.is_const or bool(np.asarray(training.const).reshape(-1)[0])):
        return Refusal("cuda.attribute", f"Dropout '{node.name}': training mode runs on the CPU")
    return static_refusal(node)


register("Dropout", backend="cuda", precisions=ANY, supports=_dropout_refusal, inplace=True)(alias)
register("Dropout", backend="cuda", since=12, precisions=ANY, supports=_dropout_refusal, inplace=True)(alias)


# -- strided copies -------------------------------------------------------------------------


def transpose_plan(shape: Sequence[int], perm: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(output shape, source strides) reading a contiguous ``shape`` in ``perm`` order."""
    strides = contiguous_strides(shape)
    return tuple(shape[p] for p in perm), tuple(strides[p] for p in perm)


def _permuted_copy(step: Step, view: Sequence[int], perm: Sequence[int]) -> Body:
    out, src = transpose_plan(view, perm)
    copy = StridedCopy(step, step.input(0).dtype, out, src, contiguous_strides(out))

    def body(inputs: list, outputs: list, state) -> None:
        copy(state, inputs[0], outputs[0])

    return body


@register("Transpose", backend="cuda", precisions=ANY, supports=_static)
def transpose(step: Step) -> Body:
    shape = tuple(step.input(0).shape)
    perm = step.attr("perm") or list(reversed(range(len(shape))))
    return _permuted_copy(step, shape, perm)


@register("ChannelShuffle", backend="cuda", domain=EDGETRT_DOMAIN, precisions=ANY, supports=_static)
def channel_shuffle(step: Step) -> Body:
    """(N, g, C/g, S) read as (N, C/g, g, S)."""
    n, channels, *rest = step.input(0).shape
    groups = step.attr("groups")
    return _permuted_copy(step, (n, groups, channels // groups, math.prod(rest)), (0, 2, 1, 3))


@register("DepthToSpace", backend="cuda", precisions=ANY, supports=_static)
def depth_to_space(step: Step) -> Body:
    n, c, h, w = step.input(0).shape
    b = step.attr("blocksize")
    if step.attr("mode", "DCR") == "CRD":
        return _permuted_copy(step, (n, c // (b * b), b, b, h, w), (0, 1, 4, 2, 5, 3))
    return _permuted_copy(step, (n, b, b, c // (b * b), h, w), (0, 3, 4, 1, 5, 2))


@register("SpaceToDepth", backend="cuda", precisions=ANY, supports=_static)
def space_to_depth(step: Step) -> Body:
    n, c, h, w = step.input(0).shape
    b = step.attr("blocksize")
    return _permuted_copy(step, (n, c, h // b, b, w // b, b), (0, 3, 5, 1, 2, 4))


def slice_plan(shape: Sequence[int], starts: Sequence[int], ends: Sequence[int], axes: Sequence[int] | None,
               steps: Sequence[int] | None) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(output shape, source strides, source offset) of an ONNX Slice of a contiguous ``shape``
    (Python's slice clamping, which is ONNX's)."""
    axes = list(range(len(starts))) if axes is None else [a % len(shape) for a in axes]
    steps = [1] * len(starts) if steps is None else list(steps)
    strides = contiguous_strides(shape)
    out, src, offset = list(shape), list(strides), 0
    for axis, start, end, stride in zip(axes, starts, ends, steps):
        first, _, step = slice(int(start), int(end), int(stride)).indices(shape[axis])
        out[axis] = len(range(*slice(int(start), int(end), int(stride)).indices(shape[axis])))
        offset += first * strides[axis] if out[axis] else 0
        src[axis] = strides[axis] * step
    return tuple(out), tuple(src), offset


def _ints(array: np.ndarray | None) -> list[int] | None:
    return None if array is None else [int(v) for v in np.asarray(array).reshape(-1)]


def _slice_body(step: Step, starts, ends, axes, steps) -> Body:
    out, src, offset = slice_plan(tuple(step.input(0).shape), starts, ends, axes, steps)
    copy = StridedCopy(step, step.input(0).dtype, out, src, contiguous_strides(out), src_offset=offset)

    def body(inputs: list, outputs: list, state) -> None:
        copy(state, inputs[0], outputs[0])

    return body


@register("Slice", backend="cuda", precisions=ANY, supports=_static)
def slice_v1(step: Step) -> Body:
    return _slice_body(step, step.attr("starts"), step.attr("ends"), step.attr("axes"), None)


@register("Slice", backend="cuda", since=10, precisions=ANY, supports=_const_inputs(1, 2, 3, 4))
def slice_(step: Step) -> Body:
    return _slice_body(step, _ints(step.const(1)), _ints(step.const(2)), _ints(step.const(3)), _ints(step.const(4)))


@register("Concat", backend="cuda", precisions=ANY, supports=_static)
def concat(step: Step) -> Body:
    """Each input copied into its slab of the output along ``axis``."""
    out = tuple(step.output(0).shape)
    axis = step.attr("axis") % len(out)
    dst = contiguous_strides(out)
    copies, start = [], 0
    for index, info in enumerate(step.spec.inputs):
        shape = tuple(info.shape)
        if math.prod(shape):
            copies.append((index, StridedCopy(step, info.dtype, shape, contiguous_strides(shape), dst, dst_offset=start * dst[axis])))
        start += shape[axis]

    def body(inputs: list, outputs: list, state) -> None:
        for index, copy in copies:
            copy(state, inputs[index], outputs[0])

    return body


def _split_body(step: Step) -> Body:
    shape = tuple(step.input(0).shape)
    axis = step.attr("axis", 0) % len(shape)
    src = contiguous_strides(shape)
    copies, start = [], 0
    for info in step.spec.outputs:
        part = tuple(info.shape)
        copies.append(StridedCopy(step, info.dtype, part, src, contiguous_strides(part), src_offset=start * src[axis]))
        start += part[axis]

    def body(inputs: list, outputs: list, state) -> None:
        for copy, output in zip(copies, outputs):
            copy(state, inputs[0], output)

    return body


register("Split", backend="cuda", precisions=ANY, supports=_const_inputs(1))(_split_body)
register("Split", backend="cuda", since=13, precisions=ANY, supports=_const_inputs(1))(_split_body)


@register("Expand", backend="cuda", precisions=ANY, supports=_const_inputs(1))
def expand(step: Step) -> Body:
    out = tuple(step.output(0).shape)
    copy = StridedCopy(step, step.input(0).dtype, out, broadcast_strides(tuple(step.input(0).shape), out), contiguous_strides(out))

    def body(inputs: list, outputs: list, state) -> None:
        copy(state, inputs[0], outputs[0])

    return body


# -- Pad and Gather -------------------------------------------------------------------------

PAD_MODES = {"constant": 0, "edge": 1, "reflect": 2, "wrap": 3}
_UNSIGNED = {1: ctypes.c_uint8, 2: ctypes.c_uint16, 4: ctypes.c_uint32, 8: ctypes.c_uint64}


def _pad_refusal(node: Node) -> Refusal | None:
    refusal = _const_inputs(1, 2, 3)(node)
    if refusal is not None:
        return refusal
    pads = node.attrs.get("pads") if len(node.inputs) < 2 or node.inputs[1] is None else node.inputs[1].const
    if pads is not None and min(np.asarray(pads).reshape(-1), default=0) < 0:
        return Refusal("cuda.attribute", f"Pad '{node.name}': negative pads (cropping) run on the CPU")
    return None


def _pad_body(step: Step, pads: list[int], mode: str, value, axes: list[int] | None) -> Body:
    shape = tuple(step.input(0).shape)
    rank = len(shape)
    axes = list(range(rank)) if axes is None else [a % rank for a in axes]
    begin = [0] * rank
    for i, axis in enumerate(axes):
        begin[axis] = pads[i]
    out = tuple(step.output(0).shape)
    dtype = np.dtype(step.input(0).dtype)
    fill = np.asarray(value if value is not None and np.size(value) else 0, dtype).reshape(-1)[:1]
    bits = fill.view(f"u{dtype.itemsize}")[0]
    fn = step.function("copy", f"pad_{bytes_suffix(dtype)}")
    n = math.prod(out)
    args = (ctypes.c_int64(n), ctypes.c_int32(rank), Dims.of(out), Dims.of(shape), Dims.of(begin),
            ctypes.c_int32(PAD_MODES[mode]), _UNSIGNED[dtype.itemsize](int(bits)))
    grid = grid_1d(n)

    def body(inputs: list, outputs: list, state) -> None:
        fn(state, grid, (BLOCK, 1, 1), inputs[0], outputs[0], *args)

    return body


@register("Pad", backend="cuda", precisions=ANY, supports=_pad_refusal)
def pad_v1(step: Step) -> Body:
    return _pad_body(step, list(step.attr("pads")), step.attr("mode", "constant"), step.attr("value", 0.0), None)


@register("Pad", backend="cuda", since=11, precisions=ANY, supports=_pad_refusal)
def pad(step: Step) -> Body:
    return _pad_body(step, _ints(step.const(1)), step.attr("mode", "constant"), step.const(2), _ints(step.const(3)))


def _gather_refusal(node: Node) -> Refusal | None:
    refusal = static_refusal(node)
    if refusal is None and node.inputs[1].dtype not in (np.dtype(np.int64), np.dtype(np.int32)):
        return Refusal("cuda.dtype", f"Gather '{node.name}': indices of {node.inputs[1].dtype}")
    if refusal is None and np.dtype(node.inputs[0].dtype).itemsize not in _UNSIGNED:
        return Refusal("cuda.dtype", f"Gather '{node.name}': data of {node.inputs[0].dtype}")
    return refusal


@register("Gather", backend="cuda", precisions=ANY, supports=_gather_refusal)
def gather(step: Step) -> Body:
    """data (outer, axis_dim, inner) picked at indices (negative ones from the end)."""
    shape = tuple(step.input(0).shape)
    axis = step.attr("axis", 0) % len(shape)
    outer, dim, inner = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :])
    count = math.prod(step.input(1).shape)
    index_kind = "i64" if np.dtype(step.input(1).dtype) == np.int64 else "i32"
    fn = step.function("copy", f"gather_{index_kind}_{bytes_suffix(step.input(0).dtype)}")
    args = (ctypes.c_int64(outer), ctypes.c_int64(dim), ctypes.c_int64(inner), ctypes.c_int64(count))
    grid = grid_1d(outer * count * inner)

    def body(inputs: list, outputs: list, state) -> None:
        fn(state, grid, (BLOCK, 1, 1), inputs[0], inputs[1], outputs[0], *args)

    return body


# -- Resize ---------------------------------------------------------------------------------

MAX_TAPS = 4


def _resize_inputs(node: Node, opset: int) -> tuple[int | None, int | None]:
    """Indices of the scales and sizes inputs of a Resize/Upsample node."""
    if node.op_type == "Resize" and opset >= 11:
        return 2, 3
    return 1, None


def _resize_refusal(node: Node) -> Refusal | None:
    refusal = static_refusal(node, FLOATS)
    if refusal is not None:
        return refusal
    attrs = node.attrs
    problem = None
    if len(node.inputs[0].shape) != 4 or node.inputs[0].shape[:2] != node.outputs[0].shape[:2]:
        problem = "only the last two axes of a 4-D tensor"
    elif attrs.get("mode", "nearest") not in ("nearest", "linear", "bilinear", "cubic") or attrs.get("antialias", 0):
        problem = f"mode '{attrs.get('mode')}' with antialias={attrs.get('antialias', 0)}"
    elif attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize" or attrs.get("axes") is not None:
        problem = "tf_crop_and_resize or the axes attribute"
    elif attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        problem = "keep_aspect_ratio_policy"
    elif node.op_type == "Upsample" and len(node.inputs) < 2:
        problem = "Upsample-7 (scales as an attribute)"
    elif any(v is not None and not v.is_const for v in node.inputs[1:]):
        problem = "scales or sizes that are not constants"
    return None if problem is None else Refusal("cuda.attribute", f"{node.op_type} '{node.name}': {problem} runs on the CPU")


def resize_taps(node: Node, opset: int, axis: int, in_size: int, out_size: int, inputs: list) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), each (out_size, taps): the CPU kernel's own 1-D interpolation of
    axis 2 or 3, read off by resizing an identity (column j of the result is input j's weight)."""
    cpu = registry.lookup(node.op_type, node.domain, "cpu", opset)
    probe = np.eye(in_size, dtype=np.float32).reshape(in_size, 1, in_size, 1)
    scales_at, sizes_at = _resize_inputs(node, opset)
    args = list(inputs)
    args[0] = probe
    if sizes_at is not None and sizes_at < len(args) and args[sizes_at] is not None and np.asarray(args[sizes_at]).size:
        args[sizes_at] = np.array([in_size, 1, out_size, 1], np.int64)
    else:
        factor = np.asarray(args[scales_at], np.float32).reshape(-1)[axis]
        args[scales_at] = np.array([1, 1, factor, 1], np.float32)
    matrix = cpu.fn(OpContext(node, opset), *args)[:, 0, :, 0].T  # (out_size, in_size)
    taps = max(1, int((matrix != 0).sum(axis=1).max()))
    indices = np.zeros((out_size, taps), np.int32)
    weights = np.zeros((out_size, taps), np.float32)
    for row in range(out_size):
        nonzero = np.flatnonzero(matrix[row])[:taps]
        indices[row, : len(nonzero)] = nonzero
        weights[row, : len(nonzero)] = matrix[row, nonzero]
    return indices, weights


def _pad_taps(indices: np.ndarray, weights: np.ndarray, taps: int) -> tuple[np.ndarray, np.ndarray]:
    extra = taps - indices.shape[1]
    return np.pad(indices, ((0, 0), (0, extra))), np.pad(weights, ((0, 0), (0, extra)))


def _resize_builder(step: Step) -> Body:
    n, c, h, w = step.input(0).shape
    oh, ow = step.output(0).shape[2:]
    inputs = [None] + [step.const(i) for i in range(1, len(step.spec.inputs))]
    iy, wy = resize_taps(step.node, step.spec.opset, 2, h, oh, inputs)
    ix, wx = resize_taps(step.node, step.spec.opset, 3, w, ow, inputs)
    taps = max(iy.shape[1], ix.shape[1])
    (iy, wy), (ix, wx) = _pad_taps(iy, wy, taps), _pad_taps(ix, wx, taps)
    tables = [step.upload(t) for t in (iy, wy, ix, wx)]
    fn = step.function("copy", f"resize2d_{float_suffix(step.input(0).dtype)}")
    args = [ctypes.c_int64(n * c)] + [ctypes.c_int32(v) for v in (h, w, oh, ow, taps)]
    grid = grid_1d(n * c * oh * ow)

    def body(inputs: list, outputs: list, state) -> None:
        fn(state, grid, (BLOCK, 1, 1), inputs[0], outputs[0], *args, *tables)

    return body


register("Resize", backend="cuda", since=10, precisions=ANY, supports=_resize_refusal)(_resize_builder)
register("Resize", backend="cuda", since=11, precisions=ANY, supports=_resize_refusal)(_resize_builder)
register("Upsample", backend="cuda", since=9, precisions=ANY, supports=_resize_refusal)(_resize_builder)


# -- QuantizeLinear / DequantizeLinear ------------------------------------------------------

_QUANT = {np.dtype(np.int8): ("i8", -128, 127), np.dtype(np.uint8): ("u8", 0, 255)}


def _quant_refusal(node: Node) -> Refusal | None:
    refusal = _const_inputs(1, 2)(node)
    if refusal is not None:
        return refusal
    quantized = node.outputs[0] if node.op_type == "QuantizeLinear" else node.inputs[0]
    if quantized.dtype not in _QUANT or node.attrs.get("block_size"):
        return Refusal("cuda.dtype", f"{node.op_type} '{node.name}': only int8/uint8 per-tensor or per-axis runs on the cuda backend")
    return None


def _channel_tables(step: Step) -> tuple[DeviceTensor, DeviceTensor, tuple]:
    """Scale (float32) and zero point (int32) per channel on the device, and the (n, channels,
    inner) view of the tensor they index."""
    shape = tuple(step.input(0).shape)
    scale = np.asarray(step.const(1), np.float32).reshape(-1)
    zero = np.zeros(scale.size, np.int32) if step.const(2) is None else np.asarray(step.const(2)).astype(np.int32).reshape(-1)
    if scale.size == 1:
        channels, inner = 1, max(math.prod(shape), 1)
    else:
        axis = step.attr("axis", 1) % len(shape)
        channels, inner = shape[axis], math.prod(shape[axis + 1 :])
    view = (ctypes.c_int64(math.prod(shape)), ctypes.c_int64(channels), ctypes.c_int64(inner))
    return step.upload(scale), step.upload(np.broadcast_to(zero, scale.shape).copy()), view


@register("QuantizeLinear", backend="cuda", precisions=ANY, supports=_quant_refusal)
def quantize_linear(step: Step) -> Body:
    """y = saturate(round_half_even(x / scale) + zero_point)."""
    kind, low, high = _QUANT[np.dtype(step.output(0).dtype)]
    fn = step.function("quant", f"quantize_{float_suffix(step.input(0).dtype)}_{kind}")
    scale, zero, view = _channel_tables(step)
    grid = grid_1d(view[0].value)

    def body(inputs: list, outputs: list, state) -> None:
        fn(state, grid, (BLOCK, 1, 1), inputs[0], outputs[0], scale, zero, *view, ctypes.c_int32(low), ctypes.c_int32(high))

    return body


@register("DequantizeLinear", backend="cuda", precisions=ANY, supports=_quant_refusal)
def dequantize_linear(step: Step) -> Body:
    """y = (x - zero_point) * scale."""
    kind, _, _ = _QUANT[np.dtype(step.input(0).dtype)]
    fn = step.function("quant", f"dequantize_{kind}_{float_suffix(step.output(0).dtype)}")
    scale, zero, view = _channel_tables(step)
    grid = grid_1d(view[0].value)

    def body(inputs: list, outputs: list, state) -> None:
        fn(state, grid, (BLOCK, 1, 1), inputs[0], outputs[0], scale, zero, *view)

    return body
