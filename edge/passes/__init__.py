"""The graph optimizer: the default pass pipeline and ``optimize(graph)``.

Read PIPELINE top to bottom: quantization facts are captured before folding can erase them;
folding, cleanup and canonicalization give the fusion rules one spelling per computation;
recognition turns decomposed blocks into single ops before the epilogue fusions, so a
recognized GELU or SiLU can itself become a conv/gemm epilogue; BatchNorm and per-channel
constants fold into weights before bias/activation fusion looks at the ops; an average pool
moves behind the narrowing 1x1 conv after it before the conv takes its activation. The manager
repeats the whole list while any pass still changes the graph.
"""

from __future__ import annotations

from edge.ir import Graph
from edge.passes.canonicalize import canonicalize
from edge.passes.cse import eliminate_common_subexpressions
from edge.passes.dce import eliminate_dead_code
from edge.passes.fold_bn import fold_batchnorm
from edge.passes.fold_constants import fold_constants
from edge.passes.fuse_activation import fuse_activations
from edge.passes.fuse_matmul import fuse_matmul
from edge.passes.identity import remove_identities
from edge.passes.manager import OptimizeReport, Pass, PassError, PassStats, run_passes
from edge.passes.pool_order import move_pools_after_pointwise_convs
from edge.passes.qdq import fold_qdq
from edge.passes.recognize import recognize

__all__ = ["PIPELINE", "PORTABLE_PIPELINE", "optimize", "OptimizeReport", "Pass", "PassError", "PassStats", "run_passes"]

PIPELINE: list[Pass] = [
    Pass("qdq", fold_qdq, kind="fuse"),
    Pass("fold_constants", fold_constants),
    Pass("dce", eliminate_dead_code),
    Pass("identity", remove_identities),
    Pass("cse", eliminate_common_subexpressions, fixed_point=True),
    Pass("canonicalize", canonicalize),
    Pass("fold_constants", fold_constants),
    Pass("recognize", recognize, kind="fuse"),
    Pass("fold_bn", fold_batchnorm, kind="fuse"),
    Pass("fuse_matmul", fuse_matmul, kind="fuse"),
    Pass("pool_order", move_pools_after_pointwise_convs),
    Pass("identity", remove_identities),
    Pass("fuse_activation", fuse_activations, kind="fuse"),
    Pass("dce", eliminate_dead_code),
]
"""The default optimization pipeline, in order (a name may appear twice; stats add up)."""

PORTABLE_PIPELINE: list[Pass] = [p for p in PIPELINE if p.name not in ("qdq", "recognize", "fuse_activation")]
"""The passes whose output is standard ONNX at the model's own opset (no edgetrt fused ops, no
Q/DQ folding, no ops of newer opsets): what ``export-trt`` hands TensorRT, which fuses itself."""


def optimize(graph: Graph, verbose: bool = False, *, check: bool | None = None) -> OptimizeReport:
    """Optimize ``graph`` in place with :data:`PIPELINE`.

    Args:
        graph: the imported graph; its outputs keep their names, shapes and dtypes.
        verbose: print the per-pass table when done.
        check: verify the IR after every pass (default: when ``EDGE_DEBUG`` is set).

    Returns:
        Per-pass statistics (``report.format()`` renders the table).
    """
    report = run_passes(graph, PIPELINE, check=check)
    if verbose:
        print(report.format())
    return report
