"""CUDA builders of the convolutions and pools: Conv / edgetrt::FusedConv (bias, residual and
activation fused; tactics "direct" and "igemm", and cuDNN's), MaxPool and AveragePool, and the
channels-last (NHWC) forms of FusedConv (cuDNN, and the direct kernel for depthwise-like
convs) and the pools. 1-D windows run as
2-D ones of height 1. Window geometry (pads, auto_pad, ceil_mode) is resolved by the CPU
kernels' own resolver, so both backends agree on output sizes."""

from __future__ import annotations

import ctypes
import math

import numpy as np

from edge.ir import EDGETRT_DOMAIN, Node
from edge.ir.layout import is_channels_last, to_channels_first
from edge.kernels.backend import StepSpec
from edge.kernels.cpu.nn import _window as resolve_window
from edge.kernels.cuda import cudnn_conv, cudnn_graphs
from edge.kernels.cuda.launch import BLOCK, PRECISIONS, Body, Step, activation_code, float_suffix, grid_1d, static_refusal
from edge.kernels.cuda.sources import TacticSource, add_source, build_tactic, family_tactics
from edge.kernels.registry import register
from edge.kernels.tactics import Tactic
from edge.refusal import Refusal

__all__ = ["Conv2d", "Pool2d", "channels_last_convs", "conv_geometry", "conv_grid", "conv_tactics", "window_refusal"]

FLOATS = (np.float32, np.float16)
IGEMM_TILE = 64
"""Output channels and positions per block of the implicit-GEMM kernel (CONV_BM/CONV_BN)."""


class Conv2d(ctypes.Structure):
    """``struct Conv2d`` of conv.cuh."""

    _fields_ = [(name, ctypes.c_int32) for name in "n c h w m oh ow kh kw sh sw ph pw dh dw groups act".split()] + [
        ("p0", ctypes.c_float),
        ("p1", ctypes.c_float),
    ]


class Pool2d(ctypes.Structure):
    """``struct Pool2d`` of pool.cu."""

    _fields_ = [(name, ctypes.c_int32) for name in "h w oh ow kh kw sh sw dh dw ph pw extent_h extent_w is_max count_include_pad".split()]


def _as_2d(values: tuple[int, ...], fill: int) -> tuple[int, int]:
    """A 1-D window parameter as the 2-D (height, width) the kernels take."""
    return (fill, values[0]) if len(values) == 1 else (values[0], values[1])


def window_refusal(node: Node) -> Refusal | None:
    """Refusal of a window op the kernels cannot take: dynamic shapes, non-float data, not 1-D or 2-D."""
    refusal = static_refusal(node, FLOATS)
    if refusal is None and len(node.inputs[0].shape) not in (3, 4):
        return Refusal("cuda.rank", f"{node.op_type} '{node.name}': only 1-D and 2-D windows run on the cuda backend")
    return refusal


def conv_geometry(node: Node, opset: int, x_shape: tuple[int, ...], w_shape: tuple[int, ...], activation: str = "", params=()) -> Conv2d:
    """The kernel's geometry struct for a (1-D or 2-D) convolution node (NCHW sizes, also
    of a channels-last one)."""
    if is_channels_last(node):
        x_shape = to_channels_first(x_shape)
    kernel = tuple(node.attrs.get("kernel_shape") or w_shape[2:])
    window = resolve_window(node.attrs, tuple(x_shape[2:]), kernel)
    (h, w), (oh, ow) = _as_2d(tuple(x_shape[2:]), 1), _as_2d(window.out, 1)
    (kh, kw), (sh, sw) = _as_2d(kernel, 1), _as_2d(window.strides, 1)
    (ph, pw), (dh, dw) = _as_2d(window.pad_begin, 0), _as_2d(window.dilations, 1)
    act, p0, p1 = activation_code(activation, params)
    return Conv2d(x_shape[0], x_shape[1], h, w, w_shape[0], oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, node.attrs.get("group", 1), act, p0, p1)


