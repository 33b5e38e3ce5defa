"""Resize and Upsample: nearest, n-linear and cubic interpolation, applied one axis at a time.

Interpolation is separable, so an N-d resize is a sequence of 1-d resizes. For each axis the
kernel precomputes, per output position, the source coordinate (from the coordinate
transformation mode), the indices of the input taps and their weights; applying the axis is
one gather plus a weighted sum. No per-pixel Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.kernels.cpu.tensor import normalize_axes
from edge.kernels.registry import OpContext, register

__all__ = ["ResizeSpec", "resize"]


@dataclass(frozen=True)
class ResizeSpec:
    """The attributes of a Resize node, with the defaults of opset 11 and later."""

    mode: str = "nearest"
    coordinate_mode: str = "half_pixel"
    nearest_mode: str = "round_prefer_floor"
    cubic_coeff_a: float = -0.75
    exclude_outside: bool = False
    extrapolation_value: float = 0.0
    antialias: bool = False
    keep_aspect_ratio_policy: str = "stretch"


def _source_coords(spec: ResizeSpec, out_size: int, in_size: int, scale: float, roi: tuple[float, float], f: type) -> np.ndarray:
    """Input coordinate of every output position along one axis (ONNX coordinate modes).

    ``f`` is the precision the scale came in: float32 for a ``scales`` tensor (so exact ties
    such as 3 / 0.6 round as onnxruntime rounds them), float64 for a ratio of ``sizes``.
    ``length`` is the resized length before flooring (in * scale): align_corners and
    tf_crop_and_resize divide by it, as ONNX's reference and node cases do.
    """
    i = np.arange(out_size, dtype=f)
    scale, length = f(scale), f(scale) * f(in_size)
    mode = spec.coordinate_mode
    if mode == "half_pixel":
        return (i + f(0.5)) / scale - f(0.5)
    if mode == "half_pixel_symmetric":
        # Centre the sampled region when floor(in * scale) differs from in * scale.
        offset = f(in_size) / f(2) * (f(1) - f(out_size) / length)
        return offset + (i + f(0.5)) / scale - f(0.5)
    if mode == "pytorch_half_pixel":
        return (i + f(0.5)) / scale - f(0.5) if out_size > 1 else np.zeros(out_size, f)
    if mode == "align_corners":
        return i * f(in_size - 1) / (length - f(1)) if length != 1 else np.zeros(out_size, f)
    if mode == "asymmetric":
        return i / scale
    if mode == "tf_half_pixel_for_nn":
        return (i + f(0.5)) / scale
    if mode == "tf_crop_and_resize":
        start, end = f(roi[0]), f(roi[1])
        if length != 1:
            return start * f(in_size - 1) + i * (end - start) * f(in_size - 1) / (length - f(1))
        return np.full(out_size, f(0.5) * (start + end) * f(in_size - 1))
    raise ValueError(f"unknown coordinate_transformation_mode '{mode}'")


def _nearest_index(x: np.ndarray, mode: str, scale: float) -> np.ndarray:
    if mode == "round_prefer_floor":
        return np.ceil(x - 0.5)
    if mode == "round_prefer_ceil":
        return np.floor(x + 0.5)
    if mode == "floor":
        return np.floor(x)
    if mode == "ceil":
        return np.ceil(x)
    if mode == "simple":  # Upsample and Resize-10: truncate when enlarging, ceil when shrinking
        return np.ceil(x) if scale < 1 else np.trunc(x)
    raise ValueError(f"unknown nearest_mode '{mode}'")


def _cubic(d: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with coefficient ``a``, support |d| < 2."""
    d = np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _taps(spec: ResizeSpec, x: np.ndarray, scale: float, in_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Tap indices (clamped into the input) and weights, both [out, taps], for linear/cubic.

    The filter is linear (support 1) or cubic (support 2). With antialias on a shrinking axis
    it is stretched by 1/scale so every input pixel contributes; the taps are the ``n``
    integers nearest ``x``, starting from the pixel left of it (an integer ``x`` counts as
    the right end of its interval, as in ONNX).
    """
    support = 1.0 if spec.mode == "linear" else 2.0
    stretch = min(scale, 1.0) if spec.antialias else 1.0
    first = int(np.floor(-support / stretch)) + 1
    count = 2 - 2 * first
    left = np.ceil(x).astype(np.int64) - 1
    index = left[:, None] + first + np.arange(count)[None, :]
    distance = (index - x[:, None]) * stretch
    if spec.mode == "linear":
        weights = np.clip(1.0 - np.abs(distance), 0.0, 1.0)
    else:
        weights = _cubic(distance, spec.cubic_coeff_a)
    if spec.exclude_outside:
        weights = np.where((index < 0) | (index >= in_size), 0.0, weights)
    if spec.antialias or spec.exclude_outside:
        total = weights.sum(axis=1, keepdims=True)
        weights = weights / np.where(total == 0, 1.0, total)
    return np.clip(index, 0, in_size - 1), weights


def _resize_axis(
    data: np.ndarray,
    axis: int,
    out_size: int,
    scale: float,
    roi: tuple[float, float],
    spec: ResizeSpec,
    compute: np.dtype,
    precision: type,
) -> np.ndarray:
    in_size = data.shape[axis]
    x = _source_coords(spec, out_size, in_size, scale, roi, precision)
    if spec.mode == "nearest":
        index = np.clip(_nearest_index(x, spec.nearest_mode, scale), 0, in_size - 1).astype(np.intp)
        result = np.take(data, index, axis=axis)
    else:
        index, weights = _taps(spec, x, scale, in_size)
        gathered = np.take(data, index, axis=axis)  # the axis becomes [out, taps]
        shape = (1,) * axis + weights.shape + (1,) * (data.ndim - axis - 1)
        result = (gathered * weights.astype(compute).reshape(shape)).sum(axis=axis + 1)
    if spec.coordinate_mode == "tf_crop_and_resize":
        outside = (x < 0) | (x > in_size - 1)
        if outside.any():
            shape = (1,) * axis + (out_size,) + (1,) * (data.ndim - axis - 1)
            result = np.where(outside.reshape(shape), np.asarray(spec.extrapolation_value, result.dtype), result)
    return result


def resize(
    x: np.ndarray,
    spec: ResizeSpec,
    scales: list[float] | None = None,
    sizes: list[int] | None = None,
    roi: list[float] | None = None,
    axes: list[int] | None = None,
) -> np.ndarray:
    """Resize ``x`` along ``axes`` (default all) to ``sizes`` or by ``scales``.

    Args:
        x: input tensor.
        spec: the node's attributes.
        scales: one factor per resized axis; output size is floor(in * scale).
        sizes: output sizes per resized axis (scales derived as out / in, or one shared
            scale under a keep-aspect-ratio policy).
        roi: [starts..., ends...] per resized axis, used by tf_crop_and_resize.
        axes: the axes ``scales``/``sizes``/``roi`` refer to.
    """
    axes = normalize_axes(axes, x.ndim) if axes is not None else list(range(x.ndim))
    if sizes is not None:
        factors = [sizes[i] / x.shape[a] for i, a in enumerate(axes)]
        outs = list(sizes)
        if spec.keep_aspect_ratio_policy != "stretch":
            shared = min(factors) if spec.keep_aspect_ratio_policy == "not_larger" else max(factors)
            factors = [shared] * len(axes)
            outs = [int(np.floor(shared * x.shape[a] + 0.5)) for a in axes]
        precision = np.float64
    else:
        factors = [float(s) for s in scales]
        outs = [int(np.floor(np.float32(f) * np.float32(x.shape[a]))) for f, a in zip(factors, axes)]
        precision = np.float32
    bounds = [(roi[i], roi[i + len(axes)]) if roi else (0.0, 1.0) for i in range(len(axes))]
    compute = np.dtype(np.float64) if x.dtype == np.float64 else np.dtype(np.float32)
    result = x if spec.mode == "nearest" or x.dtype == compute else x.astype(compute)
    for axis, out_size, factor, window in zip(axes, outs, factors, bounds):
        if out_size == x.shape[axis] and factor == 1.0 and window == (0.0, 1.0):
            continue
        result = _resize_axis(result, axis, out_size, factor, window, spec, compute, precision)
    if result.dtype == x.dtype:
        return np.ascontiguousarray(result) if result is not x else x.copy()
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        return np.clip(np.rint(result), info.min, info.max).astype(x.dtype)
    return result.astype(x.dtype)


def _floats(array: np.ndarray | None) -> list[float] | None:
    return None if array is None or array.size == 0 else [float(v) for v in array.reshape(-1)]


def _spec(ctx: OpContext, **overrides) -> ResizeSpec:
    fields = {
        "mode": ctx.attr("mode", "nearest"),
        "coordinate_mode": ctx.attr("coordinate_transformation_mode", "half_pixel"),
        "nearest_mode": ctx.attr("nearest_mode", "round_prefer_floor"),
        "cubic_coeff_a": ctx.attr("cubic_coeff_a", -0.75),
        "exclude_outside": bool(ctx.attr("exclude_outside", 0)),
        "extrapolation_value": ctx.attr("extrapolation_value", 0.0),
        "antialias": bool(ctx.attr("antialias", 0)),
        "keep_aspect_ratio_policy": ctx.attr("keep_aspect_ratio_policy", "stretch"),
    }
    fields.update(overrides)
    if fields["mode"] == "bilinear":  # Upsample-1 spelling
        fields["mode"] = "linear"
    return ResizeSpec(**fields)


def _legacy_spec(ctx: OpContext) -> ResizeSpec:
    """Upsample and Resize-10: asymmetric coordinates, nearest truncates (ceil when shrinking)."""
    return _spec(ctx, coordinate_mode="asymmetric", nearest_mode="simple")


@register("Upsample")
def upsample_v7(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return resize(x, _legacy_spec(ctx), scales=list(ctx.attr("scales")))


@register("Upsample", since=9)
def upsample(ctx: OpContext, x: np.ndarray, scales: np.ndarray) -> np.ndarray:
    return resize(x, _legacy_spec(ctx), scales=_floats(scales))


@register("Resize", since=10)
def resize_v10(ctx: OpContext, x: np.ndarray, scales: np.ndarray) -> np.ndarray:
    return resize(x, _legacy_spec(ctx), scales=_floats(scales))


@register("Resize", since=11)
def resize_op(
    ctx: OpContext,
    x: np.ndarray,
    roi: np.ndarray | None = None,
    scales: np.ndarray | None = None,
    sizes: np.ndarray | None = None,
) -> np.ndarray:
    size_list = None if sizes is None or sizes.size == 0 else [int(v) for v in sizes.reshape(-1)]
    return resize(x, _spec(ctx), _floats(scales), size_list, _floats(roi), ctx.attr("axes"))
