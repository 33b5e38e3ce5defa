"""Transformer-block ops: RotaryEmbedding (RoPE) and the SwiGLU gated activation."""

from __future__ import annotations

import numpy as np

from scipy import special

from edge.kernels.registry import OpContext, register

__all__: list[str] = []


@register("RotaryEmbedding", since=23)
def rotary_embedding(
    ctx: OpContext, x: np.ndarray, cos_cache: np.ndarray, sin_cache: np.ndarray, position_ids: np.ndarray | None = None
) -> np.ndarray:
    """Input [batch, heads, seq, head] or [batch, seq, heads * head] (``num_heads``); the first
    ``rotary_embedding_dim`` features (all by default) are rotated as halves or, with
    ``interleaved``, as even/odd pairs; caches are [positions, dim / 2] read through
    ``position_ids``, or already [batch, seq, dim / 2]."""
    four_d = x.ndim == 4
    work = np.transpose(x, (0, 2, 1, 3)) if four_d else x.reshape(x.shape[0], x.shape[1], ctx.attr("num_heads"), -1)
    rotary = ctx.attr("rotary_embedding_dim", 0) or work.shape[-1]
    rotated, kept = work[..., :rotary], work[..., rotary:]
    if position_ids is not None:
        cos_cache, sin_cache = cos_cache[position_ids], sin_cache[position_ids]
    cos, sin = cos_cache[:, :, None, : rotary // 2], sin_cache[:, :, None, : rotary // 2]
    if ctx.attr("interleaved", 0):
        first, second = rotated[..., 0::2], rotated[..., 1::2]
    else:
        first, second = rotated[..., : rotary // 2], rotated[..., rotary // 2 :]
    real, imag = cos * first - sin * second, sin * first + cos * second
    if ctx.attr("interleaved", 0):
        turned = np.stack([real, imag], axis=-1).reshape(rotated.shape)
    else:
        turned = np.concatenate([real, imag], axis=-1)
    out = np.concatenate([turned, kept], axis=-1).astype(x.dtype)
    return np.transpose(out, (0, 2, 1, 3)).copy() if four_d else out.reshape(x.shape)


@register("SwiGLU", since=28)
def swiglu(ctx: OpContext, gate: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Swish(gate) * value, Swish(a) = a * sigmoid(alpha * a)."""
    work = gate.astype(np.float32) if gate.dtype == np.float16 else gate
    alpha = np.asarray(ctx.attr("alpha", 1.0), work.dtype)
    return (work * special.expit(alpha * work) * value).astype(gate.dtype)
