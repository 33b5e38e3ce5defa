"""Transformer-block ops: scaled dot-product Attention, RotaryEmbedding (RoPE) and the
SwiGLU gated activation."""

from __future__ import annotations

import numpy as np

from scipy import special

from edge.ir.dtypes import from_onnx
from edge.kernels.cpu.precision import HALF_FLOATS
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


def _heads(x: np.ndarray, heads: int) -> np.ndarray:
    """[batch, seq, heads * size] -> [batch, heads, seq, size]."""
    return x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(0, 2, 1, 3)


def _scaled_scores(ctx: OpContext, q: np.ndarray, k: np.ndarray, v: np.ndarray, work: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Q·Kᵀ·``scale`` (1/√head_size by default) and V, in ``work`` precision, each K/V head
    repeated for the contiguous group of query heads that shares it."""
    groups = q.shape[1] // k.shape[1]
    keys, values = np.repeat(k, groups, axis=1).astype(work), np.repeat(v, groups, axis=1).astype(work)
    scale = ctx.attr("scale") or 1.0 / np.sqrt(q.shape[-1])
    return np.matmul(q.astype(work), np.swapaxes(keys, -1, -2)) * work.type(scale), values


def _allowed_keys(ctx: OpContext, q_len: int, kv_len: int, offset: int | np.ndarray) -> np.ndarray | None:
    """The causal frontier and the sliding window as one boolean [.., q, kv] mask (None: every
    key allowed). Query ``i`` sits at absolute position ``i + offset`` (the keys before its
    block: the past cache length, or ``nonpad_kv_seqlen - q_len`` per batch)."""
    left, right = ctx.attr("left_window_size", -1), ctx.attr("right_window_size", -1)
    causal = ctx.attr("is_causal", 0)
    if not causal and left < 0 and right < 0:
        return None
    position = np.arange(q_len)[:, None] + np.reshape(offset, (-1, 1, 1, 1))  # [batch or 1, 1, q, 1]
    distance = position - np.arange(kv_len)  # query position minus key position
    allowed = np.ones(distance.shape, bool)
    if causal:
        allowed &= distance >= 0
    if left >= 0:
        allowed &= distance <= left
    if right >= 0:
        allowed &= -distance <= right
    return allowed


def _attention_bias(
    ctx: OpContext, mask: np.ndarray | None, q_len: int, kv_len: int, offset: int | np.ndarray, nonpad: np.ndarray | None, dtype: np.dtype
) -> np.ndarray:
    """The additive bias of the scores: a float mask plus -inf wherever a boolean mask, the
    causal frontier, the window or the padding (``nonpad_kv_seqlen``) disallows a key. A
    mask shorter than the keys is padded with disallowed positions."""
    allowed = _allowed_keys(ctx, q_len, kv_len, offset)
    bias = np.zeros((q_len, kv_len), dtype)
    if mask is not None:
        pad = [(0, 0)] * (mask.ndim - 1) + [(0, kv_len - mask.shape[-1])]
        if mask.dtype == np.bool_:
            mask = np.pad(mask, pad, constant_values=False)
            allowed = mask if allowed is None else allowed & mask
        else:
            bias = bias + np.pad(mask.astype(dtype), pad, constant_values=-np.inf)
    if nonpad is not None:
        unpadded = (np.arange(kv_len) < nonpad.reshape(-1, 1, 1, 1))
        allowed = unpadded if allowed is None else allowed & unpadded
    if allowed is not None:
        bias = bias + np.where(allowed, dtype.type(0), dtype.type(-np.inf))
    return bias


def _guarded_softmax(logits: np.ndarray, masked_rows: np.ndarray) -> np.ndarray:
    """Softmax over the last axis; a row whose keys are all disallowed gives zeros (not NaN)."""
    peak = np.max(logits, axis=-1, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0)
    weights = np.exp(logits - peak)
    total = np.sum(weights, axis=-1, keepdims=True)
    weights = weights / np.where(total == 0, 1, total)
    return np.where(masked_rows, 0, weights)


@register("Attention", since=23)
def attention(
    ctx: OpContext,
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    attn_mask: np.ndarray | None = None,
    past_key: np.ndarray | None = None,
    past_value: np.ndarray | None = None,
    nonpad_kv_seqlen: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """ONNX Attention (opsets 23-25): softmax(softcap(Q·Kᵀ·scale) + bias)·V over MHA, GQA or
    MQA heads, 3-D inputs split by ``q_num_heads``/``kv_num_heads``, the KV cache grown by
    ``past_key``/``past_value``, and the optional 4th output chosen by ``qk_matmul_output_mode``
    (0 raw scores, 1 after softcap, 2 with the bias, 3 the probabilities). Half floats run in
    float32; the softmax runs in ``softmax_precision`` when given."""
    dtype = q.dtype
    work = np.dtype(np.float32) if dtype in HALF_FLOATS else dtype
    three_d = q.ndim == 3
    if three_d:
        q, k, v = _heads(q, ctx.attr("q_num_heads")), _heads(k, ctx.attr("kv_num_heads")), _heads(v, ctx.attr("kv_num_heads"))
    present_key = k if past_key is None else np.concatenate([past_key, k], axis=2)
    present_value = v if past_value is None else np.concatenate([past_value, v], axis=2)
    scores, values = _scaled_scores(ctx, q, present_key, present_value, work)
    raw = scores
    softcap = ctx.attr("softcap", 0.0)
    if softcap > 0:
        scores = work.type(softcap) * np.tanh(scores / work.type(softcap))
    q_len, kv_len = q.shape[2], present_key.shape[2]
    if past_key is not None:
        offset: int | np.ndarray = past_key.shape[2]
    elif nonpad_kv_seqlen is not None:
        offset = nonpad_kv_seqlen.astype(np.int64) - q_len
    else:
        offset = 0
    bias = _attention_bias(ctx, attn_mask, q_len, kv_len, offset, nonpad_kv_seqlen, work)
    logits = scores + bias
    softmax_dtype = from_onnx(ctx.attr("softmax_precision")) if ctx.attr("softmax_precision") is not None else work
    masked_rows = np.isneginf(np.max(bias, axis=-1, keepdims=True))
    if softmax_dtype in HALF_FLOATS:  # rounded to the half type, computed in float32, rounded again
        probs = _guarded_softmax(logits.astype(softmax_dtype).astype(np.float32), masked_rows).astype(softmax_dtype)
    else:
        probs = _guarded_softmax(logits.astype(softmax_dtype), masked_rows)
    probs = probs.astype(work)
    y = np.matmul(probs, values)
    if three_d:
        y = y.transpose(0, 2, 1, 3).reshape(y.shape[0], y.shape[2], -1)
    mode = ctx.attr("qk_matmul_output_mode", 0)
    qk = {0: raw, 1: scores, 2: logits, 3: probs}[mode]
    outputs = (y.astype(dtype), present_key, present_value, qk.astype(dtype))
    return outputs[: ctx.num_outputs]


@register("FlexAttention", domain="ai.onnx.preview", since=1)
def flex_attention(ctx: OpContext, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """softmax(score_mod(Q·Kᵀ·scale))·V with ``prob_mod`` applied to the probabilities, both
    optional body graphs on [batch, q_heads, q_len, kv_len] tensors of the softmax precision
    (float32, or double for double inputs); K/V heads shared by contiguous query heads."""
    precision = ctx.attr("softmax_precision")
    work = from_onnx(precision) if precision is not None else np.dtype(np.float64 if q.dtype == np.float64 else np.float32)
    scores, values = _scaled_scores(ctx, q, k, v, work)
    score_mod, prob_mod = ctx.attr("score_mod"), ctx.attr("prob_mod")
    if score_mod is not None:
        scores = np.asarray(ctx.run_subgraph(score_mod, [scores])[0], work)
    weights = np.exp(scores - np.max(scores, axis=-1, keepdims=True))
    probs = weights / np.sum(weights, axis=-1, keepdims=True)
    if prob_mod is not None:
        probs = np.asarray(ctx.run_subgraph(prob_mod, [probs])[0], work)
    return np.matmul(probs, values).astype(q.dtype)
