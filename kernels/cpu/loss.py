"""Training losses that exported models keep in their graphs: NegativeLogLikelihoodLoss and
SoftmaxCrossEntropyLoss (class axis 1, optional class weights and ignore_index)."""

from __future__ import annotations

import numpy as np

from edge.kernels.registry import OpContext, register

__all__: list[str] = []


def _nll(ctx: OpContext, log_prob: np.ndarray, target: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    """-log_prob[n, target[n, ...], ...] times the class weight, reduced as the node asks."""
    ignore = ctx.attr("ignore_index")
    target = target.astype(np.int64)
    keep = np.ones(target.shape, bool) if ignore is None else target != ignore
    safe = np.where(keep, target, 0)
    picked = np.take_along_axis(log_prob, safe[:, None], axis=1)[:, 0]
    weights = (np.ones(log_prob.shape[1], log_prob.dtype) if weight is None else weight.astype(log_prob.dtype))[safe]
    weights = np.where(keep, weights, 0).astype(log_prob.dtype)
    loss = -picked * weights
    reduction = ctx.attr("reduction", "mean")
    if reduction == "none":
        return loss
    if reduction == "sum":
        return np.asarray(loss.sum(), log_prob.dtype)
    return np.asarray(loss.sum() / weights.sum(), log_prob.dtype)


def _working(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) if x.dtype == np.float16 else x


@register("NegativeLogLikelihoodLoss", since=12)
def negative_log_likelihood_loss(
    ctx: OpContext, x: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None
) -> np.ndarray:
    return _nll(ctx, _working(x), target, weight).astype(x.dtype)


@register("SoftmaxCrossEntropyLoss", since=12)
def softmax_cross_entropy_loss(
    ctx: OpContext, scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, ...]:
    work = _working(scores)
    shifted = work - work.max(axis=1, keepdims=True)
    log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = _nll(ctx, log_prob, labels, weights).astype(scores.dtype)
    return (loss, log_prob.astype(scores.dtype))[: max(ctx.num_outputs, 1)]
