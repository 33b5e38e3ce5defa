"""Shape, layout and data-movement kernels: reshape, transpose, slice, pad, cast and friends."""

from __future__ import annotations

import ml_dtypes
import numpy as np

from edge.ir.dtypes import from_onnx
from edge.kernels.registry import OpContext, register, same_bytes

__all__ = ["normalize_axes", "cast_array"]


def normalize_axes(axes, rank: int) -> list[int]:
    """Axes as non-negative ints (ONNX allows negatives counted from the end)."""
    return [int(a) + rank if int(a) < 0 else int(a) for a in np.asarray(axes, np.int64).reshape(-1)]


def _ints(array: np.ndarray | None) -> list[int] | None:
    return None if array is None else [int(v) for v in np.asarray(array).reshape(-1)]


# ---------------------------------------------------------------------------- reshape family


def _reshape(data: np.ndarray, shape: list[int], allowzero: int) -> np.ndarray:
    """ONNX Reshape: 0 copies the input dim (unless allowzero), -1 is inferred."""
    target = [data.shape[i] if d == 0 and not allowzero else d for i, d in enumerate(shape)]
    return np.reshape(data, target)


@register("Reshape", inplace=True)
def reshape_v1(ctx: OpContext, data: np.ndarray) -> np.ndarray:
    return _reshape(data, list(ctx.attr("shape", [])), 0)


@register("Reshape", since=5, inplace=True)
def reshape(ctx: OpContext, data: np.ndarray, shape: np.ndarray) -> np.ndarray:
    return _reshape(data, _ints(shape), ctx.attr("allowzero", 0))


