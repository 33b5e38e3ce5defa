"""GridSample: sample an N-d input at normalised grid coordinates (nearest, linear, cubic),
with zeros / border / reflection padding, vectorised over every output point; AffineGrid
builds such a grid from affine matrices; DeformConv convolves over learned, bilinearly
sampled positions."""

from __future__ import annotations

import itertools

import numpy as np

from edge.kernels.registry import OpContext, register

__all__: list[str] = []

_MODES = {"bilinear": "linear", "bicubic": "cubic"}
_CUBIC_A = -0.75


def _reflect(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fold coordinates back into [low, high] as a mirror would."""
    span = high - low
    if span <= 0:
        return np.full_like(x, low)
    distance = np.abs(x - low)
    flips = np.floor(distance / span)
    extra = distance - flips * span
    return np.where(flips % 2 == 0, low + extra, high - extra)


def _cubic_weights(t: np.ndarray) -> list[np.ndarray]:
    """Keys' cubic convolution weights (a = -0.75) of the taps at offsets -1, 0, 1, 2."""
    a = _CUBIC_A

    def near(d: np.ndarray) -> np.ndarray:
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d: np.ndarray) -> np.ndarray:
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


class _Sampler:
    """Fetches input values at integer positions, applying the padding mode."""

    def __init__(self, x: np.ndarray, padding: str, align: bool) -> None:
        self.x, self.padding, self.align = x, padding, align
        self.sizes = x.shape[2:]
        self.batch = np.arange(x.shape[0])[:, None]

    def fetch(self, positions: list[np.ndarray]) -> np.ndarray:
        """Values [N, P, C] at integer ``positions`` (one [N, P] array per spatial dim)."""
        inside = np.ones(positions[0].shape, bool)
        fixed = []
        for pos, size in zip(positions, self.sizes):
            inside &= (pos >= 0) & (pos < size)
            if self.padding == "reflection":
                low, high = (0, size - 1) if self.align else (-0.5, size - 0.5)
                pos = np.floor(_reflect(pos.astype(np.float64), low, high)).astype(np.int64)
            fixed.append(np.clip(pos, 0, size - 1))
        values = np.moveaxis(self.x, 1, -1)[(self.batch, *fixed)]
        if self.padding == "zeros":
            values = np.where(inside[..., None], values, 0)
        return values


def _interpolate(sampler: _Sampler, base: list[np.ndarray], taps: list[list[tuple[int, np.ndarray]]]) -> np.ndarray:
    """Values [N, P, C]: the sum over every combination of per-dim taps (offset from
    ``base``, weight) of the weighted input values there."""
    result = 0.0
    for combo in itertools.product(*taps):
        weight = np.prod([w for _, w in combo], axis=0)
        positions = [(b + offset).astype(np.int64) for b, (offset, _) in zip(base, combo)]
        result = result + weight[..., None] * sampler.fetch(positions)
    return result  # type: ignore[return-value]


def _coordinates(grid: np.ndarray, sizes: tuple[int, ...], padding: str, align: bool) -> list[np.ndarray]:
    """Grid [N, P, r] (x first) -> input-space coordinates per spatial dim (first dim first)."""
    coords = []
    for k, size in enumerate(sizes):
        g = grid[..., len(sizes) - 1 - k].astype(np.float64)
        c = (g + 1) / 2 * (size - 1) if align else ((g + 1) * size - 1) / 2
        if padding == "border":
            c = np.clip(c, 0, size - 1)
        elif padding == "reflection":
            c = _reflect(c, *((0, size - 1) if align else (-0.5, size - 0.5)))
            c = np.clip(c, 0, size - 1)
        coords.append(c)
    return coords


