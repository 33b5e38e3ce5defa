"""numba-compiled CPU kernels: the float32 GEMM of convs and MatMuls (with a conv's epilogue),
and the memory-bound ops numpy runs slowly: depthwise conv, 2-D pools, the copies around a
conv's GEMM (its shifted input images, its output with the epilogue), the transforms of the Winograd
F(2x2, 3x3) conv, inference BatchNormalization, ShuffleNet's channel shuffle and Softmax.

numpy evaluates a k x k window as k² full passes over memory (one strided slice per tap).
Here each input plane is copied once into stride-phase images (see ``_windows``), after
which every tap is one contiguous, vectorized loop over an accumulator that stays in L1 (for
depthwise convs, all taps multiply-added in vector registers: ``_weighted_taps``), and the
result is written once into the output buffer; stride-2 max pools on rows of 12 outputs or
more fold rows, then columns instead (``_max_pool_stride2``). The GEMMs run a register-tile
kernel (``_tile_kernel``). The few kernels written in LLVM IR (numba intrinsics) use generic
vectors of ``_LANES`` floats, which LLVM lowers to AVX2 or NEON. Every public routine splits
its planes, channels or GEMM blocks into parts (a last argument the call fills in with the
intra-op count, fewer for little work) over numba's pool, which runs the intra-op threads (``edge.kernels.threads``,
``_Routine``); each part runs a serially compiled kernel, called rather than inlined, which
keeps the parallel builds quick to compile (a window loop inlined into a parallel loop took
20-24 s). Layouts:
NCHW float32, C-contiguous. Window geometry (output size, pads, auto_pad, ceil_mode) is
resolved by the caller (``edge.kernels.cpu.nn``), so every window routine takes the output
buffer and the top/left pads; positions outside the input count as padding.

The numpy kernels in ``edge.kernels.cpu.nn`` stay the reference: they are used when numba is
missing, for other dtypes and ranks, and by the tests as the oracle. Each routine is
compiled for its one signature (or loaded from numba's on-disk cache) at its first use, its
parallel build at its first use with more than one part: importing the module compiled all
of them once, 100-250 s on a machine with an empty cache, which a first BERT build paid in
constant folding. Where neither the package folder nor the user's cache folder is
writable, numba cannot cache and the routines are compiled in memory.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable, Sequence
from typing import Any

import numba
import numpy as np
from numba.core import cgutils
from llvmlite import ir
from numba.extending import intrinsic

from edge.kernels import threads

__all__ = [
    "ACTIVATION_CODES",
    "NO_BIAS",
    "NO_RESIDUAL",
    "activation_arguments",
    "affine_channels",
    "average_pool2d",
    "conv_epilogue",
    "conv_output",
    "dense_rows",
    "depthwise_conv2d",
    "gemm_blocks",
    "matmul",
    "matmul_transposed",
    "max_pool2d",
    "phase_images",
    "shifted_images",
    "shuffle_channels",
    "softmax_rows",
    "winograd_input",
    "winograd_output",
]

_PLANE = numba.float32[:, :, :, ::1]
_INPUT = numba.types.Array(numba.float32, 4, "C", readonly=True)  # mutable arrays convert to it
_MATRIX = numba.types.Array(numba.float32, 2, "C", readonly=True)
_BLOCKS = numba.types.Array(numba.float32, 3, "C", readonly=True)  # (batch·group, rows, columns)
_IMAGES = numba.types.Array(numba.float32, 4, "C", readonly=True)
_INDEX = numba.types.Array(numba.int64, 1, "C", readonly=True)
_VECTOR = numba.types.Array(numba.float32, 1, "C", readonly=True)
_FLOAT = numba.float32
_INT = numba.int64
_UINT = numba.uint64
_GEOMETRY = (_INT,) * 8  # kernel h, w; stride h, w; dilation h, w; pad top, left


def _compile(*signature: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit`` of a serial kernel that the routines call: compiled when the first
    routine calling it compiles, for the routine's argument types (the ``signature`` it
    declares, kept for readers), cached on disk when some cache folder is writable."""

    def decorate(fn: Callable[..., Any]) -> Any:
        return _njit(fn, None, parallel=False)

    return decorate


def _pooled(*signature: Any, work: Callable[..., int]) -> Callable[[Callable[..., Any]], _Routine]:
    """``_compile`` for a routine whose last argument, ``parts``, is how many parts its
    ``numba.prange`` loop splits the work into; callers leave it out (``_Routine``). ``work``
    estimates a call's work from its arguments (see ``_PART_WORK``)."""

    def decorate(fn: Callable[..., Any]) -> _Routine:
        return _Routine(fn, numba.void(*signature), work)

    return decorate


_PART_WORK = 32768
"""Least work worth a part of its own, in elements a pass writes (a GEMM's multiply-adds count
a quarter each): a pool launch costs 3-5 us on the development VM, what one part does with
about 40 000 elements or 150 000 multiply-adds, so smaller calls take fewer parts (as
onnxruntime sizes each op's share of its pool)."""


def _sizes(first: int, second: int | None = None, weight: int = 1) -> Callable[..., int]:
    """``work`` for a pass: the size of the array at position ``first`` (plus the one at
    ``second``), times ``weight`` for a pass that spends several times a copy's time on each
    element; read with no loop: this runs at every call."""
    if second is None:
        return lambda *args: weight * args[first].size
    return lambda *args: weight * (args[first].size + args[second].size)


def _product_work(a: np.ndarray, *rest: np.ndarray) -> int:
    """``work`` for a matrix product (stacked or not) of ``a`` into the last argument, y: its
    multiply-adds over 4."""
    return rest[-1].size * a.shape[-1] // 4


def _njit(fn: Callable[..., Any], signature: Any, parallel: bool) -> Any:
    """``numba.njit`` for one signature (compiled now; None: at the first call, for its
    argument types), cached on disk when some cache folder is writable."""
    options = {"fastmath": False, "nogil": True, "parallel": parallel}
    try:
        jit = numba.njit(cache=True, **options) if signature is None else numba.njit(signature, cache=True, **options)
        return jit(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available" (read-only install)
        return numba.njit(**options)(fn) if signature is None else numba.njit(signature, **options)(fn)


class _Routine:
    """A compiled routine split into ``parts`` (its last argument, which the call adds: the
    intra-op count, ``threads.kernel_parts``, fewer for little work): one part runs a serial
    build on the calling thread (no pool launch), more run a parallel build on the pool;
    each build is compiled for the declared signature at its first use, so a process (a
    build's constant folding, say) compiles only the routines it runs."""

    def __init__(self, fn: Callable[..., Any], signature: Any, work: Callable[..., int]) -> None:
        self._fn, self._signature, self._work = fn, signature, work
        self._serial: Any = None
        self._parallel: Any = None
        self.__doc__, self.__name__ = fn.__doc__, fn.__name__

    @property
    def serial(self) -> Any:
        """The one-part build (compiled on first use)."""
        if self._serial is None:
            self._serial = _njit(self._fn, self._signature, parallel=False)
        return self._serial

    def __call__(self, *args: Any) -> None:
        parts = threads.kernel_parts()
        if parts > 1:
            parts = min(parts, max(1, self._work(*args) // _PART_WORK))
        if parts == 1:
            return self.serial(*args, parts)
        if self._parallel is None:
            # a copy named apart, so that numba's disk cache keeps the two builds apart
            twin = types.FunctionType(self._fn.__code__, self._fn.__globals__, f"{self._fn.__name__}_parallel")
            twin.__qualname__ = twin.__name__
            self._parallel = _njit(twin, self._signature, parallel=True)
        return self._parallel(*args, parts)


@numba.njit(cache=False, inline="always")
def _share(total, part, parts):  # type: ignore[no-untyped-def]
    """The [first, last) range of ``total`` items that part ``part`` of ``parts`` works on."""
    return total * part // parts, total * (part + 1) // parts


# Kernels written in LLVM IR (numba intrinsics taking addresses), where numba's loops leave
# the vector registers idle: short rows, and sums that should stay in registers.

_LANES = 8
"""floats per vector in the kernels written in LLVM IR (``_weighted_taps``, ``_tile_kernel``):
one AVX2 register, two NEON ones."""

_CHUNK = 4 * _LANES
"""Outputs ``_weighted_taps`` accumulates at once: four vectors, four independent chains of
multiply-adds (one chain would wait out each multiply-add's latency)."""


def _splat(builder: ir.IRBuilder, value: ir.Value) -> ir.Value:
    """A vector of ``_LANES`` copies of the float ``value``."""
    vector = ir.VectorType(ir.FloatType(), _LANES)
    undefined = ir.Constant(vector, ir.Undefined)
    lanes = ir.Constant(ir.VectorType(ir.IntType(32), _LANES), [0] * _LANES)
    return builder.shuffle_vector(builder.insert_element(undefined, value, ir.Constant(ir.IntType(32), 0)), undefined, lanes)


def _vector_at(builder: ir.IRBuilder, pointer: ir.Value, offset: ir.Value) -> ir.Value:
    """``pointer`` (float*) advanced by ``offset`` floats, as a pointer to a vector."""
    return builder.bitcast(builder.gep(pointer, [offset]), ir.VectorType(ir.FloatType(), _LANES).as_pointer())


def _prefetch(builder: ir.IRBuilder, pointer: ir.Value) -> None:
    """Ask for the cache line at ``pointer`` (a float*) to be loaded for reading (llvm.prefetch;
    never faults, so it may point past an array)."""
    byte, word = ir.IntType(8).as_pointer(), ir.IntType(32)
    hint = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [byte, word, word, word]), "llvm.prefetch.p0")
    builder.call(hint, [builder.bitcast(pointer, byte), ir.Constant(word, 0), ir.Constant(word, 3), ir.Constant(word, 1)])


def _multiply_add(builder: ir.IRBuilder) -> ir.Function:
    """llvm.fmuladd on vectors: a·b + c, fused where the CPU has FMA."""
    vector = ir.VectorType(ir.FloatType(), _LANES)
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3), f"llvm.fmuladd.v{_LANES}f32")


