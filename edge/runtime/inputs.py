"""Seeded random input tensors for engine inputs (``edgetrt run``, ``bench``, ``profile``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.engine import TensorSpec
from edge.errors import InputError

__all__ = ["random_inputs"]


def random_inputs(specs: Sequence[TensorSpec], seed: int, symbolic: int = 1) -> dict[str, np.ndarray]:
    """Seeded random arrays for engine inputs; symbolic dims take ``symbolic``."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        shape = tuple(d if isinstance(d, int) else symbolic for d in spec.shape)
        if np.issubdtype(spec.dtype, np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype == np.bool_:
            feeds[spec.name] = rng.random(shape) < 0.5
        elif np.issubdtype(spec.dtype, np.integer):
            feeds[spec.name] = rng.integers(0, 10, shape).astype(spec.dtype)
        else:
            raise InputError(f"input '{spec.name}' has dtype {spec.dtype}: give it with --input")
    return feeds
