"""FP16 range check at build: the layers whose values, computed in FP32, do not fit in FP16.

FP16 holds magnitudes up to 65504; a larger activation becomes inf in an FP16 layer and NaN
further on, silently. The builder runs the optimized FP32 graph once — on the first
calibration batch when there is one, else on seeded random inputs, as ``edgetrt run`` makes
them — records each layer's largest finite |output|, and names the layers that will run FP16
and go past the limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edge.engine import TensorSpec
from edge.ir import Graph, Node
from edge.runtime.inputs import random_inputs

__all__ = ["FP16_MAX", "fp16_overflow_warning", "layer_peaks", "probe_inputs"]

FP16_MAX = float(np.finfo(np.float16).max)


def probe_inputs(graph: Graph, first_batch: list[np.ndarray] | None, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """Inputs for the range run, in ``graph.inputs`` order (the first calibration batch if
    given, else seeded random inputs), and what they are."""
    if first_batch:
        return list(first_batch), "the first calibration batch"
    specs = [TensorSpec(v.name, np.dtype(v.dtype), tuple(v.shape or ())) for v in graph.inputs]
    feeds = random_inputs(specs, seed)
    return [feeds[v.name] for v in graph.inputs], f"seeded random inputs (seed {seed})"


def layer_peaks(graph: Graph, inputs: list[np.ndarray]) -> dict[str, float]:
    """Largest finite |value| of each layer's float outputs in one FP32 run, by layer name."""
    # imported here: the runtime imports edge.precision, which this module sits beside
    from edge.runtime.interpreter import Schedule, Step

    peaks: dict[str, float] = {}

    def record(step: Step, results: list[np.ndarray]) -> None:
        for array in results:
            array = np.asarray(array)
            if array.size and np.issubdtype(array.dtype, np.floating):
                finite = np.abs(array[np.isfinite(array)])
                if finite.size:
                    peaks[step.node.name] = max(peaks.get(step.node.name, 0.0), float(finite.max()))

    with np.errstate(all="ignore"):
        Schedule(graph).run(inputs, on_step=record)
    return peaks


def fp16_overflow_warning(nodes: Sequence[Node], peaks: Mapping[str, float], source: str) -> str | None:
    """One line naming the FP16 layers whose peak exceeds FP16's range, or None."""
    over = [(node, peaks[node.name]) for node in nodes if node.meta.get("precision") == "fp16" and peaks.get(node.name, 0.0) > FP16_MAX]
    if not over:
        return None
    shown = "; ".join(
        f"'{node.name}' ({node.op_type}, from ONNX {', '.join(node.origin) or node.name}) reaches {peak:.3g}" for node, peak in over[:3]
    )
    more = f" and {len(over) - 3} more" if len(over) > 3 else ""
    return (
        f"FP16 overflow on {source}: {len(over)} FP16 layer(s) exceed FP16's range of ±{FP16_MAX:g}: {shown}{more}; "
        "their outputs become inf (NaN further on): build in FP32 or rescale the model"
    )
