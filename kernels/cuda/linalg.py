"""CUDA builders of the matrix products: Gemm, MatMul (batched, broadcasting batch dims) and
edgetrt::FusedGemm (activation in the epilogue). Tactics: "tiled" (float accumulation in
shared-memory tiles, fp32 and fp16), for fp16 "wmma" (tensor cores), and cuBLASLt's heuristic
algorithms where nvmath-python is installed (:mod:`.cublaslt`). TF32 is never used, so fp32
results match the CPU reference. edgetrt::Attention: tactic "nvrtc" runs two of these products
around a row softmax; "cudnn_sdpa" is cuDNN's fused attention where the frontend is installed
(:mod:`.cudnn_sdpa`)."""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence

import numpy as np

from edge.ir import EDGETRT_DOMAIN, Node
from edge.kernels.backend import StepSpec
from edge.kernels.cuda import cublaslt, cudnn_sdpa
from edge.kernels.cuda.elementwise import BINARY_CODES, broadcast_plan, product_epilogue
from edge.kernels.cuda.launch import (
    BLOCK,
    PRECISIONS,
    Body,
    DeviceTensor,
    Dims,
    Step,
    activation_code,
    broadcast_strides,
    contiguous_strides,
    float_suffix,
    grid_1d,
    merge_axes,
    static_refusal,
)
from edge.kernels.cuda.reduce import reduce_threads
from edge.kernels.cuda.sources import TacticSource, add_source, build_tactic, family_tactics
from edge.kernels.cuda.tensor import StridedCopy, transpose_plan
from edge.kernels.registry import register
from edge.kernels.tactics import Tactic
from edge.refusal import Refusal

__all__ = ["GemmGeometry", "matmul_geometry", "gemm_geometry", "gemm_grid", "gemm_tactics", "attention_geometries", "bshd_attention_geometries", "attention_tactics"]

FLOATS = (np.float32, np.float16)
TILE = 64
"""Rows and columns of the output per block (GEMM_BM / GEMM_BN)."""
MAX_BATCH = 65535
"""Batches per launch (the grid's z limit)."""


class GemmGeometry(ctypes.Structure):
    """``struct Gemm`` of gemm.cu."""

    _fields_ = [(name, ctypes.c_int64) for name in "m n k a_sm a_sk b_sk b_sn c_sm c_sn".split()] + [
        ("batch_dims", ctypes.c_int32),
        ("batch_shape", Dims),
        ("a_batch", Dims),
        ("b_batch", Dims),
        ("alpha", ctypes.c_float),
        ("beta", ctypes.c_float),
        ("act", ctypes.c_int32),
        ("p0", ctypes.c_float),
        ("p1", ctypes.c_float),
    ]

    @property
    def batches(self) -> int:
        return math.prod(self.batch_shape.v[: self.batch_dims]) if self.batch_dims else 1


def matmul_geometry(a_shape: Sequence[int], b_shape: Sequence[int]) -> GemmGeometry:
    """numpy.matmul's product as a batched GEMM: 1-D operands promoted, batch dims broadcast."""
    a = (1, *a_shape) if len(a_shape) == 1 else tuple(a_shape)
    b = (*b_shape, 1) if len(b_shape) == 1 else tuple(b_shape)
    m, k = a[-2:]
    n = b[-1]
    batch = tuple(np.broadcast_shapes(a[:-2], b[:-2]))
    a_strides = [s * m * k for s in broadcast_strides(a[:-2], batch)]
    b_strides = [s * k * n for s in broadcast_strides(b[:-2], batch)]
    shape, (a_batch, b_batch) = merge_axes(batch, a_strides, b_strides) if batch else ((), [(), ()])
    g = GemmGeometry(m, n, k, k, 1, n, 1, 0, 0)
    g.batch_dims = len(shape) if math.prod(shape) > 1 else 0
    g.batch_shape, g.a_batch, g.b_batch = Dims.of(shape), Dims.of(a_batch), Dims.of(b_batch)
    g.alpha, g.beta = 1.0, 0.0
    return g


