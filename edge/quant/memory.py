"""Calibration memory: the peak a run allocates, and the largest batch that fits a device.

Peaks are measured with ``tracemalloc``, which numpy reports its array buffers to: the
bytes allocated while calibrating (activations, kernel workspaces, histograms), not the
model's weights or the interpreter, which were there before. ``--calib-batch auto``
calibrates on ``AUTO_PROBE`` samples, takes the peak as proportional to the batch and picks
the largest batch whose peak fits the budget: ``CALIBRATION_MEMORY_SHARE`` of the device
profile's memory, less what this process already holds (weights, runtime).
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["AUTO_BATCH_LIMIT", "AUTO_HEADROOM", "AUTO_PROBE", "CALIBRATION_MEMORY_SHARE", "PeakMemory", "auto_batch", "measure_peak", "resident_bytes"]

CALIBRATION_MEMORY_SHARE = 0.5
"""Share of a device's memory calibration may use: Jetson memory is shared by the CPU and
GPU, and the OS, the data pipeline and the engine build need the rest."""

AUTO_PROBE = 8
"""Samples of ``auto``'s second probe."""

AUTO_HEADROOM = 1.25
"""Factor on the predicted peak: measured peaks vary by ~10 % from run to run and the curve
has steps (see ``auto_batch``)."""

AUTO_BATCH_LIMIT = 256
"""Largest batch ``auto`` picks: beyond it, histograms fill no faster per sample."""


class PeakMemory:
    """Peak bytes allocated inside a ``measure_peak()`` block, overall and per phase
    (``mark`` closes a phase); filled in as the block runs and when it ends."""

    def __init__(self) -> None:
        self.start = tracemalloc.get_traced_memory()[0]
        self.peak = 0
        self.phases: dict[str, int] = {}

    def mark(self, phase: str) -> int:
        """End ``phase``: record (and return) its peak above the block's start."""
        peak = max(tracemalloc.get_traced_memory()[1] - self.start, 0)
        self.phases[phase] = peak
        self.peak = max(self.peak, peak)
        tracemalloc.reset_peak()
        return peak


@contextmanager
def measure_peak() -> Iterator[PeakMemory]:
    """Measure the peak of allocations made inside the block (blocks must not nest: each
    resets tracemalloc's peak)."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    result = PeakMemory()
    try:
        yield result
    finally:
        result.mark("end")
        if started:
            tracemalloc.stop()


def resident_bytes() -> int:
    """This process's resident memory now (Linux /proc; 0 where it cannot be read)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def auto_batch(probe: Callable[[int], int], budget: int, samples: int) -> tuple[int, int, int]:
    """The largest batch (at most ``samples`` and ``AUTO_BATCH_LIMIT``, at least 1) whose
    predicted peak, with ``AUTO_HEADROOM``, fits ``budget`` bytes.

    ``probe(n)`` calibrates on n samples and returns the peak of the whole calibration. The
    peak is taken as proportional to the batch, from a probe of ``AUTO_PROBE`` samples: an
    upper bound of the measured curve, which is affine (activations and the histogram
    phase's workspaces grow with the batch, the histograms themselves do not) with steps for
    small models (numpy's histogram works in fixed blocks, conv kernels change mode with the
    shape). Splitting off a "fixed" part under-predicted: the threshold phase grows too.

    Returns:
        (batch, bytes per sample, predicted peak).
    """
    width = min(samples, AUTO_PROBE)
    peak = probe(width)
    per_sample = max(-(-peak // width), 1)
    batch = int(max(1, min(budget // (per_sample * AUTO_HEADROOM), samples, AUTO_BATCH_LIMIT)))
    return batch, per_sample, max(peak, batch * per_sample)
