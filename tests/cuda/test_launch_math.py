"""GPU-free: the index math the CUDA launchers hand to their kernels, replayed in numpy
(strides through as_strided) against numpy's own broadcasting, slicing, transposes,
reductions and products, and the CPU kernels' resize."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from edge.ir import Node, Value
from edge.ir.layout import CHANNELS_LAST, to_channels_last
from edge.kernels import registry
from edge.kernels.cuda import launch, linalg
from edge.kernels.cuda.int8 import _conv_problem, padded_depth
from edge.kernels.cuda.linalg import attention_geometries, gemm_geometry, gemm_grid, matmul_geometry
from edge.kernels.cuda.nn import conv_geometry, conv_grid
from edge.kernels.cuda.reduce import reduce_threads, reduction_plan, softmax_rows
from edge.kernels.cuda.tensor import resize_taps, slice_plan, transpose_plan
from edge.kernels.registry import OpContext
from edge.quant.integer import IntegerOperand

RNG = np.random.default_rng(19)


def read(flat: np.ndarray, shape, strides, offset: int = 0) -> np.ndarray:
    """What a kernel reads: ``shape`` elements at element ``strides`` from ``offset``."""
    item = flat.itemsize
    base = flat[offset:] if offset else flat
    return np.lib.stride_tricks.as_strided(base, tuple(shape), tuple(s * item for s in strides)).copy()


@pytest.mark.parametrize("shape,out", [((3, 1), (2, 3, 4)), ((4,), (2, 3, 4)), ((1,), (5,)), ((2, 1, 4), (2, 3, 4)), ((), (2, 2))])
def test_broadcast_strides_match_numpy(shape, out):
    a = np.arange(max(math.prod(shape), 1), dtype=np.float32).reshape(shape)
    expected = np.broadcast_to(a, out)
    assert np.array_equal(read(a.reshape(-1), out, launch.broadcast_strides(shape, out)), expected)


def test_merged_axes_read_the_same_elements():
    for _ in range(20):
        rank = int(RNG.integers(1, 6))
        shape = tuple(int(v) for v in RNG.integers(1, 4, rank))
        x = RNG.standard_normal(shape).astype(np.float32)
        perm = RNG.permutation(rank)
        out, src = transpose_plan(shape, perm)
        merged, (src_m, dst_m) = launch.merge_axes(out, src, launch.contiguous_strides(out))
        assert len(merged) <= max(rank, 1)
        assert np.array_equal(read(x.reshape(-1), merged, src_m).reshape(-1), np.transpose(x, perm).reshape(-1))
        if math.prod(merged) > 1:
            assert dst_m == launch.contiguous_strides(merged)


@pytest.mark.parametrize(
    "starts,ends,axes,steps",
    [([1], [3], [0], None), ([0, -1], [10, -100], [1, 2], [2, -1]), ([-2], [2**62], [-1], [1]), ([5], [0], [2], [-2]), ([3], [3], [0], None)],
)
def test_slice_plan_matches_numpy_slicing(starts, ends, axes, steps):
    x = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    index = [slice(None)] * 3
    for i, axis in enumerate(axes):
        index[axis] = slice(starts[i], ends[i], None if steps is None else steps[i])
    expected = x[tuple(index)]
    out, src, offset = slice_plan(x.shape, starts, ends, axes, steps)
    assert out == expected.shape
    if expected.size:
        assert np.array_equal(read(x.reshape(-1), out, src, offset), expected)


@pytest.mark.parametrize("shape,axes", [((2, 3, 4), (1,)), ((2, 3, 4, 5), (0, 2)), ((6,), (0,)), ((2, 3, 4), (0, 1, 2)), ((3, 4, 5), (-1,))])
def test_reduction_plan_covers_each_output_once(shape, axes):
    x = RNG.standard_normal(shape).astype(np.float32)
    kshape, kstride, rshape, rstride = reduction_plan(shape, axes)
    flat = x.reshape(-1)
    got = []
    for o in range(math.prod(kshape)):
        offset = int(np.dot(np.unravel_index(o, kshape), kstride)) if kshape else 0
        got.append(read(flat, rshape, rstride, offset).sum())
    expected = x.sum(axis=tuple(a % len(shape) for a in axes))
    np.testing.assert_allclose(np.array(got).reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)


def test_reduce_threads_are_warp_multiples():
    assert [reduce_threads(n) for n in (1, 32, 33, 500, 10**6)] == [32, 32, 64, 512, 512]


def test_softmax_rows():
    assert softmax_rows((2, 3, 4), -1, False) == (6, 4, 1)
    assert softmax_rows((2, 3, 4), 1, False) == (8, 3, 4)
    assert softmax_rows((2, 3, 4), 1, True) == (2, 12, 1)


def _gemm_by_strides(a: np.ndarray, b: np.ndarray, g) -> np.ndarray:
    """The kernel's product: A(m, k) and B(k, n) read through the geometry's strides per batch."""
    out = []
    for batch in range(g.batches):
        shape = tuple(g.batch_shape.v[: g.batch_dims])
        index = np.unravel_index(batch, shape) if shape else ()
        a_off = int(np.dot(index, g.a_batch.v[: g.batch_dims])) if shape else 0
        b_off = int(np.dot(index, g.b_batch.v[: g.batch_dims])) if shape else 0
        am = read(a.reshape(-1), (g.m, g.k), (g.a_sm, g.a_sk), a_off)
        bm = read(b.reshape(-1), (g.k, g.n), (g.b_sk, g.b_sn), b_off)
        out.append(am @ bm)
    return np.stack(out)


@pytest.mark.parametrize("a_shape,b_shape", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 6)), ((4,), (2, 4, 3)), ((2, 3, 4), (4,))])
def test_matmul_geometry_matches_numpy(a_shape, b_shape):
    a = RNG.standard_normal(a_shape).astype(np.float32)
    b = RNG.standard_normal(b_shape).astype(np.float32)
    expected = np.matmul(a, b)
    g = matmul_geometry(a_shape, b_shape)
    np.testing.assert_allclose(_gemm_by_strides(a, b, g).reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_gemm_geometry_reads_transposes_and_broadcast_bias(trans_a, trans_b):
    a = RNG.standard_normal((4, 3) if trans_a else (3, 4)).astype(np.float32)
    b = RNG.standard_normal((5, 4) if trans_b else (4, 5)).astype(np.float32)
    node = Node("Gemm", [Value("a"), Value("b")], [Value("y")], {"transA": trans_a, "transB": trans_b, "alpha": 0.5, "beta": 2.0})
    c = RNG.standard_normal((5,)).astype(np.float32)
    g = gemm_geometry(node, a.shape, b.shape, c.shape)
    product = _gemm_by_strides(a, b, g)[0] * g.alpha + g.beta * read(c, (g.m, g.n), (g.c_sm, g.c_sn))
    expected = 0.5 * ((a.T if trans_a else a) @ (b.T if trans_b else b)) + 2.0 * c
    np.testing.assert_allclose(product, expected, rtol=1e-5, atol=1e-5)


def test_gemm_grid_covers_the_output():
    g = matmul_geometry((3, 130, 70), (70, 65))
    grid, block = gemm_grid(g, "tiled")
    assert grid == (2, 3, 3) and block == (256, 1, 1)
    assert gemm_grid(g, "wmma")[1] == (128, 1, 1)


@pytest.mark.parametrize(
    "attrs,x_shape,w_shape",
    [
        ({"pads": [1, 1, 1, 1], "strides": [2, 2]}, (1, 3, 9, 9), (8, 3, 3, 3)),
        ({"auto_pad": "SAME_UPPER", "strides": [2, 2], "group": 4}, (2, 4, 8, 7), (4, 1, 3, 3)),
        ({"dilations": [2, 2], "group": 2}, (1, 4, 10, 10), (6, 2, 3, 3)),
        ({"pads": [2, 1]}, (1, 3, 11), (5, 3, 4)),
    ],
)
def test_conv_geometry_matches_the_cpu_output_shape(attrs, x_shape, w_shape):
    x, w = Value("x", np.float32, x_shape), Value("w", np.float32, w_shape)
    node = Node("Conv", [x, w], [Value("y")], attrs)
    ((_, expected),) = registry.lookup_shape("FusedConv", "edgetrt")(OpContext(node, 17), x, w)
    g = conv_geometry(node, 17, x_shape, w_shape)
    assert (g.n, g.m, *(([g.oh] if len(x_shape) == 4 else []) + [g.ow])) == expected
    grid, block = conv_grid(g, "igemm")
    assert grid[0] * 64 >= g.n * g.oh * g.ow and grid[1] * 64 >= g.m // g.groups and grid[2] == g.groups
    assert block == (256, 1, 1)


def test_grid_1d_caps_and_never_zero():
    assert launch.grid_1d(1) == (1, 1, 1)
    assert launch.grid_1d(257) == (2, 1, 1)
    assert launch.grid_1d(10**12)[0] == 65535 * 8


def test_activation_defaults_follow_the_cpu():
    assert launch.activation_code("LeakyRelu", []) == (3, 0.01, 0.0)
    assert launch.activation_code("Clip", [0.0, 6.0]) == (2, 0.0, 6.0)
    assert launch.activation_code("", []) == (0, 0.0, 0.0)


@pytest.mark.parametrize(
    "attrs,scales",
    [
        ({"mode": "nearest"}, [1, 1, 2.0, 1.5]),
        ({"mode": "linear", "coordinate_transformation_mode": "half_pixel"}, [1, 1, 0.5, 1.75]),
        ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, [1, 1, 2.0, 2.0]),
        ({"mode": "cubic"}, [1, 1, 1.5, 0.8]),
        ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, [1, 1, 3.0, 0.5]),
    ],
)
def test_resize_taps_reproduce_the_cpu_resize(attrs, scales):
    x = RNG.standard_normal((2, 3, 6, 5)).astype(np.float32)
    scales = np.array(scales, np.float32)
    node = Node("Resize", [Value("x"), None, Value("s", const=scales)], [Value("y")], attrs)
    expected = registry.lookup("Resize", backend="cpu", opset=13).fn(OpContext(node, 13), x, None, scales)
    oh, ow = expected.shape[2:]
    inputs = [None, None, scales]
    iy, wy = resize_taps(node, 13, 2, 6, oh, inputs)
    ix, wx = resize_taps(node, 13, 3, 5, ow, inputs)
    rows = np.einsum("ot,ncotw->ncow", wy, x[:, :, iy, :])
    got = np.einsum("pt,ncopt->ncop", wx, rows[:, :, :, ix])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_attention_geometries_compute_scaled_scores_and_output():
    q, k, v = [RNG.standard_normal(s).astype(np.float32) for s in ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 4))]
    scores_g, output_g = attention_geometries(q.shape, k.shape, v.shape, 0.25)
    scores = _gemm_by_strides(q, k, scores_g) * scores_g.alpha
    np.testing.assert_allclose(scores.reshape(2, 3, 5, 7), 0.25 * q @ np.swapaxes(k, -1, -2), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_gemm_by_strides(scores, v, output_g).reshape(2, 3, 5, 4), scores.reshape(2, 3, 5, 7) @ v, rtol=1e-5, atol=1e-5)


def test_bshd_attention_geometries_read_heads_in_place():
    """Q, K, V as the projections write them, (batch, sequence, heads, size): per (batch, head)
    the scores and the output by heads, without moving the inputs."""
    (b, s_q, s_k, h, d, d_v) = (2, 5, 7, 3, 8, 4)
    q, k, v = [RNG.standard_normal(s).astype(np.float32) for s in ((b, s_q, h, d), (b, s_k, h, d), (b, s_k, h, d_v))]
    qh, kh, vh = (np.swapaxes(t, 1, 2) for t in (q, k, v))
    scores_g, output_g = linalg.bshd_attention_geometries(q.shape, k.shape, v.shape, 0.25)
    scores = _gemm_by_strides(q, k, scores_g) * scores_g.alpha
    np.testing.assert_allclose(scores.reshape(b, h, s_q, s_k), 0.25 * qh @ np.swapaxes(kh, -1, -2), rtol=1e-5, atol=1e-5)
    by_heads = _gemm_by_strides(scores, v, output_g).reshape(b, h, s_q, d_v)
    np.testing.assert_allclose(by_heads, scores.reshape(b, h, s_q, s_k) @ vh, rtol=1e-5, atol=1e-5)
    shape, src = transpose_plan(by_heads.shape, (0, 2, 1, 3))
    assert np.array_equal(read(by_heads.reshape(-1), shape, src), np.swapaxes(by_heads, 1, 2))


def _column_major(flat: np.ndarray, rows: int, cols: int, ld: int, trans: int, batch: int, stride: int) -> np.ndarray:
    """What cuBLASLt reads for one operand: ``batch`` column-major rows x cols matrices (leading
    dimension ``ld``, ``stride`` elements apart), transposed when ``trans``."""
    mats = np.stack([read(flat, (rows, cols), (1, ld), b * stride) for b in range(batch)])
    return mats.transpose(0, 2, 1) if trans else mats


@pytest.mark.parametrize(
    "op, a_shape, b_shape, attrs",
    [
        ("MatMul", (5, 7), (7, 3), {}),
        ("MatMul", (4, 5, 7), (4, 7, 3), {}),
        ("MatMul", (4, 5, 7), (7, 3), {}),
        ("Gemm", (7, 5), (7, 3), {"transA": 1}),
        ("Gemm", (5, 7), (3, 7), {"transB": 1, "alpha": 0.5}),
        ("Gemm", (7, 5), (3, 7), {"transA": 1, "transB": 1}),
    ],
)
def test_cublaslt_problem_is_the_row_major_product(op, a_shape, b_shape, attrs):
    """The column-major Dᵀ = Bᵀ·Aᵀ that cuBLASLt is asked for, replayed on the raw buffers,
    is numpy's row-major product (transposes and the strided batch included)."""
    from edge.kernels.cuda import cublaslt
    from edge.kernels.cuda.linalg import gemm_problem
    from tests.cuda.conftest import make_step

    a, b = RNG.standard_normal(a_shape).astype(np.float32), RNG.standard_normal(b_shape).astype(np.float32)
    ta, tb = attrs.get("transA", 0), attrs.get("transB", 0)
    want = attrs.get("alpha", 1.0) * np.matmul(a.T if ta else a, b.T if tb else b)
    spec = make_step(op, [("a", np.float32, a_shape), ("b", np.float32, b_shape)], [(np.float32, want.shape)], attrs)
    geometry, addend = gemm_problem(spec)
    p = cublaslt._problem(geometry, spec, addend)
    assert p is not None
    first = _column_major(b.ravel(), *p["a"], p["trans_a"], p["batches"], p["a_batch"])   # cuBLASLt's A is our B
    second = _column_major(a.ravel(), *p["b"], p["trans_b"], p["batches"], p["b_batch"])  # and its B our A
    d = p["alpha"] * (first @ second)  # column-major n x m per batch
    got = np.stack([m.T for m in d]).reshape(want.shape)  # read back row-major m x n
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_cublaslt_declines_what_it_cannot_compute():
    from edge.kernels.cuda import cublaslt
    from edge.kernels.cuda.linalg import gemm_problem
    from tests.cuda.conftest import make_step

    column = make_step("Gemm", [("a", np.float32, (5, 7)), ("b", np.float32, (7, 3)), ("c", np.float32, (5, 1))], [(np.float32, (5, 3))])
    assert cublaslt._problem(gemm_problem(column)[0], column, 2) is None  # a per-row addend: no epilogue for it
    gelu = make_step("FusedGemm", [("a", np.float32, (5, 7)), ("b", np.float32, (7, 3))], [(np.float32, (5, 3))],
                     {"activation": "Gelu"}, domain="edgetrt")
    # cuBLASLt's GELU epilogue is the tanh form, not ONNX's erf: the product runs in cuBLASLt, the GELU after it
    problem = cublaslt._problem(gemm_problem(gelu)[0], gelu, 2)
    assert problem["act_after"] and not problem["relu"]
    two_batch_axes = make_step("MatMul", [("a", np.float32, (2, 3, 5, 7)), ("b", np.float32, (3, 7, 4))], [(np.float32, (2, 3, 5, 4))])
    assert cublaslt._problem(gemm_problem(two_batch_axes)[0], two_batch_axes, None) is None


