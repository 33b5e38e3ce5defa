"""CUDA INT8 kernels of Conv, FusedConv, Gemm, FusedGemm and MatMul: INT8 tensor cores with the
CPU INT8 path's arithmetic (``kernels/cpu/int8.py``).

A step runs two kernels of int8.cu. ``im2col_quantize`` gathers the activation input as the
rows of an INT8 matrix in the context's scratch (a convolution's windows, or a GEMM's A as a
1x1 convolution), each value turned into its code ``clamp(round_half_even(x / s_x))`` as it is
read: the layer's input put on its grid, whatever stored it (a channels-last convolution's
windows in (kH, kW, C) order, its weight packed to match and its output rows NHWC).
``imma_gemm`` multiplies those rows by the weight's INT8 codes (packed at build, one row per
output channel, the depth padded with zeros to 32) on the tensor cores with int32 sums, and
runs the epilogue
``float(acc) * (s_x * s_w[k])`` plus the bias and the residual (itself put on its grid), the
fused activation and, for a tensor the layer writes as INT8, the requantization to its
scale: the float32 operations of the CPU kernel in its order. Which layers have this integer
form, and the factor per channel, come from :mod:`edge.quant.integer`.

A channels-last convolution also has cuDNN's INT8 convolutions as tactics
(:mod:`.cudnn_int8`); a layer whose output rows are row-major (Gemm, MatMul, channels-last
convolutions) has cuBLASLt's INT8 GEMMs over the same packed rows, int32 sums to scratch and
``imma_rows_epilogue`` after them (:func:`.cublaslt.build_lt_int8`). Both are timed after
these kernels and checked against them.

A tensor the plan stores as INT8 codes (:mod:`edge.plan.int8_storage`: written by an integer
kernel and read only by them) is read as it is and written as codes (``quantize_code`` in the
epilogue); a residual stored so is decoded to ``q · s``, the CPU's float32 value. Elsewhere
tensors stay in the float storage of the layer's precision (float16 on the GPU): an INT8
tensor is kept as ``q * s`` in float16, from which the next layer's load recovers ``q``
exactly (|q| <= 127 needs 7 of float16's 11 significand bits).

Refused here, and run by the float kernel of the same precision with the INT8 conversions
around it (:mod:`.conversions`): layers without an integer form (nonzero zero points, weights
scaled along another axis), weights that are not constants, grouped and 3-D convolutions, a
non-constant bias, a residual of another shape than the output, a FusedGemm residual beside a
non-constant C, a Gemm addend that is a constant varying along rows, batched MatMul weights, depths whose int32 sums could overflow.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass

import numpy as np

from edge.ir import EDGETRT_DOMAIN, Node
from edge.ir.layout import is_channels_last
from edge.kernels.backend import StepSpec
from edge.kernels.cuda.conversions import FakeQuant, quantizers
from edge.kernels.cuda.cublaslt import build_lt_int8, int8_candidates
from edge.kernels.cuda.cudnn_int8 import CODES, SUMS, build_cudnn_int8_conv, epilogue_suffix, int8_conv_candidates
from edge.kernels.cuda.launch import (
    BLOCK,
    Body,
    DeviceTensor,
    Step,
    activation_code,
    broadcast_strides,
    grid_1d,
    static_refusal,
    storage_suffix,
)
from edge.kernels.cuda.nn import Conv2d, conv_geometry, window_refusal
from edge.kernels.registry import register
from edge.kernels.tactics import Tactic
from edge.plan.int8_storage import CODES_META
from edge.quant.integer import IntegerOperand, epilogue_multiplier, integer_operands
from edge.quant.numerics import quantizer_of, weight_axis
from edge.refusal import Refusal

__all__ = ["Imma", "TILES", "imma_tactics", "padded_depth"]

INT8 = ("int8",)
FLOATS = (np.float32, np.float16)
DEPTH_STEP = 32
"""The packed depth is a multiple of this (IMMA_BK: one m16n8k32 step per pipeline stage)."""
MAX_DEPTH = (2**31 - 1) // (128 * 128)
"""Deepest product whose int32 sums of |code| <= 128 products cannot overflow."""
TILES = {"imma128x128": (128, 256), "imma64x64": (64, 128)}
"""Tactics: output tile edge (rows and columns per block) and threads per block."""
FULL_GRID = 256
"""Blocks of 128x128 from which the larger tile goes first (enough to fill a big GPU's SMs)."""


class Imma(ctypes.Structure):
    """``struct Imma`` of int8.cu: one INT8 GEMM's sizes, output and residual layout, epilogue."""

    _fields_ = [
        ("rows", ctypes.c_int64),
        ("cols", ctypes.c_int32),
        ("kp", ctypes.c_int32),
        ("spatial", ctypes.c_int64),
        ("z_image", ctypes.c_int64),
        ("z_channel", ctypes.c_int64),
        ("z_spatial", ctypes.c_int64),
        ("z_beta", ctypes.c_float),
        ("zq", FakeQuant),
        ("yq", FakeQuant),
        ("act", ctypes.c_int32),
        ("p0", ctypes.c_float),
        ("p1", ctypes.c_float),
    ]


def padded_depth(depth: int) -> int:
    """The packed depth of a product of ``depth`` terms."""
    return -(-depth // DEPTH_STEP) * DEPTH_STEP


# -- refusals -------------------------------------------------------------------------------


def _operand_refusal(node: Node) -> Refusal | None:
    """Refusal unless the layer has an integer form with a constant weight of a safe depth."""
    operands = integer_operands(node)
    if isinstance(operands, Refusal):
        return operands
    weight = operands[1]
    if weight.codes is None:
        return Refusal("int8.activation_weight", f"{node.op_type} '{node.name}': input 1 is not a constant weight (the GPU's integer kernels take constant weights)")
    depth = weight.codes.size // max(weight.codes.shape[weight_axis(node.op_type, 1, node.attrs)], 1)
    if depth > MAX_DEPTH:
        return Refusal("int8.depth", f"{node.op_type} '{node.name}': a depth of {depth} could overflow int32 sums (at most {MAX_DEPTH})")
    return None


def _conv_refusal(node: Node) -> Refusal | None:
    refusal = window_refusal(node)
    if refusal is not None:
        return refusal
    if node.attrs.get("group", 1) != 1:
        return Refusal("int8.grouped_conv", f"{node.op_type} '{node.name}': group={node.attrs['group']} (the INT8 kernels compute ungrouped convolutions)")
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is not None and not bias.is_const:
        return Refusal("int8.bias", f"{node.op_type} '{node.name}': the bias is not a constant")
    residual = node.inputs[3] if len(node.inputs) > 3 else None
    if residual is not None and tuple(residual.shape) != tuple(node.outputs[0].shape):
        return Refusal("int8.residual", f"{node.op_type} '{node.name}': residual {residual.shape} is not the output's shape {node.outputs[0].shape}")
    return _operand_refusal(node)


def _gemm_refusal(node: Node) -> Refusal | None:
    refusal = static_refusal(node, FLOATS)
    if refusal is not None:
        return refusal
    c = node.inputs[2] if len(node.inputs) > 2 else None
    residual = node.inputs[3] if len(node.inputs) > 3 else None
    if residual is not None:
        if tuple(residual.shape) != tuple(node.outputs[0].shape):
            return Refusal("int8.residual", f"{node.op_type} '{node.name}': residual {residual.shape} is not the output's shape {node.outputs[0].shape}")
        if c is not None and not c.is_const:
            return Refusal("int8.residual", f"{node.op_type} '{node.name}': a residual Z beside an activation addend C (the INT8 epilogue reads one)")
    if c is not None and c.is_const and len(node.outputs[0].shape) == 2:
        n = node.outputs[0].shape[1]
        if tuple(np.broadcast_shapes(np.shape(c.const), (1, n))) != (1, n):
            return Refusal("int8.addend", f"{node.op_type} '{node.name}': constant C {np.shape(c.const)} varies along rows (the INT8 epilogue adds a row)")
    return _operand_refusal(node)


def _matmul_refusal(node: Node) -> Refusal | None:
    refusal = static_refusal(node, FLOATS)
    if refusal is not None:
        return refusal
    if node.inputs[1].shape is None or len(node.inputs[1].shape) != 2:
        return Refusal("int8.weight_rank", f"MatMul '{node.name}': B {node.inputs[1].shape} is not a 2-D weight")
    return _operand_refusal(node)


# -- the problem each layer poses -----------------------------------------------------------


@dataclass
class _Problem:
    """One layer as an INT8 GEMM: how its input is packed, the weight rows, the epilogue."""

    pack: Conv2d
    rows: int
    weight: np.ndarray  # int8 codes, (cols, depth)
    multiplier: np.ndarray  # float32, (cols,)
    spatial: int
    bias: np.ndarray | None = None  # float32, (cols,)
    residual: int | None = None  # input index of the residual
    z_strides: tuple[int, int, int] = (0, 0, 0)
    z_beta: float = 1.0


def _unit_conv(images: int, channels: int, height: int, cols: int) -> Conv2d:
    """The 1x1 convolution whose im2col rows are a GEMM's A: ``images`` x ``height`` rows of
    ``channels`` values, read at (image * channels + k) * height + row."""
    return Conv2d(images, channels, height, 1, cols, height, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0.0, 0.0)


def _per_column(values: np.ndarray, cols: int) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(np.asarray(values, np.float32).reshape(-1), (cols,)))


def _conv_problem(step: Step, a: IntegerOperand, b: IntegerOperand) -> _Problem:
    """A convolution's GEMM: NCHW output planes (``spatial`` positions per channel), or for a
    channels-last step NHWC rows (``spatial`` 1) and the weight's taps in KRSC order, which is
    how the NHWC packing orders a window."""
    node = step.node
    x, out = tuple(step.input(0).shape), tuple(step.output(0).shape)
    pack = conv_geometry(node, step.spec.opset, x, tuple(b.codes.shape))
    nhwc = is_channels_last(node)
    cols = out[-1] if nhwc else out[1]
    positions = math.prod(out[1:-1] if nhwc else out[2:])
    weight = b.codes.transpose(0, *range(2, b.codes.ndim), 1) if nhwc else b.codes
    spatial = 1 if nhwc else positions
    problem = _Problem(pack, out[0] * positions, weight.reshape(cols, -1), _per_column(epilogue_multiplier(node, a, b), cols), spatial)
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is not None:
        problem.bias = _per_column(bias.const, cols)
    if len(node.inputs) > 3 and node.inputs[3] is not None:
        problem.residual, problem.z_strides = 3, ((cols, 1, 0) if nhwc else (cols * spatial, spatial, 1))
    return problem


def _product_problem(step: Step, a: IntegerOperand, b: IntegerOperand) -> _Problem:
    node = step.node
    x, out = tuple(step.input(0).shape), tuple(step.output(0).shape)
    cols = out[-1]
    multiplier = _per_column(epilogue_multiplier(node, a, b), cols)
    if node.op_type == "MatMul":
        rows = math.prod(x[:-1])
        return _Problem(_unit_conv(rows, x[-1], 1, cols), rows, np.ascontiguousarray(b.codes.T), multiplier, 1)
    trans_a, trans_b = node.attrs.get("transA", 0), node.attrs.get("transB", 0)
    rows = x[1] if trans_a else x[0]
    pack = _unit_conv(1, x[0], rows, cols) if trans_a else _unit_conv(rows, x[1], 1, cols)
    problem = _Problem(pack, rows, np.ascontiguousarray(b.codes if trans_b else b.codes.T), multiplier, 1)
    c = node.inputs[2] if len(node.inputs) > 2 else None
    beta = np.float32(node.attrs.get("beta", 1.0))
    if len(node.inputs) > 3 and node.inputs[3] is not None:  # FusedGemm's Z, the output's shape
        problem.residual, problem.z_strides = 3, (cols, 1, 0)
    if c is None or beta == 0:
        return problem
    if c.is_const:
        addend = np.asarray(c.const, np.float32)
        problem.bias = _per_column(addend * beta if beta != 1 else addend, cols)
    else:
        row, col = broadcast_strides(tuple(c.shape), (rows, cols))
        problem.residual, problem.z_strides, problem.z_beta = 2, (row, col, 0), float(beta)
    return problem


def imma_tactics(spec: StepSpec) -> list[Tactic]:
    """Both tile sizes, the larger first when its blocks fill the GPU; then, for a channels-last
    convolution, cuDNN's INT8 plans (:mod:`.cudnn_int8`); then, where the output is row-major
    (products, channels-last convolutions), cuBLASLt's INT8 GEMMs; all checked against the first."""
    out = tuple(spec.outputs[0].shape)
    cols = out[1] if spec.node.op_type in ("Conv", "FusedConv") and not is_channels_last(spec.node) else out[-1]
    rows = math.prod(out) // max(cols, 1)
    full = -(-rows // 128) * -(-cols // 128) >= FULL_GRID
    names = ["imma128x128", "imma64x64"] if full else ["imma64x64", "imma128x128"]
    conv = spec.node.op_type in ("Conv", "FusedConv")
    cudnn = int8_conv_candidates(spec) if conv else []
    lt = int8_candidates(cols) if not conv or is_channels_last(spec.node) else []
    return [Tactic(name) for name in names] + cudnn + lt


def _epilogue(step: Step, problem: _Problem, kp: int) -> Imma:
    """The layer's ``Imma`` struct: GEMM sizes, output and residual layout, the residual's
    quantizer and the output's requantizer, the fused activation."""
    node = step.node
    z = node.inputs[problem.residual] if problem.residual is not None else None
    act, p0, p1 = activation_code(node.attrs.get("activation", ""), node.attrs.get("activation_params", ()) or ())
    return Imma(problem.rows, problem.weight.shape[0], kp, problem.spatial, *problem.z_strides, problem.z_beta,
                FakeQuant.of(None if z is None else quantizer_of(z.meta)), FakeQuant.of(dict(quantizers(node)[1]).get(0)), act, p0, p1)


def _already_packed(step: Step, problem: _Problem, kp: int) -> bool:
    """Whether the input is its own packed matrix: INT8 codes of a channels-last pointwise
    convolution (1x1, stride 1, no padding) whose channels fill whole depth steps, whose rows
    of C codes are the GEMM's rows (no packing pass)."""
    g = problem.pack
    pointwise = (g.kh, g.kw, g.sh, g.sw, g.ph, g.pw) == (1, 1, 1, 1, 0, 0) and g.oh == g.h and g.ow == g.w
    return np.dtype(step.input(0).dtype) == np.int8 and is_channels_last(step.node) and pointwise and kp == g.c


def _integer_body(step: Step, problem: _Problem) -> Body:
    node = step.node
    cols, depth = problem.weight.shape
    kp = padded_depth(depth)
    tactic = step.spec.tactic or imma_tactics(step.spec)[0]
    if tactic.params.get("source") == "cudnn":
        return build_cudnn_int8_conv(step, problem, _epilogue(step, problem, kp), tactic)
    weight = step.place(1, np.pad(problem.weight.astype(np.int8), ((0, 0), (0, kp - depth))))
    multiplier = step.upload(problem.multiplier)
    if problem.bias is not None:
        step.place(2, problem.bias)
    bias_at = 2 if problem.bias is not None else None
    layout = "_nhwc" if is_channels_last(node) else ""
    pack = step.function("int8", f"im2col_quantize{layout}_{storage_suffix(step.input(0).dtype)}")
    pack_args = (problem.pack, ctypes.c_int32(kp), FakeQuant.of(quantizer_of(node.inputs[0].meta)))
    pack_grid = grid_1d(problem.rows * (kp // 16))
    imma = _epilogue(step, problem, kp)
    nbytes = problem.rows * kp
    packed = _already_packed(step, problem, kp)
    suffix = epilogue_suffix(step, problem.residual)
    if tactic.params.get("source") == "cublaslt":
        finish = step.function("int8", f"imma_rows_epilogue_{suffix}")
        product = build_lt_int8(step, problem.rows, cols, kp, tactic)

        def multiply(codes: DeviceTensor, bias, residual, out, state) -> None:
            sums = DeviceTensor(state.workspace(step.backend, problem.rows * cols * 4, SUMS), (problem.rows, cols), np.dtype(np.int32))
            product(codes.ptr, weight.ptr, sums.ptr, state)
            finish(state, grid_1d(problem.rows * cols), (BLOCK, 1, 1), sums, multiplier, bias, residual, out, imma)
    else:
        tile, threads = TILES[tactic.name]
        gemm = step.function("int8", f"imma_gemm_{tactic.name[4:]}_{suffix}")
        grid = (-(-problem.rows // tile), -(-cols // tile), 1)

        def multiply(codes: DeviceTensor, bias, residual, out, state) -> None:
            gemm(state, grid, (threads, 1, 1), codes, weight, multiplier, bias, residual, out, imma)

    def body(inputs: list, outputs: list, state) -> None:
        if packed:
            codes = inputs[0]
        else:
            codes = DeviceTensor(state.workspace(step.backend, nbytes, CODES), (problem.rows, kp), np.dtype(np.int8))
            pack(state, pack_grid, (BLOCK, 1, 1), inputs[0], codes, *pack_args)
        bias = None if bias_at is None else inputs[bias_at]
        residual = None if problem.residual is None else inputs[problem.residual]
        multiply(codes, bias, residual, outputs[0], state)

    return body


def _operands(step: Step) -> tuple[IntegerOperand, IntegerOperand]:
    operands = integer_operands(step.node)
    assert not isinstance(operands, Refusal), operands  # the registration's refusal kept such layers away
    return operands


def imma_conv(step: Step) -> Body:
    """act(s_x · s_w[k] · Σ q_x q_w + B + Z) of an INT8 convolution, requantized where written as INT8."""
    return _integer_body(step, _conv_problem(step, *_operands(step)))


def imma_product(step: Step) -> Body:
    """act(alpha · s_a · s_b[n] · Σ q_a q_b + beta · C) of an INT8 Gemm or MatMul, requantized where written as INT8."""
    return _integer_body(step, _product_problem(step, *_operands(step)))


_INTEGER = {"precisions": INT8, "tactics": imma_tactics, "quantizes": True}
_CONV = {**_INTEGER, CODES_META: (0, 3)}  # the input and the residual may be stored as INT8 codes
_PRODUCT = {**_INTEGER, CODES_META: (0,)}
register("Conv", backend="cuda", supports=_conv_refusal, **_CONV)(imma_conv)
register("FusedConv", backend="cuda", domain=EDGETRT_DOMAIN, supports=_conv_refusal, **_CONV)(imma_conv)
register("Gemm", backend="cuda", supports=_gemm_refusal, **_PRODUCT)(imma_product)
register("FusedGemm", backend="cuda", domain=EDGETRT_DOMAIN, supports=_gemm_refusal, **_PRODUCT)(imma_product)
register("MatMul", backend="cuda", supports=_matmul_refusal, **_PRODUCT)(imma_product)
