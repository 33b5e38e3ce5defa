"""Convolutions and pools: Conv, ConvTranspose, Max/Average/Lp pools and their global forms.

All of them walk the kernel window tap by tap: each tap is one strided slice of the input
covering every output pixel at once, so the python loop runs kh·kw times, never per pixel.
Conv is one 2-D BLAS matmul per (batch, group) over a column matrix: 1x1 stride-1 convs use
the input as it is; other convs copy each tap's columns as contiguous runs of flattened,
zero-padded stride-phase images (``_Phases``), or, when outputs are far fewer than inputs,
multiply every tap's weights by the phase images and sum the shifted products instead;
strided copies (im2col) remain for windows where no flat layout fits. Depthwise convs run
all channels' tiny (multiplier x taps) products as one stacked matmul.

Those numpy paths are the reference. When numba is installed (the ``fast`` extra), float32
2-D depthwise convs, MaxPool (without Indices) and AveragePool run the compiled loops of
``edge.kernels.cpu.jit`` instead, one memory pass where numpy needs one per tap, and 2-D
float32 convs gather their columns and write their output (summing tap products, cropping
junk columns, adding bias and residual, applying Relu or Clip) in compiled loops, and 3x3
stride-1 ungrouped convs run as Winograd F(2x2, 3x3) (16 GEMMs over transformed 4x4 tiles,
2.25x fewer multiply-adds; the transforms compiled too); setting the environment variable
``EDGETRT_JIT=0`` keeps every op on numpy.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from edge.kernels.cpu.activations import apply_activation
from edge.kernels.cpu.compiled import compiled as _compiled
from edge.kernels.cpu.gemm import grouped_matmul
from edge.ir.layout import is_channels_last, to_channels_first
from edge.ir.opinfo import resolve_pads
from edge.kernels.backend import StepSpec
from edge.kernels.cpu.precision import HALF_FLOATS, widen_half
from edge.kernels.registry import OpContext, register
from edge.kernels.tactics import Tactic

__all__ = ["CONV_MODES", "conv_tactics"]  # kernels are reached through the registry


def _compiled_2d(x: np.ndarray, kernel: tuple[int, ...]) -> ModuleType | None:
    """The compiled kernels when they cover this input: float32, NCHW, a 2-D window."""
    if x.dtype != np.float32 or len(kernel) != 2:
        return None
    return _compiled()


def _geometry(window: _Window) -> tuple[int, ...]:
    """A 2-D window as the compiled kernels' eight ints: kernel, strides, dilations, top/left pads."""
    return (*window.kernel, *window.strides, *window.dilations, *window.pad_begin)


