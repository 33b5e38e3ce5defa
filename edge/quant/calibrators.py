"""Calibration algorithms: the threshold (amax) of one tensor from its |x| statistics.

- ``entropy2`` (TensorRT's IInt8EntropyCalibrator2): the threshold minimizing KL(P || Q)
  over a 2048-bin histogram of |x| on [0, max|x|], computed as NVIDIA's published algorithm
  (GTC 2017) reads in its pytorch-quantization form (``entropy_threshold``).
- ``minmax`` (IInt8MinMaxCalibrator): max |x| over all batches, no clipping.
- ``percentile``: the edge pytorch-quantization's percentile method returns, the left edge
  of the bin where the CDF of |x| reaches the percentile (not a TensorRT calibrator).
- ``mse``: the histogram bin centre (from the 128th bin on) that, taken as amax, gives the
  smallest mean squared error between the bin centres and their symmetric INT8
  quantization, weighted by the bins' counts (pytorch-quantization's MSE method in
  outline; not a TensorRT calibrator).

The scale TensorRT stores is threshold / 127.
"""

from __future__ import annotations

import numpy as np

from edge.quant.numerics import SYMMETRIC_MAX

__all__ = [
    "CALIBRATORS",
    "HISTOGRAM_BINS",
    "QUANTIZED_BINS",
    "entropy_threshold",
    "mse_threshold",
    "percentile_threshold",
]

HISTOGRAM_BINS = 2048
QUANTIZED_BINS = 128
"""Non-negative levels of a symmetric 8-bit code: the groups Q is merged into."""

CALIBRATORS: dict[str, str] = {
    "entropy2": "EntropyCalibration2",
    "minmax": "MinMaxCalibration",
    "percentile": "PercentileCalibration",
    "mse": "MSECalibration",
}
"""Calibrator name -> the algorithm token of its cache header (``TRT-<version>-<token>``).
TensorRT knows the first two; percentile and mse caches are edgetrt's own."""


_CHUNK = 128
"""Candidates scored per step: bounds the work arrays to _CHUNK x 129 (about 130 KB each)."""


def _xlogx(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)


def entropy_threshold(hist: np.ndarray, bin_width: float) -> float:
    """The KL-optimal threshold of a histogram of |x| whose bins are ``bin_width`` wide, as
    NVIDIA's pytorch-quantization computes its entropy amax.

    Bin 0 takes bin 1's count; for end bin i in 128..len(hist), bin j < i belongs to group
    floor(128 j / i) (128 groups of floor(i/128) or ceil(i/128) bins); P is the first i bins
    with the tail folded into bin i-1, Q spreads each group's total over the group's
    non-empty bins (the tail excluded, so a tail landing on an empty bin i-1 makes KL
    infinite). The threshold is the right edge of bin i-1 for the smallest KL(P || Q) of the
    two normalized distributions, the last i among ties.

    All candidates are scored at once from prefix sums. With S_P the total (tail folded in)
    and S_Q the kept total, KL = (Σ P log P - Σ P log Q) / S_P + log(S_Q / S_P), and Q is
    constant over a group, so group g adds (its P mass) · log(its total / its non-empty bins)
    to Σ P log Q; the last group's P mass includes the tail.
    """
    hist = np.array(hist, np.float64)
    bins = len(hist)
    if bins <= QUANTIZED_BINS:
        return bins * bin_width
    hist[0] = hist[1]
    total = hist.sum()
    if total <= 0:
        return bins * bin_width
    cum = np.concatenate([[0.0], np.cumsum(hist)])
    cum_nonzero = np.concatenate([[0], np.cumsum(hist > 0)])
    cum_plogp = np.concatenate([[0.0], np.cumsum(_xlogx(hist))])

    ends = np.arange(QUANTIZED_BINS, bins + 1)
    divergence = np.concatenate([
        _divergences(hist, total, cum, cum_nonzero, cum_plogp, ends[start : start + _CHUNK])
        for start in range(0, len(ends), _CHUNK)
    ])
    best = len(ends) - 1 - int(np.argmin(divergence[::-1]))  # the last among ties
    return int(ends[best]) * bin_width


def _divergences(
    hist: np.ndarray, total: float, cum: np.ndarray, cum_nonzero: np.ndarray, cum_plogp: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """KL(P || Q) of the candidate end bins ``ends`` (see ``entropy_threshold``)."""
    groups = np.arange(QUANTIZED_BINS + 1)
    bounds = (groups[None, :] * ends[:, None] + QUANTIZED_BINS - 1) // QUANTIZED_BINS  # first bin of each group
    group_total = cum[bounds[:, 1:]] - cum[bounds[:, :-1]]
    occupied = cum_nonzero[bounds[:, 1:]] - cum_nonzero[bounds[:, :-1]]
    tail = total - cum[ends]
    mass = group_total.copy()
    mass[:, -1] += tail
    kept_last = hist[ends - 1]
    kept = cum[ends]
    with np.errstate(divide="ignore", invalid="ignore"):
        plogq = np.where(mass > 0, mass * np.log(group_total / occupied), 0.0).sum(axis=1)
        plogp = cum_plogp[ends - 1] + _xlogx(kept_last + tail)
        divergence = (plogp - plogq) / total + np.log(kept / total)
    divergence[(kept_last == 0) & (tail > 0)] = np.inf
    divergence[kept <= 0] = np.inf
    return divergence


def percentile_threshold(hist: np.ndarray, bin_width: float, percentile: float) -> float:
    """pytorch-quantization's percentile amax: the edge ``k · bin_width`` of the first bin k
    whose normalized cumulative count reaches ``percentile`` % (its left edge)."""
    hist = np.asarray(hist, np.float64)
    total = hist.sum()
    if total <= 0:
        return 0.0
    cdf = np.cumsum(hist / total)
    return int(np.searchsorted(cdf, percentile / 100.0)) * bin_width


def mse_threshold(hist: np.ndarray, bin_width: float) -> float:
    """The bin centre c_i (i >= 127) minimizing Σ_j count_j · (c_j - q_i(c_j))², q_i the
    symmetric INT8 fake quantization with amax c_i (clip to ±127 steps of c_i / 127); the
    first among ties."""
    counts = np.asarray(hist, np.float64)
    centres = (np.arange(len(counts)) + 0.5) * bin_width
    candidates = centres[QUANTIZED_BINS - 1 :]
    if counts.sum() <= 0 or not len(candidates):
        return len(counts) * bin_width
    errors = []
    for start in range(0, len(candidates), _CHUNK):
        amax = candidates[start : start + _CHUNK, None]
        step = amax / SYMMETRIC_MAX
        quantized = np.clip(np.rint(centres[None, :] / step), -SYMMETRIC_MAX, SYMMETRIC_MAX) * step
        errors.append(((quantized - centres[None, :]) ** 2 * counts[None, :]).sum(axis=1))
    return float(candidates[int(np.argmin(np.concatenate(errors)))])
