"""The CPU backend's intra-op thread count.

onnxruntime takes ``intra_op_num_threads`` per session; here the threaded work is the GEMMs,
which run on the BLAS library's pool, one per process, so the count is process-wide too
(set through threadpoolctl). Until it is set, the pool uses every core this process may
run on. The compiled loops of ``edge.kernels.cpu.jit`` run on the calling thread: splitting
them over threads measured no faster on the 2-core development VM (a sleeping helper takes
~150 us to wake there), and a spinning pool such as numba's OpenMP layer fights the BLAS
pool's own spinning workers for the same cores (ShuffleNet went from 10 ms to 350 ms).
"""

from __future__ import annotations

import os

from threadpoolctl import threadpool_limits

__all__ = ["available_cores", "intra_op_threads", "set_intra_op_threads"]

_threads: int | None = None


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def intra_op_threads() -> int:
    """Threads one kernel may use: the count set last, else every available core."""
    return _threads if _threads is not None else available_cores()


def set_intra_op_threads(count: int) -> None:
    """Let each kernel use ``count`` threads (the BLAS pool's size), process-wide.

    Raises:
        ValueError: ``count`` is below 1.
    """
    global _threads
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"intra-op thread count must be a positive integer, got {count!r}")
    threadpool_limits(limits=count, user_api="blas")
    _threads = count