def test_cublaslt_takes_a_gemm_residual_as_its_c_beside_the_bias_epilogue():
    """FusedGemm(A, W, bias, Z): the bias in cuBLASLt's epilogue, Z as its C matrix with beta 1;
    a residual beside a C matrix is declined (it has one)."""
    from edge.kernels.cuda import cublaslt
    from edge.kernels.cuda.linalg import gemm_problem
    from tests.cuda.conftest import make_step

    w, bias = RNG.standard_normal((8, 6)).astype(np.float32), RNG.standard_normal(6).astype(np.float32)
    spec = make_step("FusedGemm", [("a", np.float32, (5, 8)), w, bias, ("z", np.float32, (5, 6))], [(np.float32, (5, 6))],
                     {"activation": "Relu", "beta": 0.5}, "edgetrt")
    geometry, addend = gemm_problem(spec)
    p = cublaslt._problem(geometry, spec, addend)
    assert p["bias"] and p["full"] and (p["full_index"], p["full_beta"]) == (3, 1.0) and p["relu"]
    matrix = make_step("FusedGemm", [("a", np.float32, (5, 8)), w, ("c", np.float32, (5, 6)), ("z", np.float32, (5, 6))], [(np.float32, (5, 6))],
                       {}, "edgetrt")
    geometry, addend = gemm_problem(matrix)
    assert cublaslt._problem(geometry, matrix, addend) is None


