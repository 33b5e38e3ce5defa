"""cuBLASLt as a tactic source of the GEMM family, through nvmath-python's low-level
``bindings.cublasLt`` (plain C calls on our own pointers: operands in the context's arena,
the algorithm's workspace in the context's scratch, so nothing allocates during a run).

Tactics "lt0".."lt3" are the ranks of cuBLASLt's heuristic for the step's problem; the
auto-tuner times them beside the NVRTC kernels. Offered where cuBLASLt computes exactly the
step: row-major operands (transposed or not), at most one broadcast batch axis, a bias row
or a full addend, FP32 accumulation (never TF32). No activation or ReLU run in cuBLASLt's
epilogue; any other fused activation (GELU's erf form, which cuBLASLt's tanh-form GELU
epilogue only approximates; SiLU, ...) runs as one NVRTC kernel over the output, in place.
Row-major D = A·B is computed as column-major Dᵀ = Bᵀ·Aᵀ, so B is cuBLASLt's first operand.

Tactics "lt_int8<r>" of the integer layers (:mod:`.int8`) are its INT8 GEMMs: packed INT8 rows
times the weight's codes, int32 sums that the integer kernels' epilogue finishes.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from edge.kernels.backend import StepSpec
from edge.kernels.cuda.elementwise import product_epilogue
from edge.kernels.cuda.launch import Body, Step, version_text
from edge.kernels.tactics import Tactic

__all__ = ["available", "lt_candidates", "build_lt_gemm", "int8_candidates", "build_lt_int8", "library_version"]

RANKS = 4
"""Heuristic ranks offered as tactics."""
WORKSPACE_BYTES = 32 << 20
"""Largest workspace an algorithm may ask for (the context's scratch grows to it once)."""

_DATA_TYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 2}  # cudaDataType CUDA_R_32F, CUDA_R_16F
_INT8, _INT32 = 3, 10  # cudaDataType CUDA_R_8I, CUDA_R_32I
INT8_ALIGNMENT = 4
"""Output columns of an INT8 product come in multiples of this (int32 rows 16-byte aligned)."""
_OP_N, _OP_T = 0, 1
_ACT_NONE, _ACT_RELU = 0, 1


@functools.cache
def _library() -> Any:
    """``nvmath.bindings.cublasLt`` with its shared library loaded, or None."""
    try:
        from nvmath.bindings import cublasLt

        cublasLt.get_version()
    except Exception:  # not installed, or libcublasLt missing: the source offers nothing
        return None
    return cublasLt


def available() -> bool:
    return _library() is not None


def library_version() -> str | None:
    """cuBLASLt's version ("13.1.0"), or None without it."""
    lt = _library()
    if lt is None:
        return None
    return version_text(int(lt.get_version()))


def _problem(g: Any, spec: StepSpec, addend: int | None) -> dict[str, Any] | None:
    """The cuBLASLt description of a GEMM geometry, or None where cuBLASLt cannot compute it."""
    dtype = np.dtype(spec.inputs[0].dtype)
    if dtype not in _DATA_TYPES or g.batch_dims > 1:
        return None
    m, n, k = int(g.m), int(g.n), int(g.k)
    if (g.a_sm, g.a_sk) == (k, 1):
        b_layout, trans_b = (k, m, k), _OP_N
    elif (g.a_sm, g.a_sk) == (1, m):
        b_layout, trans_b = (m, k, m), _OP_T
    else:
        return None
    if (g.b_sk, g.b_sn) == (n, 1):
        a_layout, trans_a = (n, k, n), _OP_N
    elif (g.b_sk, g.b_sn) == (1, k):
        a_layout, trans_a = (k, n, k), _OP_T
    else:
        return None
    batches = g.batches
    c_info = spec.inputs[addend] if addend is not None and addend < len(spec.inputs) else None
    residual = spec.inputs[3] if spec.node.op_type == "FusedGemm" and len(spec.inputs) > 3 else None
    bias = full = False
    full_index, full_beta = addend, float(g.beta)  # the addend cuBLASLt reads as its C matrix
    if c_info is not None:
        if (g.c_sm, g.c_sn) == (0, 1) and c_info.const is not None and batches == 1:
            bias = True
        elif (g.c_sm, g.c_sn) == (n, 1) and batches == 1:
            full = True
        else:
            return None
    if residual is not None:  # FusedGemm's Z: C with beta 1 (beside a bias epilogue)
        if full or batches != 1 or tuple(residual.shape) != (m, n):
            return None
        full, full_index, full_beta = True, 3, 1.0
    return {
        "dtype": dtype, "m": m, "n": n, "k": k, "a": a_layout, "b": b_layout, "trans_a": trans_a, "trans_b": trans_b,
        "batches": batches, "a_batch": int(g.b_batch.v[0]) if batches > 1 else 0, "b_batch": int(g.a_batch.v[0]) if batches > 1 else 0,
        "bias": bias, "full": full, "full_index": full_index, "full_beta": full_beta, "relu": g.act == _ACT_RELU, "act_after": g.act not in (_ACT_NONE, _ACT_RELU), "alpha": float(g.alpha), "beta": float(g.beta),
    }


