"""CPU kernels and shape functions for the optimizer's fused ops (ONNX domain ``edgetrt``).

``FusedConv`` / ``FusedConvTranspose`` / ``FusedGemm`` / ``FusedBatchNormalization`` compute the
plain Conv / ConvTranspose / Gemm / inference BatchNormalization and an epilogue: add the
residual ``Z`` (convs and FusedGemm), then apply ``activation`` with ``activation_params``.
That is where fusion pays on the CPU: one output buffer instead of one per fused op, and for convs and
BatchNormalization with the compiled kernels one pass that writes the output with its
epilogue (``nn.convolve``, ``normalization.batch_normalize``); the others run it in place
afterwards.
``SiLU`` is x·sigmoid(x); ``Attention`` is softmax(Q·Kᵀ·scale + mask)·V over the last two dims
(with ``bshd``, over axes 1 and 3 of (batch, sequence, heads, size) tensors);
``ChannelShuffle`` moves channel i·(C/g) + j to j·g + i (ShuffleNet's interleave of groups).
A ``FusedConv`` with ``channels_last`` (and edgetrt::MaxPool / edgetrt::AveragePool, which
always have it) reads and writes NHWC images (``edge.passes.layout``): here the reference
runs the NCHW kernel between transposes.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from edge.ir import EDGETRT_DOMAIN, Value
from edge.ir.layout import TO_CHANNELS_FIRST, TO_CHANNELS_LAST, is_channels_last, to_channels_first, to_channels_last
from edge.ir.opinfo import resolve_pads
from edge.kernels.cpu.activations import apply_activation
from edge.kernels.cpu.compiled import compiled as _compiled
from edge.kernels.cpu.linalg import gemm
from edge.kernels.cpu.nn import _window, average_pool, conv_tactics, conv_transpose, convolve, max_pool
from edge.kernels.cpu.normalization import batch_normalize
from edge.kernels.cpu.precision import widen_half
from edge.kernels.registry import OpContext, register, register_shape

__all__: list[str] = []  # kernels are reached through the registry


def _activation(ctx: OpContext) -> tuple[str, tuple[float, ...]]:
    """The node's fused (activation, params), read from its attributes once (node cache)."""
    fused = ctx.cache.get("activation")
    if fused is None:
        fused = ctx.cache["activation"] = (ctx.attr("activation", ""), tuple(ctx.attr("activation_params", []) or ()))
    return fused


def _epilogue(ctx: OpContext, y: np.ndarray, residual: np.ndarray | None = None) -> np.ndarray:
    if residual is not None:
        y += residual
    return apply_activation(y, *_activation(ctx))


@register("FusedConv", domain=EDGETRT_DOMAIN, tactics=conv_tactics)
@widen_half
def fused_conv(
    ctx: OpContext, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, z: np.ndarray | None = None
) -> np.ndarray:
    """act(Conv(X, W, B) + Z), in NCHW or (``channels_last``) NHWC."""
    if not is_channels_last(ctx.node):
        return convolve(ctx, x, w, b, z, *_activation(ctx))
    return _nhwc(convolve(ctx, _nchw(x), w, b, None if z is None else _nchw(z), *_activation(ctx)))


def _nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(TO_CHANNELS_FIRST))


def _nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(TO_CHANNELS_LAST))


