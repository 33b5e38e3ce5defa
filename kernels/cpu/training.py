"""The optimizer steps of the ai.onnx.preview.training domain (Momentum, Adagrad, Adam):
one update of n tensors laid out as inputs R, T, X_1..n, G_1..n, state_1..n..., outputs
X_new_1..n, state_new_1..n..."""

from __future__ import annotations

import numpy as np

from edge.kernels.registry import OpContext, register

__all__: list[str] = []

TRAINING = "ai.onnx.preview.training"


def _groups(arrays: tuple[np.ndarray, ...], count: int) -> list[tuple[np.ndarray, ...]]:
    """The n per-tensor tuples (X_i, G_i, state_i...) of ``count`` parallel input lists."""
    n = len(arrays) // count
    return [tuple(arrays[k * n + i] for k in range(count)) for i in range(n)]


def _transpose(results: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Per-tensor result tuples -> the outputs, all X_new first, then each state in turn."""
    return tuple(r[k] for k in range(len(results[0])) for r in results)


@register("Momentum", domain=TRAINING)
def momentum(ctx: OpContext, rate: np.ndarray, count: np.ndarray, *tensors: np.ndarray) -> tuple[np.ndarray, ...]:
    """V_new = alpha·V + beta·G' (beta is 1 on step 0), G' = G + norm_coefficient·X; X moves by
    R·V_new, or with mode "nesterov" by R·(G' + alpha·V_new)."""
    alpha, beta, norm = ctx.attr("alpha"), ctx.attr("beta"), ctx.attr("norm_coefficient")
    nesterov = ctx.attr("mode") == "nesterov"
    step, r = int(np.asarray(count).reshape(-1)[0]), float(np.asarray(rate).reshape(-1)[0])
    results = []
    for x, g, v in _groups(tensors, 3):
        g = norm * x + g
        v_new = alpha * v + (beta if step > 0 else 1.0) * g
        x_new = x - r * (g + alpha * v_new if nesterov else v_new)
        results.append((x_new.astype(x.dtype), v_new.astype(v.dtype)))
    return _transpose(results)


@register("Adagrad", domain=TRAINING)
def adagrad(ctx: OpContext, rate: np.ndarray, count: np.ndarray, *tensors: np.ndarray) -> tuple[np.ndarray, ...]:
    """H_new = H + G'², X_new = X - r·G' / (√H_new + epsilon), r = R / (1 + T·decay_factor)."""
    norm, decay, epsilon = ctx.attr("norm_coefficient", 0.0), ctx.attr("decay_factor", 0.0), ctx.attr("epsilon", 1e-6)
    r = float(np.asarray(rate).reshape(-1)[0]) / (1 + int(np.asarray(count).reshape(-1)[0]) * decay)
    results = []
    for x, g, h in _groups(tensors, 3):
        g = norm * x + g
        h_new = h + g * g
        x_new = x - r * g / (np.sqrt(h_new) + epsilon)
        results.append((x_new.astype(x.dtype), h_new.astype(h.dtype)))
    return _transpose(results)


@register("Adam", domain=TRAINING)
def adam(ctx: OpContext, rate: np.ndarray, count: np.ndarray, *tensors: np.ndarray) -> tuple[np.ndarray, ...]:
    """Running averages V (alpha) and H (beta) of G' and G'², the step bias-corrected after
    step 0, then X scaled by 1 - norm_coefficient_post."""
    alpha, beta, epsilon = ctx.attr("alpha", 0.9), ctx.attr("beta", 0.999), ctx.attr("epsilon", 1e-6)
    norm, norm_post = ctx.attr("norm_coefficient", 0.0), ctx.attr("norm_coefficient_post", 0.0)
    step, r = int(np.asarray(count).reshape(-1)[0]), float(np.asarray(rate).reshape(-1)[0])
    if step > 0:
        r = r * np.sqrt(1 - beta**step) / (1 - alpha**step)
    results = []
    for x, g, v, h in _groups(tensors, 4):
        g = norm * x + g
        v_new = alpha * v + (1 - alpha) * g
        h_new = beta * h + (1 - beta) * g * g
        x_new = (1 - norm_post) * (x - r * v_new / (np.sqrt(h_new) + epsilon))
        results.append((x_new.astype(x.dtype), v_new.astype(v.dtype), h_new.astype(h.dtype)))
    return _transpose(results)