@register("Flatten", inplace=True)
def flatten(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    axis = ctx.attr("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    return np.reshape(x, (outer, int(np.prod(x.shape[axis:], dtype=np.int64))))


@register("Transpose")
def transpose(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    perm = ctx.attr("perm")
    view = np.transpose(x, perm if perm else None)
    y = ctx.output(0, view.shape, x.dtype)
    np.copyto(y, view)
    return y


def _squeeze(x: np.ndarray, axes: list[int] | None) -> np.ndarray:
    if axes is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    return np.squeeze(x, axis=tuple(normalize_axes(axes, x.ndim)))


@register("Squeeze", inplace=True)
def squeeze_v1(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return _squeeze(x, ctx.attr("axes"))


@register("Squeeze", since=13, inplace=True)
def squeeze(ctx: OpContext, x: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:
    return _squeeze(x, _ints(axes))


def _unsqueeze(x: np.ndarray, axes: list[int]) -> np.ndarray:
    rank = x.ndim + len(axes)
    return np.reshape(x, _unsqueezed_shape(x.shape, sorted(normalize_axes(axes, rank))))


def _unsqueezed_shape(shape: tuple[int, ...], axes: list[int]) -> list[int]:
    out = list(shape)
    for axis in axes:
        out.insert(axis, 1)
    return out


@register("Unsqueeze", inplace=True)
def unsqueeze_v1(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return _unsqueeze(x, list(ctx.attr("axes")))


@register("Unsqueeze", since=13, inplace=True)
def unsqueeze(ctx: OpContext, x: np.ndarray, axes: np.ndarray) -> np.ndarray:
    return _unsqueeze(x, _ints(axes))


@register("Concat")
def concat(ctx: OpContext, *inputs: np.ndarray) -> np.ndarray:
    """Pieces are copied straight into the planned output buffer when there is one, except
    those the memory plan already placed there (their producers wrote them in place)."""
    pieces = [x for x in inputs if x is not None]
    axis = ctx.attr("axis", 0)
    if ctx.out[0] is None or any(x.dtype != pieces[0].dtype for x in pieces):
        return np.concatenate(pieces, axis=axis)
    first = pieces[0]
    axis = normalize_axes([axis], first.ndim)[0]
    shape = first.shape[:axis] + (sum(x.shape[axis] for x in pieces),) + first.shape[axis + 1 :]
    out = ctx.output(0, shape, first.dtype)
    lead, start = (slice(None),) * axis, 0
    for piece in pieces:
        target = out[lead + (slice(start, start + piece.shape[axis]),)]
        start += piece.shape[axis]
        if not same_bytes(piece, target):
            np.copyto(target, piece)
    return out


def _split(ctx: OpContext, x: np.ndarray, split: list[int] | None) -> tuple[np.ndarray, ...]:
    """Split into given sizes, or equal parts (opset 18: the last part may be smaller)."""
    axis = normalize_axes([ctx.attr("axis", 0)], x.ndim)[0]
    if not split:
        parts = ctx.attr("num_outputs", ctx.num_outputs)
        chunk = -(-x.shape[axis] // parts)
        split = [min(chunk, x.shape[axis] - i * chunk) for i in range(parts)]
    bounds = np.cumsum(split)[:-1]
    return tuple(np.split(x, bounds, axis=axis))


@register("Split")
def split_v1(ctx: OpContext, x: np.ndarray, split: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    return _split(ctx, x, _ints(split) if split is not None else ctx.attr("split"))


@register("Split", since=13)
def split(ctx: OpContext, x: np.ndarray, split: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    return _split(ctx, x, _ints(split))


# ---------------------------------------------------------------------------- slice / pad


def _slice(data: np.ndarray, starts: list[int], ends: list[int], axes: list[int] | None, steps: list[int] | None) -> np.ndarray:
    """ONNX Slice with its clamping rules, which differ from Python's for negative steps."""
    axes = normalize_axes(axes, data.ndim) if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    index: list[slice] = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        dim = data.shape[axis]
        start = start + dim if start < 0 else start
        end = end + dim if end < 0 else end
        if step > 0:
            start, end = min(max(start, 0), dim), min(max(end, 0), dim)
            index[axis] = slice(start, end, step)
        else:
            start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
            index[axis] = slice(start, end if end >= 0 else None, step)
    return data[tuple(index)].copy()


@register("Slice")
def slice_v1(ctx: OpContext, data: np.ndarray) -> np.ndarray:
    return _slice(data, list(ctx.attr("starts")), list(ctx.attr("ends")), ctx.attr("axes"), None)


@register("Slice", since=10)
def slice_(
    ctx: OpContext,
    data: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    axes: np.ndarray | None = None,
    steps: np.ndarray | None = None,
) -> np.ndarray:
    return _slice(data, _ints(starts), _ints(ends), _ints(axes), _ints(steps))


def _pad(x: np.ndarray, pads: list[int], mode: str, value, axes: list[int] | None) -> np.ndarray:
    """Pad (or crop, for negative pads); ``pads`` is [begin per axis..., end per axis...]."""
    axes = normalize_axes(axes, x.ndim) if axes is not None else list(range(x.ndim))
    n = len(axes)
    widths = [[0, 0] for _ in range(x.ndim)]
    for i, axis in enumerate(axes):
        widths[axis] = [pads[i], pads[i + n]]
    crop = tuple(slice(max(-b, 0), x.shape[a] - max(-e, 0)) for a, (b, e) in enumerate(widths))
    x = x[crop]
    grow = [(max(b, 0), max(e, 0)) for b, e in widths]
    if mode == "constant":
        return np.pad(x, grow, mode="constant", constant_values=np.array(value, x.dtype) if value is not None else 0)
    return np.pad(x, grow, mode=mode)  # reflect / edge / wrap mean the same in numpy


@register("Pad")
def pad_v1(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    pads = ctx.attr("pads", ctx.attr("paddings"))
    return _pad(x, list(pads), ctx.attr("mode", "constant"), ctx.attr("value", 0.0), None)


@register("Pad", since=11)
def pad(
    ctx: OpContext,
    x: np.ndarray,
    pads: np.ndarray,
    constant_value: np.ndarray | None = None,
    axes: np.ndarray | None = None,
) -> np.ndarray:
    value = None if constant_value is None or constant_value.size == 0 else constant_value.reshape(-1)[0]
    return _pad(x, _ints(pads), ctx.attr("mode", "constant"), value, _ints(axes))


@register("Expand")
def expand(ctx: OpContext, x: np.ndarray, shape: np.ndarray) -> np.ndarray:
    target = np.broadcast_shapes(x.shape, tuple(_ints(shape)))
    return np.broadcast_to(x, target).copy()


@register("Tile")
def tile(ctx: OpContext, x: np.ndarray, repeats: np.ndarray) -> np.ndarray:
    return np.tile(x, _ints(repeats))


@register("DepthToSpace")
def depth_to_space(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    b = ctx.attr("blocksize")
    n, c, h, w = x.shape
    if ctx.attr("mode", "DCR") == "DCR":
        y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return np.ascontiguousarray(y).reshape(n, c // (b * b), h * b, w * b)


@register("SpaceToDepth")
def space_to_depth(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    b = ctx.attr("blocksize")
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b)
    y = y.transpose(0, 3, 5, 1, 2, 4) if ctx.attr("mode", "DCR") == "DCR" else y.transpose(0, 1, 3, 5, 2, 4)
    return np.ascontiguousarray(y).reshape(n, c * b * b, h // b, w // b)


# ---------------------------------------------------------------------------- cast


def cast_array(x: np.ndarray, dtype: np.dtype, saturate: int = 1, round_mode: str = "up") -> np.ndarray:
    """Convert ``x`` to ``dtype`` the way ONNX Cast does.

    Strings parse as numbers (and numbers print as their shortest round-trip text); float ->
    float8 with ``saturate`` clips out-of-range values and infinities to the type's largest
    finite value; float8e8m0 rounds per ``round_mode``.
    """
    dtype = np.dtype(dtype)
    if dtype == x.dtype:
        return x.copy()
    if dtype == np.dtype(object):
        return _to_strings(x)
    if x.dtype == np.dtype(object):
        return np.array([_parse(s) for s in x.reshape(-1)], np.float64).astype(dtype).reshape(x.shape)
    if dtype == np.dtype(ml_dtypes.float8_e8m0fnu):
        return _to_e8m0(x, saturate, round_mode)
    if "float8" in dtype.name and saturate and x.dtype.kind in "fV":
        limit = float(ml_dtypes.finfo(dtype).max)
        return np.clip(x.astype(np.float32), -limit, limit).astype(dtype)
    return x.astype(dtype)


def _to_e8m0(x: np.ndarray, saturate: int, round_mode: str) -> np.ndarray:
    """float -> float8e8m0 (a bare power-of-two exponent, sign dropped), from float32 bits.

    ``up`` rounds any non-zero mantissa up, ``down`` truncates, ``nearest`` rounds a mantissa
    of one half or more up (subnormal inputs: strictly more). Saturation keeps the largest
    finite exponent (254) instead of overflowing into NaN (255).
    """
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32)
    exponent = ((bits >> 23) & 0xFF).astype(np.uint16)
    mantissa = bits & 0x7FFFFF
    special = exponent == 0xFF
    if round_mode == "up":
        bump = mantissa > 0
    elif round_mode == "nearest":
        bump = (mantissa > 0x400000) | ((mantissa == 0x400000) & (exponent > 0))
    else:
        bump = np.zeros(bits.shape, bool)
    bump &= ~special
    if saturate:
        bump &= exponent != 0xFE
    exponent = np.where(special, 0xFF, exponent + bump)
    return exponent.astype(np.uint8).view(ml_dtypes.float8_e8m0fnu)


def _parse(text: object) -> float:
    return float(text.decode() if isinstance(text, bytes) else text)


def _to_strings(x: np.ndarray) -> np.ndarray:
    if x.dtype.kind in "fV":
        values = [_float_text(float(v)) for v in x.astype(np.float32).reshape(-1)]
    else:
        values = [str(v) for v in x.reshape(-1).tolist()]
    return np.array(values, dtype=object).reshape(x.shape)


def _float_text(value: float) -> str:
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return "INF" if value > 0 else "-INF"
    return str(np.float32(value))


@register("Cast")
def cast(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return cast_array(x, from_onnx(ctx.attr("to")), ctx.attr("saturate", 1), ctx.attr("round_mode", "up"))


@register("CastLike")
def cast_like(ctx: OpContext, x: np.ndarray, like: np.ndarray) -> np.ndarray:
    return cast_array(x, like.dtype, ctx.attr("saturate", 1), ctx.attr("round_mode", "up"))


# ---------------------------------------------------------------------------- shape & creation


@register("Shape")
def shape(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    dims = np.array(x.shape, np.int64)
    start, end = ctx.attr("start", 0), ctx.attr("end")
    return dims[slice(start, end)].copy()


@register("Size")
def size(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return np.array(x.size, np.int64)


@register("Range")
def range_(ctx: OpContext, start: np.ndarray, limit: np.ndarray, delta: np.ndarray) -> np.ndarray:
    count = max(int(np.ceil((limit.item() - start.item()) / delta.item())), 0)
    return (start + delta * np.arange(count)).astype(start.dtype)


@register("ConstantOfShape")
def constant_of_shape(ctx: OpContext, shape: np.ndarray) -> np.ndarray:
    value = ctx.attr("value")
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return np.full(tuple(_ints(shape)), fill[0], dtype=fill.dtype)


@register("Identity", inplace=True)
def identity(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return x


def _dropout(ctx: OpContext, x: np.ndarray, ratio: float, training: bool) -> tuple[np.ndarray, ...]:
    """Inference: identity (mask all true). Training: a seeded keep-mask, scaled by 1/(1-ratio)."""
    if not training or ratio == 0:
        out, mask = x.copy(), np.ones(x.shape, bool)
    else:
        rng = np.random.RandomState(ctx.attr("seed"))
        mask = rng.uniform(0.0, 1.0, x.shape) >= ratio
        out = (mask * x / (1.0 - ratio)).astype(x.dtype)
    return (out, mask)[: ctx.num_outputs]


@register("Dropout", inplace=True)
def dropout_v1(ctx: OpContext, x: np.ndarray) -> tuple[np.ndarray, ...]:
    return _dropout(ctx, x, ctx.attr("ratio", 0.5), False)


@register("Dropout", since=12, inplace=True)
def dropout(
    ctx: OpContext, x: np.ndarray, ratio: np.ndarray | None = None, training_mode: np.ndarray | None = None
) -> tuple[np.ndarray, ...]:
    rate = 0.5 if ratio is None else float(ratio)
    return _dropout(ctx, x, rate, training_mode is not None and bool(training_mode))


@register("Trilu")
def trilu(ctx: OpContext, x: np.ndarray, k: np.ndarray | None = None) -> np.ndarray:
    offset = 0 if k is None else int(k)
    return np.triu(x, offset) if ctx.attr("upper", 1) else np.tril(x, offset)


@register("EyeLike")
def eye_like(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    dtype = from_onnx(ctx.attr("dtype")) if ctx.attr("dtype") is not None else x.dtype
    return np.eye(x.shape[0], x.shape[1], k=ctx.attr("k", 0), dtype=dtype)