def conv_grid(g: Conv2d, tactic: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(grid, block) of a convolution tactic."""
    if tactic == "igemm":
        positions = g.n * g.oh * g.ow
        per_group = g.m // g.groups
        return (-(-positions // IGEMM_TILE), -(-per_group // IGEMM_TILE), g.groups), (256, 1, 1)
    return grid_1d(g.n * g.m * g.oh * g.ow), (BLOCK, 1, 1)


def nvrtc_conv_candidates(spec: StepSpec) -> list[Tactic]:
    """Both NVRTC kernels; the direct one first for depthwise-like convs (few channels per group),
    the implicit GEMM first otherwise. Channels-last: the direct kernel for depthwise-like
    convs, nothing for the rest (cuDNN's)."""
    x, w = spec.inputs[0].shape, spec.inputs[1].shape
    group = spec.node.attrs.get("group", 1)
    direct_first = w[0] // group < 16 or w[1] * math.prod(w[2:]) < 16
    if is_channels_last(spec.node):  # the direct kernel alone has an NHWC form: offered where it leads
        return [Tactic("direct")] if direct_first else []
    order = ["direct", "igemm"] if direct_first else ["igemm", "direct"]
    return [Tactic(name) for name in order]


def _nvrtc_conv(step: Step, tactic: Tactic, activation: str, params) -> Body:
    dtype = step.input(0).dtype
    g = conv_geometry(step.node, step.spec.opset, tuple(step.input(0).shape), tuple(step.input(1).shape), activation, params)
    layout = "_nhwc" if is_channels_last(step.node) else ""
    fn = step.function("conv", f"conv2d_{tactic.name}{layout}_{float_suffix(dtype)}")
    grid, block = conv_grid(g, tactic.name)

    def body(inputs: list, outputs: list, state) -> None:
        bias = inputs[2] if len(inputs) > 2 else None
        residual = inputs[3] if len(inputs) > 3 else None
        fn(state, grid, block, inputs[0], inputs[1], bias, residual, outputs[0], g)

    return body


def conv_epilogue(node: Node) -> tuple[str, tuple]:
    """(activation, its parameters) fused into a Conv / FusedConv node's epilogue."""
    if node.op_type != "FusedConv":
        return "", ()
    return node.attrs.get("activation", ""), tuple(node.attrs.get("activation_params", ()) or ())


def _spec_geometry(spec: StepSpec) -> Conv2d:
    return conv_geometry(spec.node, spec.opset, tuple(spec.inputs[0].shape), tuple(spec.inputs[1].shape), *conv_epilogue(spec.node))


add_source("conv", TacticSource("nvrtc", nvrtc_conv_candidates, _nvrtc_conv))
add_source("conv", TacticSource("cudnn", lambda spec: cudnn_conv.conv_candidates(spec, _spec_geometry(spec)), cudnn_conv.build_cudnn_conv))
conv_tactics = family_tactics("conv")


def channels_last_convs() -> bool:
    """Whether channels-last convolutions run here (cuDNN serves every one of them)."""
    return cudnn_graphs.available()


def _conv_refusal(node: Node) -> Refusal | None:
    if is_channels_last(node) and not channels_last_convs():
        return Refusal("cuda.layout", f"{node.op_type} '{node.name}': a channels-last convolution needs cuDNN, which is not available")
    return window_refusal(node)


@register("Conv", backend="cuda", precisions=PRECISIONS, supports=window_refusal, tactics=conv_tactics)
@register("FusedConv", backend="cuda", domain=EDGETRT_DOMAIN, precisions=PRECISIONS, supports=_conv_refusal, tactics=conv_tactics)
def conv(step: Step) -> Body:
    """act(Conv(X, W, B) + Z), the activation and residual fused into the epilogue."""
    return build_tactic("conv", step, *conv_epilogue(step.node))


def pool_geometry(node: Node, opset: int, x_shape: tuple[int, ...], is_max: bool) -> Pool2d:
    """The kernel's geometry struct for a (1-D or 2-D) MaxPool/AveragePool node (NCHW sizes,
    also of a channels-last one)."""
    if is_channels_last(node):
        x_shape = to_channels_first(x_shape)
    kernel = tuple(node.attrs["kernel_shape"])
    window = resolve_window(node.attrs, tuple(x_shape[2:]), kernel, bool(node.attrs.get("ceil_mode", 0)))
    (h, w), (oh, ow) = _as_2d(tuple(x_shape[2:]), 1), _as_2d(window.out, 1)
    (kh, kw), (sh, sw) = _as_2d(kernel, 1), _as_2d(window.strides, 1)
    (ph, pw), (dh, dw) = _as_2d(window.pad_begin, 0), _as_2d(window.dilations, 1)
    (eh, ew) = _as_2d(tuple(b + i + e for b, i, e in zip(window.pad_begin, x_shape[2:], window.pad_end)), 1)
    include = int(node.attrs.get("count_include_pad", 0))
    return Pool2d(h, w, oh, ow, kh, kw, sh, sw, dh, dw, ph, pw, eh, ew, int(is_max), include)


def _pool_builder(is_max: bool):
    def build(step: Step) -> Body:
        shape = tuple(step.input(0).shape)
        g = pool_geometry(step.node, step.spec.opset, shape, is_max)
        layout = "nhwc" if is_channels_last(step.node) else "nchw"
        images, channels = shape[0], shape[3] if layout == "nhwc" else shape[1]
        fn = step.function("pool", f"pool2d_{layout}_{float_suffix(step.input(0).dtype)}")
        grid = grid_1d(images * channels * g.oh * g.ow)

        def body(inputs: list, outputs: list, state) -> None:
            fn(state, grid, (BLOCK, 1, 1), inputs[0], outputs[0], ctypes.c_int64(images), ctypes.c_int32(channels), g)

        return body

    return build


def _pool_refusal(node: Node) -> Refusal | None:
    if node.op_type == "MaxPool" and len(node.outputs) > 1:
        return Refusal("cuda.outputs", f"MaxPool '{node.name}': the Indices output runs on the CPU")
    return window_refusal(node)


for _domain in ("", EDGETRT_DOMAIN):  # edgetrt's: over NHWC images (channels_last)
    register("MaxPool", backend="cuda", domain=_domain, precisions=PRECISIONS, supports=_pool_refusal)(_pool_builder(True))
    register("AveragePool", backend="cuda", domain=_domain, precisions=PRECISIONS, supports=_pool_refusal)(_pool_builder(False))
