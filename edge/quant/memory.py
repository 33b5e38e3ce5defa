"""Calibration memory: the peak a run allocates, and the largest batch that fits a device.

Peaks are measured with ``tracemalloc``, which numpy reports its array buffers to: the
bytes allocated while calibrating (activations, kernel workspaces, histograms), not the
model's weights or the interpreter, which were there before. ``--calib-batch auto`` runs
one and two samples, takes the peak as ``fixed + per_sample * batch`` and picks the largest
batch whose peak fits the budget: ``CALIBRATION_MEMORY_SHARE`` of the device profile's
memory, less what this process already holds (weights, runtime).
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["AUTO_BATCH_LIMIT", "CALIBRATION_MEMORY_SHARE", "PeakMemory", "auto_batch", "measure_peak", "resident_bytes"]

CALIBRATION_MEMORY_SHARE = 0.5
"""Share of a device's memory calibration may use: Jetson memory is shared by the CPU and
GPU, and the OS, the data pipeline and the engine build need the rest."""

AUTO_BATCH_LIMIT = 256
"""Largest batch ``auto`` picks: beyond it, histograms fill no faster per sample."""


class PeakMemory:
    """The peak bytes allocated inside a ``measure_peak()`` block (filled in when it ends)."""

    peak: int = 0


@contextmanager
def measure_peak() -> Iterator[PeakMemory]:
    """Measure the peak of allocations made inside the block (blocks must not nest: each
    resets tracemalloc's peak)."""
    result = PeakMemory()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    try:
        yield result
    finally:
        result.peak = max(tracemalloc.get_traced_memory()[1] - before, 0)
        if started:
            tracemalloc.stop()


def resident_bytes() -> int:
    """This process's resident memory now (Linux /proc; 0 where it cannot be read)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def auto_batch(peak_of: Callable[[int], int], budget: int, samples: int) -> tuple[int, int, int]:
    """The largest batch (at most ``samples`` and ``AUTO_BATCH_LIMIT``, at least 1) whose
    predicted peak fits ``budget`` bytes, from ``peak_of(1)`` and ``peak_of(2)``.

    Returns:
        (batch, fixed bytes, bytes per sample) of the linear fit.
    """
    one = peak_of(1)
    if samples < 2:
        return 1, 0, one
    per_sample = max(peak_of(2) - one, 1)
    fixed = max(one - per_sample, 0)
    fits = (budget - fixed) // per_sample
    return int(max(1, min(fits, samples, AUTO_BATCH_LIMIT))), fixed, per_sample
