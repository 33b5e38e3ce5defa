"""The CPU backend's intra-op thread count, and the one pool its threads come from.

onnxruntime takes ``intra_op_num_threads`` per session and runs every op's share of work on
one spinning pool. The backend does the same when its compiled kernels load: they split
their planes, and the GEMMs their blocks of rows or columns, over numba's pool (OpenMP),
calling BLAS from inside it, so each BLAS library is held to one thread. Two spinning pools
(BLAS's after every GEMM, numba's after every loop) fought for the same cores (ShuffleNet went
from 10 ms to 350 ms on the 2-core development VM), and leaving the loops on the calling
thread left a third of a 2-thread run single-threaded. Without numba (or ``EDGETRT_JIT=0``),
or where numba has no thread-safe layer, the numpy kernels' only threaded work is BLAS, and
its pool takes the count. The count is process-wide, like the pools.
"""

from __future__ import annotations

import os

from threadpoolctl import threadpool_info, threadpool_limits

__all__ = ["adopt_pool", "bind_calling_thread", "intra_op_threads", "kernel_parts", "set_intra_op_threads"]

_BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
"""What a BLAS library loaded later reads to size its pool, so that a count set now covers
it too."""

_count: int | None = None
"""The count set through ``set_intra_op_threads``; None until then."""

_pool_size: int = 0
"""Threads in the compiled kernels' pool once it is adopted (``adopt_pool``); 0 before."""


def intra_op_threads() -> int:
    """Threads one kernel may use: the count set here, else the pool's own size (numba's
    ``NUMBA_NUM_THREADS``, or the BLAS pool's when that is the pool, whoever sized it)."""
    if _count is not None:
        return _count
    if _pool_size:
        return _pool_size
    return max((pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"), default=1)


def set_intra_op_threads(count: int) -> None:
    """Let each kernel use ``count`` threads, process-wide.

    Raises:
        ValueError: ``count`` is not a positive integer.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"intra-op thread count must be a positive integer, got {count!r}")
    global _count
    _count = count
    _limit_blas()
    bind_calling_thread()


def adopt_pool(size: int) -> None:
    """Make the compiled kernels' pool (``size`` threads at most) the one the count sizes;
    called once, when ``edge.kernels.cpu.jit`` has loaded and found a thread-safe layer."""
    global _pool_size
    _pool_size = size
    _limit_blas()
    bind_calling_thread()


def kernel_parts() -> int:
    """How many parts a compiled kernel splits its work into: the count, within the pool's
    size; 1 when the compiled kernels have no pool."""
    return min(intra_op_threads(), _pool_size) if _pool_size else 1


def bind_calling_thread() -> None:
    """Size the pool's team for kernels this thread launches (numba keeps the size per
    thread): runtimes call this before a run, so a serving thread gets the count too."""
    if _pool_size:
        import numba

        numba.set_num_threads(kernel_parts())


def _limit_blas() -> None:
    """One BLAS thread while the compiled kernels' pool runs the GEMMs, else the count;
    the environment tells libraries loaded later (and child processes) the same."""
    if _count is None and not _pool_size:
        return  # nothing asked: leave BLAS as the user or its defaults set it
    blas = 1 if _pool_size else intra_op_threads()
    threadpool_limits(limits=blas, user_api="blas")
    for variable in _BLAS_THREAD_VARIABLES:
        os.environ[variable] = str(blas)