def lt_candidates(spec: StepSpec, geometry: Any, addend: int | None) -> list[Tactic]:
    """cuBLASLt's top heuristic ranks for this step (none where it does not apply)."""
    if not available() or _problem(geometry, spec, addend) is None:
        return []
    return [Tactic(f"lt{rank}", {"rank": rank}) for rank in range(RANKS)]


class _Handles:
    """One cuBLASLt handle per backend (handles are thread-safe; the stream is per call)."""

    _lock = threading.Lock()
    _by_backend: dict[int, int] = {}

    @classmethod
    def of(cls, backend: Any) -> int:
        with cls._lock:
            handle = cls._by_backend.get(id(backend))
            if handle is None:
                backend.device.call("cuCtxGetCurrent")  # the primary context current for the library
                handle = cls._by_backend[id(backend)] = int(_library().create())
            return handle


def _set(setter: Any, dtype_of: Any, obj: int, attribute: Any, value: Any) -> None:
    buffer = np.array([value], dtype=dtype_of(attribute))
    setter(obj, attribute, buffer.ctypes.data, buffer.nbytes)


def _layout(lt: Any, dtype_code: int, rows: int, cols: int, ld: int, batches: int = 1, batch_stride: int = 0) -> int:
    """A column-major matrix layout (``batches`` of them ``batch_stride`` elements apart)."""
    layout = lt.matrix_layout_create(dtype_code, rows, cols, ld)
    if batches > 1:
        set_layout = functools.partial(_set, lt.matrix_layout_set_attribute, lt.get_matrix_layout_attribute_dtype, layout)
        set_layout(lt.MatrixLayoutAttribute.BATCH_COUNT, batches)
        set_layout(lt.MatrixLayoutAttribute.STRIDED_BATCH_OFFSET, batch_stride)
    return layout


def _algorithm(step: Step, handle: int, desc: int, a_desc: int, b_desc: int, d_desc: int, rank: int) -> tuple[np.ndarray, int]:
    """The heuristic's algorithm of ``rank`` (its last where it has fewer) for the described
    product (C laid out as D), and the workspace bytes it needs."""
    lt = _library()
    preference = lt.matmul_preference_create()
    _set(lt.matmul_preference_set_attribute, lt.get_matmul_preference_attribute_dtype, preference,
         lt.MatmulPreferenceAttribute.MAX_WORKSPACE_BYTES, WORKSPACE_BYTES)
    results = np.zeros(RANKS, dtype=lt.matmul_heuristic_result_dtype)
    found = np.zeros(1, dtype=np.int32)
    lt.matmul_algo_get_heuristic(handle, desc, a_desc, b_desc, d_desc, d_desc, preference, RANKS, results.ctypes.data, found.ctypes.data)
    lt.matmul_preference_destroy(preference)
    if int(found[0]) == 0:
        raise ValueError(f"node '{step.node.name}': cuBLASLt has no algorithm for this product")
    rank = min(rank, int(found[0]) - 1)
    algo = results[rank : rank + 1].copy()  # kept alive by the body: cublasLtMatmul reads it by address
    return algo, int(algo["workspace_size"][0])


