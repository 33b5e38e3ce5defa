"""Polygraphy's saved-data flags for ``run`` and ``compare``: where feeds come from, and the
NaN/inf warnings both print."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge.cli.app import console_warning
from edge.cli.text import terminal_text
from edge.errors import EdgeError
from edge.runtime.feeds import load_data_loader
from edge.saved_data import read_inputs
from edge.validate import non_finite_warning

__all__ = ["report_non_finite", "saved_feeds"]


def saved_feeds(load_inputs: Path | None, data_loader_script: str | None, iterations: int) -> list[dict[str, np.ndarray]] | None:
    """Feeds from --load-inputs or --data-loader-script (at most --iterations of a script's
    when --iterations is given), or None for seeded random inputs."""
    if load_inputs is not None and data_loader_script is not None:
        raise EdgeError("give --load-inputs or --data-loader-script, not both")
    if load_inputs is not None:
        return read_inputs(load_inputs)
    if data_loader_script is not None:
        return load_data_loader(data_loader_script, iterations if iterations > 1 else None)
    return None


def report_non_finite(iterations: Sequence[dict[str, np.ndarray]], precision: str) -> int:
    """Warn once per output and iteration that holds NaN or inf; return how many did."""
    found = 0
    for index, outputs in enumerate(iterations):
        for name, array in outputs.items():
            warning = non_finite_warning(name, array, precision)
            if warning:
                found += 1
                where = f" (iteration {index})" if len(iterations) > 1 else ""
                console_warning(terminal_text(warning + where))
    return found
