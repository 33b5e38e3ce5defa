"""Signal processing: window functions, DFT, STFT and the mel filter bank (numpy's FFT).

Complex tensors follow ONNX's layout: a trailing dim of 2 (real, imaginary); a real signal
has a trailing dim of 1.
"""

from __future__ import annotations

import numpy as np

from edge.ir.dtypes import from_onnx
from edge.kernels.registry import OpContext, register

__all__: list[str] = []


def _window(ctx: OpContext, size: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    """sum_k (-1)^k a_k cos(2 pi k n / D), D = N (periodic) or N - 1 (symmetric)."""
    length = int(np.asarray(size).reshape(-1)[0])
    denominator = length if ctx.attr("periodic", 1) else max(length - 1, 1)
    n = np.arange(length, dtype=np.float64)
    window = sum((-1) ** k * a * np.cos(2 * np.pi * k * n / denominator) for k, a in enumerate(coefficients))
    return np.asarray(window).astype(from_onnx(ctx.attr("output_datatype", 1)))


@register("HannWindow", since=17)
def hann_window(ctx: OpContext, size: np.ndarray) -> np.ndarray:
    return _window(ctx, size, (0.5, 0.5))


@register("HammingWindow", since=17)
def hamming_window(ctx: OpContext, size: np.ndarray) -> np.ndarray:
    return _window(ctx, size, (25 / 46, 21 / 46))


@register("BlackmanWindow", since=17)
def blackman_window(ctx: OpContext, size: np.ndarray) -> np.ndarray:
    return _window(ctx, size, (0.42, 0.5, 0.08))


def _complex(x: np.ndarray) -> np.ndarray:
    """The complex signal in the input's precision (numpy's FFT keeps complex64 as is)."""
    dtype = np.result_type(x.dtype, np.complex64)
    return (x[..., 0] + 1j * x[..., 1] if x.shape[-1] == 2 else x[..., 0]).astype(dtype)


def _pack(spectrum: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.stack([spectrum.real, spectrum.imag], axis=-1).astype(dtype)


def _dft(ctx: OpContext, x: np.ndarray, length: np.ndarray | None, axis: int) -> np.ndarray:
    """Forward (optionally one-sided) or inverse DFT along ``axis``; an inverse of a
    one-sided spectrum is the real signal of length 2 (n - 1) unless given."""
    axis = axis % x.ndim
    signal = _complex(x)
    inverse, onesided = ctx.attr("inverse", 0), ctx.attr("onesided", 0)
    if length is not None:
        n = int(np.asarray(length).reshape(-1)[0])
    else:
        n = 2 * (signal.shape[axis] - 1) if inverse and onesided else signal.shape[axis]
    if inverse and onesided:
        return np.fft.irfft(signal, n, axis=axis)[..., None].astype(x.dtype)
    spectrum = np.fft.ifft(signal, n, axis=axis) if inverse else np.fft.fft(signal, n, axis=axis)
    if onesided:
        spectrum = np.take(spectrum, np.arange(n // 2 + 1), axis=axis)
    return _pack(spectrum, x.dtype)


@register("DFT", since=20)
def dft(ctx: OpContext, x: np.ndarray, length: np.ndarray | None = None, axis: np.ndarray | None = None) -> np.ndarray:
    return _dft(ctx, x, length, -2 if axis is None else int(np.asarray(axis).reshape(-1)[0]))


@register("DFT", since=17)
def dft_17(ctx: OpContext, x: np.ndarray, length: np.ndarray | None = None) -> np.ndarray:
    return _dft(ctx, x, length, ctx.attr("axis", 1))


@register("STFT", since=17)
def stft(
    ctx: OpContext, signal: np.ndarray, step: np.ndarray, window: np.ndarray | None = None, length: np.ndarray | None = None
) -> np.ndarray:
    """Frames of ``signal`` [batch, samples, 1|2] every ``step`` samples, windowed, transformed."""
    hop = int(np.asarray(step).reshape(-1)[0])
    size = int(np.asarray(length).reshape(-1)[0]) if length is not None else len(window)
    taps = np.ones(size, signal.dtype) if window is None else window
    samples = _complex(signal)
    count = 1 + (samples.shape[1] - size) // hop
    frames = np.stack([samples[:, i * hop : i * hop + size] * taps for i in range(count)], axis=1)
    spectrum = np.fft.fft(frames, axis=-1)
    if ctx.attr("onesided", 1):
        spectrum = spectrum[..., : size // 2 + 1]
    return _pack(spectrum, signal.dtype)


@register("MelWeightMatrix", since=17)
def mel_weight_matrix(
    ctx: OpContext, bins: np.ndarray, dft_length: np.ndarray, rate: np.ndarray, low: np.ndarray, high: np.ndarray
) -> np.ndarray:
    """Triangular filters evenly spaced on the mel scale, [dft_length // 2 + 1, bins]."""
    count, size = int(bins), int(dft_length)
    low_mel, high_mel = (2595 * np.log10(1 + float(f) / 700) for f in (low, high))
    points = low_mel + np.arange(count + 2) * (high_mel - low_mel) / (count + 2)  # ONNX's spacing
    hertz = 700 * (10 ** (points / 2595) - 1)
    edges = ((size + 1) * hertz // int(rate)).astype(np.int64)
    matrix = np.zeros((size // 2 + 1, count))
    for i in range(count):
        lower, center, upper = edges[i], edges[i + 1], edges[i + 2]
        if center > lower:
            matrix[lower : center + 1, i] = (np.arange(lower, center + 1) - lower) / (center - lower)
        else:
            matrix[center, i] = 1
        if upper > center:
            matrix[center:upper, i] = (upper - np.arange(center, upper)) / (upper - center)
    return matrix.astype(from_onnx(ctx.attr("output_datatype", 1)))