def build_lt_gemm(step: Step, tactic: Tactic, geometry: Any, addend: int | None) -> Body:
    """The step as one cublasLtMatmul with the heuristic's algorithm of rank ``tactic``."""
    lt = _library()
    p = _problem(geometry, step.spec, addend)
    if lt is None or p is None:
        raise ValueError(f"node '{step.node.name}': tactic '{tactic.name}' needs cuBLASLt for this product, which is not available")
    from nvmath.bindings.cublas import ComputeType

    handle = _Handles.of(step.backend)
    dtype_code = _DATA_TYPES[p["dtype"]]
    desc = lt.matmul_desc_create(int(ComputeType.COMPUTE_32F), _DATA_TYPES[np.dtype(np.float32)])
    attrs = lt.MatmulDescAttribute
    set_desc = functools.partial(_set, lt.matmul_desc_set_attribute, lt.get_matmul_desc_attribute_dtype, desc)
    set_desc(attrs.TRANSA, p["trans_a"])
    set_desc(attrs.TRANSB, p["trans_b"])
    epilogue = lt.Epilogue.DEFAULT
    keep: list[Any] = []
    if p["bias"]:
        bias = np.asarray(step.const(addend), dtype=p["dtype"]).reshape(-1) * np.asarray(p["beta"], p["dtype"])
        bias_tensor = step.upload(np.broadcast_to(bias, (p["n"],)).copy())
        keep.append(bias_tensor)
        set_desc(attrs.BIAS_POINTER, bias_tensor.ptr)
        epilogue = lt.Epilogue.RELU_BIAS if p["relu"] else lt.Epilogue.BIAS
    elif p["relu"]:
        epilogue = lt.Epilogue.RELU
    set_desc(attrs.EPILOGUE, int(epilogue))

    a_desc = _layout(lt, dtype_code, *p["a"], p["batches"], p["a_batch"])
    b_desc = _layout(lt, dtype_code, *p["b"], p["batches"], p["b_batch"])
    d_desc = _layout(lt, dtype_code, p["n"], p["m"], p["n"], p["batches"], p["m"] * p["n"])
    algo, workspace = _algorithm(step, handle, desc, a_desc, b_desc, d_desc, int(tactic.params.get("rank", 0)))
    alpha = np.array([p["alpha"]], np.float32)
    beta = np.array([p["full_beta"] if p["full"] else 0.0], np.float32)
    owned = _Descriptors(lt, desc, (a_desc, b_desc, d_desc))
    full, full_index = p["full"], p["full_index"]
    activate = product_epilogue(step, p["n"] * p["m"] * p["batches"], geometry.act, geometry.p0, geometry.p1) if p["act_after"] else None

    def body(inputs: list, outputs: list, state) -> None:
        out = outputs[0]
        c = inputs[full_index] if full else out
        scratch = state.workspace(step.backend, workspace) if workspace else 0
        lt.matmul(handle, desc, alpha.ctypes.data, inputs[1].ptr, a_desc, inputs[0].ptr, b_desc, beta.ctypes.data,
                  c.ptr, d_desc, out.ptr, d_desc, algo.ctypes.data, scratch, workspace, int(state.stream))
        if activate is not None:
            activate(out, None, state)
        _ = (owned, keep)  # descriptors and the bias live as long as the body

    return body


class _Descriptors:
    """cuBLASLt descriptors of one prepared step, destroyed with it."""

    def __init__(self, lt: Any, desc: int, layouts: tuple[int, ...]) -> None:
        import weakref

        weakref.finalize(self, _destroy, lt, desc, layouts)


def _destroy(lt: Any, desc: int, layouts: tuple[int, ...]) -> None:
    try:
        for layout in layouts:
            lt.matrix_layout_destroy(layout)
        lt.matmul_desc_destroy(desc)
    except Exception:  # interpreter shutdown
        pass


def int8_candidates(cols: int) -> list[Tactic]:
    """cuBLASLt's INT8 ranks for an integer GEMM of ``cols`` output columns (none without
    cuBLASLt, or where the int32 sums' rows would not be 16-byte aligned)."""
    if not available() or cols % INT8_ALIGNMENT:
        return []
    return [Tactic(f"lt_int8{rank}", {"source": "cublaslt", "rank": rank}) for rank in range(RANKS)]


def build_lt_int8(step: Step, rows: int, cols: int, depth: int, tactic: Tactic) -> Callable[[int, int, int, Any], None]:
    """``product(codes, weight, sums, state)``: the int32 sums ``codes · weightᵀ`` of INT8 rows
    (``rows`` x ``depth``) and weight rows (``cols`` x ``depth``) into ``sums`` (``rows`` x
    ``cols``, row-major), all three device addresses, with the heuristic's algorithm of rank
    ``tactic``. Column-major, that is sumsᵀ = weight(kept transposed) · codesᵀ: the "TN" form
    of cuBLASLt's integer kernels, whose depth is the leading dimension of both operands."""
    lt = _library()
    if lt is None:
        raise ValueError(f"node '{step.node.name}': tactic '{tactic.name}' needs cuBLASLt, which is not available")
    from nvmath.bindings.cublas import ComputeType

    handle = _Handles.of(step.backend)
    desc = lt.matmul_desc_create(int(ComputeType.COMPUTE_32I), _INT32)
    set_desc = functools.partial(_set, lt.matmul_desc_set_attribute, lt.get_matmul_desc_attribute_dtype, desc)
    set_desc(lt.MatmulDescAttribute.TRANSA, _OP_T)
    set_desc(lt.MatmulDescAttribute.TRANSB, _OP_N)
    a_desc = _layout(lt, _INT8, depth, cols, depth)
    b_desc = _layout(lt, _INT8, depth, rows, depth)
    d_desc = _layout(lt, _INT32, cols, rows, cols)
    algo, workspace = _algorithm(step, handle, desc, a_desc, b_desc, d_desc, int(tactic.params.get("rank", 0)))
    alpha, beta = np.ones(1, np.int32), np.zeros(1, np.int32)
    owned = _Descriptors(lt, desc, (a_desc, b_desc, d_desc))

    def product(codes: int, weight: int, sums: int, state: Any) -> None:
        scratch = state.workspace(step.backend, workspace) if workspace else 0
        lt.matmul(handle, desc, alpha.ctypes.data, weight, a_desc, codes, b_desc, beta.ctypes.data,
                  sums, d_desc, sums, d_desc, algo.ctypes.data, scratch, workspace, int(state.stream))
        _ = owned

    return product
