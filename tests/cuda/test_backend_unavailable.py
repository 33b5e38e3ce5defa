"""GPU-free: the cuda package imports anywhere; asking for the backend without a GPU, a
driver or cuda-bindings is a one-line BackendUnavailable naming what is missing."""

from __future__ import annotations

import sys

import pytest

from edge.kernels import registry
from edge.kernels.backend import BackendUnavailable, get_backend


def _gpu_present() -> bool:
    try:
        from edge.kernels.cuda import driver

        driver.open_device()
        return True
    except BackendUnavailable:
        return False


def test_import_registers_kernels_without_a_gpu():
    import edge.kernels.cuda  # noqa: F401

    assert registry.lookup("Conv", backend="cuda", precision="fp16") is not None
    assert registry.lookup("FusedConv", "edgetrt", backend="cuda", precision="fp32") is not None
    assert registry.lookup("Conv", backend="cuda", precision="int8").name == "int8.imma_conv"


@pytest.mark.skipif(_gpu_present(), reason="this machine has a GPU")
def test_no_gpu_is_a_clear_one_line_error():
    from edge.kernels.cuda import create_backend

    with pytest.raises(BackendUnavailable) as caught:
        create_backend()
    message = str(caught.value)
    assert "\n" not in message
    assert "no NVIDIA driver" in message or "no CUDA GPU" in message


def test_missing_cuda_bindings_names_the_package(monkeypatch):
    from edge.kernels.cuda import driver

    monkeypatch.setattr(driver, "_DRIVER", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings.driver", None)
    with pytest.raises(BackendUnavailable, match="cuda-bindings"):
        driver.open_device()


@pytest.mark.skipif(_gpu_present(), reason="this machine has a GPU")
def test_get_backend_by_name_raises_the_same():
    with pytest.raises(BackendUnavailable):
        get_backend("cuda")
