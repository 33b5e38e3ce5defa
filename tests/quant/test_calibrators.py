"""Calibrators: entropy2 against an independent loop over the KL procedure, minmax and percentile exactly."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import CalibrationError
from edge.frontend import load_onnx
from edge.quant import calibrate, entropy_threshold, percentile_threshold
from tests.models import resnet_block_cnn


def _reference_divergences(hist: np.ndarray) -> dict[int, float]:
    """KL(P||Q) per candidate end bin, written out as the published procedure reads."""
    hist = hist.astype(np.float64).copy()
    hist[0] = hist[1]  # the zero-spike rule (pytorch-quantization's)
    result = {}
    for end in range(128, len(hist) + 1):
        p = hist[:end].copy()
        p[end - 1] += hist[end:].sum()
        kept = hist[:end]
        q = np.zeros(end)
        per_group = end // 128
        for group in range(128):
            lo = group * per_group
            hi = end if group == 127 else lo + per_group
            occupied = np.count_nonzero(p[lo:hi])  # bins empty in P stay empty in Q
            if occupied:
                q[lo:hi] = np.where(p[lo:hi] != 0, kept[lo:hi].sum() / occupied, 0.0)
        p, q = p / p.sum(), q / q.sum()
        if np.any((p > 0) & (q == 0)):
            result[end] = np.inf
        else:
            mask = p > 0
            result[end] = float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
    return result


@pytest.mark.parametrize("seed, bins", [(0, 2048), (1, 700)])
def test_entropy_matches_the_kl_procedure(seed: int, bins: int) -> None:
    rng = np.random.default_rng(seed)
    samples = np.abs(rng.standard_normal(20000)) if seed == 0 else np.maximum(rng.standard_normal(20000), 0) * 3
    hist, edges = np.histogram(samples, bins=bins, range=(0, samples.max()))
    divergences = _reference_divergences(hist)
    threshold = entropy_threshold(hist, edges[1])
    chosen = round(threshold / edges[1])
    best = min(divergences.values())
    assert divergences[chosen] <= best + 1e-12
    assert all(d > best + 1e-12 for end, d in divergences.items() if end > chosen)  # the last among ties


def test_entropy_clips_a_heavy_tail() -> None:
    rng = np.random.default_rng(2)
    samples = np.abs(np.concatenate([rng.standard_normal(50000), [12.0, -20.0]]))
    hist, edges = np.histogram(samples, bins=2048, range=(0, samples.max()))
    threshold = entropy_threshold(hist, edges[1])
    assert np.percentile(samples, 99.9) < threshold < 8.0  # keeps the bulk, clips both outliers
    heavy = np.abs(rng.standard_t(3, 50000))
    hist, edges = np.histogram(heavy, bins=2048, range=(0, heavy.max()))
    assert np.percentile(heavy, 99.9) < entropy_threshold(hist, edges[1]) < 0.5 * heavy.max()


def test_percentile_is_the_bin_of_the_quantile() -> None:
    rng = np.random.default_rng(3)
    samples = np.abs(rng.standard_normal(100000))
    hist, edges = np.histogram(samples, bins=2048, range=(0, samples.max()))
    for q in (50.0, 99.0, 99.99):
        threshold = percentile_threshold(hist, edges[1], q)
        value = np.percentile(samples, q, method="inverted_cdf")
        assert threshold - edges[1] - 1e-9 <= value <= threshold + 1e-9  # within the chosen bin
    assert percentile_threshold(hist, edges[1], 100.0) == pytest.approx(samples.max())


def test_calibrate_minmax_and_percentile_exact_on_a_model() -> None:
    graph = load_onnx(resnet_block_cnn())
    rng = np.random.default_rng(4)
    batches = [[rng.standard_normal((1, 3, 16, 16)).astype(np.float32)] for _ in range(3)]
    minmax = calibrate(graph, batches, "minmax")
    image_max = max(float(np.abs(b[0]).max()) for b in batches)
    assert minmax.ranges["image"].threshold == pytest.approx(image_max, rel=1e-7)
    assert minmax.scales["image"] == pytest.approx(image_max / 127, rel=1e-7)
    sub = max(float(np.abs(b[0] - np.array([0.5, 0.4, 0.3], np.float32).reshape(1, 3, 1, 1)).max()) for b in batches)
    assert minmax.ranges["sub_2_out0"].amax == pytest.approx(sub, rel=1e-6)
    assert set(minmax.scales) >= {"image", "relu_12_out0", "probs"}
    percentile = calibrate(graph, batches, "percentile")
    values = np.abs(np.concatenate([b[0].ravel() for b in batches]))
    width = image_max / 2048
    assert 0 <= percentile.ranges["image"].threshold - np.percentile(values, 99.99, method="inverted_cdf") <= width + 1e-6
    entropy = calibrate(graph, batches, "entropy2")
    assert all(0 < r.threshold <= r.amax + 1e-9 for r in entropy.ranges.values())


def test_unknown_calibrator() -> None:
    with pytest.raises(CalibrationError, match="calibrator 'kl'"):
        calibrate(load_onnx(resnet_block_cnn()), [[np.zeros((1, 3, 16, 16), np.float32)]], "kl")