@dataclass(frozen=True)
class _Window:
    """Geometry of a sliding window over the spatial dims of an (N, C, *spatial) tensor."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pad_begin: tuple[int, ...]
    pad_end: tuple[int, ...]
    out: tuple[int, ...]

    @property
    def taps(self) -> int:
        return math.prod(self.kernel)

    def extent(self, size_in: tuple[int, ...]) -> tuple[int, ...]:
        """Padded length per dim: the declared pads, grown if ceil_mode needs more."""
        return tuple(
            max(b + i + e, (o - 1) * s + (k - 1) * d + 1)
            for i, b, e, o, s, k, d in zip(
                size_in, self.pad_begin, self.pad_end, self.out, self.strides, self.kernel, self.dilations
            )
        )

    def tap_slices(self) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
        """(kernel offset, slice of the padded input that this offset reads for every output)."""
        for offset in itertools.product(*(range(k) for k in self.kernel)):
            yield offset, (slice(None), slice(None)) + tuple(
                slice(k * d, k * d + (o - 1) * s + 1, s)
                for k, d, o, s in zip(offset, self.dilations, self.out, self.strides)
            )


def _window(attrs: dict[str, Any], size_in: tuple[int, ...], kernel: tuple[int, ...], ceil_mode: bool = False) -> _Window:
    """Resolve a node's strides, dilations, pads / auto_pad (and ceil_mode) into output sizes."""
    rank = len(kernel)
    strides = tuple(attrs.get("strides") or (1,) * rank)
    dilations = tuple(attrs.get("dilations") or (1,) * rank)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    begin, end = resolve_pads(auto_pad, attrs.get("pads"), size_in, kernel, strides, dilations)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return _Window(kernel, strides, dilations, begin, end, tuple(-(-i // s) for i, s in zip(size_in, strides)))
    effective = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    out = []
    for i, b, e, k, s in zip(size_in, begin, end, effective, strides):
        span = i + b + e - k
        count = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (count - 1) * s >= i + b:  # a last window starting in the right padding is dropped
            count -= 1
        out.append(count)
    return _Window(kernel, strides, dilations, begin, end, tuple(out))


def _padded(x: np.ndarray, window: _Window, fill: float | int, ctx: OpContext | None = None) -> np.ndarray:
    """``x`` placed into a ``fill``-valued array of the window's padded extent (in the
    context's workspace when given: only the border is filled, the rest is ``x``)."""
    size_in = x.shape[2:]
    extent = window.extent(size_in)
    if extent == size_in and not any(window.pad_begin):
        return x
    shape = x.shape[:2] + extent
    if ctx is None:
        out = np.full(shape, fill, x.dtype)
    else:
        out = ctx.workspace.get("pool-padded", shape, x.dtype)
        for dim, (b, i) in enumerate(zip(window.pad_begin, size_in)):
            skip = (slice(None),) * (dim + 2)
            out[skip + (slice(0, b),)] = fill
            out[skip + (slice(b + i, None),)] = fill
    out[(slice(None), slice(None)) + tuple(slice(b, b + i) for b, i in zip(window.pad_begin, size_in))] = x
    return out


def _kernel_shape(ctx: OpContext, w: np.ndarray) -> tuple[int, ...]:
    return tuple(ctx.attr("kernel_shape") or w.shape[2:])


def _bias(y: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    if b is not None:
        y += b.reshape((-1,) + (1,) * (y.ndim - 2)).astype(y.dtype, copy=False)
    return y


_JUNK_LIMIT = 1.5
"""Most output-grid columns a flat phase layout may compute per real output (see ``_Phases``):
past that the extra GEMM work costs more than the contiguous copies save."""


@dataclass(frozen=True)
class _Phases:
    """The zero-padded input split into stride phases and flattened, so that each conv tap
    reads one contiguous run of every channel's phase image.

    Padded position p of a dim with stride s lands in phase p mod s at index p div s, so tap
    k (dilation d) reads phase (k·d) mod s from index (k·d) div s on, for all outputs at once.
    Flattening each phase image, output pixel o reads index Σ o_i·step_i + ``offsets[t]``
    for tap t: the tap's columns are ``length`` consecutive values, laid out as the output
    ``grid`` (out_0, *sizes[1:]) whose positions past ``out`` are junk, dropped at the end.
    The first dim of the phase images has zero rows to spare for the last tap's run.
    """

    gather: _Window  # the phase images, as the taps of a window of stride size and stride
    offsets: tuple[int, ...]  # per conv tap: where its run starts in its phase image
    phase_of: tuple[int, ...]  # per conv tap: the phase image it reads
    by_phase: tuple[tuple[int, ...], ...]  # per phase image: the conv taps reading it
    grid: tuple[int, ...]
    offset_array: np.ndarray = field(compare=False, repr=False)  # offsets as int64, for the compiled kernels

    @property
    def length(self) -> int:
        return math.prod(self.grid)


def _phases(window: _Window) -> _Phases | None:
    """The flat phase layout of ``window``, or None when a phase image would go unread (a
    strided 1x1 conv) or the junk grid columns would exceed ``_JUNK_LIMIT``."""
    geometry = list(zip(window.kernel, window.dilations, window.strides))
    if any(len({k * d % s for k in range(kernel)}) < s for kernel, d, s in geometry):
        return None
    sizes = [o + (k - 1) * d // s for o, (k, d, s) in zip(window.out, geometry)]
    grid = (window.out[0], *sizes[1:])
    if math.prod(grid) > _JUNK_LIMIT * math.prod(window.out):
        return None
    steps = [math.prod(sizes[i + 1 :]) for i in range(len(sizes))]
    phase_of, offsets = [], []
    for tap in itertools.product(*(range(k) for k in window.kernel)):
        phase = start = 0
        for k, (_, d, s), step in zip(tap, geometry, steps):
            phase = phase * s + k * d % s
            start += k * d // s * step
        phase_of.append(phase)
        offsets.append(start)
    sizes[0] = max(sizes[0], -(-(max(offsets) + math.prod(grid)) // steps[0]))
    rank = len(sizes)
    gather = _Window(window.strides, window.strides, (1,) * rank, window.pad_begin, window.pad_end, tuple(sizes))
    by_phase = tuple(tuple(t for t, p in enumerate(phase_of) if p == phase) for phase in range(gather.taps))
    return _Phases(gather, tuple(offsets), tuple(phase_of), by_phase, grid, np.array(offsets, np.int64))


def _fill_phases(ctx: OpContext, plan: _ConvPlan, x: np.ndarray) -> np.ndarray:
    """(N, G, C/G, phases, flat image) workspace buffer holding ``x``'s zero-padded phase images."""
    n, channels = x.shape[:2]
    layout = plan.phases
    lead = (n, plan.group, channels // plan.group)
    images = ctx.workspace.get("conv-phases", lead + (layout.gather.taps,) + layout.gather.out, x.dtype)
    if plan.compiled is not None:
        planes = images.reshape((n * channels, layout.gather.taps) + layout.gather.out)
        plan.compiled.phase_images(np.ascontiguousarray(x), *layout.gather.strides, *layout.gather.pad_begin, planes)
    else:
        _im2col(x.reshape(lead + x.shape[2:]), layout.gather, images)
    return images.reshape(lead + (layout.gather.taps, -1))


def _grid_view(a: np.ndarray, layout: _Phases, out: tuple[int, ...]) -> np.ndarray:
    """The real outputs in ``a`` (..., grid length, unit-strided): (..., *out), junk left out."""
    return a.reshape(a.shape[:-1] + layout.grid)[(Ellipsis, *(slice(0, o) for o in out))]


@dataclass(frozen=True)
class _ShiftedImages:
    """A 2-D conv's inputs as the compiled GEMM reads its column matrix in place
    (``jit.shifted_images``): per row phase of the stride (``row_phases``, the values of
    kernel row · dilation mod stride) and per kernel column, the zero-padded input shifted and
    subsampled to ``tall`` rows of the output's width. Tap (ky, kx) of output (oy, ox) reads
    row oy + ky·dh div sh, column ox of image (phase of ky, kx): for all outputs in order, one
    contiguous run, so the product writes the output with no junk columns to crop."""

    row_phases: tuple[int, ...]
    tall: int
    phase_array: np.ndarray = field(compare=False, repr=False)  # row_phases as int64

    @property
    def count(self) -> int:
        """Images per input channel."""
        return len(self.row_phases)


def _shifted_images_layout(window: _Window) -> _ShiftedImages:
    """The shifted images a 2-D ``window`` reads: its row phases and how many rows each image has."""
    (kh, _), (sh, _), (dh, _) = window.kernel, window.strides, window.dilations
    row_phases = tuple(sorted({ky * dh % sh for ky in range(kh)}))
    tall = window.out[0] + (kh - 1) * dh // sh
    return _ShiftedImages(row_phases, tall, np.array(row_phases, np.int64))


def _shifted_rows(layout: _ShiftedImages, window: _Window, cg: int) -> np.ndarray:
    """Where row (channel, tap) of a group's column matrix starts in the group's images."""
    (kh, kw), (sh, _), (dh, _) = window.kernel, window.strides, window.dilations
    out_w = window.out[1]
    size = layout.tall * out_w
    images = layout.count * kw
    return np.array(
        [
            ((c * images + layout.row_phases.index(ky * dh % sh) * kw + kx) * size + ky * dh // sh * out_w)
            for c in range(cg)
            for ky in range(kh)
            for kx in range(kw)
        ],
        np.int64,
    )


@dataclass(frozen=True, eq=False)
class _ConvPlan:
    """How one Conv node runs for one pair of input shapes (cached per node, so compared and
    hashed by identity: it keys the node's folded weights, looked up every run).

    ``mode`` is "pointwise" (1x1, stride 1, no pads: the input is the column matrix),
    "shifted" (compiled kernels only: the column matrix read in place from the input's
    shifted images, ``shifted``), "gather" (columns copied as contiguous runs of the flat
    phase images, ``phases``),
    "tap-sum" (each tap's partial products computed over the phase images by one GEMM, then
    summed shifted into the output: cheaper than columns when outputs are far fewer than
    inputs), "im2col" (strided copies, where no flat layout fits) or "winograd" (3x3 stride 1,
    compiled kernels only: see ``_winograd_fits``). ``bias_row``: the bias
    rides in the GEMM as an extra weight column against a row of ones (numpy's gather and
    im2col, whose columns are copied anyway; the compiled depthwise kernel reads that column
    too); otherwise the pass that finishes the output adds it. ``compiled``: the compiled
    kernels module when it covers this conv. ``depthwise``: group == input channels over a
    2-D window. ``rows``: where the compiled GEMM finds each row of a group's column matrix
    (pointwise and shifted modes).
    """

    window: _Window
    group: int
    cg: int
    mg: int
    mode: str
    bias_row: bool
    depthwise: bool
    phases: _Phases | None
    compiled: ModuleType | None
    dtype: np.dtype
    shifted: _ShiftedImages | None = None
    rows: np.ndarray | None = None


CONV_MODES = ("pointwise", "winograd", "tap-sum", "shifted", "gather", "im2col")
"""Every way ``convolve`` can run a conv (see ``_ConvPlan``); each is one of Conv's tactics."""


@dataclass(frozen=True)
class _ConvSetting:
    """What a conv's mode depends on, derived from its attributes and input shapes/dtypes."""

    window: _Window
    group: int
    cg: int
    mg: int
    depthwise: bool
    compiled: ModuleType | None
    dtype: np.dtype
    phases: _Phases | None

    def modes(self, size_in: tuple[int, ...]) -> tuple[str, ...]:
        """The modes that can run this conv, the heuristic's choice first.

        The heuristic: pointwise when the input is the column matrix; Winograd for 3x3
        stride-1 convs with enough channels (``_winograd_fits``); tap-sum when outputs are at
        most half the inputs; the compiled GEMM reading shifted images; else gather or
        im2col copies. A compiled depthwise conv runs one compiled loop whatever the mode,
        so it has only the heuristic's."""
        window, compiled, phases, kernel = self.window, self.compiled, self.phases, self.window.kernel
        applicable = ["im2col"]
        if window.taps == 1 and window.strides == (1,) * len(kernel) and window.out == size_in:
            applicable.append("pointwise")
        if phases is not None:
            applicable += ["gather", "tap-sum"]
        if compiled is not None and not self.depthwise:
            applicable.append("shifted")
            if kernel == (3, 3) and window.strides == (1, 1) and window.dilations == (1, 1) and self.group == 1:
                applicable.append("winograd")
        if "pointwise" in applicable:
            heuristic = "pointwise"
        elif compiled is not None and _winograd_fits(window, self.group, self.cg, self.mg):
            heuristic = "winograd"
        elif phases is not None and 2 * self.mg <= self.cg:
            heuristic = "tap-sum"
        elif "shifted" in applicable:
            heuristic = "shifted"
        else:
            heuristic = "im2col" if phases is None else "gather"
        if compiled is not None and self.depthwise:
            return (heuristic,)
        return (heuristic, *(mode for mode in CONV_MODES if mode in applicable and mode != heuristic))


def _conv_setting(
    attrs: dict[str, Any], x_shape: tuple[int, ...], x_dtype: np.dtype, w_shape: tuple[int, ...], w_dtype: np.dtype
) -> _ConvSetting:
    group = attrs.get("group", 1)
    kernel = tuple(attrs.get("kernel_shape") or w_shape[2:])
    dtype = np.result_type(x_dtype, w_dtype)
    compiled = _compiled() if dtype == x_dtype == np.float32 and len(kernel) == 2 else None
    window = _window(attrs, x_shape[2:], kernel)
    cg, mg = x_shape[1] // group, w_shape[0] // group
    depthwise = cg == 1 and group > 1 and len(kernel) == 2
    return _ConvSetting(window, group, cg, mg, depthwise, compiled, dtype, _phases(window))


def conv_tactics(spec: StepSpec) -> list[Tactic]:
    """Conv's tactics for one step: the modes that can run its shapes, the heuristic's first
    (none when the input's channel and spatial dims or the weight's dims are not all known
    at build time: a model with dynamic height/width picks its mode when it first runs)."""
    x, w = spec.inputs[0], spec.inputs[1]
    if x is None or w is None or x.shape is None or w.shape is None or len(x.shape) < 3:
        return []
    if not all(isinstance(d, int) for d in (*x.shape[1:], *w.shape)):
        return []
    widened = [np.float32 if np.dtype(t.dtype) in HALF_FLOATS else t.dtype for t in (x, w)]  # as ``widen_half`` runs it
    shape = to_channels_first(x.shape) if is_channels_last(spec.node) else tuple(x.shape)  # the kernel runs NCHW
    setting = _conv_setting(spec.node.attrs, shape, widened[0], tuple(w.shape), widened[1])
    return [Tactic(mode) for mode in setting.modes(shape[2:])]


def _conv_plan(ctx: OpContext, x: np.ndarray, w: np.ndarray, has_bias: bool) -> _ConvPlan:
    """The node's plan for these shapes, decided when the node first runs at them: the
    step's tactic when it is one of the modes that can run them, else the heuristic's mode."""
    key = ("conv", x.shape, x.dtype, w.shape, w.dtype, has_bias, ctx.tactic)
    plan = ctx.cache.get(key)
    if plan is None:
        plan = ctx.cache[key] = _new_conv_plan(ctx, x, w, has_bias)
    return plan


def _new_conv_plan(ctx: OpContext, x: np.ndarray, w: np.ndarray, has_bias: bool) -> _ConvPlan:
    setting = _conv_setting(ctx.node.attrs, x.shape, x.dtype, w.shape, w.dtype)
    window, compiled, cg = setting.window, setting.compiled, setting.cg
    modes = setting.modes(x.shape[2:])
    mode = ctx.tactic.name if ctx.tactic is not None and ctx.tactic.name in modes else modes[0]
    phases = setting.phases if mode in ("tap-sum", "gather") else None
    shifted = rows = None
    if mode == "pointwise" and compiled is not None:
        rows = compiled.dense_rows(cg, math.prod(window.out))
    elif mode == "shifted":
        shifted = _shifted_images_layout(window)
        rows = _shifted_rows(shifted, window, cg)
    if compiled is not None:
        bias_row = has_bias and setting.depthwise
    else:
        bias_row = has_bias and mode in ("gather", "im2col")
    return _ConvPlan(
        window, setting.group, cg, setting.mg, mode, bias_row, setting.depthwise, phases, compiled, setting.dtype, shifted, rows
    )


def _conv_weights(ctx: OpContext, plan: _ConvPlan, w: np.ndarray, b: np.ndarray | None) -> tuple[Any, np.ndarray | None]:
    """(W laid out for ``plan.mode``, the bias as (G, M/G) unless it rides in W), cached when W
    and B are constants. W is (G, M/G, rows [+1 bias column]) with rows in (channel, tap)
    order for im2col, (tap, channel) order for gather; for tap-sum one (G, taps·M/G, C/G)
    stack per phase image, in the order of its taps; for winograd (16, M, C), the kernels
    transformed to 4x4 tiles (G g Gᵀ, in float64)."""
    return ctx.from_constants(("conv-weights", plan), (w, b), lambda: _fold_weights(plan, w, b))


def _fold_weights(plan: _ConvPlan, w: np.ndarray, b: np.ndarray | None) -> tuple[Any, np.ndarray | None]:
    dtype = plan.dtype
    bias = None if b is None or plan.bias_row else b.astype(dtype).reshape(plan.group, plan.mg)
    if plan.mode == "winograd":
        tiles = np.einsum("ai,mcij,bj->abmc", _WINOGRAD_G, w.astype(np.float64), _WINOGRAD_G)
        return np.ascontiguousarray(tiles.reshape(16, plan.mg, plan.cg), dtype), bias
    weights = w.astype(dtype, copy=False).reshape(plan.group, plan.mg, plan.cg, plan.window.taps)
    if plan.mode == "tap-sum":
        stacks = tuple(
            np.ascontiguousarray(weights[..., list(members)].transpose(0, 3, 1, 2)).reshape(plan.group, -1, plan.cg)
            for members in plan.phases.by_phase
        )
        return stacks, bias
    if plan.mode == "gather":
        weights = weights.transpose(0, 1, 3, 2)
    weights = weights.reshape(plan.group, plan.mg, -1)
    if plan.bias_row:
        column = b.astype(dtype, copy=False).reshape(plan.group, plan.mg, 1)
        weights = np.concatenate([weights, column], axis=2)
    return np.ascontiguousarray(weights), bias


@register("Conv", tactics=conv_tactics)
@widen_half
def conv(ctx: OpContext, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """N-d grouped convolution (cross-correlation) of (N, C, *S) by (M, C/group, *K)."""
    return convolve(ctx, x, w, b)


def convolve(
    ctx: OpContext,
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    residual: np.ndarray | None = None,
    activation: str = "",
    params: Sequence[float] = (),
) -> np.ndarray:
    """act(Conv(x, w, b) + residual), the activation one of ``ACTIVATIONS`` ("" for none).

    The result goes straight into the planned output buffer when there is one; the column
    matrices live in the context's workspace, reused from run to run. With the compiled
    kernels, a 2-D float32 conv's output is written once: by the GEMM itself, reading its
    columns in place from the input or its shifted images (``jit.gemm_blocks``), or
    transformed back from Winograd tiles, or summed from per-tap products (``jit.winograd_output``,
    ``jit.conv_output``), with the epilogue applied on the way.
    """
    plan = _conv_plan(ctx, x, w, b is not None)
    window, compiled, dtype = plan.window, plan.compiled, plan.dtype
    n, m = x.shape[0], w.shape[0]
    weights, bias = _conv_weights(ctx, plan, w, b)
    y = ctx.output(0, (n, m) + window.out, dtype)
    result, offsets = None, _ONE_TAP  # products still to be summed and cropped into y, per tap
    fuse = (  # whether the compiled passes can apply the whole epilogue
        compiled is not None
        and activation in compiled.ACTIVATION_CODES
        and (residual is None or (residual.shape == y.shape and residual.dtype == y.dtype))
    )
    epilogue = (residual, activation, params) if fuse else (None, "", ())  # what the compiled passes apply
    if plan.depthwise and compiled is not None:
        compiled.depthwise_conv2d(np.ascontiguousarray(x), weights.reshape(m, -1), *_geometry(window), y)
    elif plan.rows is not None and compiled is not None:
        # the GEMM reads its columns in place, writes y and applies the epilogue to each tile
        if plan.shifted is None:
            sources = np.ascontiguousarray(x).reshape(n, plan.group, -1)
        else:
            sources = _shifted_images(ctx, plan, x)
        grid = y.reshape(n, plan.group, plan.mg, -1)
        compiled.gemm_blocks(weights, sources, plan.rows, *_epilogue_arguments(compiled, grid, bias, *epilogue), grid)
        return y if fuse else _residual_and_activation(y, residual, activation, params)
    elif plan.mode == "tap-sum" and compiled is not None and len(plan.phases.by_phase) == 1:
        result, offsets = _partial_products(ctx, plan, x, weights[0]), plan.phases.offset_array
    elif plan.mode == "winograd":
        result = _winograd_products(ctx, plan, x, weights)
    else:
        junk = plan.phases is not None and plan.phases.grid != window.out
        grid = (
            ctx.workspace.get("conv-products", (n, plan.group, plan.mg, plan.phases.length), dtype)
            if junk
            else y.reshape(n, plan.group, plan.mg, -1)
        )
        if plan.mode == "tap-sum":
            _tap_sum(ctx, plan, x, weights, grid)
        elif plan.cg == 1 and plan.group > 1:
            # depthwise: one tiny (multiplier x taps) product per channel; numpy's stacked
            # matmul runs these as a batch, faster than a python loop or per-tap multiply-adds
            cols = _columns(ctx, plan, x)
            for index in range(n):
                np.matmul(weights, cols[index], out=grid[index])
        else:
            grouped_matmul(weights, _columns(ctx, plan, x), grid)
        if junk:
            result = grid.reshape(n * plan.group, plan.mg, -1)
    # one compiled pass finishes y: sums and crops the products, adds bias and residual, activates
    if compiled is not None and (result is not None or bias is not None or (fuse and (residual is not None or activation))):
        _conv_output(compiled, plan, y, result, offsets, bias, *epilogue)
        if fuse:
            return y
    elif compiled is None:
        if result is not None:
            planes = y.reshape((n, plan.group, plan.mg) + window.out)
            np.copyto(planes, _grid_view(result.reshape(n, plan.group, plan.mg, -1), plan.phases, window.out))
        _bias(y, bias)
    return _residual_and_activation(y, residual, activation, params)


def _residual_and_activation(y: np.ndarray, residual: np.ndarray | None, activation: str, params: Sequence[float]) -> np.ndarray:
    """The part of a conv's epilogue no compiled pass applied: + residual, then the activation."""
    if residual is not None:
        y += residual
    return apply_activation(y, activation, params)


def _shifted_images(ctx: OpContext, plan: _ConvPlan, x: np.ndarray) -> np.ndarray:
    """(N, G, flat images of the group's channels): ``x``'s shifted images (``_ShiftedImages``),
    in the context's workspace."""
    n, channels = x.shape[:2]
    layout, window = plan.shifted, plan.window
    kw, (sh, sw), dw = window.kernel[1], window.strides, window.dilations[1]
    shape = (n * channels, layout.count * kw, layout.tall, window.out[1])
    images = ctx.workspace.get("conv-shifted", shape, x.dtype)
    plan.compiled.shifted_images(np.ascontiguousarray(x), kw, sh, sw, dw, *window.pad_begin, layout.phase_array, images)
    return images.reshape(n, plan.group, -1)


_ONE_TAP = np.zeros(1, np.int64)


def _epilogue_arguments(
    compiled: ModuleType,
    target: np.ndarray,
    bias: np.ndarray | None,
    residual: np.ndarray | None,
    activation: str,
    params: Sequence[float],
) -> tuple[np.ndarray, np.ndarray, int, float, float]:
    """(bias, residual shaped like ``target``, activation code, low, high): a conv epilogue
    as the compiled passes take it, empty arrays for what it lacks."""
    extra = compiled.NO_RESIDUAL if residual is None else np.ascontiguousarray(residual).reshape(target.shape)
    return (compiled.NO_BIAS if bias is None else bias, extra, *compiled.activation_arguments(activation, params))


def _conv_output(
    compiled: ModuleType,
    plan: _ConvPlan,
    y: np.ndarray,
    result: np.ndarray | None,
    offsets: np.ndarray,
    bias: np.ndarray | None,
    residual: np.ndarray | None,
    activation: str,
    params: Sequence[float],
) -> None:
    """One compiled pass writing ``y``: ``result``'s per-tap runs summed and cropped into it,
    or its Winograd tiles transformed back (or ``y`` finished in place, when ``result`` is
    None), plus ``bias`` (G, M/G), residual, activation."""
    planes = y.reshape((y.shape[0] * plan.group, plan.mg) + plan.window.out)
    bias, extra, code, low, high = _epilogue_arguments(compiled, planes, bias, residual, activation, params)
    if result is None:
        compiled.conv_epilogue(bias, extra, code, low, high, planes)
    elif plan.mode == "winograd":
        compiled.winograd_output(result, *_winograd_tiles(plan.window), bias, extra, code, low, high, planes)
    else:
        wide = plan.phases.grid[1]
        compiled.conv_output(result, offsets, bias, extra, wide, code, low, high, planes)


def _partial_products(ctx: OpContext, plan: _ConvPlan, x: np.ndarray, stack: np.ndarray) -> np.ndarray:
    """(N·G, taps·M/G, image) products of every tap's weights with the one phase image."""
    phases = _fill_phases(ctx, plan, x)
    n = x.shape[0]
    partial = ctx.workspace.get("conv-partial", (n, plan.group, stack.shape[1], phases.shape[-1]), x.dtype)
    grouped_matmul(stack, phases[:, :, :, 0], partial)
    return partial.reshape(n * plan.group, stack.shape[1], -1)


_WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
"""F(2x2, 3x3)'s kernel transform: a 3x3 kernel g becomes the 4x4 tile G g Gᵀ."""

_WINOGRAD_MIN_CHANNELS = 32
"""Fewest input and output channels for which Winograd beats the direct GEMM: below, the
tile transforms cost more than the multiply-adds they save (measured on the 2-core VM, see
docs/benchmarks.md). Where tap-sum applies (outputs at most half the inputs) it holds its
own against Winograd up to this many outputs (DenseNet's 128 -> 32)."""


def _winograd_fits(window: _Window, group: int, cg: int, mg: int) -> bool:
    """Whether a conv runs as Winograd F(2x2, 3x3): a 3x3, stride-1, undilated, ungrouped 2-D
    window with enough channels. (Its float32 error stays near 1e-7 relative, as direct.)"""
    return (
        window.kernel == (3, 3)
        and window.strides == (1, 1)
        and window.dilations == (1, 1)
        and group == 1
        and min(cg, mg) >= _WINOGRAD_MIN_CHANNELS
        and (2 * mg > cg or mg > _WINOGRAD_MIN_CHANNELS)
    )


def _winograd_tiles(window: _Window) -> tuple[int, int]:
    """Rows and columns of 2x2 output tiles covering the output (the last ones cropped)."""
    return -(-window.out[0] // 2), -(-window.out[1] // 2)


def _winograd_products(ctx: OpContext, plan: _ConvPlan, x: np.ndarray, tiles: np.ndarray) -> np.ndarray:
    """(N, 16, M, tiles) products of the transformed kernels with the transformed input tiles:
    one GEMM per position in the 4x4 tile (``grouped_matmul`` with the positions as groups)."""
    tiles_h, tiles_w = _winograd_tiles(plan.window)
    shape = (x.shape[0], 16, plan.cg, tiles_h * tiles_w)
    transformed = ctx.workspace.get("winograd-input", shape, x.dtype)
    plan.compiled.winograd_input(np.ascontiguousarray(x), *plan.window.pad_begin, tiles_h, tiles_w, transformed)
    products = ctx.workspace.get("winograd-products", shape[:2] + (plan.mg, shape[3]), x.dtype)
    return grouped_matmul(tiles, transformed, products)


def _columns(ctx: OpContext, plan: _ConvPlan, x: np.ndarray) -> np.ndarray:
    """The (N, G, rows [+1 ones row for the bias], columns) matrix numpy's conv GEMM multiplies."""
    n, group, cg, window = x.shape[0], plan.group, plan.cg, plan.window
    rows = cg * window.taps
    if plan.mode == "pointwise":
        return np.ascontiguousarray(x).reshape(n, group, cg, -1)
    if plan.mode == "gather":
        layout = plan.phases
        phases = _fill_phases(ctx, plan, x)
        cols = ctx.workspace.get("conv-cols", (n, group, rows + plan.bias_row, layout.length), x.dtype)
        for tap, (phase, start) in enumerate(zip(layout.phase_of, layout.offsets)):
            cols[:, :, tap * cg : (tap + 1) * cg] = phases[:, :, :, phase, start : start + layout.length]
    else:
        cols = ctx.workspace.get("conv-cols", (n, group, rows + plan.bias_row, math.prod(window.out)), x.dtype)
        _im2col(x.reshape((n, group, cg) + x.shape[2:]), window, _tap_view(cols, cg, window))
    if plan.bias_row:
        cols[:, :, rows] = 1
    return cols


def _tap_sum(ctx: OpContext, plan: _ConvPlan, x: np.ndarray, stacks: tuple[np.ndarray, ...], total: np.ndarray) -> None:
    """Conv as the sum over taps of W_tap·(phase image), each shifted by the tap's offset, into
    ``total`` (N, G, M/G, grid length): one GEMM per phase image (its taps' weights stacked),
    then one add of contiguous runs per tap."""
    layout, group, mg = plan.phases, plan.group, plan.mg
    phases = _fill_phases(ctx, plan, x)
    for phase, (members, stack) in enumerate(zip(layout.by_phase, stacks)):
        partial = ctx.workspace.get("conv-partial", (x.shape[0], group, len(members) * mg, phases.shape[-1]), total.dtype)
        grouped_matmul(stack, phases[:, :, :, phase], partial)
        for slot, tap in enumerate(members):
            start = layout.offsets[tap]
            run = partial[:, :, slot * mg : (slot + 1) * mg, start : start + layout.length]
            if tap > 0:
                np.add(total, run, out=total)
            else:
                np.copyto(total, run)


def _tap_view(cols: np.ndarray, cg: int, window: _Window) -> np.ndarray:
    """(N, G, C/G, taps, *out) view of the first C/G·taps rows of (N, G, rows, pixels) columns."""
    item = cols.itemsize
    n, group, rows, _ = cols.shape
    pixels = math.prod(window.out)
    spatial = tuple(math.prod(window.out[d + 1 :]) * item for d in range(len(window.out)))
    return np.lib.stride_tricks.as_strided(
        cols,
        shape=(n, group, cg, window.taps) + window.out,
        strides=(group * rows * pixels * item, rows * pixels * item, window.taps * pixels * item, pixels * item)
        + spatial,
    )


def _im2col(x: np.ndarray, window: _Window, cols: np.ndarray) -> None:
    """Fill ``cols`` (*lead, taps, *out) from ``x`` (*lead, *S): for every kernel tap, the input
    pixel each output reads, 0 where that falls in the padding.

    Each tap is one strided copy of the in-bounds part of ``x``; only the uncovered border
    of each tap is zeroed (the buffer is reused, so it holds stale values).
    """
    lead = (slice(None),) * (x.ndim - len(window.kernel))
    for index, copy in enumerate(_tap_copies(window, x.shape[len(lead) :])):
        if copy is None:
            cols[lead + (index,)] = 0
            continue
        target, source, edges = copy
        cols[lead + (index, *target)] = x[lead + source]
        for edge in edges:
            cols[lead + (index, *edge)] = 0


@functools.lru_cache(maxsize=1024)
def _tap_copies(
    window: _Window, size_in: tuple[int, ...]
) -> tuple[tuple[tuple[slice, ...], tuple[slice, ...], tuple[tuple[slice, ...], ...]] | None, ...]:
    """Per kernel tap: (output slices it covers, input slices they read, the uncovered output
    borders), or None when it reads only padding. Cached: im2col runs every inference, and
    deriving the slices costs more than copying a small image."""
    copies = []
    for offset in itertools.product(*(range(k) for k in window.kernel)):
        target, source, edges = [], [], []
        for dim, (k, d, s, b, o, i) in enumerate(
            zip(offset, window.dilations, window.strides, window.pad_begin, window.out, size_in)
        ):
            shift = k * d - b  # input position read by output 0
            first = max(0, -(shift // s) if shift < 0 else 0)
            last = min(o - 1, (i - 1 - shift) // s)
            if last < first:
                copies.append(None)
                break
            target.append(slice(first, last + 1))
            source.append(slice(first * s + shift, last * s + shift + 1, s))
            skip = (slice(None),) * dim
            if first > 0:
                edges.append(skip + (slice(0, first),))
            if last < o - 1:
                edges.append(skip + (slice(last + 1, None),))
        else:
            copies.append((tuple(target), tuple(source), tuple(edges)))
    return tuple(copies)


@register("ConvTranspose")
@widen_half
def conv_transpose(ctx: OpContext, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Transposed convolution of (N, C, *S) by (C, M/group, *K): one matmul, then col2im."""
    group = ctx.attr("group", 1)
    kernel = _kernel_shape(ctx, w)
    rank = len(kernel)
    n, c = x.shape[:2]
    size_in = x.shape[2:]
    cg, mg = c // group, w.shape[1]
    m = mg * group
    strides = tuple(ctx.attr("strides") or (1,) * rank)
    dilations = tuple(ctx.attr("dilations") or (1,) * rank)
    output_padding = tuple(ctx.attr("output_padding") or (0,) * rank)
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    full = tuple(
        s * (i - 1) + p + (k - 1) * d + 1 for s, i, p, k, d in zip(strides, size_in, output_padding, kernel, dilations)
    )
    output_shape = ctx.attr("output_shape")
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = tuple(output_shape[-rank:]) if output_shape is not None else tuple(i * s for i, s in zip(size_in, strides))
        total = [f - o for f, o in zip(full, out)]
        begin = tuple(t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total)
    else:
        pads = tuple(ctx.attr("pads") or (0,) * (2 * rank)) if auto_pad != "VALID" else (0,) * (2 * rank)
        begin = pads[:rank]
        out = tuple(f - b - e for f, b, e in zip(full, begin, pads[rank:]))
    taps = math.prod(kernel)
    columns = grouped_matmul(
        w.astype(x.dtype, copy=False).reshape(group, cg, mg * taps).transpose(0, 2, 1),
        np.ascontiguousarray(x).reshape(n, group, cg, math.prod(size_in)),
    ).reshape((n, m, taps) + size_in)
    extent = tuple(max(f, bg + o) for f, bg, o in zip(full, begin, out))
    canvas = np.zeros((n, m) + extent, x.dtype)
    for index, offset in enumerate(itertools.product(*(range(k) for k in kernel))):
        target = tuple(
            slice(k * d, k * d + (i - 1) * s + 1, s) for k, d, i, s in zip(offset, dilations, size_in, strides)
        )
        canvas[(slice(None), slice(None)) + target] += columns[:, :, index]
    y = np.ascontiguousarray(canvas[(slice(None), slice(None)) + tuple(slice(bg, bg + o) for bg, o in zip(begin, out))])
    return _bias(y, b)


def _lowest(dtype: np.dtype) -> float | int:
    return -np.inf if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).min


@register("MaxPool")
def max_pool(ctx: OpContext, x: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Max over each window; the optional Indices output flattens (N, C, *S) positions."""
    window, slices = _pool_window(ctx, x)
    if ctx.num_outputs < 2 or ctx.node.outputs[1].meta.get("omitted"):
        if (compiled := _compiled_2d(x, window.kernel)) is not None:
            y = ctx.output(0, x.shape[:2] + window.out, x.dtype)
            compiled.max_pool2d(np.ascontiguousarray(x), *_geometry(window), y)
            return y
        padded = _padded(x, window, _lowest(x.dtype), ctx)
        y = ctx.output(0, x.shape[:2] + window.out, x.dtype)
        np.copyto(y, padded[slices[0]])
        for taps in slices[1:]:
            np.maximum(y, padded[taps], out=y)
        return y
    padded = _padded(x, window, _lowest(x.dtype))
    stacked = np.stack([padded[taps] for taps in slices], axis=-1)
    best = np.argmax(stacked, axis=-1)
    y = np.take_along_axis(stacked, best[..., None], axis=-1)[..., 0]
    return y, _max_indices(x.shape, window, best, ctx.attr("storage_order", 0))


def _max_indices(shape: tuple[int, ...], window: _Window, best: np.ndarray, storage_order: int) -> np.ndarray:
    """Flat input positions of the chosen taps; storage_order=1 orders spatial dims column-major."""
    offsets = np.unravel_index(best, window.kernel)
    rank = len(window.kernel)
    coords = []
    for dim in range(rank):
        start = np.arange(window.out[dim]) * window.strides[dim] - window.pad_begin[dim]
        start = start.reshape((-1,) + (1,) * (rank - 1 - dim))
        coords.append(start + offsets[dim] * window.dilations[dim])
    n, c = shape[:2]
    spatial = shape[2:]
    if storage_order:
        coords, spatial = coords[::-1], spatial[::-1]
    flat = np.zeros(best.shape, np.int64)
    for coord, size in zip(coords, spatial):
        flat = flat * size + coord
    plane = math.prod(shape[2:])
    base = (np.arange(n)[:, None] * c + np.arange(c)[None, :]) * plane
    return flat + base.reshape((n, c) + (1,) * rank)


def _pool_window(ctx: OpContext, x: np.ndarray) -> tuple[_Window, list[tuple[slice, ...]]]:
    """A pool's window and tap slices for this input shape (cached per node)."""
    key = ("pool", x.shape)
    cached = ctx.cache.get(key)
    if cached is None:
        kernel = tuple(ctx.attr("kernel_shape"))
        window = _window(ctx.node.attrs, x.shape[2:], kernel, bool(ctx.attr("ceil_mode", 0)))
        cached = ctx.cache[key] = (window, [taps for _, taps in window.tap_slices()])
    return cached


def _window_sum(padded: np.ndarray, slices: list[tuple[slice, ...]], out: np.ndarray | None = None) -> np.ndarray:
    """Sum of every tap's slice (see ``_pool_window``), accumulated in ``out`` (a fresh array when None)."""
    total = padded[slices[0]].copy() if out is None else out
    if out is not None:
        np.copyto(total, padded[slices[0]])
    for taps in slices[1:]:
        np.add(total, padded[taps], out=total)
    return total


def _average_divisor(ctx: OpContext, x: np.ndarray, window: _Window, slices: list[tuple[slice, ...]]) -> np.ndarray:
    """How many counted input positions each output window covers, (1, 1, *out) (cached)."""
    key = ("pool-divisor", x.shape[2:], x.dtype)
    divisor = ctx.cache.get(key)
    if divisor is None:
        size_in = x.shape[2:]
        counted = np.zeros((1, 1) + window.extent(size_in), x.dtype)
        if ctx.attr("count_include_pad", 0):
            region = tuple(slice(0, b + i + e) for b, i, e in zip(window.pad_begin, size_in, window.pad_end))
        else:
            region = tuple(slice(b, b + i) for b, i in zip(window.pad_begin, size_in))
        counted[(slice(None), slice(None)) + region] = 1
        divisor = ctx.cache[key] = _window_sum(counted, slices)
    return divisor


@register("AveragePool")
@widen_half
def average_pool(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """Window mean; ``count_include_pad`` decides whether declared pads count in the divisor."""
    window, slices = _pool_window(ctx, x)
    if (compiled := _compiled_2d(x, window.kernel)) is not None:
        y = ctx.output(0, x.shape[:2] + window.out, x.dtype)
        divisor = _average_divisor(ctx, x, window, slices)[0, 0]
        compiled.average_pool2d(np.ascontiguousarray(x), *_geometry(window), divisor, y)
        return y
    y = ctx.output(0, x.shape[:2] + window.out, x.dtype)
    total = _window_sum(_padded(x, window, 0, ctx), slices, y)
    return np.divide(total, _average_divisor(ctx, x, window, slices), out=total)


@register("LpPool")
@widen_half
def lp_pool(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    p = ctx.attr("p", 2)
    window, slices = _pool_window(ctx, x)
    total = _window_sum(_padded(np.abs(x) ** p, window, 0), slices)
    return total ** (1 / p)


def _spatial_axes(x: np.ndarray) -> tuple[int, ...]:
    return tuple(range(2, x.ndim))


@register("GlobalAveragePool")
@widen_half
def global_average_pool(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """Each plane's mean as a matrix-vector product with weights 1/size: BLAS sums a plane
    in vector lanes, ~5x numpy's mean on planes of 49-3136 values (docs/benchmarks.md)."""
    y = ctx.output(0, x.shape[:2] + (1,) * (x.ndim - 2), x.dtype)
    size = math.prod(x.shape[2:])
    if size == 0:
        return np.mean(x, axis=_spatial_axes(x), keepdims=True, out=y)
    key = ("mean-weights", size, x.dtype)
    weights = ctx.cache.get(key)
    if weights is None:
        weights = ctx.cache[key] = np.full(size, 1 / size, x.dtype)
    np.dot(np.ascontiguousarray(x).reshape(-1, size), weights, out=y.reshape(-1))
    return y


@register("GlobalMaxPool")
def global_max_pool(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return np.max(x, axis=_spatial_axes(x), keepdims=True)


@register("GlobalLpPool")
@widen_half
def global_lp_pool(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    p = ctx.attr("p", 2)
    return np.sum(np.abs(x) ** p, axis=_spatial_axes(x), keepdims=True) ** (1 / p)
