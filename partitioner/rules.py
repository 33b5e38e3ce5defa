"""DLA eligibility: one rule per op type (ONNX and edgetrt fused ops), for DLA version 1 and 2.

A rule is data: the DLA versions it exists on, the precisions the DLA runs it in, which
inputs carry activations (the rest must be build-time constants), the tensor ranks it
accepts, and a check function for attribute/shape limits that returns None or the problem as
an ``edge.refusal.Refusal`` (a stable ``code`` such as ``dla.kernel_limit`` plus the sentence).
``check_node`` applies the general constraints (FP16/INT8 only, static shapes, C/H/W <=
8192, batch <= 4096, ranks) and then the rule, and returns the refusal whose detail names the
layer, e.g. "Conv 'stage3/conv2': kernel 35x35 exceeds DLA limit 32".

Limits come from shared/reference/dla.md (TensorRT's DLA layer restrictions, NvInfer.h
8.6/10.7, NVIDIA's DLA operator matrix); reasons say "unverified" where that file does.
Version 1 is Xavier's first-generation DLA, version 2 Orin's.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from edge.ir import EDGETRT_DOMAIN, Node, Value, standard_domain
from edge.ir.dtypes import is_float
from edge.ir.opinfo import DLA_ACTIVATIONS, resolve_pads
from edge.refusal import Refusal

__all__ = [
    "RuleContext",
    "DlaRule",
    "DLA_RULES",
    "GPU_ONLY",
    "GPU_ONLY_CODES",
    "DLA_ACTIVATIONS",
    "MAX_DIM",
    "MAX_BATCH",
    "check_node",
    "dla_precision",
    "dla_batch",
    "node_label",
    "reduce_axes",
]

MAX_DIM = 8192
MAX_BATCH = 4096

CheckFn = Callable[[Node, "RuleContext"], "Refusal | None"]


@dataclass(frozen=True)
class RuleContext:
    """What a check needs besides the node.

    Attributes:
        version: DLA hardware generation (1 Xavier, 2 Orin).
        precision: the DLA precision asked for ("fp16" or "int8").
        folded: ids of Values computable at build time (constants and the outputs of
            shape computations), which TensorRT folds into the layer that reads them.
        opset: the model's default-domain opset.
    """

    version: int
    precision: str = "fp16"
    folded: Collection[int] = frozenset()
    opset: int = 17

    def is_build_const(self, value: Value | None) -> bool:
        return value is not None and (value.is_const or id(value) in self.folded)


@dataclass(frozen=True)
class DlaRule:
    """DLA support of one op type.

    Attributes:
        check: attribute/shape limits; returns None or the problem (without the node label).
        min_version: first DLA generation that runs it.
        precisions: precisions the DLA runs it in; INT8 requests fall back to FP16 otherwise.
        data_inputs: indices of activation inputs (None: all); every other present input
            must be a build-time constant.
        ranks: accepted ranks of activation tensors (inputs and outputs).
        any_output_dtype: outputs need not be floating point (comparisons produce BOOL).
    """

    check: CheckFn | None = None
    min_version: int = 1
    precisions: tuple[str, ...] = ("fp16", "int8")
    data_inputs: tuple[int, ...] | None = None
    ranks: tuple[int, ...] = (4,)
    any_output_dtype: bool = False


# -- helpers ---------------------------------------------------------------------------

def node_label(node: Node) -> str:
    """``Conv 'stage3/conv2'``: op type and the first original ONNX name."""
    return f"{node.op_type} '{node.origin[0]}'"


def dla_batch(shape: tuple[int, ...]) -> int:
    """DLA's batch of a static shape: the product of the dims in front of C, H, W (the first
    dim of a rank-1/2 tensor)."""
    outer = shape[:-3] if len(shape) >= 3 else shape[:1]
    return int(np.prod(outer, dtype=np.int64)) if outer else 1


def _pair(values: list[int] | tuple[int, ...] | None, default: int) -> tuple[int, int]:
    values = list(values) if values is not None else [default, default]
    return int(values[0]), int(values[1])


def _hw(value: Value) -> tuple[int, int]:
    return int(value.shape[-2]), int(value.shape[-1])


def _conv_pads(node: Node, kernel: tuple[int, int], strides: tuple[int, int], dilations: tuple[int, int]) -> list[int]:
    """[top, left, bottom, right] after resolving auto_pad against the static input shape."""
    begin, end = resolve_pads(node.attrs.get("auto_pad", "NOTSET"), node.attrs.get("pads"), _hw(node.inputs[0]), kernel, strides, dilations)
    return [*begin, *end]


def _dims(values: tuple[int, ...] | list[int]) -> str:
    return "x".join(str(v) for v in values)


def _beyond(what: str, values: tuple[int, int], limit: int) -> Refusal | None:
    """The refusal when a window attribute (kernel, stride, ...) is over a DLA limit."""
    return Refusal(f"dla.{what}_limit", f"{what} {_dims(values)} exceeds DLA limit {limit}") if max(values) > limit else None


# -- convolution family ----------------------------------------------------------------

def _check_conv(node: Node, ctx: RuleContext) -> Refusal | None:
    weight = node.inputs[1]
    if weight.rank != 4:
        return Refusal("dla.conv_rank", f"{weight.rank - 2}-D convolution; DLA supports 2-D only")
    kernel = (int(weight.shape[2]), int(weight.shape[3]))
    strides = _pair(node.attrs.get("strides"), 1)
    dilations = _pair(node.attrs.get("dilations"), 1)
    reason = _beyond("kernel", kernel, 32) or _beyond("stride", strides, 8) or _beyond("dilation", dilations, 32)
    if reason:
        return reason
    pads = _conv_pads(node, kernel, strides, dilations)
    if max(pads) > 31:
        return Refusal("dla.padding_limit", f"padding {max(pads)} exceeds DLA limit 31")
    for axis, name in enumerate("HW"):
        pad = max(pads[axis], pads[axis + 2])
        if pad >= kernel[axis]:
            return Refusal("dla.padding_kernel", f"padding {pad} is not smaller than the kernel ({kernel[axis]}) along {name}")
    maps = int(weight.shape[0])
    if maps > MAX_DIM:
        return Refusal("dla.output_maps", f"{maps} output maps exceed DLA limit {MAX_DIM}")
    groups = int(node.attrs.get("group", 1))
    if groups > MAX_DIM:
        return Refusal("dla.groups_limit", f"{groups} groups exceed DLA limit {MAX_DIM}")
    return None


def _deconv_dims_ok(a: int, b: int) -> bool:
    """Both in [1, 32], or one of 64/96/128 with the other 1 (1x64 ok, 64x64 not)."""
    return (a <= 32 and b <= 32) or (a in (64, 96, 128) and b == 1) or (b in (64, 96, 128) and a == 1)


def _check_deconv(node: Node, ctx: RuleContext) -> Refusal | None:
    weight = node.inputs[1]
    if weight.rank != 4:
        return Refusal("dla.conv_rank", f"{weight.rank - 2}-D deconvolution; DLA supports 2-D only")
    kernel = (int(weight.shape[2]), int(weight.shape[3]))
    if not _deconv_dims_ok(*kernel):
        return Refusal("dla.kernel_limit", f"kernel {_dims(kernel)} outside DLA limits (each 1..32, or 64/96/128 x 1)")
    strides = _pair(node.attrs.get("strides"), 1)
    if not _deconv_dims_ok(*strides):
        return Refusal("dla.stride_limit", f"stride {_dims(strides)} outside DLA limits (each 1..32, or 64/96/128 x 1)")
    if ctx.version >= 2:
        for what, dims in (("kernel", kernel), ("stride", strides)):
            if dims[0] == dims[1] and 23 <= dims[0] <= 32:
                return Refusal("dla.orin_square_disabled", f"square {what} {_dims(dims)} in 23..32 is disabled on Orin's DLA (unverified)")
    if node.attrs.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        return Refusal("dla.deconv_padding", f"auto_pad {node.attrs['auto_pad']} pads the output; DLA deconvolution needs padding 0")
    if any(int(p) for p in node.attrs.get("pads", [])) or any(int(p) for p in node.attrs.get("output_padding", [])):
        return Refusal("dla.deconv_padding", "padding must be 0 on DLA deconvolution")
    if int(node.attrs.get("group", 1)) != 1:
        return Refusal("dla.deconv_group", f"group {node.attrs['group']}; DLA deconvolution needs group 1")
    if _pair(node.attrs.get("dilations"), 1) != (1, 1):
        return Refusal("dla.deconv_dilation", "dilation must be 1 on DLA deconvolution")
    maps = int(weight.shape[1])  # group is 1 here
    if maps > MAX_DIM:
        return Refusal("dla.output_maps", f"{maps} output maps exceed DLA limit {MAX_DIM}")
    if int(weight.shape[0]) > MAX_DIM:
        return Refusal("dla.input_channels", f"{weight.shape[0]} input channels exceed DLA limit {MAX_DIM} (unverified)")
    return None


def _check_clip_max(upper: float | None) -> Refusal | None:
    if upper is not None and np.isfinite(upper) and not 1 <= upper <= 127:
        return Refusal("dla.clip_range", f"Clip max {upper:g} outside [1, 127] (reported DLA limit, unverified)")
    return None


def _check_activation(node: Node) -> Refusal | None:
    activation = node.attrs.get("activation", "")
    if activation not in DLA_ACTIVATIONS:
        return Refusal("dla.activation_not_exposed", f"fused activation {activation} is not exposed to the DLA by TensorRT")
    if activation == "Clip":
        params = list(node.attrs.get("activation_params", []))
        return _check_clip_max(float(params[1]) if len(params) > 1 else None)
    return None


def _check_fused_conv(node: Node, ctx: RuleContext) -> Refusal | None:
    return _check_conv(node, ctx) or _check_activation(node)


def _check_fused_deconv(node: Node, ctx: RuleContext) -> Refusal | None:
    return _check_deconv(node, ctx) or _check_activation(node)


def _check_fused_scale(node: Node, ctx: RuleContext) -> Refusal | None:
    return _check_activation(node)


def _check_fully_connected(node: Node, ctx: RuleContext) -> Refusal | None:
    weight = node.inputs[1]
    if not ctx.is_build_const(weight):
        return Refusal("dla.runtime_weights", f"{node.op_type} with two runtime inputs is not supported on DLA (only constant weights)")
    if node.op_type in ("Gemm", "FusedGemm") and int(node.attrs.get("transA", 0)):
        return Refusal("dla.trans_a", "transA=1 is not supported on DLA")
    return _check_activation(node) if node.op_type == "FusedGemm" else None


# -- activations and elementwise -------------------------------------------------------

def _check_clip(node: Node, ctx: RuleContext) -> Refusal | None:
    if ctx.opset < 11:
        return _check_clip_max(node.attrs.get("max"))
    upper = node.input(2)
    if upper is None:
        return None
    if upper.const is None:
        return Refusal("dla.clip_bounds_runtime", "Clip bounds must be build-time constants")
    return _check_clip_max(float(np.asarray(upper.const).reshape(-1)[0]))


def _broadcast_ok(shape: tuple[int, ...], out: tuple[int, ...]) -> bool:
    """Only NCHW (full), NC11 and N111 operands broadcast on the DLA (unverified)."""
    shape = (1,) * (4 - len(shape)) + tuple(shape)
    if shape[0] not in (1, out[0]):
        return False
    if tuple(shape[1:]) == tuple(out[1:]):
        return True
    return shape[2:] == (1, 1) and shape[1] in (1, out[1])


def _check_elementwise(node: Node, ctx: RuleContext) -> Refusal | None:
    if len(node.inputs) != 2:
        return Refusal("dla.operand_count", f"{len(node.inputs)} operands; DLA elementwise layers take 2")
    out = tuple(node.outputs[0].shape)
    for value in node.inputs:
        if value.shape is not None and not _broadcast_ok(tuple(value.shape), out):
            return Refusal(
                "dla.broadcast",
                f"broadcast of '{value.name}' [{_dims(value.shape)}] to [{_dims(out)}] is not supported "
                "(DLA broadcasts only NCHW, NC11, N111; unverified)",
            )
    return None


def _check_comparison(node: Node, ctx: RuleContext) -> Refusal | None:
    if ctx.precision != "int8":
        return Refusal("dla.needs_int8", f"{node.op_type} runs on the DLA in INT8 only (build with --int8)")
    return _check_elementwise(node, ctx)


def _check_prelu(node: Node, ctx: RuleContext) -> Refusal | None:
    slope = node.inputs[1]
    if slope.shape is not None and not _broadcast_ok(tuple(slope.shape), tuple(node.outputs[0].shape)):
        return Refusal("dla.prelu_slope", f"slope shape [{_dims(slope.shape)}] is not per-tensor or per-channel")
    return None


def _check_lrn(node: Node, ctx: RuleContext) -> Refusal | None:
    size = int(node.attrs["size"])
    if size not in (3, 5, 7, 9):
        return Refusal("dla.lrn_window", f"window {size}; DLA LRN supports 3, 5, 7 or 9")
    return None


# -- pooling and reduction -------------------------------------------------------------

def _check_pool(node: Node, ctx: RuleContext) -> Refusal | None:
    window = _pair(node.attrs.get("kernel_shape"), 1)
    strides = _pair(node.attrs.get("strides"), 1)
    reason = _beyond("window", window, 8) or _beyond("stride", strides, 16)
    if reason:
        return reason
    pads = _conv_pads(node, window, strides, (1, 1))
    if max(pads, default=0) > 7:
        return Refusal("dla.padding_limit", f"padding {max(pads)} exceeds DLA limit 7")
    if _pair(node.attrs.get("dilations"), 1) != (1, 1):
        return Refusal("dla.pool_dilation", "dilated pooling is not supported on DLA")
    if len(node.outputs) > 1 and not node.outputs[1].meta.get("omitted"):
        return Refusal("dla.pool_indices", "the indices output is not supported on DLA")
    return None


def reduce_axes(node: Node) -> list[int] | None:
    """Reduced axes of a rank-4 Reduce* node (attribute or constant input), mod 4; None when
    it reduces nothing (empty axes with noop_with_empty_axes)."""
    axes = node.attrs.get("axes")
    if axes is None and node.input(1) is not None and node.inputs[1].const is not None:
        axes = node.inputs[1].const.reshape(-1).tolist()
    if axes is None:
        return None if int(node.attrs.get("noop_with_empty_axes", 0)) else [0, 1, 2, 3]
    return [int(a) % 4 for a in axes]


def _check_reduce_max(node: Node, ctx: RuleContext) -> Refusal | None:
    axes = reduce_axes(node)
    if axes is not None and 0 in axes:
        return Refusal("dla.batch_axis", "reduces over the batch dimension; DLA reduces only over C, H, W")
    return None


# -- shuffles, slices, concat, resize, softmax ------------------------------------------

_RESHAPES = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})


def _check_reshape_neighbours(node: Node, ctx: RuleContext) -> Refusal | None:
    """TensorRT 10.3 (JetPack 6) log: reshape layers next to Slice or Concat split the subgraph."""
    if ctx.version < 2:
        return None
    neighbours = [v.producer for v in node.inputs[:1] if v is not None and v.producer is not None]
    neighbours += [c for v in node.outputs for c in v.consumers]
    for other in neighbours:
        if other.op_type in ("Slice", "Split", "Concat"):
            return Refusal("dla.reshape_next_to_slice_concat", f"this DLA version does not run a reshape directly connected to {other.op_type} '{other.origin[0]}'")
    return None


def _check_reshape(node: Node, ctx: RuleContext) -> Refusal | None:
    before, after = node.inputs[0].shape, node.outputs[0].shape
    if before[0] != after[0]:
        return Refusal("dla.batch_axis", f"reshape [{_dims(before)}] -> [{_dims(after)}] involves the batch dimension")
    return _check_reshape_neighbours(node, ctx)


def _check_transpose(node: Node, ctx: RuleContext) -> Refusal | None:
    perm = [int(p) for p in node.attrs.get("perm", [3, 2, 1, 0])]
    if perm[0] != 0:
        return Refusal("dla.batch_axis", f"perm {perm} moves the batch dimension")
    return None


def _check_slice(node: Node, ctx: RuleContext) -> Refusal | None:
    if ctx.opset < 10:
        axes = node.attrs.get("axes", list(range(len(node.attrs.get("starts", [])))))
        steps: list[int] = []
    else:
        axes_value, steps_value = node.input(3), node.input(4)
        starts = node.inputs[1]
        axes = axes_value.const.reshape(-1).tolist() if axes_value is not None and axes_value.const is not None else list(range(starts.shape[0]))
        steps = steps_value.const.reshape(-1).tolist() if steps_value is not None and steps_value.const is not None else []
    if any(int(s) != 1 for s in steps):
        return Refusal("dla.slice_stride", f"steps {[int(s) for s in steps]}; DLA slices need stride 1")
    if any(int(a) % 4 == 0 for a in axes):
        return Refusal("dla.batch_axis", "slices the batch dimension")
    return None


def _check_split(node: Node, ctx: RuleContext) -> Refusal | None:
    if int(node.attrs.get("axis", 0)) % 4 == 0:
        return Refusal("dla.batch_axis", "splits the batch dimension")
    return None


def _check_concat(node: Node, ctx: RuleContext) -> Refusal | None:
    axis = int(node.attrs["axis"]) % 4
    if axis != 1:
        return Refusal("dla.concat_axis", f"concatenation on axis {node.attrs['axis']}; DLA concatenates only on the channel axis")
    if len(node.inputs) < 2:
        return Refusal("dla.operand_count", "DLA concatenation needs at least 2 inputs")
    return None


_NEAREST_MODES = {("asymmetric", "floor"), ("half_pixel", "round_prefer_floor"), ("half_pixel", "round_prefer_ceil")}


def _check_resize(node: Node, ctx: RuleContext) -> Refusal | None:
    if node.op_type == "Resize" and ctx.opset >= 11 and node.input(3) is not None and node.inputs[3].shape != (0,):
        return Refusal("dla.resize_sizes", "uses explicit output sizes; DLA needs constant scales")
    before, after = node.inputs[0].shape, node.outputs[0].shape
    if before[0] != after[0] or before[1] != after[1]:
        return Refusal("dla.resize_axes", "scales N or C; DLA resizes only H and W")
    scales = []
    for axis in (2, 3):
        ratio = after[axis] / before[axis]
        if ratio != int(ratio):
            return Refusal("dla.resize_scale", f"scale {ratio:g} along {'HW'[axis - 2]} is not an integer")
        scales.append(int(ratio))
    mode = node.attrs.get("mode", "nearest")
    legacy = node.op_type == "Upsample" or ctx.opset < 11
    coords = "asymmetric" if legacy else node.attrs.get("coordinate_transformation_mode", "half_pixel")
    if int(node.attrs.get("antialias", 0)):
        return Refusal("dla.resize_antialias", "antialiasing is not supported on DLA")
    if mode == "nearest":
        rounding = "floor" if legacy else node.attrs.get("nearest_mode", "round_prefer_floor")
        if (coords, rounding) not in _NEAREST_MODES:
            return Refusal("dla.resize_coordinates", f"nearest with {coords} coordinates and {rounding} rounding is not supported on DLA")
        if max(scales) > 32:
            return Refusal("dla.resize_scale", f"nearest scale {max(scales)} exceeds DLA limit 32")
        return None
    if mode == "linear":
        if ctx.version < 2:
            return Refusal("dla.resize_mode", "uses bilinear mode; the Xavier DLA resizes with nearest only")
        if coords != "half_pixel":
            return Refusal("dla.resize_coordinates", f"bilinear with {coords} coordinates; DLA supports half_pixel only")
        if max(scales) > 4:
            return Refusal("dla.resize_bilinear_scale", f"bilinear scale {max(scales)} exceeds DLA limit 4")
        return None
    return Refusal("dla.resize_mode", f"uses {mode} mode; DLA resizes with nearest or bilinear only")


def _check_softmax(node: Node, ctx: RuleContext) -> Refusal | None:
    shape = node.inputs[0].shape
    axis = int(node.attrs.get("axis", -1 if ctx.opset >= 13 else 1)) % 4
    if axis == 0:
        return Refusal("dla.batch_axis", "softmax over the batch dimension")
    others = [shape[a] for a in (1, 2, 3) if a != axis]
    limit = MAX_DIM if all(d == 1 for d in others) else 1024
    if shape[axis] > limit:
        return Refusal("dla.softmax_axis", f"softmax axis size {shape[axis]} exceeds DLA limit {limit}")
    return None


# -- the table -------------------------------------------------------------------------

_ELEMENTWISE = DlaRule(_check_elementwise, ranks=(4,))

DLA_RULES: dict[str, DlaRule] = {
    # convolution and fully connected (TensorRT lowers FC with constant weights to 1x1 conv)
    "Conv": DlaRule(_check_conv, data_inputs=(0,)),
    "FusedConv": DlaRule(_check_fused_conv, data_inputs=(0, 3)),
    "ConvTranspose": DlaRule(_check_deconv, data_inputs=(0,)),
    "FusedConvTranspose": DlaRule(_check_fused_deconv, data_inputs=(0, 3)),
    "Gemm": DlaRule(_check_fully_connected, data_inputs=(0, 1), ranks=(2,)),
    "MatMul": DlaRule(_check_fully_connected, data_inputs=(0, 1), ranks=(2,)),
    "FusedGemm": DlaRule(_check_fully_connected, data_inputs=(0, 1), ranks=(2,)),
    # activations
    "Relu": DlaRule(),
    "Sigmoid": DlaRule(),
    "Tanh": DlaRule(),
    "LeakyRelu": DlaRule(),
    "Clip": DlaRule(_check_clip, data_inputs=(0,)),
    "SiLU": DlaRule(),
    "PRelu": DlaRule(_check_prelu, data_inputs=(0,)),
    # elementwise; Div and Pow only in newer TensorRT on Orin
    "Add": _ELEMENTWISE,
    "Sub": _ELEMENTWISE,
    "Mul": _ELEMENTWISE,
    "Max": _ELEMENTWISE,
    "Min": _ELEMENTWISE,
    "Div": DlaRule(_check_elementwise, min_version=2),
    "Pow": DlaRule(_check_elementwise, min_version=2, data_inputs=(0,)),
    "Equal": DlaRule(_check_comparison, min_version=2, precisions=("int8",), any_output_dtype=True),
    "Greater": DlaRule(_check_comparison, min_version=2, precisions=("int8",), any_output_dtype=True),
    "Less": DlaRule(_check_comparison, min_version=2, precisions=("int8",), any_output_dtype=True),
    "Abs": DlaRule(precisions=("fp16",)),
    # scale, normalization, pooling, reduction
    "BatchNormalization": DlaRule(data_inputs=(0,)),
    "FusedBatchNormalization": DlaRule(_check_fused_scale, data_inputs=(0,)),
    "LRN": DlaRule(_check_lrn, precisions=("fp16",)),
    "MaxPool": DlaRule(_check_pool),
    "AveragePool": DlaRule(_check_pool),
    "GlobalMaxPool": DlaRule(min_version=2, precisions=("fp16",)),
    "ReduceMax": DlaRule(_check_reduce_max, min_version=2, precisions=("fp16",), data_inputs=(0,)),
    # data movement
    "Concat": DlaRule(_check_concat),
    "Resize": DlaRule(_check_resize, data_inputs=(0,)),
    "Upsample": DlaRule(_check_resize, data_inputs=(0,)),
    "Reshape": DlaRule(_check_reshape, data_inputs=(0,)),
    "Flatten": DlaRule(_check_reshape),
    "Squeeze": DlaRule(_check_reshape, data_inputs=(0,)),
    "Unsqueeze": DlaRule(_check_reshape, data_inputs=(0,)),
    "Transpose": DlaRule(_check_transpose),
    "Slice": DlaRule(_check_slice, data_inputs=(0,), precisions=("fp16",)),
    "Split": DlaRule(_check_split, data_inputs=(0,), precisions=("fp16",)),
    "Softmax": DlaRule(_check_softmax, min_version=2, precisions=("fp16",)),
    # no-ops TensorRT removes
    "Identity": DlaRule(ranks=(1, 2, 3, 4, 5)),
    "Dropout": DlaRule(ranks=(1, 2, 3, 4, 5), data_inputs=(0,)),
}
"""Op type -> DLA rule. Ops absent here run on the GPU (reason from ``GPU_ONLY`` or generic)."""

_RECIPE = "not supported on DLA (NVIDIA publishes rewrites into DLA layers)"
_NOT_EXPOSED = "not exposed to the DLA by TensorRT"

GPU_ONLY: dict[str, str] = {
    "GlobalAveragePool": "TensorRT imports it as a mean Reduce, which the DLA lacks",
    "ReduceMean": f"{_NOT_EXPOSED} (the DLA reduces with MAX only)",
    "ReduceSum": f"{_NOT_EXPOSED} (the DLA reduces with MAX only)",
    "ReduceMin": f"{_NOT_EXPOSED} (the DLA reduces with MAX only)",
    "ReduceProd": f"{_NOT_EXPOSED} (the DLA reduces with MAX only)",
    "ReduceL2": f"{_NOT_EXPOSED} (the DLA reduces with MAX only)",
    "QuantizeLinear": "explicit quantization (Q/DQ) is not supported on DLA; use INT8 calibration instead",
    "DequantizeLinear": "explicit quantization (Q/DQ) is not supported on DLA; use INT8 calibration instead",
    "Attention": "attention (MatMul of two runtime tensors + Softmax) runs on the GPU only",
    "ChannelShuffle": "a channel shuffle reshapes its input to one more dim (5 dims for images); DLA shuffles take 4-D tensors only",
    "LayerNormalization": "normalization layers run on the GPU only",
    "GroupNormalization": "normalization layers run on the GPU only",
    "InstanceNormalization": "normalization layers run on the GPU only",
    "Gelu": _NOT_EXPOSED,
    "HardSigmoid": _NOT_EXPOSED,
    "HardSwish": _NOT_EXPOSED,
    "Elu": _NOT_EXPOSED,
    "Selu": _NOT_EXPOSED,
    "Mish": _NOT_EXPOSED,
    "Softplus": _NOT_EXPOSED,
    "Sin": "TensorRT's DLA unary layer supports Abs only (Sin via DRIVE OS TensorRT 8.6.12)",
    "Cos": "TensorRT's DLA unary layer supports Abs only (Cos via DRIVE OS TensorRT 8.6.12)",
    "Atanh": "TensorRT's DLA unary layer supports Abs only (Atanh via DRIVE OS TensorRT 8.6.12)",
    "Exp": "TensorRT's DLA unary layer supports Abs only",
    "Log": "TensorRT's DLA unary layer supports Abs only",
    "Sqrt": "TensorRT's DLA unary layer supports Abs only",
    "Reciprocal": "TensorRT's DLA unary layer supports Abs only",
    "Floor": "TensorRT's DLA unary layer supports Abs only",
    "Ceil": "TensorRT's DLA unary layer supports Abs only",
    "Round": "TensorRT's DLA unary layer supports Abs only",
    "Erf": "TensorRT's DLA unary layer supports Abs only",
    "TopK": "runs on the GPU only",
    "NonMaxSuppression": "runs on the GPU only",
    "ArgMax": "runs on the GPU only",
    "ArgMin": "runs on the GPU only",
    "Cast": "runs on the GPU only (DLA computes in FP16/INT8)",
    **{op: _RECIPE for op in (
        "Gather", "GatherElements", "GatherND", "Scatter", "ScatterElements", "ScatterND", "Where", "Neg",
        "Not", "And", "Or", "Xor", "DepthToSpace", "SpaceToDepth", "GRU", "LSTM", "RNN", "CumSum",
    )},
}
"""Op type -> why TensorRT keeps it off the DLA (dla.md section 2)."""

GPU_ONLY_CODES: dict[str, str] = {
    "GlobalAveragePool": "dla.global_average_pool",
    "ReduceMean": "dla.reduce_mean",
    "QuantizeLinear": "dla.qdq",
    "DequantizeLinear": "dla.qdq",
    **{op: "dla.not_exposed" for op, why in GPU_ONLY.items() if why == _NOT_EXPOSED},
}
"""Refusal codes of the ``GPU_ONLY`` ops a model change can fix; the others are ``dla.gpu_only``."""


def check_node(node: Node, ctx: RuleContext) -> Refusal | None:
    """None when ``node`` can run on the DLA of ``ctx.version``, else the refusal; its detail
    names the layer ("Conv 'stage3/conv2': kernel 35x35 exceeds DLA limit 32")."""
    problem = _problem(node, ctx)
    return None if problem is None else Refusal(problem.code, f"{node_label(node)}: {problem.detail}")


def _problem(node: Node, ctx: RuleContext) -> Refusal | None:
    if standard_domain(node.domain) not in ("", EDGETRT_DOMAIN):
        return Refusal("dla.plugin", f"custom op of domain '{node.domain}' (a plugin) runs on the GPU only")
    rule = DLA_RULES.get(node.op_type)
    if rule is None:
        if node.op_type not in GPU_ONLY:
            return Refusal("dla.no_implementation", "has no DLA implementation in TensorRT")
        return Refusal(GPU_ONLY_CODES.get(node.op_type, "dla.gpu_only"), GPU_ONLY[node.op_type])
    if ctx.version < rule.min_version:
        return Refusal("dla.version", f"not supported on DLA version {ctx.version} (Xavier); needs Orin's DLA")
    present = [(i, v) for i, v in enumerate(node.inputs) if v is not None]
    data = [v for i, v in present if rule.data_inputs is None or i in rule.data_inputs]
    for index, value in present:
        if rule.data_inputs is not None and index not in rule.data_inputs and not ctx.is_build_const(value):
            return Refusal("dla.runtime_input", f"input {index} ('{value.name}') must be a build-time constant")
    data = [v for v in data if not ctx.is_build_const(v)]
    outputs = [v for v in node.outputs if not v.meta.get("omitted")]
    for value in data + ([] if rule.any_output_dtype else outputs):
        if value.dtype is not None and not is_float(value.dtype):
            return Refusal("dla.dtype", f"tensor '{value.name}' is {value.dtype.name}; DLA computes in FP16/INT8 only")
    for value in data + outputs:
        problem = _check_tensor(value, rule.ranks)
        if problem:
            return problem
    return rule.check(node, ctx) if rule.check is not None else None


def _check_tensor(value: Value, ranks: tuple[int, ...]) -> Refusal | None:
    """Static shape, accepted rank, C/H/W <= 8192 and batch (leading dims) <= 4096."""
    if value.shape is None or not value.is_static:
        dims = "?" if value.shape is None else _dims(tuple("?" if not isinstance(d, int) else d for d in value.shape))
        return Refusal("dla.dynamic_shape", f"tensor '{value.name}' has dynamic shape [{dims}]; DLA needs static shapes (fix them with --shapes)")
    if len(value.shape) not in ranks:
        want = " or ".join(f"{r}-D" for r in ranks)
        return Refusal("dla.rank", f"tensor '{value.name}' has rank {len(value.shape)}; this DLA layer needs {want} tensors")
    shape = tuple(int(d) for d in value.shape)
    inner = shape[-3:] if len(shape) >= 3 else shape[1:]
    for size in inner:
        if size > MAX_DIM:
            return Refusal("dla.dim_limit", f"tensor '{value.name}' [{_dims(shape)}]: dimension {size} exceeds DLA limit {MAX_DIM}")
    batch = dla_batch(shape)
    if batch > MAX_BATCH:
        return Refusal("dla.batch_limit", f"tensor '{value.name}' [{_dims(shape)}]: batch {batch} exceeds DLA limit {MAX_BATCH}")
    return None


def dla_precision(node: Node, requested: str) -> str:
    """Precision the DLA runs ``node`` in: INT8 when asked and supported, else FP16."""
    rule = DLA_RULES.get(node.op_type)
    if requested == "int8" and rule is not None and "int8" in rule.precisions:
        return "int8"
    return "fp16"
