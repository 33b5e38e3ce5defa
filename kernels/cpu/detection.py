"""Object-detection ops: NonMaxSuppression (greedy, per batch and class) and RoiAlign."""

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


def _bilinear_taps(start: float, bin_size: float, bins: int, grid: int, size: int) -> tuple[np.ndarray, ...]:
    """Along one axis, for each of the ``bins * grid`` sample points of a RoiAlign window:
    the two neighbouring pixel indices, their weights, and whether the point is inside
    [-1, size] (outside ones contribute nothing). A point past the last pixel clamps to it."""
    offsets = (np.arange(grid) + 0.5) * bin_size / grid
    points = start + (np.arange(bins)[:, None] * bin_size + offsets[None, :]).reshape(-1)
    inside = (points >= -1.0) & (points <= size)
    points = np.maximum(points, 0.0)
    low = np.floor(points).astype(np.int64)
    edge = low >= size - 1
    low = np.where(edge, size - 1, low)
    high = np.where(edge, size - 1, low + 1)
    frac = np.where(edge, 0.0, points - low)
    return low, high, 1.0 - frac, frac, inside


@register("RoiAlign", since=10)
def roi_align(ctx: OpContext, x: np.ndarray, rois: np.ndarray, batch_indices: np.ndarray) -> np.ndarray:
    """Pool each [x1, y1, x2, y2] region of image ``batch_indices[r]`` into output_height x
    output_width bins, each the average (or, mode "max", the maximum of the weighted
    corner values) of ``sampling_ratio``² bilinear samples (adaptive when 0). Opset 16's
    "half_pixel" shifts coordinates by half a pixel; "output_half_pixel" (and opset 10)
    does not and makes every region at least 1 x 1."""
    out_h, out_w = ctx.attr("output_height", 1), ctx.attr("output_width", 1)
    ratio, scale = ctx.attr("sampling_ratio", 0), ctx.attr("spatial_scale", 1.0)
    half_pixel = ctx.opset >= 16 and ctx.attr("coordinate_transformation_mode", "half_pixel") == "half_pixel"
    use_max = ctx.attr("mode", "avg") == "max"
    channels, height, width = x.shape[1:]
    out = np.zeros((rois.shape[0], channels, out_h, out_w), x.dtype)
    shift = 0.5 if half_pixel else 0.0
    for r, (box, image) in enumerate(zip(rois.astype(np.float64), batch_indices.astype(np.int64))):
        x1, y1, x2, y2 = box * scale - shift
        roi_h, roi_w = y2 - y1, x2 - x1
        if not half_pixel:
            roi_h, roi_w = max(roi_h, 1.0), max(roi_w, 1.0)
        grid_h = ratio if ratio > 0 else int(np.ceil(roi_h / out_h))
        grid_w = ratio if ratio > 0 else int(np.ceil(roi_w / out_w))
        if grid_h == 0 or grid_w == 0:
            continue
        y_low, y_high, y_wlow, y_whigh, y_in = _bilinear_taps(y1, roi_h / out_h, out_h, grid_h, height)
        x_low, x_high, x_wlow, x_whigh, x_in = _bilinear_taps(x1, roi_w / out_w, out_w, grid_w, width)
        inside = y_in[:, None] & x_in[None, :]
        plane = x[image]
        terms = [
            plane[:, ys][:, :, xs] * np.where(inside, wy[:, None] * wx[None, :], 0.0)
            for ys, wy in ((y_low, y_wlow), (y_high, y_whigh))
            for xs, wx in ((x_low, x_wlow), (x_high, x_whigh))
        ]
        shape = (channels, out_h, grid_h, out_w, grid_w)
        if use_max:
            out[r] = np.maximum.reduce(terms).reshape(shape).max(axis=(2, 4))
        else:
            out[r] = sum(terms).reshape(shape).sum(axis=(2, 4)) / (grid_h * grid_w)
    return out