def _im2col_nhwc(x: np.ndarray, g, kp: int) -> np.ndarray:
    """int8.cu's ``im2col_quantize<T, true>`` replayed over NHWC codes ``x``: each thread's
    16 columns of one row, its window position carried from tap to tap as the kernel does."""
    rows, chunks, depth = g.n * g.oh * g.ow, kp // 16, g.c * g.kh * g.kw
    cols = np.zeros((rows, kp), np.int64)
    for i in range(rows * chunks):
        p, k = i // chunks, (i % chunks) * 16
        ox, oy, n = p % g.ow, (p // g.ow) % g.oh, p // (g.ow * g.oh)
        c, ky = k % g.c, (k // g.c) // g.kw
        kx = k // g.c - ky * g.kw
        for j in range(16):
            if k + j >= depth:
                break
            iy, ix = oy * g.sh - g.ph + ky * g.dh, ox * g.sw - g.pw + kx * g.dw
            if 0 <= iy < g.h and 0 <= ix < g.w:
                cols[p, k + j] = x[n, iy, ix, c]
            c += 1
            if c == g.c:
                c, kx = 0, kx + 1
                if kx == g.kw:
                    kx, ky = 0, ky + 1
    return cols


def _conv_nhwc(x: np.ndarray, w: np.ndarray, g) -> np.ndarray:
    """An integer NHWC convolution written from its definition: one strided window slice per tap."""
    padded = np.pad(x, ((0, 0), (g.ph, g.ph + g.sh), (g.pw, g.pw + g.sw), (0, 0))).astype(np.int64)
    y = np.zeros((g.n, g.oh, g.ow, g.m), np.int64)
    for ky in range(g.kh):
        for kx in range(g.kw):
            rows = padded[:, ky * g.dh::g.sh][:, :g.oh, kx * g.dw::g.sw][:, :, :g.ow]
            y += np.einsum("nhwc,mc->nhwm", rows, w[:, :, ky, kx].astype(np.int64))
    return y


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((2, 16, 9, 9), (32, 16, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((1, 5, 11, 10), (7, 5, 3, 3), {"pads": [2, 2, 2, 2], "strides": [2, 2], "dilations": [2, 2]}),
    ((2, 20, 8, 8), (24, 20, 1, 1), {"strides": [2, 2]}),
    ((1, 8, 14, 14), (16, 8, 7, 7), {"pads": [3, 3, 3, 3], "strides": [2, 2]}),
])
def test_nhwc_int8_packing_and_weight_order_compute_the_convolution(x_shape, w_shape, attrs):
    """The NHWC im2col's (kH, kW, C) windows times the weight rows ``_conv_problem`` packs for
    a channels-last step, written at row * cols + col (spatial 1): the NHWC convolution."""
    x = RNG.integers(-127, 128, to_channels_last(x_shape))
    w = RNG.integers(-127, 128, w_shape).astype(np.int8)
    node = Node("FusedConv", [Value("x"), Value("w")], [Value("y")], {**attrs, CHANNELS_LAST: 1}, domain="edgetrt")
    g0 = conv_geometry(node, 17, x.shape, w_shape)
    out = (g0.n, g0.oh, g0.ow, g0.m)
    shapes = SimpleNamespace(x=SimpleNamespace(shape=x.shape), y=SimpleNamespace(shape=out))
    step = SimpleNamespace(node=node, spec=SimpleNamespace(opset=17), input=lambda i: shapes.x, output=lambda i: shapes.y)
    one = np.float32(1.0)
    problem = _conv_problem(step, IntegerOperand(one), IntegerOperand(np.ones(w_shape[0], np.float32), w))
    assert problem.spatial == 1 and problem.rows == math.prod(out[:3])
    kp = padded_depth(problem.weight.shape[1])
    weight = np.pad(problem.weight.astype(np.int64), ((0, 0), (0, kp - problem.weight.shape[1])))
    acc = _im2col_nhwc(x, problem.pack, kp) @ weight.T
    np.testing.assert_array_equal(acc.reshape(out), _conv_nhwc(x, w, problem.pack))
