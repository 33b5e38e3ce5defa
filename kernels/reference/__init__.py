"""The ``reference`` backend: plain, obviously correct numpy, the oracle every other backend
is tested against and that ``compare`` falls back to.

Its own kernels (``windows``: Conv as im2col + matmul, ConvTranspose, pools; ``dense``:
Gemm/MatMul as plain matmul, Softmax, BatchNormalization, ChannelShuffle and the fused
forms) replace the CPU kernels that take compiled, threaded or mode-switching paths, listed
in ``REIMPLEMENTED``. Every other CPU kernel is plain numpy already and is registered here
as it is (same function, versions and declarations, no tactics).
"""

from __future__ import annotations

import onnx

from edge.ir import EDGETRT_DOMAIN
from edge.kernels.backend import Backend
from edge.kernels.reference import dense, windows  # noqa: F401  (imported for registration)
from edge.kernels.reference.windows import BACKEND
from edge.kernels.registry import Kernel, lookup, register, supported_ops

__all__ = ["REIMPLEMENTED", "create_backend"]

REIMPLEMENTED = frozenset(
    {("", op) for op in ("Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool")}
    | {("", op) for op in ("Gemm", "MatMul", "Softmax", "LogSoftmax", "BatchNormalization")}
    | {(EDGETRT_DOMAIN, op) for op in ("FusedConv", "FusedConvTranspose", "FusedGemm", "FusedBatchNormalization", "ChannelShuffle")}
)
"""(domain, op) whose CPU kernels use the compiled kernels (numba, the thread pool, the
register-tile GEMM) or Conv's modes; the reference backend has its own for these."""


def _cpu_versions(op: str, domain: str) -> list[Kernel]:
    """Every registered version of a CPU kernel (lookup at each opset finds each ``since``)."""
    found = (lookup(op, domain, "cpu", opset) for opset in range(1, onnx.defs.onnx_opset_version() + 1))
    return list({id(k): k for k in found if k is not None}.values())


def _register_plain_cpu_kernels() -> None:
    for domain, ops in supported_ops("cpu").items():
        for op in sorted(ops):
            if (domain, op) in REIMPLEMENTED:
                continue
            for kernel in _cpu_versions(op, domain):
                register(
                    op,
                    backend=BACKEND,
                    domain=domain,
                    since=kernel.since,
                    precisions=kernel.precisions,
                    supports=kernel.supports,
                    inplace=kernel.inplace,
                    **kernel.meta,
                )(kernel.fn)


_register_plain_cpu_kernels()


def create_backend() -> Backend:
    """The reference backend: host memory, the CPU backend's launch semantics, these kernels."""
    from edge.kernels.cpu.backend import HostBackend

    return HostBackend(BACKEND)