def _carried_sums(
    builder: ir.IRBuilder, count: ir.Value, initial: list[ir.Value], step: Callable[[ir.Value, list[ir.Value]], list[ir.Value]]
) -> list[ir.Value]:
    """A loop for k in [0, ``count``) carrying vectors in registers: ``step(k, sums)`` emits one
    iteration and returns the new sums. Returns the final sums (``initial`` when count <= 0)."""
    index = ir.IntType(64)
    entry = builder.block
    loop, done = builder.append_basic_block("sums.loop"), builder.append_basic_block("sums.done")
    builder.cbranch(builder.icmp_signed(">", count, ir.Constant(index, 0)), loop, done)
    builder.position_at_end(loop)
    k = builder.phi(index)
    sums = [builder.phi(value.type) for value in initial]
    stepped = step(k, sums)
    k_next = builder.add(k, ir.Constant(index, 1))
    end = builder.block
    builder.cbranch(builder.icmp_signed("<", k_next, count), loop, done)
    k.add_incoming(ir.Constant(index, 0), entry)
    k.add_incoming(k_next, end)
    for carried, first, new in zip(sums, initial, stepped):
        carried.add_incoming(first, entry)
        carried.add_incoming(new, end)
    builder.position_at_end(done)
    results = []
    for first, new in zip(initial, stepped):
        result = builder.phi(first.type)
        result.add_incoming(first, entry)
        result.add_incoming(new, end)
        results.append(result)
    return results


