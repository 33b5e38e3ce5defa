"""Ops of linear-attention and state-space models that carry a recurrent state between
calls: CausalConvWithState (Mamba, Gated DeltaNet) and LinearAttention."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import special

from edge.errors import KernelError
from edge.kernels.cpu.precision import widen_half
from edge.kernels.registry import OpContext, register

__all__: list[str] = []


@register("CausalConvWithState", since=27)
@widen_half
def causal_conv_with_state(
    ctx: OpContext, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, past_state: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Depthwise causal 1-D convolution of [batch, channels, length] with [channels, 1, k]
    weights over the past state (zeros when absent) followed by the input; the new state is
    the last k - 1 positions of that concatenation. ``activation`` silu/swish is fused."""
    batch, channels, _ = x.shape
    taps = weight.shape[-1]
    if past_state is None:
        past_state = np.zeros((batch, channels, taps - 1), x.dtype)
    padded = np.concatenate([past_state.astype(x.dtype), x], axis=2)
    windows = sliding_window_view(padded, taps, axis=2)  # [batch, channels, length, k]
    y = np.einsum("bclk,ck->bcl", windows, weight[:, 0, :])
    if bias is not None:
        y = y + bias[:, None]
    activation = ctx.attr("activation", "none")
    if activation in ("silu", "swish"):
        y = y * special.expit(y)
    elif activation != "none":
        raise KernelError(f"node '{ctx.node.name}' (CausalConvWithState): unknown activation '{activation}' (silu, swish, none)")
    return y.astype(x.dtype), padded[:, :, padded.shape[2] - (taps - 1) :].copy()


def _per_head(x: np.ndarray, heads: int) -> np.ndarray:
    """[batch, time, heads * size] -> [batch, time, heads, size]; one packed value (a
    [batch, time, 1] rate) becomes [batch, time, 1, 1], broadcast over heads."""
    if x.shape[2] == 1:
        return x.reshape(x.shape[0], x.shape[1], 1, 1)
    return x.reshape(x.shape[0], x.shape[1], heads, -1)


_RULES = ("linear", "gated", "delta", "gated_delta")


@register("LinearAttention", since=27)
@widen_half
def linear_attention(
    ctx: OpContext,
    query: np.ndarray,
    key: np.ndarray,
    value: np.ndarray,
    past_state: np.ndarray | None = None,
    decay: np.ndarray | None = None,
    beta: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The token-by-token recurrence of ``update_rule`` over a [batch, kv_heads, d_k, d_v]
    state S (zeros when absent): ``gated`` first decays S by exp(decay), ``delta`` adds
    beta·k⊗(v - Sᵀk) instead of k⊗v; the output is scale·qᵀS, every ``q_num_heads /
    kv_num_heads`` query heads sharing one state."""
    rule = ctx.attr("update_rule", "gated_delta")
    if rule not in _RULES:
        raise KernelError(f"node '{ctx.node.name}' (LinearAttention): unknown update_rule '{rule}' ({', '.join(_RULES)})")
    q_heads, kv_heads = ctx.attr("q_num_heads"), ctx.attr("kv_num_heads")
    gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    if (gated and decay is None) or (delta and beta is None):
        raise KernelError(f"node '{ctx.node.name}' (LinearAttention): update_rule '{rule}' needs the {'decay' if gated and decay is None else 'beta'} input")
    batch, steps, _ = query.shape
    q, k, v = _per_head(query, q_heads), _per_head(key, kv_heads), _per_head(value, kv_heads)
    d_k, d_v = k.shape[-1], v.shape[-1]
    scale = ctx.attr("scale", 0.0) or 1.0 / np.sqrt(d_k)
    state = np.zeros((batch, kv_heads, d_k, d_v), query.dtype) if past_state is None else past_state.astype(query.dtype)
    gates = np.exp(_per_head(decay, kv_heads)) if gated else None  # [b, t, heads, d_k or 1]
    rates = _per_head(beta, kv_heads) if delta else None  # [b, t, heads or 1, 1]
    group = q_heads // kv_heads
    out = np.empty((batch, steps, q_heads, d_v), query.dtype)
    for t in range(steps):
        if gates is not None:
            state = state * gates[:, t, :, :, None]
        k_t, v_t = k[:, t], v[:, t]
        if rates is not None:
            v_t = rates[:, t] * (v_t - np.einsum("bhkv,bhk->bhv", state, k_t))
        state = state + k_t[..., :, None] * v_t[..., None, :]
        out[:, t] = scale * np.einsum("bhgk,bhkv->bhgv", q[:, t].reshape(batch, kv_heads, group, d_k), state).reshape(batch, q_heads, d_v)
    return out.reshape(batch, steps, q_heads * d_v), state
