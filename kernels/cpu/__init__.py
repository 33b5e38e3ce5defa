"""numpy reference kernels: the numerical oracle every other backend is checked against.

Importing this package registers every CPU kernel; each module owns one family of ops.
"""

from edge.kernels.cpu import (  # noqa: F401  (imported for registration)
    elementwise,
    fused,
    linalg,
    nn,
    normalization,
    quant,
    int8,
    reduce,
    indexing,
    tensor,
    resize,
    recurrent,
    control,
    sequence,
    loss,
    signal,
    strings,
    ml,
    training,
    image,
    sampling,
    selection,
    transformer,
    stateful,
    detection,
)


def create_backend():  # -> edge.kernels.cpu.backend.HostBackend
    """The fast CPU backend (numba kernels, the register-tile GEMM, threads)."""
    from edge.kernels.cpu.backend import HostBackend

    return HostBackend("cpu")