@register("MaxPool", domain=EDGETRT_DOMAIN)
def max_pool_channels_last(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """MaxPool over an NHWC image (no Indices output)."""
    return _nhwc(max_pool(ctx, _nchw(x)))


@register("AveragePool", domain=EDGETRT_DOMAIN)
def average_pool_channels_last(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """AveragePool over an NHWC image."""
    return _nhwc(average_pool(ctx, _nchw(x)))


@register("FusedConvTranspose", domain=EDGETRT_DOMAIN)
def fused_conv_transpose(
    ctx: OpContext, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, z: np.ndarray | None = None
) -> np.ndarray:
    """act(ConvTranspose(X, W, B) + Z)."""
    return _epilogue(ctx, conv_transpose(ctx, x, w, b), z)


@register("FusedGemm", domain=EDGETRT_DOMAIN)
def fused_gemm(
    ctx: OpContext, a: np.ndarray, b: np.ndarray, c: np.ndarray | None = None, z: np.ndarray | None = None
) -> np.ndarray:
    """act(alpha·op(A)·op(B) + beta·C + Z)."""
    return _epilogue(ctx, gemm(ctx, a, b, c), z)


@register("FusedBatchNormalization", domain=EDGETRT_DOMAIN)
def fused_batch_normalization(
    ctx: OpContext, x: np.ndarray, scale: np.ndarray, bias: np.ndarray, mean: np.ndarray, var: np.ndarray
) -> np.ndarray:
    """act(BatchNormalization(X, scale, B, mean, var)), inference mode (a scale and shift per channel)."""
    return batch_normalize(ctx, x, scale, bias, mean, var, *_activation(ctx))


@register("SiLU", domain=EDGETRT_DOMAIN, inplace=True)
def silu(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """x · sigmoid(x) (a.k.a. Swish with beta 1)."""
    return x * special.expit(x)


@register("Attention", domain=EDGETRT_DOMAIN)
def attention(
    ctx: OpContext, q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """softmax(Q·Kᵀ·scale + mask)·V; Q (..., Sq, D), K (..., Sk, D), V (..., Sk, Dv), or with
    ``bshd=1`` Q (B, Sq, H, D), K (B, Sk, H, D), V (B, Sk, H, Dv) and the output (B, Sq, H, Dv);
    the mask broadcasts against the (..., Sq, Sk) scores either way."""
    bshd = bool(ctx.attr("bshd", 0))
    if bshd:
        q, k, v = (np.swapaxes(t, 1, 2) for t in (q, k, v))
    scores = np.matmul(q, np.swapaxes(k, -1, -2))
    scale = ctx.attr("scale", 1.0)
    if scale != 1.0:
        scores *= np.asarray(scale, scores.dtype)
    if mask is not None:
        scores = scores + mask
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    out = np.matmul(scores, v)
    return np.ascontiguousarray(np.swapaxes(out, 1, 2)) if bshd else out


# -- shape functions ----------------------------------------------------------------------


def _conv_out(ctx: OpContext, x_shape: tuple | None, w_shape: tuple | None) -> tuple | None:
    """NCHW output dims of a convolution for static spatial dims (unknown ones stay None)."""
    if x_shape is None or w_shape is None:
        return None
    kernel = tuple(ctx.attr("kernel_shape") or w_shape[2:])
    rank = len(kernel)
    spatial = x_shape[2:]
    strides = tuple(ctx.attr("strides") or (1,) * rank)
    dilations = tuple(ctx.attr("dilations") or (1,) * rank)
    auto_pad, pads = ctx.attr("auto_pad", "NOTSET"), ctx.attr("pads")
    out = []
    for i, size in enumerate(spatial):
        if not isinstance(size, int) or not isinstance(kernel[i], int):
            out.append(None)
            continue
        dim_pads = None if not pads else (pads[i], pads[i + rank])
        (begin,), (end,) = resolve_pads(auto_pad, dim_pads, (size,), kernel[i : i + 1], strides[i : i + 1], dilations[i : i + 1])
        out.append((size + begin + end - ((kernel[i] - 1) * dilations[i] + 1)) // strides[i] + 1)
    return (x_shape[0], w_shape[0], *out)


def _conv_transpose_out(ctx: OpContext, x: Value, w: Value) -> tuple | None:
    if x.shape is None or w.shape is None:
        return None
    kernel = tuple(ctx.attr("kernel_shape") or w.shape[2:])
    rank = len(kernel)
    channels = w.shape[1] * ctx.attr("group", 1) if isinstance(w.shape[1], int) else None
    output_shape = ctx.attr("output_shape")
    if output_shape is not None:
        return (x.shape[0], channels, *output_shape[-rank:])
    strides = tuple(ctx.attr("strides") or (1,) * rank)
    dilations = tuple(ctx.attr("dilations") or (1,) * rank)
    extra = tuple(ctx.attr("output_padding") or (0,) * rank)
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    pads = tuple(ctx.attr("pads") or (0,) * (2 * rank)) if auto_pad == "NOTSET" else (0,) * (2 * rank)
    out = []
    for i, size in enumerate(x.shape[2:]):
        if not isinstance(size, int):
            out.append(None)
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out.append(size * strides[i])
        else:
            full = strides[i] * (size - 1) + extra[i] + (kernel[i] - 1) * dilations[i] + 1
            out.append(full - pads[i] - pads[i + rank])
    return (x.shape[0], channels, *out)


@register_shape("FusedConv", domain=EDGETRT_DOMAIN)
def _fused_conv_shape(ctx: OpContext, x: Value, w: Value, *rest: Value | None) -> list[tuple]:
    if not is_channels_last(ctx.node) or x.shape is None:
        return [(x.dtype, _conv_out(ctx, x.shape, w.shape))]
    out = _conv_out(ctx, to_channels_first(x.shape), w.shape)
    return [(x.dtype, None if out is None else to_channels_last(out))]


@register_shape("MaxPool", "AveragePool", domain=EDGETRT_DOMAIN)
def _pool_channels_last_shape(ctx: OpContext, x: Value) -> list[tuple]:
    if x.shape is None or not all(isinstance(d, int) for d in x.shape[1:3]):
        return [(x.dtype, None)]
    window = _window(ctx.node.attrs, tuple(x.shape[1:3]), tuple(ctx.attr("kernel_shape")), bool(ctx.attr("ceil_mode", 0)))
    return [(x.dtype, (x.shape[0], *window.out, x.shape[3]))]


@register_shape("FusedConvTranspose", domain=EDGETRT_DOMAIN)
def _fused_conv_transpose_shape(ctx: OpContext, x: Value, w: Value, *rest: Value | None) -> list[tuple]:
    return [(x.dtype, _conv_transpose_out(ctx, x, w))]


@register_shape("FusedBatchNormalization", domain=EDGETRT_DOMAIN)
def _fused_batch_normalization_shape(ctx: OpContext, x: Value, *rest: Value | None) -> list[tuple]:
    return [(x.dtype, x.shape)]


@register_shape("FusedGemm", domain=EDGETRT_DOMAIN)
def _fused_gemm_shape(ctx: OpContext, a: Value, b: Value, *rest: Value | None) -> list[tuple]:
    if a.shape is None or b.shape is None:
        return [(a.dtype, None)]
    m = a.shape[1] if ctx.attr("transA", 0) else a.shape[0]
    n = b.shape[0] if ctx.attr("transB", 0) else b.shape[1]
    return [(a.dtype, (m, n))]


@register("ChannelShuffle", domain=EDGETRT_DOMAIN)
def channel_shuffle(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    """(N, g, C/g, *S) -> (N, C/g, g, *S) over the channel axis, one copy into the output buffer."""
    groups = ctx.attr("groups")
    n, channels = x.shape[:2]
    y = ctx.output(0, x.shape, x.dtype)
    compiled = _compiled()
    if compiled is not None and x.dtype == np.float32:  # planes copied in parallel
        compiled.shuffle_channels(np.ascontiguousarray(x).reshape(n, channels, -1), y.reshape(n, channels, -1), groups)
        return y
    np.copyto(y.reshape(n, channels // groups, groups, -1), x.reshape(n, groups, channels // groups, -1).transpose(0, 2, 1, 3))
    return y


@register_shape("SiLU", "ChannelShuffle", domain=EDGETRT_DOMAIN)
def _same_shape(ctx: OpContext, x: Value) -> list[tuple]:
    return [(x.dtype, x.shape)]


@register_shape("Attention", domain=EDGETRT_DOMAIN)
def _attention_shape(ctx: OpContext, q: Value, k: Value, v: Value, *rest: Value | None) -> list[tuple]:
    if q.shape is None or v.shape is None:
        return [(q.dtype, None)]
    return [(q.dtype, (*q.shape[:-1], v.shape[-1]))]