@register("GridSample", since=16)
def grid_sample(ctx: OpContext, x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    mode = ctx.attr("mode", "linear" if ctx.opset >= 20 else "bilinear")
    mode = _MODES.get(mode, mode)
    padding, align = ctx.attr("padding_mode", "zeros"), bool(ctx.attr("align_corners", 0))
    n, channels, sizes = x.shape[0], x.shape[1], x.shape[2:]
    points = grid.reshape(n, -1, len(sizes))
    coords = _coordinates(points, sizes, padding, align)
    sampler = _Sampler(x.astype(np.float64), padding, align)
    if mode == "nearest":
        result = sampler.fetch([np.rint(c).astype(np.int64) for c in coords])
    else:
        base = [np.floor(c) for c in coords]
        frac = [c - b for c, b in zip(coords, base)]
        if mode == "linear":
            taps = [[(0, 1 - t), (1, t)] for t in frac]
        else:
            taps = [list(zip((-1, 0, 1, 2), _cubic_weights(t))) for t in frac]
        result = _interpolate(sampler, base, taps)
    out = np.moveaxis(result, -1, 1).reshape((n, channels) + grid.shape[1:-1])
    return out.astype(x.dtype)


def _normalised_positions(size: int, align: bool) -> np.ndarray:
    """Pixel centres (or corners, with align_corners) of one axis in [-1, 1]."""
    if align:
        return np.linspace(-1, 1, size) if size > 1 else np.zeros(1)
    return (2 * np.arange(size) + 1) / size - 1


@register("AffineGrid", since=20)
def affine_grid(ctx: OpContext, theta: np.ndarray, size: np.ndarray) -> np.ndarray:
    """The sampling grid GridSample reads: each output pixel's (x, y[, z]) through ``theta``."""
    align = bool(ctx.attr("align_corners", 0))
    n, spatial = int(size[0]), [int(s) for s in size[2:]]
    axes = [_normalised_positions(s, align) for s in spatial]
    mesh = np.meshgrid(*axes, indexing="ij")  # first spatial dim first
    base = np.stack([*reversed(mesh), np.ones(tuple(spatial))], axis=-1).reshape(-1, len(spatial) + 1)
    grid = np.einsum("pk,nik->npi", base, theta.astype(np.float64))
    return grid.reshape((n, *spatial, len(spatial))).astype(theta.dtype)


@register("DeformConv", since=19)
def deform_conv(
    ctx: OpContext, x: np.ndarray, w: np.ndarray, offset: np.ndarray, b: np.ndarray | None = None, mask: np.ndarray | None = None
) -> np.ndarray:
    """N-d deformable convolution (v1, and v2 with ``mask``): every kernel tap of every
    output position reads the input linearly interpolated (zeros outside) at its regular
    position plus its learned offset, one offset set per ``offset_group`` of channels,
    scaled by the mask; then a grouped convolution of those samples with ``w``."""
    n, channels, sizes = x.shape[0], x.shape[1], x.shape[2:]
    rank, kernel = len(sizes), tuple(w.shape[2:])
    strides = ctx.attr("strides") or [1] * rank
    dilations = ctx.attr("dilations") or [1] * rank
    pads = ctx.attr("pads") or [0] * (2 * rank)
    out = tuple((i + pads[d] + pads[d + rank] - (k - 1) * dilations[d] - 1) // strides[d] + 1 for d, (i, k) in enumerate(zip(sizes, kernel)))
    offset_groups, groups = ctx.attr("offset_group", 1), ctx.attr("group", 1)
    taps, points = int(np.prod(kernel)), int(np.prod(out))
    tap_grid = np.indices(kernel).reshape(rank, taps, 1)
    out_grid = np.indices(out).reshape(rank, 1, points)
    regular = out_grid * np.reshape(strides, (rank, 1, 1)) - np.reshape(pads[:rank], (rank, 1, 1)) + tap_grid * np.reshape(dilations, (rank, 1, 1))
    shifts = offset.astype(np.float64).reshape(n, offset_groups, taps, rank, points)
    coords = [(regular[d] + shifts[:, :, :, d]).reshape(n * offset_groups, taps * points) for d in range(rank)]
    sampler = _Sampler(x.astype(np.float64).reshape(n * offset_groups, channels // offset_groups, *sizes), "zeros", False)
    base = [np.floor(c) for c in coords]
    samples = _interpolate(sampler, base, [[(0, 1 - (c - f)), (1, c - f)] for c, f in zip(coords, base)])
    if mask is not None:
        samples = samples * mask.astype(np.float64).reshape(n * offset_groups, taps * points, 1)
    columns = samples.reshape(n, offset_groups, taps, points, -1).transpose(0, 1, 4, 2, 3)  # [n, og, c/og, taps, points]
    columns = columns.reshape(n, groups, (channels // groups) * taps, points)
    weights = w.astype(np.float64).reshape(groups, w.shape[0] // groups, -1)
    y = np.einsum("gok,ngkp->ngop", weights, columns).reshape(n, w.shape[0], *out)
    if b is not None:
        y = y + b.reshape(1, -1, *([1] * rank))
    return y.astype(x.dtype)
