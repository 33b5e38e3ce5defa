"""Calibrators: entropy2 against NVIDIA's published procedure written out independently, minmax and percentile exactly."""

from __future__ import annotations

import numpy as np
import pytest

from scipy import stats

from edge.errors import CalibrationError
from edge.frontend import load_onnx
from edge.quant import calibrate, entropy_threshold, percentile_threshold
from edge.quant.calibrators import mse_threshold
from tests.models import resnet_block_cnn


def _published_entropy_amax(hist: np.ndarray, edges: np.ndarray) -> float:
    """The entropy amax of NVIDIA's published procedure (GTC 2017, pytorch-quantization's
    form), written out candidate by candidate: bin 0 takes bin 1's count; for each end bin i
    from 128 to the last, P is bins [0, i) plus everything beyond added to bin i-1; bin j is
    in quantized level floor(128 j / i); Q gives each non-empty bin of a level the level's
    total over its non-empty bins; KL(P || Q) on normalized P and Q (scipy's entropy); the
    amax is the bin edge i of the smallest divergence, the last such i on ties."""
    counts = hist.astype(np.float64).copy()
    counts[0] = counts[1]
    best_i, best_kl = None, np.inf
    for i in range(128, len(counts) + 1):
        p = counts[:i].copy()
        p[-1] += counts[i:].sum()
        level = np.arange(i) * 128 // i
        nonempty = counts[:i] > 0
        level_total = np.bincount(level, weights=counts[:i], minlength=128)
        level_bins = np.bincount(level[nonempty], minlength=128)
        q = np.zeros(i)
        q[nonempty] = level_total[level[nonempty]] / level_bins[level[nonempty]]
        kl = stats.entropy(p, q)
        if kl <= best_kl or best_i is None:
            best_i, best_kl = i, kl
    return float(edges[best_i])


def _histograms() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    normal = np.abs(rng.standard_normal(20000))
    relu = np.maximum(rng.standard_normal(20000), 0) * 3
    heavy = np.abs(rng.standard_t(3, 30000))
    sparse = np.abs(rng.integers(-40, 40, 5000)) * 0.1  # many empty bins
    found = [np.histogram(a, bins=2048, range=(0, a.max())) for a in (normal, relu, heavy, sparse)]
    found.append(np.histogram(normal, bins=700, range=(0, normal.max())))
    return found


@pytest.mark.parametrize("case", range(5))
def test_entropy_is_nvidias_published_amax(case: int) -> None:
    hist, edges = _histograms()[case]
    assert entropy_threshold(hist, edges[1]) == pytest.approx(_published_entropy_amax(hist, edges), rel=1e-12)


def test_entropy_clips_a_heavy_tail() -> None:
    rng = np.random.default_rng(2)
    samples = np.abs(np.concatenate([rng.standard_normal(50000), [12.0, -20.0]]))
    hist, edges = np.histogram(samples, bins=2048, range=(0, samples.max()))
    threshold = entropy_threshold(hist, edges[1])
    assert np.percentile(samples, 99.9) < threshold < 8.0  # keeps the bulk, clips both outliers
    heavy = np.abs(rng.standard_t(3, 50000))
    hist, edges = np.histogram(heavy, bins=2048, range=(0, heavy.max()))
    assert np.percentile(heavy, 99.9) < entropy_threshold(hist, edges[1]) < 0.5 * heavy.max()


def test_percentile_is_the_left_edge_of_the_quantiles_bin() -> None:
    """pytorch-quantization's percentile amax is the edge at the index where the CDF reaches
    the percentile: the left edge of the bin holding the quantile of the samples."""
    rng = np.random.default_rng(3)
    samples = np.abs(rng.standard_normal(100003))  # no percentile lands exactly on a count
    hist, edges = np.histogram(samples, bins=2048, range=(0, samples.max()))
    for q in (50.0, 99.0, 99.99, 100.0):
        threshold = percentile_threshold(hist, edges[1], q)
        value = np.percentile(samples, q, method="inverted_cdf")
        bin_of_value = min(int(value / edges[1]), 2047)
        assert threshold == pytest.approx(edges[bin_of_value], rel=1e-12)
    assert percentile_threshold(hist, edges[1], 100.0) == pytest.approx(samples.max() - edges[1])


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
    assert 0 <= np.percentile(values, 99.99, method="inverted_cdf") - percentile.ranges["image"].threshold <= width + 1e-6
    entropy = calibrate(graph, batches, "entropy2")
    assert all(0 < r.threshold <= r.amax + 1e-9 for r in entropy.ranges.values())


def test_mse_is_the_centre_with_the_least_squared_error() -> None:
    """Each candidate written out: quantize every bin centre to 255 levels over ±amax, weigh
    the squared errors by the counts; and on uniform data nothing is worth clipping."""
    rng = np.random.default_rng(5)
    heavy = np.abs(rng.standard_t(3, 20000))
    hist, edges = np.histogram(heavy, bins=400, range=(0, heavy.max()))
    centres = (edges[:-1] + edges[1:]) / 2
    errors = {}
    for i in range(127, 400):
        step = centres[i] / 127
        codes = np.minimum(np.round(centres / step), 127)
        errors[i] = float(np.dot(hist, (codes * step - centres) ** 2))
    best = min(errors, key=lambda i: (errors[i], i))
    assert mse_threshold(hist, edges[1]) == pytest.approx(centres[best], rel=1e-12)
    uniform = rng.uniform(0, 1, 50000)
    hist, edges = np.histogram(uniform, bins=2048, range=(0, 1))
    assert mse_threshold(hist, edges[1]) > 0.99
    graph = load_onnx(resnet_block_cnn())
    result = calibrate(graph, [[rng.standard_normal((1, 3, 16, 16)).astype(np.float32)]], "mse")
    assert result.calibrator == "mse" and all(0 < r.threshold <= r.amax for r in result.ranges.values() if r.threshold)


def test_unknown_calibrator() -> None:
    with pytest.raises(CalibrationError, match="calibrator 'kl'"):
        calibrate(load_onnx(resnet_block_cnn()), [[np.zeros((1, 3, 16, 16), np.float32)]], "kl")
