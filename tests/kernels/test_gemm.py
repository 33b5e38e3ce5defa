"""The float32 matrix products of the CPU kernels (``edge.kernels.cpu.gemm`` on the compiled
register-tile kernel) vs numpy in float64: whole and ragged tiles, K longer than one depth
block, more rows than one row block, split by rows or columns over one and two parts, and
non-finite values kept to the rows and columns they belong to. Skipped without numba."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

from edge.kernels import threads
from edge.kernels.cpu.gemm import grouped_matmul, matrix_product

jit = pytest.importorskip("edge.kernels.cpu.jit")

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
PARTS = [1, 2] if CORES >= 2 else [1]

# (rows, depth, columns): whole tiles, ragged rows (1-7 over 6; last tiles of 4 and 2 rows, which
# have kernels of their own, at depth 16, where their scratch is as large as the zero tile that
# stands in for a missing bias), ragged columns (over 16 and 8),
# depth 0, depth across blocks of 256 (and a last short block), rows across blocks of 96,
# columns across panels of 128 (outputs of 64K values per part, read in place: 100 x 1400,
# with a ragged strip in each part), from 192 rows (per part) panels packed
SHAPES = [
    (12, 32, 32), (1, 1, 1), (7, 5, 9), (13, 27, 17), (5, 3, 8), (6, 16, 196), (68, 68, 49),
    (4, 0, 10), (18, 300, 40), (9, 513, 23), (200, 40, 20), (30, 20, 300), (2, 700, 3),
    (197, 300, 37), (400, 20, 300), (390, 9, 133), (100, 20, 1400), (4, 16, 40), (64, 16, 100), (34, 16, 50),
]


@pytest.fixture(params=PARTS, ids=lambda parts: f"{parts}-part")
def parts(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(jit, "_PART_WORK", 1)  # split even the smallest product
    saved = threads._count
    threads.set_intra_op_threads(request.param)
    yield request.param
    threads._count = saved
    threads.bind_calling_thread()


@pytest.mark.parametrize("rows, depth, columns", SHAPES)
def test_matrix_product_matches_float64(parts: int, rows: int, depth: int, columns: int) -> None:
    rng = np.random.default_rng(rows * 1000 + depth + columns)
    a = rng.standard_normal((rows, depth)).astype(np.float32)
    b = rng.standard_normal((depth, columns)).astype(np.float32)
    out = np.full((rows, columns), np.nan, np.float32)  # every element must be written
    matrix_product(a, b, out)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * max(1.0, np.sqrt(depth)))


@pytest.mark.parametrize("images, groups, rows, depth, columns", [(1, 4, 34, 34, 196), (2, 3, 7, 9, 50), (1, 1, 24, 27, 300)])
def test_grouped_products_match_float64(parts: int, images: int, groups: int, rows: int, depth: int, columns: int) -> None:
    rng = np.random.default_rng(7)
    weights = rng.standard_normal((groups, rows, depth)).astype(np.float32)
    cols = rng.standard_normal((images, groups, depth, columns)).astype(np.float32)
    y = grouped_matmul(weights, cols)
    expected = np.einsum("gmk,ngkp->ngmp", weights.astype(np.float64), cols.astype(np.float64))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-4)


def test_non_finite_values_stay_in_their_rows_and_columns(parts: int) -> None:
    """Inf and NaN in a ragged row and column reach exactly the outputs numpy gives them; the
    zero padding of a ragged tile multiplies them too, and none of that may leak."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((13, 20)).astype(np.float32)
    b = rng.standard_normal((20, 37)).astype(np.float32)
    a[12, 4] = np.inf
    b[9, 36] = np.nan
    out = matrix_product(a, b)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_array_equal(np.isfinite(out), np.isfinite(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(out[finite], expected[finite], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ["", "Relu", "Clip"])
@pytest.mark.parametrize("rows, depth, columns", [(13, 300, 37), (6, 16, 32), (5, 0, 9), (400, 300, 37), (64, 16, 100), (8, 16, 40)])
def test_epilogue_applied_once_per_output(parts: int, activation: str, rows: int, depth: int, columns: int) -> None:
    """gemm_blocks' conv epilogue, act(product + bias + residual), lands once on every output
    (after the last block of K, on whole and ragged tiles), NaN kept as numpy keeps it."""
    rng = np.random.default_rng(11)
    weights = rng.standard_normal((2, rows, depth)).astype(np.float32)
    cols = rng.standard_normal((1, 2, depth, columns)).astype(np.float32)
    bias = rng.standard_normal((2, rows)).astype(np.float32)
    residual = rng.standard_normal((1, 2, rows, columns)).astype(np.float32)
    residual[0, 1, rows - 1, columns - 1] = np.nan
    code, low, high = jit.activation_arguments(activation, (-0.5, 0.75))
    y = np.full((1, 2, rows, columns), np.nan, np.float32)
    jit.gemm_blocks(weights, cols.reshape(1, 2, -1), jit.dense_rows(depth, columns), bias, residual, code, low, high, y)
    expected = np.einsum("gmk,ngkp->ngmp", weights.astype(np.float64), cols.astype(np.float64))
    expected += bias[None, :, :, None] + residual
    if activation == "Relu":
        expected = np.maximum(expected, 0)
    elif activation == "Clip":
        expected = np.minimum(np.maximum(expected, low), high)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-4)
    assert np.isnan(y[0, 1, rows - 1, columns - 1])


@pytest.mark.parametrize("height", [4, 7, 64, 400])
@pytest.mark.parametrize("depth, columns", [(27, 37), (300, 48), (9, 5), (27, 300)])
def test_rows_read_in_place(parts: int, height: int, depth: int, columns: int) -> None:
    """gemm_blocks reads row k of the right operand at ``rows[k]`` in its source (as a conv's
    columns are read from its shifted images): rows in any order, overlapping or apart, give
    the product of the matrix they spell, on whole and ragged strips of columns, read in
    place or packed (``height`` rows; 4: only a short last tile, packed; 64 and 400: a short
    last tile computed panel by panel from the packed panels, 300 columns spanning three)."""
    rng = np.random.default_rng(depth + columns)
    source = rng.standard_normal((1, 1, 4 * depth * columns)).astype(np.float32)
    rows = rng.permutation(np.arange(0, 3 * depth * columns, 3 * columns // 2))[:depth].astype(np.int64)
    rows[-1] = rows[0] + 1  # two rows overlapping
    matrix = np.stack([source[0, 0, r : r + columns] for r in rows])
    weights = rng.standard_normal((1, height, depth)).astype(np.float32)
    y = np.full((1, 1, height, columns), np.nan, np.float32)
    code, low, high = jit.activation_arguments("", ())
    jit.gemm_blocks(weights, source, rows, jit.NO_BIAS, jit.NO_RESIDUAL, code, low, high, y)
    expected = weights[0].astype(np.float64) @ matrix.astype(np.float64)
    np.testing.assert_allclose(y[0, 0], expected, rtol=1e-5, atol=1e-4)