def gemm_geometry(node: Node, a_shape: Sequence[int], b_shape: Sequence[int], c_shape: Sequence[int] | None) -> GemmGeometry:
    """ONNX Gemm: alpha * op(A) op(B) + beta * C with transA/transB read as strides."""
    trans_a, trans_b = node.attrs.get("transA", 0), node.attrs.get("transB", 0)
    m, k = (a_shape[1], a_shape[0]) if trans_a else tuple(a_shape)
    n = b_shape[0] if trans_b else b_shape[1]
    a_sm, a_sk = (1, m) if trans_a else (k, 1)
    b_sk, b_sn = (1, k) if trans_b else (n, 1)
    c_sm, c_sn = broadcast_strides(c_shape, (m, n)) if c_shape is not None else (0, 0)
    g = GemmGeometry(m, n, k, a_sm, a_sk, b_sk, b_sn, c_sm, c_sn)
    g.batch_dims = 0
    g.alpha, g.beta = float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0))
    return g


def gemm_grid(g: GemmGeometry, tactic: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(grid, block) of a GEMM tactic: one block per 64x64 output tile per batch."""
    grid = (-(-g.n // TILE), -(-g.m // TILE), g.batches)
    return grid, ((128, 1, 1) if tactic == "wmma" else (256, 1, 1))


def nvrtc_gemm_candidates(spec: StepSpec) -> list[Tactic]:
    """Tensor cores first for fp16 tensors; fp32 has the tiled kernel only (no TF32)."""
    if np.dtype(spec.inputs[0].dtype) == np.float16:
        return [Tactic("wmma"), Tactic("tiled")]
    return [Tactic("tiled")]


def _nvrtc_gemm(step: Step, tactic: Tactic, g: GemmGeometry, addend: int | None) -> Body:
    """The product with its addend C in the kernel; a FusedGemm's residual Z and then its
    activation in one epilogue pass after it (the kernel takes one addend)."""
    dtype = step.input(0).dtype
    fn = step.function("gemm", f"gemm_{tactic.name}_{float_suffix(dtype)}")
    grid, block = gemm_grid(g, tactic.name)
    residual = 3 if step.node.op_type == "FusedGemm" and step.input(3) is not None else None
    finish = None
    if residual is not None:
        finish = product_epilogue(step, math.prod(step.output(0).shape), g.act, g.p0, g.p1)
        g = GemmGeometry.from_buffer_copy(g)
        g.act, g.p0, g.p1 = activation_code("", ())

    def body(inputs: list, outputs: list, state) -> None:
        c = inputs[addend] if addend is not None and addend < len(inputs) else None
        fn(state, grid, block, inputs[0], inputs[1], c, outputs[0], g)
        if finish is not None:
            finish(outputs[0], inputs[residual], state)

    return body


def gemm_problem(spec: StepSpec) -> tuple[GemmGeometry, int | None]:
    """(geometry, index of the addend input or None) of a MatMul, Gemm or FusedGemm step."""
    node = spec.node
    a, b = tuple(spec.inputs[0].shape), tuple(spec.inputs[1].shape)
    if node.op_type == "MatMul":
        return matmul_geometry(a, b), None
    c = spec.inputs[2] if len(spec.inputs) > 2 else None
    g = gemm_geometry(node, a, b, None if c is None else tuple(c.shape))
    if node.op_type == "FusedGemm":
        g.act, g.p0, g.p1 = activation_code(node.attrs.get("activation", ""), node.attrs.get("activation_params", ()) or ())
    return g, 2


add_source("gemm", TacticSource("nvrtc", nvrtc_gemm_candidates, _nvrtc_gemm))
add_source("gemm", TacticSource("cublaslt", lambda spec: cublaslt.lt_candidates(spec, *gemm_problem(spec)), cublaslt.build_lt_gemm))
gemm_tactics = family_tactics("gemm")


def _matmul_refusal(node: Node) -> Refusal | None:
    refusal = static_refusal(node, FLOATS)
    if refusal is None:
        a, b = node.inputs[0].shape, node.inputs[1].shape
        if math.prod(np.broadcast_shapes(a[:-2], b[:-2])) > MAX_BATCH:
            return Refusal("cuda.shape", f"{node.op_type} '{node.name}': more than {MAX_BATCH} batches")
    return refusal


def gemm_product(step: Step) -> Body:
    """MatMul, Gemm and FusedGemm: one product with its addend and activation, by the chosen tactic."""
    return build_tactic("gemm", step, *gemm_problem(step.spec))


register("MatMul", backend="cuda", precisions=PRECISIONS, supports=_matmul_refusal, tactics=gemm_tactics)(gemm_product)


def _gemm_refusal(node: Node) -> Refusal | None:
    return static_refusal(node, FLOATS)


register("Gemm", backend="cuda", precisions=PRECISIONS, supports=_gemm_refusal, tactics=gemm_tactics)(gemm_product)
register("FusedGemm", backend="cuda", domain=EDGETRT_DOMAIN, precisions=PRECISIONS, supports=_gemm_refusal, tactics=gemm_tactics)(gemm_product)


def attention_geometries(q: Sequence[int], k: Sequence[int], v: Sequence[int], scale: float) -> tuple[GemmGeometry, GemmGeometry]:
    """The two products of softmax(Q Kᵀ scale + mask) V: scores = scale * Q Kᵀ, with Kᵀ read
    through K's strides, and scores V."""
    keys_t = (*k[:-2], k[-1], k[-2])
    scores = matmul_geometry(q, keys_t)
    scores.b_sk, scores.b_sn = 1, k[-1]
    scores.alpha = float(scale)
    score_shape = (*np.broadcast_shapes(tuple(q[:-2]), tuple(k[:-2])), q[-2], k[-2])
    return scores, matmul_geometry(score_shape, v)


def bshd_attention_geometries(q: Sequence[int], k: Sequence[int], v: Sequence[int], scale: float) -> tuple[GemmGeometry, GemmGeometry]:
    """The two products of attention over (batch, sequence, heads, size) Q, K, V, read in place
    through their strides, one GEMM per (batch, head): scores = scale * Q Kᵀ into a contiguous
    (B, H, Sq, Sk), and scores V into a contiguous (B, H, Sq, Dv)."""
    (b, s_q, h, d), (_, s_k, _, _), (_, _, _, d_v) = q, k, v
    scores = GemmGeometry(s_q, s_k, d, h * d, 1, 1, h * d, 0, 0)
    output = GemmGeometry(s_q, d_v, s_k, s_k, 1, h * d_v, 1, 0, 0)
    scores.a_batch, scores.b_batch = Dims.of((s_q * h * d, d)), Dims.of((s_k * h * d, d))
    output.a_batch, output.b_batch = Dims.of((h * s_q * s_k, s_q * s_k)), Dims.of((s_k * h * d_v, d_v))
    for g in (scores, output):
        g.batch_dims, g.batch_shape = 2, Dims.of((b, h))
        g.beta = 0.0
    scores.alpha, output.alpha = float(scale), 1.0
    return scores, output


def _attention_refusal(node: Node) -> Refusal | None:
    refusal = static_refusal(node, FLOATS)
    if refusal is None and any(len(node.inputs[i].shape) < 2 for i in range(3)):
        return Refusal("cuda.rank", f"Attention '{node.name}': Q, K and V need at least two axes")
    if refusal is None and node.attrs.get("bshd", 0):
        q, k, v = (tuple(node.inputs[i].shape) for i in range(3))
        if any(len(t) != 4 for t in (q, k, v)) or not (q[0] == k[0] == v[0] and q[2] == k[2] == v[2] and k[1] == v[1]):
            return Refusal("cuda.shape", f"Attention '{node.name}': heads-on-axis-2 Q, K, V of shapes {q}, {k}, {v} do not share batch and heads")
    return refusal


def _nvrtc_attention(step: Step, tactic: Tactic) -> Body:
    """softmax(Q·Kᵀ·scale + mask)·V as GEMM, broadcast add, row softmax and GEMM, the scores
    in the context's workspace (in the step's dtype)."""
    q, k, v = (tuple(step.input(i).shape) for i in range(3))
    dtype = np.dtype(step.input(0).dtype)
    suffix = float_suffix(dtype)
    bshd = bool(step.attr("bshd", 0))
    if bshd:  # heads on axis 2: the GEMMs read Q, K, V in place; the output is written by heads, then moved
        scores_g, output_g = bshd_attention_geometries(q, k, v, step.attr("scale", 1.0))
        score_shape = (q[0], q[2], q[1], k[1])
        by_heads = (q[0], q[2], q[1], v[3])
        out_shape, out_src = transpose_plan(by_heads, (0, 2, 1, 3))
        move_out = StridedCopy(step, dtype, out_shape, out_src, contiguous_strides(out_shape))
    else:
        scores_g, output_g = attention_geometries(q, k, v, step.attr("scale", 1.0))
        score_shape = (*np.broadcast_shapes(q[:-2], k[:-2]), q[-2], k[-2])
    score_bytes = -(-math.prod(score_shape) * dtype.itemsize // 256) * 256
    nbytes = score_bytes + (math.prod(by_heads) * dtype.itemsize if bshd else 0)
    tactic = nvrtc_gemm_candidates(step.spec)[0].name
    gemm = step.function("gemm", f"gemm_{tactic}_{suffix}")
    grids = [gemm_grid(g, tactic) for g in (scores_g, output_g)]
    softmax = step.function("reduce", f"softmax_{suffix}")
    rows, length = math.prod(score_shape[:-1]), score_shape[-1]
    softmax_args = (ctypes.c_int64(length), ctypes.c_int64(1), ctypes.c_int32(0))
    mask = step.input(3)
    if mask is not None:
        add = step.function("elementwise", f"binary_bcast_{suffix}")
        shape, (s_scores, s_mask) = broadcast_plan([score_shape, tuple(mask.shape)], score_shape)
        add_args = (ctypes.c_int64(math.prod(score_shape)), ctypes.c_int32(BINARY_CODES["Add"]), ctypes.c_int32(len(shape)),
                    Dims.of(shape), Dims.of(s_scores), Dims.of(s_mask))

    def body(inputs: list, outputs: list, state) -> None:
        scratch = state.workspace(step.backend, nbytes)
        scores = DeviceTensor(scratch, score_shape, dtype)
        gemm(state, *grids[0], inputs[0], inputs[1], None, scores, scores_g)
        if mask is not None:
            add(state, grid_1d(scores.size), (BLOCK, 1, 1), scores, inputs[3], scores, *add_args)
        softmax(state, (rows, 1, 1), (reduce_threads(length), 1, 1), scores, scores, *softmax_args)
        if bshd:
            heads = DeviceTensor(scratch + score_bytes, by_heads, dtype)
            gemm(state, *grids[1], scores, inputs[2], None, heads, output_g)
            move_out(state, heads, outputs[0])
        else:
            gemm(state, *grids[1], scores, inputs[2], None, outputs[0], output_g)

    return body


add_source("attention", TacticSource("nvrtc", lambda spec: [Tactic("nvrtc")], _nvrtc_attention))
add_source("attention", TacticSource("cudnn", cudnn_sdpa.sdpa_candidates, cudnn_sdpa.build_cudnn_sdpa))
attention_tactics = family_tactics("attention")


@register("Attention", backend="cuda", domain=EDGETRT_DOMAIN, precisions=PRECISIONS, supports=_attention_refusal, tactics=attention_tactics)
def attention(step: Step) -> Body:
    """softmax(Q·Kᵀ·scale + mask)·V by the chosen tactic."""
    return build_tactic("attention", step)
