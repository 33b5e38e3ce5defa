"""The TensorRT backend: a whole network as one serialized TensorRT engine, run through TensorRT.

Importing this package registers the ``TensorRTEngine`` step only (it needs no TensorRT, so
engine files holding one can be checked and described anywhere); ``create_backend()`` imports
``tensorrt`` and opens the GPU through the CUDA backend (device memory and streams), raising
``BackendUnavailable`` naming what is missing and pointing to ``edgetrt export-trt``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.kernels.tensorrt import step  # noqa: F401  (imported for registration)
from edge.kernels.tensorrt.step import ENGINE_OP

if TYPE_CHECKING:
    from edge.kernels.tensorrt.backend import TensorRTBackend

__all__ = ["ENGINE_OP", "create_backend"]


def create_backend() -> TensorRTBackend:
    """The backend on this machine's TensorRT and GPU 0.

    Raises:
        BackendUnavailable: ``import tensorrt`` fails, or the CUDA backend cannot open a GPU.
    """
    from edge.kernels.backend import BackendUnavailable, get_backend
    from edge.kernels.tensorrt.backend import TensorRTBackend
    from edge.trt.builder import import_tensorrt

    trt = import_tensorrt()
    try:
        memory = get_backend("cuda")
    except BackendUnavailable as exc:
        raise BackendUnavailable(f"TensorRT {trt.__version__} imports, but its engines need the CUDA backend for device memory: {exc}") from None
    return TensorRTBackend(trt, memory)
