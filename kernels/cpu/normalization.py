"""Normalization ops: Batch/Instance/Layer/Group/RMS/MeanVariance normalization, LRN, LpNormalization.

Statistics are computed in float32 at least (``stash_type=1``), so float16 models do not
lose their mean and variance to rounding; results are cast back to the input dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.kernels.cpu.activations import apply_activation
from edge.kernels.cpu.compiled import compiled
from edge.kernels.cpu.precision import widen_half
from edge.kernels.registry import OpContext, register

__all__: list[str] = []  # kernels are reached through the registry


def _per_channel(param: np.ndarray, rank: int) -> np.ndarray:
    """Shape a (C, ...) parameter to broadcast against (N, C, *spatial)."""
    return param.reshape(param.shape + (1,) * (rank - 1 - param.ndim))


def _stash_dtype(ctx: OpContext, x: np.ndarray) -> np.dtype:
    """float32 unless ``stash_type`` names the input's own type (float64 is kept)."""
    if ctx.attr("stash_type", 1) != 1 or x.dtype == np.float64:
        return x.dtype
    return np.dtype(np.float32)


@register("BatchNormalization", inplace=True)
def batch_normalization(
    ctx: OpContext, x: np.ndarray, scale: np.ndarray, bias: np.ndarray, mean: np.ndarray, var: np.ndarray
) -> np.ndarray | tuple[np.ndarray, ...]:
    """Inference: y = (x - mean) / sqrt(var + eps) * scale + bias, folded to one multiply-add
    (``batch_normalize``).

    Parameters of shape (C,) apply per channel; the opset < 9 ``spatial=0`` form passes
    (C, *spatial) parameters, which broadcast the same way. With ``training_mode=1``
    (opset 14+) the batch statistics are used and the running ones updated by ``momentum``.
    """
    epsilon = ctx.attr("epsilon", 1e-5)
    if ctx.attr("training_mode", 0):
        axes = (0,) + tuple(range(2, x.ndim))
        batch_mean, batch_var = x.mean(axis=axes), x.var(axis=axes)
        momentum = ctx.attr("momentum", 0.9)
        factor, shift = _batch_norm_affine(x, scale, bias, batch_mean, batch_var, epsilon)
        y = x * factor
        y += shift
        running_mean = (mean * momentum + batch_mean * (1 - momentum)).astype(mean.dtype)
        running_var = (var * momentum + batch_var * (1 - momentum)).astype(var.dtype)
        return (y, running_mean, running_var)[: ctx.num_outputs]
    return batch_normalize(ctx, x, scale, bias, mean, var)


def batch_normalize(
    ctx: OpContext,
    x: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    activation: str = "",
    params: Sequence[float] = (),
) -> np.ndarray:
    """act(inference BatchNormalization), ``activation`` one of ``ACTIVATIONS`` ("" for none):
    one compiled pass for float32 with per-channel parameters when the compiled kernels
    apply the activation too (Relu, Clip), else a multiply-add and the activation in place."""
    factor, shift = ctx.from_constants(
        ("batchnorm", x.ndim, x.dtype),
        (scale, bias, mean, var),
        lambda: _batch_norm_affine(x, scale, bias, mean, var, ctx.attr("epsilon", 1e-5)),
    )
    y = ctx.output(0, x.shape, x.dtype)
    jit = compiled() if x.dtype == np.float32 and x.ndim >= 2 and factor.size == x.shape[1] else None
    if jit is not None and activation in jit.ACTIVATION_CODES:
        lead = (x.shape[0], x.shape[1], -1)
        arguments = jit.activation_arguments(activation, params)
        jit.affine_channels(np.ascontiguousarray(x).reshape(lead), factor.reshape(-1), shift.reshape(-1), *arguments, y.reshape(lead))
        return y
    np.multiply(x, factor, out=y)
    np.add(y, shift, out=y)
    return apply_activation(y, activation, params)


def _batch_norm_affine(
    x: np.ndarray, scale: np.ndarray, bias: np.ndarray, mean: np.ndarray, var: np.ndarray, epsilon: float
) -> tuple[np.ndarray, np.ndarray]:
    """(a, c) shaped to broadcast over ``x``, so that y = x * a + c, with
    a = scale / sqrt(var + eps) and c = bias - mean * a (per channel, in x's dtype)."""
    compute = np.promote_types(x.dtype, np.float32)
    factor = scale.astype(compute) / np.sqrt(var.astype(compute) + epsilon)
    shift = bias.astype(compute) - mean.astype(compute) * factor
    return _per_channel(factor, x.ndim).astype(x.dtype), _per_channel(shift, x.ndim).astype(x.dtype)


def _standardize(x: np.ndarray, axes: tuple[int, ...], epsilon: float, dtype: np.dtype) -> tuple[np.ndarray, ...]:
    """(x - mean) / sqrt(var + eps) over ``axes`` in ``dtype``, with the mean and 1/std."""
    xs = x.astype(dtype, copy=False)
    mean = xs.mean(axis=axes, keepdims=True)
    centered = xs - mean
    inv_std = 1 / np.sqrt((centered * centered).mean(axis=axes, keepdims=True) + epsilon)
    return centered * inv_std, mean, inv_std


