"""Products, softmax, batch normalization and channel shuffle in plain numpy (the CPU
backend runs these on its compiled kernels)."""

from __future__ import annotations

import math

import numpy as np

from edge.ir import EDGETRT_DOMAIN
from edge.kernels.cpu.activations import apply_activation
from edge.kernels.cpu.precision import widen_half
from edge.kernels.reference.windows import BACKEND
from edge.kernels.registry import OpContext, register

__all__: list[str] = []  # kernels are reached through the registry


def _gemm(ctx: OpContext, a: np.ndarray, b: np.ndarray, c: np.ndarray | None) -> np.ndarray:
    """alpha · op(A) · op(B) + beta · C."""
    a = a.T if ctx.attr("transA", 0) else a
    b = b.T if ctx.attr("transB", 0) else b
    y = np.matmul(a, b) * np.asarray(ctx.attr("alpha", 1.0), np.result_type(a, b))
    beta = ctx.attr("beta", 1.0)
    if c is not None and beta != 0.0:  # beta 0 ignores C, even its NaNs
        y = y + c * np.asarray(beta, c.dtype)
    return y.astype(np.result_type(a, b), copy=False)


@register("Gemm", backend=BACKEND)
@widen_half
def gemm(ctx: OpContext, a: np.ndarray, b: np.ndarray, c: np.ndarray | None = None) -> np.ndarray:
    return _gemm(ctx, a, b, c)


@register("FusedGemm", domain=EDGETRT_DOMAIN, backend=BACKEND)
@widen_half
def fused_gemm(ctx: OpContext, a: np.ndarray, b: np.ndarray, c: np.ndarray | None = None, z: np.ndarray | None = None) -> np.ndarray:
    y = _gemm(ctx, a, b, c)
    if z is not None:
        y = y + z
    activation = ctx.attr("activation", "")
    return apply_activation(y, activation, tuple(ctx.attr("activation_params", []) or ()))


@register("MatMul", backend=BACKEND)
@widen_half
def matmul(ctx: OpContext, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.matmul(a, b)


def _softmax(x: np.ndarray, axis: int, log: bool) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    total = np.exp(shifted).sum(axis=axis, keepdims=True)
    return shifted - np.log(total) if log else np.exp(shifted) / total


def _softmax_kernel(log: bool, coerced: bool):
    """Opset 13+: along ``axis`` (default -1); before: over the 2-D flattening at ``axis`` (default 1)."""

    def kernel(ctx: OpContext, x: np.ndarray) -> np.ndarray:
        if not coerced:
            return _softmax(x, ctx.attr("axis", -1), log)
        axis = ctx.attr("axis", 1) % max(x.ndim, 1)
        return _softmax(x.reshape(math.prod(x.shape[:axis]), -1), 1, log).reshape(x.shape)

    kernel.__name__ = ("log_softmax" if log else "softmax") + ("_coerced" if coerced else "")
    return widen_half(kernel)


for _since, _coerced in ((1, True), (13, False)):
    register("Softmax", backend=BACKEND, since=_since)(_softmax_kernel(False, _coerced))
    register("LogSoftmax", backend=BACKEND, since=_since)(_softmax_kernel(True, _coerced))


def _channels(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A (C,) parameter (or opset < 9 ``spatial=0`` (C, *S) one) shaped to broadcast over x."""
    return p.reshape(p.shape + (1,) * (x.ndim - 1 - p.ndim))


def _normalize(x, scale, bias, mean, var, epsilon) -> np.ndarray:
    compute = np.promote_types(x.dtype, np.float32)
    normed = (x.astype(compute) - _channels(mean, x)) / np.sqrt(_channels(var, x).astype(compute) + epsilon)
    return (normed * _channels(scale, x) + _channels(bias, x)).astype(x.dtype)


@register("BatchNormalization", backend=BACKEND, inplace=True)
@widen_half
def batch_normalization(ctx: OpContext, x, scale, bias, mean, var) -> np.ndarray | tuple[np.ndarray, ...]:
    """(x - mean) / sqrt(var + eps) · scale + bias; ``training_mode=1`` normalizes by the
    batch statistics and returns the running ones updated by ``momentum``."""
    epsilon = ctx.attr("epsilon", 1e-5)
    if not ctx.attr("training_mode", 0):
        return _normalize(x, scale, bias, mean, var, epsilon)
    axes = (0,) + tuple(range(2, x.ndim))
    batch_mean, batch_var = x.mean(axis=axes), x.var(axis=axes)
    momentum = ctx.attr("momentum", 0.9)
    y = _normalize(x, scale, bias, batch_mean, batch_var, epsilon)
    running_mean = (mean * momentum + batch_mean * (1 - momentum)).astype(mean.dtype)
    running_var = (var * momentum + batch_var * (1 - momentum)).astype(var.dtype)
    return (y, running_mean, running_var)[: ctx.num_outputs]


@register("FusedBatchNormalization", domain=EDGETRT_DOMAIN, backend=BACKEND)
@widen_half
def fused_batch_normalization(ctx: OpContext, x, scale, bias, mean, var) -> np.ndarray:
    y = _normalize(x, scale, bias, mean, var, ctx.attr("epsilon", 1e-5))
    return apply_activation(y, ctx.attr("activation", ""), tuple(ctx.attr("activation_params", []) or ()))


@register("ChannelShuffle", domain=EDGETRT_DOMAIN, backend=BACKEND)
def channel_shuffle(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """Channel i·(C/g) + j moves to j·g + i."""
    groups = ctx.attr("groups")
    n, channels = x.shape[:2]
    grouped = x.reshape((n, groups, channels // groups) + x.shape[2:])
    return np.ascontiguousarray(np.swapaxes(grouped, 1, 2)).reshape(x.shape)
