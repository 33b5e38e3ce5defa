"""Output sanity checks: NaN and inf in an engine's outputs (Polygraphy's ``--validate``).

An FP16 layer whose value passes ±65504 writes inf, and inf - inf downstream is NaN; such a
run must not look like a good one. :func:`non_finite_warning` words the finding once for
``run`` and ``compare``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["non_finite_warning"]


def non_finite_warning(name: str, array: np.ndarray, precision: str) -> str | None:
    """One line counting the NaN and inf values of output ``name``, or None when all are finite."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating) or array.size == 0:
        return None
    nan = int(np.count_nonzero(np.isnan(array)))
    inf = int(np.count_nonzero(np.isinf(array)))
    if not nan and not inf:
        return None
    why = " (FP16 overflows past ±65504: see the FP16 overflow warning of `edgetrt build`)" if precision != "fp32" else ""
    return f"output '{name}' has {nan} NaN and {inf} inf of {array.size} values{why}"
