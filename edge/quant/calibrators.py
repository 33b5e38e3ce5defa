"""Calibration algorithms: the threshold (amax) of one tensor from its |x| statistics.

- ``entropy2`` (TensorRT's IInt8EntropyCalibrator2): a 2048-bin histogram of |x| over
  [0, max|x|] whose first bin (the zero spike after ReLU) is set to the second's count, as
  NVIDIA's pytorch-quantization does, so the spike does not drag the threshold down; for
  every candidate end bin i in 128..2048 the reference distribution P is the
  first i bins with the clipped tail's mass added to bin i-1, the candidate Q merges those i
  bins (tail excluded) into 128 groups and spreads each group's total evenly over the group's
  bins where P is non-empty (bins empty in P stay empty in Q); the threshold is the right edge of the i with the smallest KL(P || Q), the
  last one among ties.
- ``minmax`` (IInt8MinMaxCalibrator): max |x| over all batches, no clipping.
- ``percentile``: the right edge of the histogram bin where the CDF of |x| reaches the
  percentile (pytorch-quantization's method; not a TensorRT calibrator).

The scale TensorRT stores is threshold / 127.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CALIBRATORS",
    "HISTOGRAM_BINS",
    "QUANTIZED_BINS",
    "entropy_threshold",
    "percentile_threshold",
]

HISTOGRAM_BINS = 2048
QUANTIZED_BINS = 128
"""Non-negative levels of a symmetric 8-bit code: the groups Q is merged into."""

CALIBRATORS: dict[str, str] = {
    "entropy2": "EntropyCalibration2",
    "minmax": "MinMaxCalibration",
    "percentile": "PercentileCalibration",
}
"""Calibrator name -> the algorithm token of its cache header (``TRT-<version>-<token>``).
TensorRT knows the first two; a percentile cache is edgetrt's own."""


def _xlogx(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)


def entropy_threshold(hist: np.ndarray, bin_width: float) -> float:
    """The KL-optimal threshold of a histogram of |x| whose bins are ``bin_width`` wide.

    All candidates are scored at once. With P's total S_P (every bin: the tail is folded
    in) and Q's total S_Q (the kept bins), KL(P||Q) = (sum P log P - sum P log Q) / S_P +
    log(S_Q / S_P). Q is constant over a group, so a group contributes (its P mass) x
    log(group total / non-empty bins) to sum P log Q. For end bin i the groups are
    w = i // 128 bins wide: the first 127 depend only on w, the last spans [127 w, i) and
    holds the clipped tail in its last bin (non-empty in P whenever the tail is); KL is
    infinite only when the tail lands in a last group with no kept mass.
    """
    hist = np.array(hist, np.float64)
    bins = len(hist)
    if bins <= QUANTIZED_BINS:
        return bins * bin_width
    hist[0] = hist[1]
    total = hist.sum()
    if total <= 0:
        return bins * bin_width
    nonzero = hist > 0
    cum = np.concatenate([[0.0], np.cumsum(hist)])
    cum_nonzero = np.concatenate([[0], np.cumsum(nonzero)])
    cum_plogp = np.concatenate([[0.0], np.cumsum(_xlogx(hist))])

    ends = np.arange(QUANTIZED_BINS, bins + 1)
    width = ends // QUANTIZED_BINS
    start = (QUANTIZED_BINS - 1) * width  # first bin of the last group
    first_groups: dict[int, float] = {}  # sum of P log Q over the first 127 groups, per width
    for w in np.unique(width):
        starts = np.arange(QUANTIZED_BINS - 1) * w
        totals = np.add.reduceat(hist[: starts[-1] + w], starts)
        occupied = np.add.reduceat(nonzero[: starts[-1] + w].astype(np.float64), starts)
        first_groups[int(w)] = float(np.sum(_xlogx(totals) - totals * np.log(np.maximum(occupied, 1))))
    fixed = np.array([first_groups[int(w)] for w in width])

    tail = total - cum[ends]
    kept_last = hist[ends - 1]
    plogp = cum_plogp[ends - 1] + _xlogx(kept_last + tail)
    group = cum[ends] - cum[start]
    occupied = cum_nonzero[ends] - cum_nonzero[start] + ((kept_last == 0) & (tail > 0))
    share = np.where(occupied > 0, group / np.maximum(occupied, 1), 1.0)
    kept = cum[ends]
    with np.errstate(divide="ignore", invalid="ignore"):
        plogq = fixed + (group + tail) * np.log(share)
        divergence = (plogp - plogq) / total + np.log(kept / total)
    divergence[(group <= 0) & (tail > 0)] = np.inf
    divergence[kept <= 0] = np.inf
    best = len(ends) - 1 - int(np.argmin(divergence[::-1]))  # the last among ties
    return int(ends[best]) * bin_width


def percentile_threshold(hist: np.ndarray, bin_width: float, percentile: float) -> float:
    """Right edge of the first bin whose cumulative count reaches ``percentile`` % of the total."""
    cdf = np.cumsum(np.asarray(hist, np.float64))
    if cdf[-1] <= 0:
        return 0.0
    index = int(np.searchsorted(cdf, cdf[-1] * percentile / 100.0))
    return (min(index, len(cdf) - 1) + 1) * bin_width