@register("InstanceNormalization")
def instance_normalization(ctx: OpContext, x: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    normed, _, _ = _standardize(x, tuple(range(2, x.ndim)), ctx.attr("epsilon", 1e-5), _stash_dtype(ctx, x))
    y = normed * _per_channel(scale, x.ndim) + _per_channel(bias, x.ndim)
    return y.astype(x.dtype, copy=False)


@register("LayerNormalization")
def layer_normalization(
    ctx: OpContext, x: np.ndarray, scale: np.ndarray, bias: np.ndarray | None = None
) -> np.ndarray | tuple[np.ndarray, ...]:
    """Normalize over the dims from ``axis`` on; optional Mean and InvStdDev outputs."""
    axis = ctx.attr("axis", -1) % x.ndim
    stash = _stash_dtype(ctx, x)
    normed, mean, inv_std = _standardize(x, tuple(range(axis, x.ndim)), ctx.attr("epsilon", 1e-5), stash)
    y = normed * scale
    if bias is not None:
        y = y + bias
    y = y.astype(x.dtype, copy=False)
    return (y, mean, inv_std)[: ctx.num_outputs] if ctx.num_outputs > 1 else y


def _group_norm(ctx: OpContext, x: np.ndarray, scale: np.ndarray, bias: np.ndarray, per_group: bool) -> np.ndarray:
    groups = ctx.attr("num_groups")
    n, c = x.shape[:2]
    grouped = x.reshape(n, groups, -1)
    normed, _, _ = _standardize(grouped, (2,), ctx.attr("epsilon", 1e-5), _stash_dtype(ctx, x))
    normed = normed.reshape(x.shape)
    if per_group:
        scale, bias = np.repeat(scale, c // groups), np.repeat(bias, c // groups)
    y = normed * _per_channel(scale, x.ndim) + _per_channel(bias, x.ndim)
    return y.astype(x.dtype, copy=False)


@register("GroupNormalization", since=18)
def group_normalization_18(ctx: OpContext, x: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Opset 18: scale and bias hold one value per group."""
    return _group_norm(ctx, x, scale, bias, per_group=True)


@register("GroupNormalization", since=21)
def group_normalization(ctx: OpContext, x: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Opset 21+: scale and bias hold one value per channel."""
    return _group_norm(ctx, x, scale, bias, per_group=False)


@register("RMSNormalization")
def rms_normalization(ctx: OpContext, x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    axis = ctx.attr("axis", -1) % x.ndim
    xs = x.astype(_stash_dtype(ctx, x), copy=False)
    mean_square = (xs * xs).mean(axis=tuple(range(axis, x.ndim)), keepdims=True)
    y = xs / np.sqrt(mean_square + ctx.attr("epsilon", 1e-5)) * scale
    return y.astype(x.dtype, copy=False)


@register("LRN")
@widen_half
def lrn(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """Cross-channel local response normalization: x / (bias + alpha/size * Σ x²)^beta.

    The sum runs over channels c - floor((size-1)/2) .. c + ceil((size-1)/2), built from
    ``size`` shifted slices of the squares (size is small, typically 5).
    """
    size = ctx.attr("size")
    alpha, beta, bias = ctx.attr("alpha", 1e-4), ctx.attr("beta", 0.75), ctx.attr("bias", 1.0)
    before = (size - 1) // 2
    channels = x.shape[1]
    squares = np.square(x)
    window = np.zeros_like(squares)
    for shift in range(-before, size - before):
        lo, hi = max(0, -shift), min(channels, channels - shift)
        if lo < hi:
            window[:, lo:hi] += squares[:, lo + shift : hi + shift]
    window *= alpha / size
    window += bias
    if beta == 0.75:  # the common AlexNet/GoogLeNet value: v^-0.75 without a pow
        root = np.sqrt(window)
        window = root * np.sqrt(root)
    else:
        window **= beta
    return x / window


@register("LpNormalization")
def lp_normalization(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    axis, p = ctx.attr("axis", -1), ctx.attr("p", 2)
    norm = np.sum(np.abs(x) ** p, axis=axis, keepdims=True) ** (1 / p)
    return np.where(norm == 0, 0, x / np.where(norm == 0, 1, norm)).astype(x.dtype, copy=False)


@register("MeanVarianceNormalization")
def mean_variance_normalization(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """(x - mean) / (std + 1e-9) over ``axes`` (default N, H, W), the op's function body."""
    axes = tuple(ctx.attr("axes", (0, 2, 3)))
    xs = x.astype(np.promote_types(x.dtype, np.float32), copy=False)
    centered = xs - xs.mean(axis=axes, keepdims=True)
    std = np.sqrt((centered * centered).mean(axis=axes, keepdims=True))
    return (centered / (std + 1e-9)).astype(x.dtype, copy=False)
