"""The CPU backend's intra-op thread count.

onnxruntime takes ``intra_op_num_threads`` per session; here the threaded work is the GEMMs,
which run on the BLAS library's pool, one per process, so the count is process-wide too
(read and set through threadpoolctl). Unless it is set, the pool uses every core. The
compiled loops of ``edge.kernels.cpu.jit`` run on the calling thread: handing half of one to
a helper thread measured no faster on the 2-core development VM (~130-180 us lost per
hand-off, waking the helper and moving cache-hot data to the other core), and a spinning
pool such as numba's OpenMP layer fights the BLAS pool's own spinning workers for the same
cores (ShuffleNet went from 10 ms to 350 ms).
"""

from __future__ import annotations

import os

from threadpoolctl import threadpool_info, threadpool_limits

__all__ = ["intra_op_threads", "set_intra_op_threads"]

_BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
"""What a BLAS library loaded later reads to size its pool (numba's first compile brings in
scipy's own OpenBLAS), so that a count set now covers it too."""


def intra_op_threads() -> int:
    """Threads one kernel may use: the BLAS pool's size, whoever set it (this module,
    OPENBLAS_NUM_THREADS and the like, another library); 1 without a threaded BLAS."""
    return max((pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"), default=1)


def set_intra_op_threads(count: int) -> None:
    """Let each kernel use ``count`` threads (the BLAS pool's size), process-wide: the BLAS
    libraries loaded now are limited, and the environment tells any loaded later (and child
    processes) the same count.

    Raises:
        ValueError: ``count`` is not a positive integer.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"intra-op thread count must be a positive integer, got {count!r}")
    threadpool_limits(limits=count, user_api="blas")
    for variable in _BLAS_THREAD_VARIABLES:
        os.environ[variable] = str(count)
