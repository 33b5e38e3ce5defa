"""Object-detection post-processing: NonMaxSuppression (greedy, per batch and class)."""

from __future__ import annotations

import numpy as np

from edge.kernels.registry import OpContext, register

__all__: list[str] = []


def _corners(boxes: np.ndarray, center: bool) -> np.ndarray:
    """[N, 4] boxes as (y_min, x_min, y_max, x_max), whichever corners or centres they give."""
    boxes = boxes.astype(np.float64)
    if center:
        xc, yc, w, h = boxes.T
        return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=1)
    y1, x1, y2, x2 = boxes.T
    return np.stack([np.minimum(y1, y2), np.minimum(x1, x2), np.maximum(y1, y2), np.maximum(x1, x2)], axis=1)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    top, left = np.maximum(box[0], others[:, 0]), np.maximum(box[1], others[:, 1])
    bottom, right = np.minimum(box[2], others[:, 2]), np.minimum(box[3], others[:, 3])
    overlap = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    union = area(box) + area(others) - overlap
    return np.where(union > 0, overlap / np.where(union > 0, union, 1), 0.0)


def _scalar(value: np.ndarray | None, default: float) -> float:
    return default if value is None or value.size == 0 else float(value.reshape(-1)[0])


@register("NonMaxSuppression", since=10)
def non_max_suppression(
    ctx: OpContext,
    boxes: np.ndarray,
    scores: np.ndarray,
    max_per_class: np.ndarray | None = None,
    iou_threshold: np.ndarray | None = None,
    score_threshold: np.ndarray | None = None,
) -> np.ndarray:
    """Rows (batch, class, box) kept greedily by descending score; a box whose IoU with a
    kept one exceeds ``iou_threshold`` is dropped, as is a score at or below the threshold."""
    limit = int(_scalar(max_per_class, 0))
    threshold = _scalar(iou_threshold, 0.0)
    floor = None if score_threshold is None else _scalar(score_threshold, 0.0)
    center = bool(ctx.attr("center_point_box", 0))
    selected = []
    for batch in range(boxes.shape[0]):
        corners = _corners(boxes[batch], center)
        for klass in range(scores.shape[1]):
            row = scores[batch, klass]
            order = np.argsort(-row, kind="stable")
            if floor is not None:
                order = order[row[order] > floor]
            kept: list[int] = []
            for index in order:
                if len(kept) >= limit:
                    break
                if not kept or not np.any(_iou(corners[index], corners[kept]) > threshold):
                    kept.append(int(index))
            selected += [(batch, klass, index) for index in kept]
    return np.array(selected, np.int64).reshape(-1, 3)
