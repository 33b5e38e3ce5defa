"""The CUDA backend: NVRTC-compiled kernels run through the CUDA driver API.

Importing this package registers the cuda kernels only (it needs neither cuda-bindings nor a
GPU, so builds can plan for the GPU anywhere); ``create_backend()`` opens the GPU and raises
``BackendUnavailable`` naming what is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.kernels.cuda import (  # noqa: F401  (imported for registration)
    elementwise,
    linalg,
    nn,
    normalization,
    reduce,
    tensor,
)
from edge.kernels.cuda import int8  # noqa: F401,E402  (after the float kernels it is preferred to: the registry prefers the last registered)

if TYPE_CHECKING:
    from edge.kernels.cuda.backend import CudaBackend

__all__ = ["create_backend"]


def create_backend(ordinal: int = 0) -> CudaBackend:
    """The backend on GPU ``ordinal``.

    Raises:
        BackendUnavailable: no cuda-bindings, no NVIDIA driver, or no GPU (one line saying which).
    """
    from edge.kernels.cuda.backend import CudaBackend

    return CudaBackend(ordinal)
