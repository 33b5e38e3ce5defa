"""Shared fixtures: the light models shipped in the onnx wheel, onnxruntime as an oracle."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = sorted(p.stem.removeprefix("light_") for p in LIGHT_DIR.glob("light_*.onnx"))


@functools.cache
def gpu_missing() -> str | None:
    """Why `gpu`-marked tests cannot run here, or None when they can: they need an NVIDIA GPU
    that NVML sees through nvidia-ml-py (the telemetry extra, which dev installs)."""
    if os.environ.get("EDGE_DISABLE_GPU") is not None:
        return "EDGE_DISABLE_GPU is set"
    try:
        import pynvml
    except ImportError:
        return "needs nvidia-ml-py to find the GPU (pip install 'edgetrt[telemetry]')"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return f"needs an NVIDIA GPU: NVML does not start ({exc}), so no driver or no GPU here"
    try:
        count = pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()
    return None if count > 0 else "needs an NVIDIA GPU: NVML sees none"


def has_gpu() -> bool:
    """True when an NVIDIA GPU is usable through NVML."""
    return gpu_missing() is None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = gpu_missing()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def ort_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run a model with onnxruntime's CPU provider (the independent oracle)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float, what: str = "") -> None:
    """allclose with a message giving the worst relative error."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)