@intrinsic
def _copy_floats(typingctx, target, source, count):  # type: ignore[no-untyped-def]
    """Copy ``count`` float32 values from address ``source`` to ``target`` (not overlapping)
    with the C library's memcpy: rows this short (7-28 values) are all loop overhead as a
    compiled loop, which LLVM vectorizes for 32 values at a time and runs scalar below that."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        target, source, count = args
        byte = ir.IntType(8).as_pointer()
        cgutils.raw_memcpy(builder, builder.inttoptr(target, byte), builder.inttoptr(source, byte), count, 4, align=4)
        return context.get_dummy_value()

    return numba.types.void(numba.types.intp, numba.types.intp, numba.types.uint64), codegen


@intrinsic
def _weighted_taps(typingctx, images, offsets, weights, taps, start, total, chunks):  # type: ignore[no-untyped-def]
    """total[p] = start + Σₜ weights[t] · images[offsets[t] + p] for p < chunks·``_CHUNK``: the
    taps of ``_windows`` for a weighted window, ``images`` a float32 array, ``offsets`` an
    int64 one and ``weights`` a float32 one (addresses). Each chunk's four vectors stay in
    registers over every tap, so ``total`` is written once (a loop per tap, as LLVM writes it,
    loads and stores it at every tap)."""
    index, f32 = ir.IntType(64), ir.FloatType()
    vectors = _CHUNK // _LANES

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        images_at, offsets_at, weights_at, taps, start, total_at, chunks = args
        fma = _multiply_add(builder)
        images_ptr, weights_ptr, total_ptr = (builder.inttoptr(at, f32.as_pointer()) for at in (images_at, weights_at, total_at))
        offsets_ptr = builder.inttoptr(offsets_at, index.as_pointer())
        first = _splat(builder, start)
        with cgutils.for_range(builder, chunks) as chunk:
            base = builder.mul(chunk.index, ir.Constant(index, _CHUNK))

            def tap_step(tap: ir.Value, sums: list[ir.Value]) -> list[ir.Value]:
                weight = _splat(builder, builder.load(builder.gep(weights_ptr, [tap]), align=4))
                at = builder.add(builder.load(builder.gep(offsets_ptr, [tap]), align=8), base)
                return [
                    builder.call(fma, [weight, builder.load(_vector_at(builder, images_ptr, builder.add(at, ir.Constant(index, v * _LANES))), align=4), total])
                    for v, total in enumerate(sums)
                ]

            results = _carried_sums(builder, taps, [first] * vectors, tap_step)
            for v, result in enumerate(results):
                builder.store(result, _vector_at(builder, total_ptr, builder.add(base, ir.Constant(index, v * _LANES))), align=4)
        return context.get_dummy_value()

    address, count = numba.types.intp, numba.types.int64
    return numba.types.void(address, address, address, count, numba.types.float32, address, count), codegen


# The loops index flat arrays with unsigned offsets: numba wraps negative signed indices,
# and that per-element check keeps LLVM from vectorizing the loops.

_WEIGHTED, _MAXIMUM, _SUM = 0, 1, 2  # how _windows folds each tap (a compile-time constant)

_FEW_OUTPUTS = 16  # output planes this small take their taps innermost


@numba.njit(cache=False, inline="always")
def _gather_row(phase, into, source, start, first, end, wide, stride, fill):  # type: ignore[no-untyped-def]
    """phase[into + c] = source[start + c·stride] for c in [first, end), ``fill`` elsewhere in the row."""
    for c in range(first):
        phase[into + c] = fill
    if stride == 1:
        _copy_floats(phase.ctypes.data + 4 * (into + first), source.ctypes.data + 4 * start, end - first)
    else:
        for c in range(end - first):
            phase[into + first + c] = source[start + c * stride]
    for c in range(end, wide):
        phase[into + c] = fill


@numba.njit(cache=False, inline="always")
def _gather_row_pair(phase, into, apart, source, row, spans, wide, fill):  # type: ignore[no-untyped-def]
    """``_gather_row`` for both column phases of stride 2 at once, phase b's row at
    ``into + b·apart``: the input row is read once, its even and odd columns split in one
    loop (loads LLVM vectorizes as an interleaved pair; two strided loops run scalar)."""
    first0, end0, first1, end1 = _UINT(spans[0, 0]), _UINT(spans[0, 1]), _UINT(spans[1, 0]), _UINT(spans[1, 1])
    start0, start1 = row + _UINT(spans[0, 2]), row + _UINT(spans[1, 2])
    into1 = into + apart
    for c in range(first0):
        phase[into + c] = fill
    for c in range(first1):
        phase[into1 + c] = fill
    both = min(end0 - first0, end1 - first1)
    at0, at1 = into + first0, into1 + first1
    for c in range(both):
        phase[at0 + c] = source[start0 + _UINT(2) * c]
        phase[at1 + c] = source[start1 + _UINT(2) * c]
    for c in range(both, end0 - first0):
        phase[at0 + c] = source[start0 + _UINT(2) * c]
    for c in range(both, end1 - first1):
        phase[at1 + c] = source[start1 + _UINT(2) * c]
    for c in range(end0, wide):
        phase[into + c] = fill
    for c in range(end1, wide):
        phase[into1 + c] = fill


@numba.njit(cache=False, inline="always")
def _fold(kind, total, value, tap):  # type: ignore[no-untyped-def]
    """One tap folded into a running result. np.maximum lets NaN win, and (unlike a written-out
    comparison) vectorizes."""
    if kind == _MAXIMUM:
        return np.maximum(value, total)
    if kind == _SUM:
        return total + value
    return total + tap * value


@numba.njit(cache=False, inline="always")
def _tap(kind, weights, m, t):  # type: ignore[no-untyped-def]
    """Weight of tap ``t`` (row-major over the kernel) for output channel ``m``; 1 for pools."""
    return weights[m, t] if kind == _WEIGHTED else np.float32(1)


@numba.njit(cache=False, inline="always")
def _windows(kind, x, weights, kh, kw, sh, sw, dh, dw, top, left, divisor, y):  # type: ignore[no-untyped-def]
    """Any 2-D window, one long vectorized loop per tap.

    The padded input plane is split into sh·sw phase images, phase (a, b)[r, c] =
    padded[r·sh + a, c·sw + b], all ``wide`` columns long. Tap (i, j) of output (oy, ox) then
    reads phase ((i·dh) % sh, (j·dw) % sw) at [oy + i·dh // sh, ox + j·dw // sw]: for every
    output at once, one phase image shifted by a constant. Outputs accumulate in a scratch
    with the same row length; the wide - out_w columns past each row are junk, dropped when
    the rows are copied out. Padding is ``fill``: 0 for sums, -inf for the maximum.
    """
    batch, channels, height, width = x.shape
    outputs, out_h, out_w = y.shape[1], y.shape[2], y.shape[3]
    multiplier = outputs // channels
    taps = kh * kw
    wide = out_w + (kw - 1) * dw // sw
    tall = out_h + (kh - 1) * dh // sh
    size = tall * wide + (kw - 1) * dw // sw  # the tail keeps junk-column reads in bounds
    length = _UINT(out_h * wide)
    fill = np.float32(-np.inf) if kind == _MAXIMUM else np.float32(0)
    chunks = -(-out_h * wide // _CHUNK)
    phases = np.empty(sh * sw * size + _CHUNK, np.float32)  # _weighted_taps reads whole chunks
    total = np.empty(chunks * _CHUNK, np.float32)
    # per column phase b: the phase columns [first, end) that land inside the input, and where
    spans = np.empty((sw, 3), np.int64)
    for b in range(sw):
        first = (left - b + sw - 1) // sw if left > b else 0
        end = min(wide, (width - 1 + left - b) // sw + 1)
        spans[b, 0], spans[b, 1], spans[b, 2] = min(first, wide), max(min(first, wide), end), first * sw + b - left
    for k in range(_UINT(phases.size)):
        phases[k] = fill
    ones = np.ones(taps if kind == _SUM else 0, np.float32)  # a sum's tap weights
    offsets = np.empty(taps, np.uint64)  # where tap (i, j) of output (0, 0) sits in the phase images
    for i in range(kh):
        for j in range(kw):
            phase = ((i * dh) % sh) * sw + (j * dw) % sw
            offsets[i * kw + j] = phase * size + (i * dh // sh) * wide + j * dw // sw
    source, target = x.reshape(-1), y.reshape(-1)
    for n in range(batch):
        for m in range(outputs):
            if m % multiplier == 0:
                plane = (n * channels + m // multiplier) * height * width
                for a in range(sh):
                    for r in range(tall):
                        row = r * sh + a - top
                        if row < 0 or row >= height:
                            continue  # still fill from the start: these rows are never written
                        if sw == 2:
                            _gather_row_pair(phases, _UINT(a * 2 * size + r * wide), _UINT(size), source, _UINT(plane + row * width), spans, _UINT(wide), fill)
                            continue
                        for b in range(sw):
                            into = _UINT((a * sw + b) * size + r * wide)
                            first, end = _UINT(spans[b, 0]), _UINT(spans[b, 1])
                            start = _UINT(plane + row * width + spans[b, 2])
                            if sw == 1:
                                _gather_row(phases, into, source, start, first, end, _UINT(wide), _UINT(1), fill)
                            else:
                                _gather_row(phases, into, source, start, first, end, _UINT(wide), _UINT(sw), fill)
            if kind == _WEIGHTED:
                start_value = weights[m, taps] if weights.shape[1] > taps else np.float32(0)
            else:
                start_value = fill
            if kind != _MAXIMUM and out_h * out_w > _FEW_OUTPUTS:  # a sum: every tap weighted 1
                row = weights.ctypes.data + 4 * m * weights.shape[1] if kind == _WEIGHTED else ones.ctypes.data
                _weighted_taps(phases.ctypes.data, offsets.ctypes.data, row, taps, start_value, total.ctypes.data, chunks)
            elif out_h * out_w > _FEW_OUTPUTS:
                for k in range(length):
                    total[k] = start_value
                for t in range(0, taps - 2, 3):  # three taps per pass: a third of the loads and stores of total
                    t0, t1, t2 = _tap(kind, weights, m, t), _tap(kind, weights, m, t + 1), _tap(kind, weights, m, t + 2)
                    a0, a1, a2 = offsets[t], offsets[t + 1], offsets[t + 2]
                    for k in range(length):
                        value = _fold(kind, total[k], phases[a0 + k], t0)
                        value = _fold(kind, value, phases[a1 + k], t1)
                        total[k] = _fold(kind, value, phases[a2 + k], t2)
                for t in range(taps - taps % 3, taps):
                    tap, at = _tap(kind, weights, m, t), offsets[t]
                    for k in range(length):
                        total[k] = _fold(kind, total[k], phases[at + k], tap)
            else:  # taps innermost: per-tap loops this short would be all loop overhead
                for r in range(out_h):
                    for c in range(out_w):
                        value, into = start_value, _UINT(r * wide + c)
                        for t in range(taps):
                            value = _fold(kind, value, phases[offsets[t] + into], _tap(kind, weights, m, t))
                        total[into] = value
            plane = (n * outputs + m) * out_h * out_w
            for r in range(out_h):
                into, start = _UINT(plane + r * out_w), _UINT(r * wide)
                if kind == _SUM:
                    counts = _UINT(r * out_w)
                    for k in range(_UINT(out_w)):
                        target[into + k] = total[start + k] / divisor[counts + k]
                else:
                    _copy_floats(y.ctypes.data + 4 * into, total.ctypes.data + 4 * start, _UINT(out_w))


@_compile(_INPUT, _MATRIX, *_GEOMETRY, _PLANE)
def _depthwise_conv2d(x, weights, kh, kw, sh, sw, dh, dw, top, left, y):  # type: ignore[no-untyped-def]
    """``depthwise_conv2d`` on one part's arrays."""
    _windows(_WEIGHTED, x, weights, kh, kw, sh, sw, dh, dw, top, left, np.empty(0, np.float32), y)


_SEPARABLE_WIDTH = 12  # output rows narrower than this are all loop overhead in _max_pool_stride2


@numba.njit(cache=False, inline="always")
def _max_pool_stride2(x, kh, kw, top, left, y):  # type: ignore[no-untyped-def]
    """A max window of stride 2 (dilation 1), separably, in three loops per output row: the
    window's input rows folded into one padded row (contiguous, the three rows of a 3-high
    window in one pass), that row split into its even and odd columns (a vectorized
    deinterleave), and the window's columns folded from those with unit stride (window
    column j reads even or odd column c + j // 2). Short loops cost more in their setup
    than in their work here, so fewer, fuller loops win (docs/benchmarks.md). (Average
    pools take ``_windows``, whose taps ``_weighted_taps`` sums in registers: faster there.)"""
    height, width = x.shape[2], x.shape[3]
    out_h, out_w = y.shape[2], y.shape[3]
    span = 2 * out_w + kw  # padded columns read, rounded up to an even count
    span += span % 2
    half = _UINT(span // 2)
    fill = np.float32(-np.inf)
    row = np.full(span, fill, np.float32)  # columns outside [low, high) are padding: never written
    even, odd = np.empty(span // 2, np.float32), np.empty(span // 2, np.float32)
    low, high = _UINT(min(left, span)), _UINT(min(span, left + width))  # padded columns that hold input
    source, target = x.reshape(-1), y.reshape(-1)
    for plane in range(x.shape[0] * x.shape[1]):
        for r in range(out_h):
            first, end = max(0, 2 * r - top), min(height, 2 * r - top + kh)  # window rows inside
            a = _UINT((plane * height + first) * width) - _UINT(left)
            if end - first == 3:
                b, c = a + _UINT(width), a + _UINT(2 * width)
                for k in range(low, high):
                    row[k] = np.maximum(np.maximum(source[a + k], source[b + k]), source[c + k])
            elif end > first:
                for k in range(low, high):
                    row[k] = source[a + k]
                for q in range(1, end - first):
                    b = a + _UINT(q * width)
                    for k in range(low, high):
                        row[k] = np.maximum(row[k], source[b + k])
            else:  # no window row inside the input
                for k in range(low, high):
                    row[k] = fill
            for k in range(half):
                even[k], odd[k] = row[2 * k], row[2 * k + 1]
            into = _UINT((plane * out_h + r) * out_w)
            if kw == 3:
                for c in range(_UINT(out_w)):
                    target[into + c] = np.maximum(np.maximum(even[c], odd[c]), even[c + 1])
                continue
            for c in range(_UINT(out_w)):
                target[into + c] = even[c]
            for j in range(1, kw):
                phase, shift = (odd, _UINT(j // 2)) if j % 2 else (even, _UINT(j // 2))
                for c in range(_UINT(out_w)):
                    target[into + c] = np.maximum(target[into + c], phase[c + shift])


@_compile(_INPUT, *_GEOMETRY, _PLANE)
def _max_pool2d(x, kh, kw, sh, sw, dh, dw, top, left, y):  # type: ignore[no-untyped-def]
    """``max_pool2d`` on one part's arrays."""
    if sh == 2 and sw == 2 and dh == 1 and dw == 1 and y.shape[3] >= _SEPARABLE_WIDTH:
        _max_pool_stride2(x, kh, kw, top, left, y)
    else:
        _windows(_MAXIMUM, x, np.empty((0, 0), np.float32), kh, kw, sh, sw, dh, dw, top, left, np.empty(0, np.float32), y)


@_compile(_INPUT, *_GEOMETRY, _MATRIX, _PLANE)
def _average_pool2d(x, kh, kw, sh, sw, dh, dw, top, left, divisor, y):  # type: ignore[no-untyped-def]
    """``average_pool2d`` on one part's arrays."""
    _windows(_SUM, x, np.empty((0, 0), np.float32), kh, kw, sh, sw, dh, dw, top, left, divisor.reshape(-1), y)


@numba.njit(cache=False, inline="always")
def _channels(a, n, first, last):  # type: ignore[no-untyped-def]
    """a[n, first:last] of an NCHW array, as a C-contiguous (1, last - first, H, W) array."""
    return a[n][first:last].reshape(1, last - first, a.shape[2], a.shape[3])


# The window routines split the channels of each image, each part taking the outputs (and
# depthwise weight rows) its channels feed, and run the serial kernel on its part (parts
# left without channels, when there are fewer channels than parts, do nothing).


@_pooled(_INPUT, _MATRIX, *_GEOMETRY, _PLANE, _INT, work=_sizes(0, 10))
def depthwise_conv2d(x, weights, kh, kw, sh, sw, dh, dw, top, left, y, parts):  # type: ignore[no-untyped-def]
    """y[n, m] = bias[m] + Σ taps of x[n, m // multiplier] ⋆ w[m] (group == input channels).

    ``weights`` is (M, kh·kw) or (M, kh·kw + 1); the extra column is the bias.
    """
    multiplier = y.shape[1] // x.shape[1]
    for part in numba.prange(parts):
        first, last = _share(x.shape[1], part, parts)
        rows = weights[first * multiplier : last * multiplier]
        for n in range(x.shape[0] if last > first else 0):
            x_part, y_part = _channels(x, n, first, last), _channels(y, n, first * multiplier, last * multiplier)
            _depthwise_conv2d(x_part, rows, kh, kw, sh, sw, dh, dw, top, left, y_part)


@_pooled(_INPUT, *_GEOMETRY, _PLANE, _INT, work=_sizes(0, 9))
def max_pool2d(x, kh, kw, sh, sw, dh, dw, top, left, y, parts):  # type: ignore[no-untyped-def]
    """Window maximum; padding never wins (-inf when a window holds no input). NaN propagates."""
    for part in numba.prange(parts):
        first, last = _share(x.shape[1], part, parts)
        for n in range(x.shape[0] if last > first else 0):
            _max_pool2d(_channels(x, n, first, last), kh, kw, sh, sw, dh, dw, top, left, _channels(y, n, first, last))


@_pooled(_INPUT, *_GEOMETRY, _MATRIX, _PLANE, _INT, work=_sizes(0, 10))
def average_pool2d(x, kh, kw, sh, sw, dh, dw, top, left, divisor, y, parts):  # type: ignore[no-untyped-def]
    """Window sum over the input positions it covers, divided by ``divisor`` (out_h, out_w),
    which the caller computes from count_include_pad."""
    for part in numba.prange(parts):
        first, last = _share(x.shape[1], part, parts)
        for n in range(x.shape[0] if last > first else 0):
            x_part, y_part = _channels(x, n, first, last), _channels(y, n, first, last)
            _average_pool2d(x_part, kh, kw, sh, sw, dh, dw, top, left, divisor, y_part)


@_compile(_INPUT, _INT, _INT, _INT, _INT, _PLANE, _INT, _INT)
def _phase_images(x, sh, sw, top, left, images, first, last):  # type: ignore[no-untyped-def]
    """``phase_images`` on its planes [first, last)."""
    height, width = x.shape[2], x.shape[3]
    tall, wide = images.shape[2], images.shape[3]
    source, target = x.reshape(-1), images.reshape(-1)
    size = _UINT(tall * wide)
    for plane in range(first, last):
        for a in range(sh):
            for b in range(sw):
                image = _UINT(plane * sh * sw + a * sw + b) * size
                for k in range(size):
                    target[image + k] = 0
                first = min(wide, (left - b + sw - 1) // sw if left > b else 0)
                count = _UINT(max(0, min(wide, (width - 1 + left - b) // sw + 1) - first))
                for r in range(max(0, (top - a + sh - 1) // sh), min(tall, (height - 1 + top - a) // sh + 1)):
                    into = image + _UINT(r * wide + first)
                    start = _UINT((plane * height + r * sh + a - top) * width + first * sw + b - left)
                    if sw == 1:
                        for q in range(count):
                            target[into + q] = source[start + q]
                    else:
                        stride = _UINT(sw)
                        for q in range(count):
                            target[into + q] = source[start + q * stride]


@_pooled(_INPUT, _INT, _INT, _INT, _INT, _PLANE, _INT, work=_sizes(0, 5))
def phase_images(x, sh, sw, top, left, images, parts):  # type: ignore[no-untyped-def]
    """images[n·C + c, a·sw + b, r, q] = padded x[n, c] at row r·sh + a, column q·sw + b: the
    zero-padded planes split into stride phases (``nn._Phases``). Each phase image is zeroed
    in one long loop, then its rows inside the input copied: short rows make per-row fill
    loops cost more than the copies."""
    total = x.shape[0] * x.shape[1]
    for part in numba.prange(parts):
        first, last = _share(total, part, parts)
        _phase_images(x, sh, sw, top, left, images, first, last)


@numba.njit(cache=False, inline="always")
def _shifted_image(x, plane, q0, sh, sw, shift, images, image):  # type: ignore[no-untyped-def]
    """One shifted image at flat offset ``image``: row r holds row q0 + r·sh of input plane
    ``plane`` (n·C + c) from column ``shift`` on, every ``sw``-th column, zeros outside the
    input. Called with ``sw`` a literal where it is 1 or 2, so that each gets its own plain
    loop (one loop serving every stride slowed stride 1 by 25 %)."""
    height, width = x.shape[2], x.shape[3]
    tall, out_w = images.shape[2], images.shape[3]
    source, target = x.reshape(-1), images.reshape(-1)
    inside = min(out_w, (sw - 1 - shift) // sw) if shift < 0 else 0  # output columns inside the input
    inside_end = max(inside, min(out_w, (width - 1 - shift) // sw + 1))
    for r in range(tall):
        into = _UINT(image + r * out_w)
        q = q0 + r * sh
        begin, end = (inside, inside_end) if 0 <= q < height else (out_w, out_w)
        for c in range(_UINT(begin)):
            target[into + c] = 0
        for c in range(_UINT(end), _UINT(out_w)):
            target[into + c] = 0
        if end > begin:
            start = _UINT((plane * height + q) * width + begin * sw + shift)
            if sw == 1:
                _copy_floats(images.ctypes.data + 4 * (into + begin), x.ctypes.data + 4 * start, _UINT(end - begin))
            else:
                for c in range(_UINT(end - begin)):
                    target[into + begin + c] = source[start + c * _UINT(sw)]


@_compile(_INPUT, _INT, _INT, _INT, _INT, _INT, _INT, _INDEX, _PLANE, _INT, _INT)
def _shifted_images(x, kw, sh, sw, dw, top, left, row_phases, images, first, last):  # type: ignore[no-untyped-def]
    """``shifted_images`` for (plane, row phase) pairs [first, last)."""
    phases, size = row_phases.shape[0], images.shape[2] * images.shape[3]
    for unit in range(first, last):
        plane, p = unit // phases, unit % phases
        q0 = row_phases[p] - top
        for j in range(kw):
            image = ((plane * images.shape[1]) + p * kw + j) * size
            if sw == 1:
                _shifted_image(x, plane, q0, sh, 1, j * dw - left, images, image)
            elif sw == 2:
                _shifted_image(x, plane, q0, sh, 2, j * dw - left, images, image)
            else:
                _shifted_image(x, plane, q0, sh, sw, j * dw - left, images, image)


@_pooled(_INPUT, _INT, _INT, _INT, _INT, _INT, _INT, _INDEX, _PLANE, _INT, work=_sizes(8))
def shifted_images(x, kw, sh, sw, dw, top, left, row_phases, images, parts):  # type: ignore[no-untyped-def]
    """images[n·C + c, p·kw + j, r, q] = zero-padded x[n, c] at row r·sh + row_phases[p],
    column q·sw + j·dw: per row phase of the stride and per kernel column, the input shifted
    and subsampled to the output's width, so that a conv tap reads the inputs of its output
    pixels, in order, as one contiguous run of one image: the rows of the conv's column
    matrix, which ``gemm_blocks`` reads in place (no junk columns, no copy per tap)."""
    total = x.shape[0] * x.shape[1] * row_phases.shape[0]
    for part in numba.prange(parts):
        first, last = _share(total, part, parts)
        _shifted_images(x, kw, sh, sw, dw, top, left, row_phases, images, first, last)


_NO_ACTIVATION, _RELU, _CLIP = 0, 1, 2
ACTIVATION_CODES = {"": _NO_ACTIVATION, "Relu": _RELU, "Clip": _CLIP}
"""The epilogue activations the compiled passes apply themselves, by ``activation`` attribute."""


NO_BIAS = np.empty((0, 0), np.float32)
"""The ``bias`` argument of the compiled passes for a conv without one."""
NO_RESIDUAL = np.empty((0, 0, 0, 0), np.float32)
"""The ``residual`` argument of the compiled passes for a conv without one."""


def activation_arguments(activation: str, params: Sequence[float]) -> tuple[int, float, float]:
    """(code, low, high) that the compiled passes take for epilogue ``activation`` (one of
    ``ACTIVATION_CODES``) with its ``params``: Clip's bounds, zeros for the others."""
    low, high = params if activation == "Clip" else (0.0, 0.0)
    return ACTIVATION_CODES[activation], low, high


@numba.njit(cache=False, inline="always")
def _activated(value, activation, low, high):  # type: ignore[no-untyped-def]
    """``value`` through one of ``ACTIVATION_CODES``; np.maximum / np.minimum keep NaN."""
    if activation == _RELU:
        value = np.maximum(value, np.float32(0))
    elif activation == _CLIP:
        value = np.minimum(np.maximum(value, low), high)
    return value


@numba.njit(cache=False, inline="always")
def _finish(source, lead, target, into, width, base, extra, has_residual, activation, low, high):  # type: ignore[no-untyped-def]
    """target[into + k] = act(source[lead + k] + base [+ extra[into + k]]) for k < width, where
    ``source`` is not ``target``."""
    for k in range(width):
        value = source[lead + k] + base
        if has_residual:
            value += extra[into + k]
        target[into + k] = _activated(value, activation, low, high)


@numba.njit(cache=False, inline="always")
def _finish_in_place(target, into, width, base, extra, has_residual, activation, low, high):  # type: ignore[no-untyped-def]
    """``_finish`` with ``target`` as its own source: a loop of its own, as reading another
    array that may be ``target`` makes LLVM's overlap check pick the scalar loop."""
    for k in range(width):
        value = target[into + k] + base
        if has_residual:
            value += extra[into + k]
        target[into + k] = _activated(value, activation, low, high)


@_compile(_BLOCKS, _INDEX, _MATRIX, _IMAGES, _INT, _INT, _FLOAT, _FLOAT, _PLANE, _INT, _INT)
def _conv_output(source, offsets, bias, residual, wide, activation, low, high, y, first, last):  # type: ignore[no-untyped-def]
    """``conv_output`` on its planes [first, last)."""
    outputs, out_h, out_w = y.shape[1], y.shape[2], y.shape[3]
    taps, image, rows = offsets.shape[0], source.shape[2], source.shape[1]
    flat, target, extra = source.reshape(-1), y.reshape(-1), residual.reshape(-1)
    has_bias, has_residual = bias.shape[0] > 0, residual.shape[0] > 0
    # a grid as wide as the output has no junk: each plane is then one run, not out_h rows
    runs, run = (1, out_h * out_w) if wide == out_w else (out_h, out_w)
    width = _UINT(run)
    for plane in range(first, last):
        block, m = plane // outputs, plane % outputs
        base = bias[block % bias.shape[0], m] if has_bias else np.float32(0)
        for r in range(runs):
            into = _UINT(plane * out_h * out_w + r * run)
            lead = _UINT((block * rows + m) * image + offsets[0] + r * wide)
            if taps == 1:
                _finish(flat, lead, target, into, width, base, extra, has_residual, activation, low, high)
                continue
            start = _UINT((block * rows + outputs + m) * image + offsets[1] + r * wide)
            for k in range(width):
                target[into + k] = flat[lead + k] + flat[start + k]
            for t in range(2, taps):
                start = _UINT((block * rows + t * outputs + m) * image + offsets[t] + r * wide)
                for k in range(width):
                    target[into + k] += flat[start + k]
            _finish_in_place(target, into, width, base, extra, has_residual, activation, low, high)


@_pooled(_BLOCKS, _INDEX, _MATRIX, _IMAGES, _INT, _INT, _FLOAT, _FLOAT, _PLANE, _INT, work=_sizes(0, 8))
def conv_output(source, offsets, bias, residual, wide, activation, low, high, y, parts):  # type: ignore[no-untyped-def]
    """y[b, m, r, c] = act(Σ_t source[b, t·M + m, offsets[t] + r·wide + c] + bias[b % G, m]
    + residual[b, m, r, c]): a conv's output written once from its GEMM result laid out on a
    grid ``wide`` columns across (junk columns dropped), the per-tap partial products summed.

    ``source`` is not ``y`` (``conv_epilogue`` works in place). ``bias`` is (G, M) or empty,
    ``residual`` like ``y`` or empty; ``activation`` is one of ``ACTIVATION_CODES`` (Clip
    between ``low`` and ``high``). NaN propagates.
    """
    total = y.shape[0] * y.shape[1]
    for part in numba.prange(parts):
        first, last = _share(total, part, parts)
        _conv_output(source, offsets, bias, residual, wide, activation, low, high, y, first, last)


@_compile(_MATRIX, _IMAGES, _INT, _FLOAT, _FLOAT, _PLANE, _INT, _INT)
def _conv_epilogue(bias, residual, activation, low, high, y, first, last):  # type: ignore[no-untyped-def]
    """``conv_epilogue`` on its planes [first, last)."""
    outputs, size = y.shape[1], y.shape[2] * y.shape[3]
    target, extra = y.reshape(-1), residual.reshape(-1)
    has_bias, has_residual = bias.shape[0] > 0, residual.shape[0] > 0
    for plane in range(first, last):
        base = bias[(plane // outputs) % bias.shape[0], plane % outputs] if has_bias else np.float32(0)
        _finish_in_place(target, _UINT(plane * size), _UINT(size), base, extra, has_residual, activation, low, high)


@_pooled(_MATRIX, _IMAGES, _INT, _FLOAT, _FLOAT, _PLANE, _INT, work=_sizes(5))
def conv_epilogue(bias, residual, activation, low, high, y, parts):  # type: ignore[no-untyped-def]
    """y[b, m] = act(y[b, m] + bias[b % G, m] + residual[b, m]) in place, as ``conv_output``
    finishes a conv whose GEMM wrote ``y`` directly."""
    total = y.shape[0] * y.shape[1]
    for part in numba.prange(parts):
        first, last = _share(total, part, parts)
        _conv_epilogue(bias, residual, activation, low, high, y, first, last)


# Winograd F(2x2, 3x3): a 3x3 stride-1 conv as 16 GEMMs over 4x4 input tiles (2x2 outputs
# each), 2.25x fewer multiply-adds than the direct form. With d a tile, g a 3x3 kernel and
# Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
# G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]], Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]:
# output tile = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A, the elementwise product summed over input channels
# being, per tile position, one GEMM. The transforms below are written as whole-row sums of
# two or three runs (``_pair``, ``_triple``), the loop shape LLVM vectorizes.


@numba.njit(cache=False, inline="always")
def _pair(target, into, source, a, b, sign, width):  # type: ignore[no-untyped-def]
    """target[into + k] = source[a + k] + sign · source[b + k] for k < width."""
    for k in range(width):
        target[into + k] = source[a + k] + sign * source[b + k]


@numba.njit(cache=False, inline="always")
def _triple(target, into, source, a, b, c, sign, width):  # type: ignore[no-untyped-def]
    """target[into + k] = source[a + k] + sign · (source[b + k] + source[c + k]) for k < width."""
    for k in range(width):
        target[into + k] = source[a + k] + sign * (source[b + k] + source[c + k])


@_compile(_INPUT, _INT, _INT, _INT, _INT, _PLANE, _INT, _INT)
def _winograd_input(x, top, left, tiles_h, tiles_w, v, first, last):  # type: ignore[no-untyped-def]
    """``winograd_input`` on its planes [first, last)."""
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    source, target = x.reshape(-1), v.reshape(-1)
    half = tiles_w + 1
    row_length = _UINT(2 * half)
    tiles = _UINT(tiles_h * tiles_w)
    plane = _UINT(channels) * tiles
    rows = 2 * tiles_h + 2
    padded = np.empty(rows * 2 * half, np.float32)
    mixed = np.empty(4 * tiles_h * 2 * half, np.float32)
    block = _UINT(tiles_h) * row_length
    run = _UINT(tiles_w)
    one, minus = np.float32(1), np.float32(-1)
    for image in range(first, last):
        for r in range(rows):
            row, s = _UINT(r) * row_length, r - top
            if s < 0 or s >= height:
                for q in range(row_length):
                    padded[row + q] = 0
                continue
            start = _UINT((image * height + s) * width)
            for parity in range(2):
                into = row + _UINT(parity * half)
                first = min(half, max(0, (left - parity + 1) // 2))
                last = max(first, min(half, (width - 1 + left - parity) // 2 + 1))
                for q in range(first):
                    padded[into + _UINT(q)] = 0
                for q in range(first, last):
                    padded[into + _UINT(q)] = source[start + _UINT(2 * q + parity - left)]
                for q in range(last, half):
                    padded[into + _UINT(q)] = 0
        for i in range(tiles_h):  # Bᵀ d: rows 0 - 2, 1 + 2, 2 - 1, 1 - 3 of the tile
            r0 = _UINT(2 * i) * row_length
            r1, r2, r3 = r0 + row_length, r0 + _UINT(2) * row_length, r0 + _UINT(3) * row_length
            at = _UINT(i) * row_length
            _pair(mixed, at, padded, r0, r2, minus, row_length)
            _pair(mixed, block + at, padded, r1, r2, one, row_length)
            _pair(mixed, _UINT(2) * block + at, padded, r2, r1, minus, row_length)
            _pair(mixed, _UINT(3) * block + at, padded, r1, r3, minus, row_length)
        base = _UINT(image // channels) * _UINT(16) * plane + _UINT(image % channels) * tiles
        for a in range(4):  # (Bᵀ d) B: columns 0 - 2, 1 + 2, 2 - 1, 1 - 3
            for i in range(tiles_h):
                even = _UINT(a) * block + _UINT(i) * row_length
                odd, next_even = even + _UINT(half), even + _UINT(1)
                into = base + _UINT(4 * a) * plane + _UINT(i * tiles_w)
                _pair(target, into, mixed, even, next_even, minus, run)
                _pair(target, into + plane, mixed, odd, next_even, one, run)
                _pair(target, into + _UINT(2) * plane, mixed, next_even, odd, minus, run)
                _pair(target, into + _UINT(3) * plane, mixed, odd, odd + _UINT(1), minus, run)


@_pooled(_INPUT, _INT, _INT, _INT, _INT, _PLANE, _INT, work=_sizes(0, 5, weight=4))
def winograd_input(x, top, left, tiles_h, tiles_w, v, parts):  # type: ignore[no-untyped-def]
    """v[n, 4a + b, c, i·tiles_w + j] = (Bᵀ d B)[a, b], d the 4x4 tile of x[n, c] whose top-left
    is at row 2i - top, column 2j - left (positions outside x read 0).

    Each plane is copied once, zero-padded, with every row split into its even then odd
    columns; Bᵀ d is then four whole-row sums per tile row, and (Bᵀ d) B four sums of
    runs ``tiles_w`` long (column 2j of a split row is its even half at j, 2j + 1 its odd).
    On small planes these runs are short, each element costing several copies' time: its
    work counts 4 per element (two threads on 64 planes of 13 x 13: 110 -> 73 us)."""
    total = x.shape[0] * x.shape[1]
    for part in numba.prange(parts):
        first, last = _share(total, part, parts)
        _winograd_input(x, top, left, tiles_h, tiles_w, v, first, last)


@_compile(_IMAGES, _INT, _INT, _MATRIX, _IMAGES, _INT, _FLOAT, _FLOAT, _PLANE, _INT, _INT)
def _winograd_output(products, tiles_h, tiles_w, bias, residual, activation, low, high, y, first, last):  # type: ignore[no-untyped-def]
    """``winograd_output`` on its planes [first, last)."""
    outputs, out_h, out_w = y.shape[1], y.shape[2], y.shape[3]
    source, target, extra = products.reshape(-1), y.reshape(-1), residual.reshape(-1)
    has_bias, has_residual = bias.shape[0] > 0, residual.shape[0] > 0
    tiles = _UINT(tiles_h * tiles_w)
    plane = _UINT(outputs) * tiles
    columns = np.empty(8 * tiles_h * tiles_w, np.float32)  # Aᵀ P, per tile: 2 rows x 4 columns
    corners = np.empty(4 * tiles_h * tiles_w, np.float32)  # Aᵀ P A, per tile: 2 x 2
    one, minus = np.float32(1), np.float32(-1)
    pairs, width = _UINT(out_w // 2), _UINT(out_w)
    for image in range(first, last):
        m = image % outputs
        base = _UINT(image // outputs) * _UINT(16) * plane + _UINT(m) * tiles
        for b in range(4):  # Aᵀ P: rows 0 + 1 + 2, 1 - 2 - 3 of column b
            q = base + _UINT(b) * plane
            p1, p2, p3 = q + _UINT(4) * plane, q + _UINT(8) * plane, q + _UINT(12) * plane
            _triple(columns, _UINT(b) * tiles, source, q, p1, p2, one, tiles)
            _triple(columns, _UINT(4 + b) * tiles, source, p1, p2, p3, minus, tiles)
        for h in range(2):  # (Aᵀ P) A: columns 0 + 1 + 2, 1 - 2 - 3
            c0 = _UINT(4 * h) * tiles
            c1, c2, c3 = c0 + tiles, c0 + _UINT(2) * tiles, c0 + _UINT(3) * tiles
            _triple(corners, _UINT(2 * h) * tiles, columns, c0, c1, c2, one, tiles)
            _triple(corners, _UINT(2 * h + 1) * tiles, columns, c1, c2, c3, minus, tiles)
        value = bias[0, m] if has_bias else np.float32(0)
        for r in range(out_h):
            row = _UINT((image * out_h + r) * out_w)
            even = _UINT(2 * (r % 2)) * tiles + _UINT(r // 2 * tiles_w)
            odd = even + tiles
            for j in range(pairs):
                target[row + _UINT(2) * j] = corners[even + j]
                target[row + _UINT(2) * j + _UINT(1)] = corners[odd + j]
            if out_w % 2:
                target[row + width - _UINT(1)] = corners[even + pairs]
        start = _UINT(image * out_h) * width
        _finish_in_place(target, start, _UINT(out_h) * width, value, extra, has_residual, activation, low, high)


@_pooled(_IMAGES, _INT, _INT, _MATRIX, _IMAGES, _INT, _FLOAT, _FLOAT, _PLANE, _INT, work=_sizes(0, 8))
def winograd_output(products, tiles_h, tiles_w, bias, residual, activation, low, high, y, parts):  # type: ignore[no-untyped-def]
    """y[n, m] = act(Aᵀ P A + bias[0, m] + residual[n, m]) tile by tile, P the 4x4
    products[n, :, m, tile] (one GEMM result per tile position), cropped at the bottom and
    right edges. ``bias`` is (1, M) or empty, ``residual`` like ``y`` or empty; the epilogue is
    ``conv_output``'s."""
    total = y.shape[0] * y.shape[1]
    for part in numba.prange(parts):
        first, last = _share(total, part, parts)
        _winograd_output(products, tiles_h, tiles_w, bias, residual, activation, low, high, y, first, last)


@_compile(_BLOCKS, _VECTOR, _VECTOR, _INT, _FLOAT, _FLOAT, numba.float32[:, :, ::1], _INT, _INT)
def _affine_channels(x, factor, shift, activation, low, high, y, first, last):  # type: ignore[no-untyped-def]
    """``affine_channels`` on its planes [first, last)."""
    channels, size = x.shape[1], x.shape[2]
    source, target = x.reshape(-1), y.reshape(-1)
    width = _UINT(size)
    for plane in range(first, last):
        scale, offset = factor[plane % channels], shift[plane % channels]
        start = _UINT(plane) * width
        for k in range(width):
            target[start + k] = _activated(source[start + k] * scale + offset, activation, low, high)


@_pooled(_BLOCKS, _VECTOR, _VECTOR, _INT, _FLOAT, _FLOAT, numba.float32[:, :, ::1], _INT, work=_sizes(0, 6))
def affine_channels(x, factor, shift, activation, low, high, y, parts):  # type: ignore[no-untyped-def]
    """y[n, c, k] = act(x[n, c, k] · factor[c] + shift[c]): inference BatchNormalization (and the
    Relu or Clip fused after it) in one pass; numpy's broadcast multiply, then add, walk the
    data twice, in short rows on small images. ``activation`` is one of ``ACTIVATION_CODES``."""
    total = x.shape[0] * x.shape[1]
    for part in numba.prange(parts):
        first, last = _share(total, part, parts)
        _affine_channels(x, factor, shift, activation, low, high, y, first, last)


@_pooled(_BLOCKS, numba.float32[:, :, ::1], _INT, _INT, work=_sizes(0))
def shuffle_channels(x, y, groups, parts):  # type: ignore[no-untyped-def]
    """y[n, j·g + i] = x[n, i·(C/g) + j] for (N, C, pixels) arrays: ShuffleNet's interleave of
    ``groups`` (g) groups, one plane copy (memcpy) per channel, the channels split over the
    parts; numpy's transposed copy ran on one thread."""
    channels, plane = x.shape[1], x.shape[2]
    per_group, total = channels // groups, x.shape[0] * channels
    x_at, y_at, size = x.ctypes.data, y.ctypes.data, _UINT(plane)
    for part in numba.prange(parts):
        first, last = _share(total, part, parts)
        for unit in range(first, last):
            n, target = unit // channels, unit % channels
            source = n * channels + target % groups * per_group + target // groups
            _copy_floats(y_at + 4 * unit * plane, x_at + 4 * source * plane, size)


@_pooled(_MATRIX, numba.float32[:, ::1], _INT, _INT, work=_sizes(0, weight=4))
def softmax_rows(x, y, log, parts):  # type: ignore[no-untyped-def]
    """y[i] = softmax(x[i]) row by row, or its logarithm when ``log`` is nonzero: exp(x - the
    row's maximum) over their sum, summed in float64. One call where numpy makes five passes,
    each a call of its own (a 1000-class head inside a model's run, where caches are cold:
    ~180 -> ~60 us). NaN and infinities give what numpy's formula gives."""
    for part in numba.prange(parts):
        first, last = _share(x.shape[0], part, parts)
        for i in range(first, last):
            row, out = x[i], y[i]
            top = np.max(row)
            total = 0.0
            for j in range(row.shape[0]):
                e = np.exp(row[j] - top)
                total += e
                if not log:
                    out[j] = e
            if log:
                logsum = np.float32(np.log(total))
                for j in range(row.shape[0]):
                    out[j] = (row[j] - top) - logsum
            else:
                scale = np.float32(total)
                for j in range(row.shape[0]):
                    out[j] = out[j] / scale


# Matrix products on the pool: each part computes one block of the result's rows or columns
# with the register-tile kernel below. Per call, OpenBLAS reached 30-45 GF/s on the convs'
# narrow products (K of 16-144, 16-136 rows), where the tile kernel, which packs nothing
# but the ragged edges, reaches 45-75 on one core of the development VM (docs/benchmarks.md).

_TILE_ROWS, _TILE_COLUMNS = 6, 2 * _LANES
"""The kernel's register tile: 6 rows by two 8-float vectors of columns, 12 accumulators
(AVX2 has 16 vector registers; NEON, 32 of half the width, holds the same tile in 24)."""

_DEPTH_BLOCK, _ROW_BLOCK, _PANEL_COLUMNS = 256, 96, 8 * _TILE_COLUMNS
"""K is walked in blocks of 256, rows in blocks of 96 (their slice of the left operand, 96 KB
at most, stays in L2) and columns in panels of 128 (the right operand's panel, 128 KB at
most, stays in L2 while every tile of rows sweeps it). A tile of rows writing its panel's
columns in turn writes 6 output rows sequentially, which the hardware prefetcher follows;
sweeping all 96 rows strip by strip had 96 rows of stores in flight, which it did not (cold
outputs: a first conv's product 2.2 -> 0.75 ms, docs/benchmarks.md)."""

_PANEL_OUTPUT = 65536
"""Least output (rows x columns of a part) swept panel by panel: below, the output stays in
cache and each strip of the right operand in L1 while all the row block's tiles use it
(in-process A/B, one thread: shufflenet's 68 x 68 x 196 products 20-30 % slower panel by
panel)."""

_PACK_ROWS = 192
"""Rows from which a product copies each panel of its right operand into contiguous strips:
enough tiles of rows sweep the panel to repay the copy (aligned, contiguous rows instead of
strided ones: 1000 x 512 x 169 products 16 % faster, 2048 x 512 x 49 27 %; shorter products
lost up to 50 %)."""


def _tile_kernel(rows: int, columns: int, prefetch: bool) -> Any:
    """An intrinsic computing one tile of ``rows`` x ``columns`` (a multiple of
    ``_LANES``): c[i, j] (+)= Σₖ a[i, k] · b[k, j] over float32 arrays at addresses ``a``,
    ``b``, ``c`` with row strides ``a_row``, ``b_row``, ``c_row`` (elements), summed over
    ``depth``, added to ``c`` when ``accumulate`` is nonzero. The accumulators stay in vector
    registers for the whole sum; each step multiply-adds a broadcast element of ``a`` with
    the vectors of ``b``'s row (llvm.fmuladd: fused where the CPU has FMA).

    When ``finish`` is nonzero the sums leave the registers as a conv's output: plus
    ``bias[i]`` (a float32 array of one value per tile row), plus the tile of ``residual``
    (row stride ``residual_row``), clamped to [``lower``, ``upper``] (Relu, Clip; ±inf for
    none) with comparisons that keep NaN. No bias or residual: arrays of zeros."""
    f32 = ir.FloatType()
    vector, index = ir.VectorType(f32, _LANES), ir.IntType(64)
    vectors = columns // _LANES

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        a_at, a_row, b_at, b_row, depth, c_at, c_row, accumulate, finish, bias_at, residual_at, residual_row, lower, upper = args
        fma = _multiply_add(builder)
        a_ptr, b_ptr, c_ptr = (builder.inttoptr(at, f32.as_pointer()) for at in (a_at, b_at, c_at))
        zero = ir.Constant(vector, [0.0] * _LANES)

        def depth_step(k: ir.Value, sums: list[ir.Value]) -> list[ir.Value]:
            b_row_ptr = builder.gep(b_ptr, [builder.mul(k, b_row)])
            columns = [builder.load(_vector_at(builder, b_row_ptr, ir.Constant(index, v * _LANES)), align=4) for v in range(vectors)]
            if prefetch:  # the strip two tiles on (see _tile_product_ahead)
                _prefetch(builder, builder.gep(b_row_ptr, [ir.Constant(index, 2 * _TILE_COLUMNS)]))
            stepped = []
            for i in range(rows):
                element = builder.load(builder.gep(a_ptr, [builder.add(builder.mul(ir.Constant(index, i), a_row), k)]), align=4)
                splat = _splat(builder, element)
                stepped += [builder.call(fma, [splat, column, sums[i * vectors + v]]) for v, column in enumerate(columns)]
            return stepped

        results = _carried_sums(builder, depth, [zero] * (rows * vectors), depth_step)
        bias_ptr, residual_ptr = (builder.inttoptr(at, f32.as_pointer()) for at in (bias_at, residual_at))
        adding = builder.icmp_signed("!=", accumulate, ir.Constant(index, 0))
        finishing = builder.icmp_signed("!=", finish, ir.Constant(index, 0))
        floor, ceiling = _splat(builder, lower), _splat(builder, upper)
        for i in range(rows):
            c_row_ptr = builder.gep(c_ptr, [builder.mul(ir.Constant(index, i), c_row)])
            extra_row_ptr = builder.gep(residual_ptr, [builder.mul(ir.Constant(index, i), residual_row)])
            base = _splat(builder, builder.load(builder.gep(bias_ptr, [ir.Constant(index, i)]), align=4))
            for v in range(vectors):
                at = ir.Constant(index, v * _LANES)
                place = _vector_at(builder, c_row_ptr, at)
                value = results[i * vectors + v]
                value = builder.select(adding, builder.fadd(builder.load(place, align=4), value), value)
                done = builder.fadd(builder.fadd(value, base), builder.load(_vector_at(builder, extra_row_ptr, at), align=4))
                done = builder.select(builder.fcmp_ordered("<", done, floor), floor, done)
                done = builder.select(builder.fcmp_ordered(">", done, ceiling), ceiling, done)
                builder.store(builder.select(finishing, done, value), place, align=4)
        return context.get_dummy_value()

    address, stride, bound = numba.types.intp, numba.types.int64, numba.types.float32
    signature = numba.types.void(
        address, stride, address, stride, stride, address, stride, stride, stride, address, address, stride, bound, bound
    )

    def typer(typingctx, a, a_row, b, b_row, depth, c, c_row, accumulate, finish, bias, residual, residual_row, lower, upper):  # type: ignore[no-untyped-def]
        return signature, codegen

    return intrinsic(typer)


_tile_product = _tile_kernel(_TILE_ROWS, _TILE_COLUMNS, prefetch=False)
_tile_product_ahead = _tile_kernel(_TILE_ROWS, _TILE_COLUMNS, prefetch=True)
"""The tile kernel that also asks for the strip two tiles on, run on the first tile of rows
of each strip: a column matrix far wider than deep (a first conv's: 27 rows 50 KB apart)
reaches the core from L3 row by row, more streams than the hardware prefetcher follows.
(Prefetching on every tile cost ResNet-50's deep products ~10 %.)"""
_narrow_tile_product = _tile_kernel(_TILE_ROWS, _LANES, prefetch=False)  # a ragged strip of at most 8 columns: half the work
_four_row_product = _tile_kernel(4, _TILE_COLUMNS, prefetch=False)
_two_row_product = _tile_kernel(2, _TILE_COLUMNS, prefetch=False)  # last tiles of rows: see _short_rows


@numba.njit(cache=False, inline="always")
def _place_tile(scratch, y, i0, height, j0, width, accumulate, last, bias, residual, activation, low, high):  # type: ignore[no-untyped-def]
    """Write a ragged tile computed into ``scratch`` to y[i0:i0 + height, j0:j0 + width],
    added to what is there when ``accumulate``, with the conv epilogue (bias, residual,
    activation) when it is the ``last`` block of K."""
    has_bias, has_residual = bias.shape[0] > 0, residual.shape[0] > 0
    for i in range(height):
        row = i0 + i
        base = bias[row] if last and has_bias else np.float32(0)
        for j in range(width):
            value = scratch[i * _TILE_COLUMNS + j]
            if accumulate:
                value += y[row, j0 + j]
            if last:
                value += base
                if has_residual:
                    value += residual[row, j0 + j]
                value = _activated(value, activation, low, high)
            y[row, j0 + j] = value


@numba.njit(cache=False, inline="always")
def _pack_panel(source, rows, k0, kc, first, end, panel):  # type: ignore[no-untyped-def]
    """Copy columns [first, end) of rows k0..k0 + kc of x (x[k, j] = source[rows[k] + j]) into
    ``panel`` strip by strip, each strip kc rows of ``_TILE_COLUMNS`` contiguous values, the
    columns past ``end`` zero. Whole strips' rows go by memcpy of a constant 64 bytes (two
    vector moves): indexed, the copy ran scalar, 4x slower, and cost a conv's product with
    144-deep shifted columns a quarter of its time."""
    count, word = end - first, 4
    source_at, panel_at = source.ctypes.data, panel.ctypes.data
    for k in range(kc):
        start = rows[k0 + k] + first
        for s in range(0, count, _TILE_COLUMNS):
            into = s * kc + k * _TILE_COLUMNS
            if s + _TILE_COLUMNS <= count:
                _copy_floats(panel_at + word * into, source_at + word * (start + s), _UINT(_TILE_COLUMNS))
            else:
                for j in range(_TILE_COLUMNS):
                    panel[into + j] = source[start + s + j] if s + j < count else np.float32(0)


@numba.njit(cache=False, inline="always")
def _whole_tile(a, a_row, b, b_row, kc, c, c_row, accumulate, epilogue, row_bias, extra, extra_row, lower, upper, ahead):  # type: ignore[no-untyped-def]
    """One whole tile (``_tile_kernel``'s arguments), asking for the strip two tiles on when
    ``ahead``. Addresses only: numba counts references to array arguments, which on every
    tile cost 20-30 % of a small product."""
    if ahead:
        _tile_product_ahead(a, a_row, b, b_row, kc, c, c_row, accumulate, epilogue, row_bias, extra, extra_row, lower, upper)
    else:
        _tile_product(a, a_row, b, b_row, kc, c, c_row, accumulate, epilogue, row_bias, extra, extra_row, lower, upper)


@numba.njit(cache=False, inline="always")
def _ragged_tile(a, a_row, b, b_row, kc, y, i0, height, j0, width, accumulate, last, bias, residual, activation, low, high, scratch):  # type: ignore[no-untyped-def]
    """A tile of fewer rows or columns: computed into ``scratch`` (its strip ``b`` a
    zero-padded copy when narrow), then placed with the epilogue (``_place_tile``)."""
    into, none = scratch.ctypes.data, scratch.ctypes.data  # no epilogue here: any address
    inf = np.float32(np.inf)
    if width > _LANES:
        _tile_product(a, a_row, b, b_row, kc, into, _TILE_COLUMNS, 0, 0, none, none, _TILE_COLUMNS, -inf, inf)
    else:
        _narrow_tile_product(a, a_row, b, b_row, kc, into, _TILE_COLUMNS, 0, 0, none, none, _TILE_COLUMNS, -inf, inf)
    _place_tile(scratch, y, i0, height, j0, width, accumulate, last, bias, residual, activation, low, high)


@numba.njit(cache=False, inline="always")
def _strip_at(source, rows, k0, kc, j0, right, x_at, stride, evenly, strip):  # type: ignore[no-untyped-def]
    """(address, row stride) of the strip of x at column ``j0`` for the block of K at ``k0``:
    read in place when whole and x's rows are evenly spaced (``x_at`` its first row, ``stride``
    apart), else a zero-padded copy made into ``strip``."""
    if right - j0 < _TILE_COLUMNS or not evenly:
        _pack_panel(source, rows, k0, kc, j0, min(right, j0 + _TILE_COLUMNS), strip)
        return strip.ctypes.data, _TILE_COLUMNS
    return x_at + 4 * (k0 * stride + j0), stride


_ZERO_TILE = np.zeros(_TILE_ROWS * _TILE_COLUMNS, np.float32)
"""The bias and residual a tile kernel reads when a product has none. A global, so compiled
code holds it as a constant: a local array read only through its address is freed after its
last use by name, and its memory handed to the next allocation."""


@numba.njit(cache=False, inline="always")
def _epilogue(bias, residual, activation, low, high):  # type: ignore[no-untyped-def]
    """The tile kernel's epilogue arguments for a product's part: (finish, lower, upper,
    bias address, bias step per row, residual address, residual row stride, residual step per
    element), ``_ZERO_TILE`` standing in for a missing bias or residual."""
    word, zeros = 4, _ZERO_TILE
    has_bias, has_residual = bias.shape[0] > 0, residual.shape[0] > 0
    finish = has_bias or has_residual or activation != _NO_ACTIVATION
    lower = low if activation == _CLIP else np.float32(0) if activation == _RELU else np.float32(-np.inf)
    upper = high if activation == _CLIP else np.float32(np.inf)
    bias_at, bias_step = (bias.ctypes.data, word) if has_bias else (zeros.ctypes.data, 0)
    extra_at, extra_row, extra_step = (residual.ctypes.data, residual.shape[1], word) if has_residual else (zeros.ctypes.data, _TILE_COLUMNS, 0)
    return finish, lower, upper, bias_at, bias_step, extra_at, extra_row, extra_step


@numba.njit(cache=False, inline="always")
def _row_stride(rows):  # type: ignore[no-untyped-def]
    """(stride, evenly): the distance from x's first row to its second, and whether every row
    keeps it (then x is read in place)."""
    stride = rows[1] - rows[0] if rows.shape[0] > 1 else 0
    evenly = True
    for k in range(rows.shape[0]):
        evenly = evenly and rows[k] == rows[0] + k * stride
    return stride, evenly


@numba.njit(cache=False)
def _short_rows(w, source, rows, y, top, bottom, left, right, k0, kc, packed, bias, residual, activation, low, high, strip, spare_rows, scratch):  # type: ignore[no-untyped-def]
    """``_block_product``'s last tile of rows when 4 or 2 high (channel counts are mostly
    even), for the block of K at ``k0``, strip by strip with a kernel of that height,
    straight from the registers to ``y`` with the epilogue: through a scratch tile and a
    scalar placing these rows cost a 64-row product ~20 % (64 x 16 x 3024 took longer than
    66 x 16 x 3024). A function of its own: inlined into ``_block_product``'s loops, the
    branch slowed whole tiles 5-10 %. ``packed``: columns [left, right) are the panel
    ``_block_product`` has just packed into ``strip``, read from there (not copied twice);
    otherwise each strip is read in place or copied into ``strip``. Its other copies are
    ``_block_product``'s: ``spare_rows`` (these rows of w for this block of K, which
    ``_block_product`` has copied, read for a ragged strip) and ``scratch``."""
    height, depth, word = bottom - top, w.shape[1], 4
    finish, lower, upper, bias_at, bias_step, extra_at, extra_row, extra_step = _epilogue(bias, residual, activation, low, high)
    stride, evenly = _row_stride(rows)
    x_at, w_at, y_at, y_row = source.ctypes.data + word * rows[0], w.ctypes.data, y.ctypes.data, y.shape[1]
    accumulate = 1 if k0 > 0 else 0
    last = finish and k0 + kc == depth
    for j0 in range(left, right, _TILE_COLUMNS):
        width = min(_TILE_COLUMNS, right - j0)
        if packed:
            b, b_row = strip.ctypes.data + word * (j0 - left) * kc, _TILE_COLUMNS
        else:
            b, b_row = _strip_at(source, rows, k0, kc, j0, right, x_at, stride, evenly, strip)
        if width < _TILE_COLUMNS:
            _ragged_tile(spare_rows.ctypes.data, kc, b, b_row, kc, y, top, height, j0, width, accumulate, last, bias, residual, activation, low, high, scratch)
            continue
        a, c = w_at + word * (top * depth + k0), y_at + word * (top * y_row + j0)
        extra, row_bias, epilogue = extra_at + extra_step * (top * extra_row + j0), bias_at + bias_step * top, 1 if last else 0
        if height == 4:
            _four_row_product(a, depth, b, b_row, kc, c, y_row, accumulate, epilogue, row_bias, extra, extra_row, lower, upper)
        else:
            _two_row_product(a, depth, b, b_row, kc, c, y_row, accumulate, epilogue, row_bias, extra, extra_row, lower, upper)


@numba.njit(cache=False, inline="always")
def _block_product(w, source, rows, y, top, bottom, left, right, bias, residual, activation, low, high):  # type: ignore[no-untyped-def]
    """y[top:bottom, left:right] = act(w[top:bottom] @ x[:, left:right] + bias + residual),
    x[k, j] = source[rows[k] + j] (``source`` 1-D, ``rows`` int64: a matrix's rows, or a
    conv's column rows in its shifted images), ``w`` and ``y`` row-major 2-D arrays; ``bias``
    one value per row or empty, ``residual`` like ``y`` or empty, ``activation`` one of
    ``ACTIVATION_CODES``; tile by tile, the epilogue on each tile as its last block of K
    lands. Whole tiles go from the registers to ``y``, and so does a last tile of rows 4 or 2
    high (``_short_rows``); other ragged ones through a scratch tile, a ragged last tile of
    rows reading a zero-padded copy of its rows, a ragged strip of columns a zero-padded copy
    of its strip.

    Small outputs go strip by strip, each strip of x (rows evenly spaced, read in place)
    used by every tile of a row block while in L1. Outputs of ``_PANEL_OUTPUT`` or more go
    panel by panel (``_PANEL_COLUMNS``), each tile of rows writing its panel's columns in
    turn; products of ``_PACK_ROWS`` rows or more, and rows not evenly spaced (a conv's
    shifted images), first copy each panel into contiguous strips (``_pack_panel``), which
    every tile of rows then sweeps."""
    depth, word = w.shape[1], 4
    if depth == 0:  # an empty sum: the epilogue on zeros
        for i0 in range(top, bottom, _TILE_ROWS):
            for j0 in range(left, right, _TILE_COLUMNS):
                height, width = min(_TILE_ROWS, bottom - i0), min(_TILE_COLUMNS, right - j0)
                _place_tile(_ZERO_TILE, y, i0, height, j0, width, 0, True, bias, residual, activation, low, high)
        return
    finish, lower, upper, bias_at, bias_step, extra_at, extra_row, extra_step = _epilogue(bias, residual, activation, low, high)
    block = min(depth, _DEPTH_BLOCK)
    ragged = bottom - (bottom - top) % _TILE_ROWS  # first row of the ragged last tile
    stride, evenly = _row_stride(rows)
    packing = bottom - top >= _PACK_ROWS or not evenly
    panels = packing or (bottom - top) * (right - left) >= _PANEL_OUTPUT
    narrow = not packing and (right - left) % _TILE_COLUMNS != 0
    # the copies exist only where they are used (zeroing them costs ~1 us a call)
    strips = np.zeros(block * (_PANEL_COLUMNS if packing else _TILE_COLUMNS if narrow else 0), np.float32)
    spare_rows = np.zeros(_TILE_ROWS * block if ragged < bottom else 0, np.float32)
    scratch = np.empty(_TILE_ROWS * _TILE_COLUMNS, np.float32)
    row_step = bottom - top if packing else _ROW_BLOCK
    short = bottom - ragged == 2 or bottom - ragged == 4  # the last tile of rows, by its own kernel
    end_rows = bottom  # the ragged last tile's rows are [ragged, end_rows)
    if short:
        bottom = ragged
    # whole tiles' addresses: tile (i0, j0) of y at y_at + word·(i0·y_row + j0), and so on
    x_at, y_at, y_row = source.ctypes.data + word * rows[0], y.ctypes.data, y.shape[1]
    for k0 in range(0, depth, _DEPTH_BLOCK):
        kc = min(_DEPTH_BLOCK, depth - k0)
        accumulate = 1 if k0 > 0 else 0
        last = finish and k0 + kc == depth
        epilogue = 1 if last else 0
        for i in range(end_rows - ragged):  # once per block of K, for whichever routine takes them
            for k in range(kc):
                spare_rows[i * kc + k] = w[ragged + i, k0 + k]
        if short and not packing:
            _short_rows(w, source, rows, y, ragged, end_rows, left, right, k0, kc, False, bias, residual, activation, low, high, strips, spare_rows, scratch)
        for row_block in range(top, top + 1 if packing else bottom, row_step):  # packing: one block, maybe short rows alone
            if not panels:  # strip by strip, the row block's tiles innermost
                for j0 in range(left, right, _TILE_COLUMNS):
                    width = min(_TILE_COLUMNS, right - j0)
                    b, b_row = _strip_at(source, rows, k0, kc, j0, right, x_at, stride, evenly, strips)
                    for i0 in range(row_block, min(bottom, row_block + row_step), _TILE_ROWS):
                        height = min(_TILE_ROWS, bottom - i0)
                        a, a_row = (w.ctypes.data + word * (i0 * depth + k0), depth) if height == _TILE_ROWS else (spare_rows.ctypes.data, kc)
                        if height == _TILE_ROWS and width == _TILE_COLUMNS:
                            extra = extra_at + extra_step * (i0 * extra_row + j0)
                            _whole_tile(a, a_row, b, b_row, kc, y_at + word * (i0 * y_row + j0), y_row, accumulate, epilogue, bias_at + bias_step * i0, extra, extra_row, lower, upper, i0 == row_block)
                        else:
                            _ragged_tile(a, a_row, b, b_row, kc, y, i0, height, j0, width, accumulate, last, bias, residual, activation, low, high, scratch)
                continue
            for panel in range(left, right, _PANEL_COLUMNS):  # panel by panel, its strips innermost
                end = min(right, panel + _PANEL_COLUMNS)
                if packing:
                    _pack_panel(source, rows, k0, kc, panel, end, strips)
                for i0 in range(row_block, min(bottom, row_block + row_step), _TILE_ROWS):
                    height = min(_TILE_ROWS, bottom - i0)
                    a, a_row = (w.ctypes.data + word * (i0 * depth + k0), depth) if height == _TILE_ROWS else (spare_rows.ctypes.data, kc)
                    for j0 in range(panel, end, _TILE_COLUMNS):
                        width = min(_TILE_COLUMNS, right - j0)
                        if packing:
                            b, b_row = strips.ctypes.data + word * (j0 - panel) * kc, _TILE_COLUMNS
                        elif width < _TILE_COLUMNS:
                            b, b_row = strips.ctypes.data, _TILE_COLUMNS
                            if i0 == row_block:
                                _pack_panel(source, rows, k0, kc, j0, right, strips)
                        else:
                            b, b_row = x_at + word * (k0 * stride + j0), stride
                        if height == _TILE_ROWS and width == _TILE_COLUMNS:
                            extra = extra_at + extra_step * (i0 * extra_row + j0)
                            ahead = i0 == row_block and not packing
                            _whole_tile(a, a_row, b, b_row, kc, y_at + word * (i0 * y_row + j0), y_row, accumulate, epilogue, bias_at + bias_step * i0, extra, extra_row, lower, upper, ahead)
                        else:
                            _ragged_tile(a, a_row, b, b_row, kc, y, i0, height, j0, width, accumulate, last, bias, residual, activation, low, high, scratch)
                if short and packing:
                    _short_rows(w, source, rows, y, ragged, end_rows, panel, end, k0, kc, True, bias, residual, activation, low, high, strips, spare_rows, scratch)


@numba.njit(cache=False, inline="always")
def _product_part(w, source, rows, y, piece, pieces, bias, residual, activation, low, high):  # type: ignore[no-untyped-def]
    """Part ``piece`` of ``pieces`` of y = act(w @ x + bias + residual) (``_block_product``): a
    block of columns when the result is wider than tall, else a block of rows."""
    height, width = y.shape[0], y.shape[1]
    if width >= height:
        left, right = _share(width, piece, pieces)
        _block_product(w, source, rows, y, 0, height, left, right, bias, residual, activation, low, high)
    else:
        top, bottom = _share(height, piece, pieces)
        _block_product(w, source, rows, y, top, bottom, 0, width, bias, residual, activation, low, high)


@numba.njit(cache=True)
def dense_rows(depth: int, width: int) -> np.ndarray:
    """The row offsets (``gemm_blocks``' ``rows``) of a C-contiguous matrix ``width`` wide."""
    return np.arange(depth) * width


_NO_ROW_BIAS = np.empty(0, np.float32)
_NO_PRODUCT_RESIDUAL = np.empty((0, 0), np.float32)


_WEIGHTS = numba.types.Array(numba.float32, 3, "C", readonly=True)  # (groups, rows, K)


@_pooled(_WEIGHTS, _BLOCKS, _INDEX, _MATRIX, _IMAGES, _INT, _FLOAT, _FLOAT, _PLANE, _INT, work=_product_work)
def gemm_blocks(weights, sources, rows, bias, residual, activation, low, high, y, parts):  # type: ignore[no-untyped-def]
    """y[n, g] = act(weights[g] @ x[n, g] + bias[g] + residual[n, g]) for every image n and
    group g, where x[n, g][k, j] = sources[n, g, rows[k] + j] (``dense_rows`` for stacked
    matrices; a conv's column rows in its images otherwise): the (N·G) products dealt out
    whole when they divide evenly among ``parts``, else each split into ``parts``. ``bias``
    is (G, M) or empty, ``residual`` like ``y`` or empty, ``activation`` one of
    ``ACTIVATION_CODES``: a conv's epilogue, applied tile by tile while the tile is in cache
    (nothing to apply: a plain product)."""
    groups = weights.shape[0]
    blocks = sources.shape[0] * groups
    split = 1 if blocks % parts == 0 else parts
    for unit in numba.prange(blocks * split):
        block, piece = unit // split, unit % split
        n, g = block // groups, block % groups
        row_bias = bias[g] if bias.shape[0] > 0 else _NO_ROW_BIAS
        extra = residual[n, g] if residual.shape[0] > 0 else _NO_PRODUCT_RESIDUAL
        _product_part(weights[g], sources[n, g], rows, y[n, g], piece, split, row_bias, extra, activation, low, high)


@_pooled(_MATRIX, _MATRIX, numba.float32[:, ::1], _INT, work=_product_work)
def matmul(a, b, y, parts):  # type: ignore[no-untyped-def]
    """y = a @ b, split into ``parts`` by columns or rows."""
    rows = dense_rows(b.shape[0], b.shape[1])
    for part in numba.prange(parts):
        _product_part(a, b.reshape(-1), rows, y, part, parts, _NO_ROW_BIAS, _NO_PRODUCT_RESIDUAL, _NO_ACTIVATION, np.float32(0), np.float32(0))


@_pooled(_MATRIX, _MATRIX, numba.float32[:, ::1], _INT, work=_product_work)
def matmul_transposed(a, w, y, parts):  # type: ignore[no-untyped-def]
    """y = a @ wᵀ (a layer's weights stored one output per row), split by the rows of ``a``
    when there are enough, else by the rows of ``w`` (a batch of one: matrix-vector)."""
    if a.shape[0] >= parts:
        for part in numba.prange(parts):
            first, last = _share(a.shape[0], part, parts)
            np.dot(a[first:last], w.T, y[first:last])
        return
    for part in numba.prange(parts):
        first, last = _share(w.shape[0], part, parts)
        for i in range(a.shape[0]):
            np.dot(w[first:last], a[i], y[i][first:last])


@numba.njit(cache=True, parallel=True)
def _probe(flags):  # type: ignore[no-untyped-def]
    """A parallel loop: its first call loads numba's threading layer."""
    for i in numba.prange(flags.size):
        flags[i] = 1


def _adopt_pool() -> None:
    """Hand the intra-op threads to numba's pool (``edge.kernels.threads``), asking numba for
    a thread-safe layer (serving threads run engines at once) unless NUMBA_THREADING_LAYER
    names one; where none loads, the BLAS pool keeps them and the routines run serially."""
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "threadsafe"
    try:
        _probe(np.zeros(2, np.int8))
    except ValueError:  # "No threading layer could be loaded"
        return
    threads.adopt_pool(numba.config.NUMBA_NUM_THREADS)


_adopt_pool()
