"""What one ``ExecutionContext.run`` took, split as trtexec splits a query.

The runtime fills a :class:`RunTimes` after every run (``ExecutionContext.last_times``);
``bench`` and ``trtexec`` read it instead of timing runs themselves, so a backend that can
measure more (CUDA events around copies and kernels) reports more with no change to them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RunTimes"]


@dataclass(frozen=True)
class RunTimes:
    """Milliseconds of one run; None where the backend cannot measure that part.

    Attributes:
        enqueue_ms: host time to launch the run (a synchronous backend: the whole run).
        h2d_ms: host-to-device copies of the inputs (None: no such copies).
        compute_ms: the layers' own time (the GPU's kernels, or the CPU doing the work).
        d2h_ms: device-to-host copies of the outputs (None: no such copies).
        host_ms: host wall time of the whole call, input checks and output copies included.
    """

    enqueue_ms: float | None
    h2d_ms: float | None
    compute_ms: float | None
    d2h_ms: float | None
    host_ms: float

    @property
    def latency_ms(self) -> float:
        """trtexec's "Latency": H2D + compute + D2H where compute is known, else host time."""
        if self.compute_ms is None:
            return self.host_ms
        return (self.h2d_ms or 0.0) + self.compute_ms + (self.d2h_ms or 0.0)
