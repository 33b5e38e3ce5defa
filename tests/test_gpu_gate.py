"""The `gpu` marker's gate (tests/conftest.py): GPU tests run wherever NVML sees a GPU through
nvidia-ml-py (which the dev extra installs), and a skip says what is missing."""

from __future__ import annotations

import sys
import types

import pytest

from tests.conftest import gpu_missing

check = gpu_missing.__wrapped__  # uncached, so each case sees its own environment


def test_gate_needs_nothing_but_nvidia_ml_py(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_DISABLE_GPU", raising=False)
    monkeypatch.setitem(sys.modules, "cuda", None)  # cuda-python absent: no extra installs it
    calls = []
    fake = types.SimpleNamespace(
        NVMLError=RuntimeError,
        nvmlInit=lambda: calls.append("init"),
        nvmlDeviceGetCount=lambda: 1,
        nvmlShutdown=lambda: calls.append("shutdown"),
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert check() is None and calls == ["init", "shutdown"]
    fake.nvmlDeviceGetCount = lambda: 0
    assert check() == "needs an NVIDIA GPU: NVML sees none"


def test_skip_reasons_name_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_DISABLE_GPU", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert check() == "needs nvidia-ml-py to find the GPU (pip install 'edgetrt[telemetry]')"

    def no_driver() -> None:
        raise RuntimeError("NVML Shared Library Not Found")

    monkeypatch.setitem(sys.modules, "pynvml", types.SimpleNamespace(NVMLError=RuntimeError, nvmlInit=no_driver))
    assert check() == "needs an NVIDIA GPU: NVML does not start (NVML Shared Library Not Found), so no driver or no GPU here"
    monkeypatch.setenv("EDGE_DISABLE_GPU", "1")
    assert check() == "EDGE_DISABLE_GPU is set"
