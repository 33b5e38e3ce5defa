"""The intra-op thread count: what it sets, what it refuses, and the CLI flag that sets it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import edge
from edge.cli import main
from tests.test_engine_file import small_model


def _blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@pytest.fixture(autouse=True)
def _restore(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Put the BLAS pool's size and the thread variables back as they were: later tests must
    not inherit one thread."""
    for variable in BLAS_VARIABLES:  # monkeypatch undoes what set_intra_op_threads writes
        if variable in os.environ:
            monkeypatch.setenv(variable, os.environ[variable])
        else:
            monkeypatch.delenv(variable, raising=False)
    with threadpool_limits(limits=None):  # restores the pool's size on exit
        yield


def test_setting_caps_the_blas_pool_and_is_reported() -> None:
    edge.set_intra_op_threads(1)
    assert edge.intra_op_threads() == 1
    assert _blas_threads() == {1}
    if CORES >= 2:
        edge.set_intra_op_threads(2)
        assert _blas_threads() == {2} and edge.intra_op_threads() == 2


def test_a_blas_library_loaded_later_gets_the_count_too() -> None:
    """numba's first compile loads scipy's own OpenBLAS after the count was set (a fresh
    interpreter shows it); that pool must not keep its default size."""
    script = (
        "import edge; edge.set_intra_op_threads(1); import edge.kernels.cpu.jit\n"
        "from threadpoolctl import threadpool_info\n"
        "pools = [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']\n"
        "print(len(pools), set(pools), edge.intra_op_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k not in BLAS_VARIABLES}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True).stdout.split()
    assert out[1:] == ["{1}", "1"], out


def test_the_count_reported_is_the_blas_pools_whoever_set_it() -> None:
    threadpool_limits(limits=1, user_api="blas")
    assert edge.intra_op_threads() == 1


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_bad_counts_are_refused_with_the_value(bad: object) -> None:
    with pytest.raises(ValueError, match=f"positive integer, got {bad!r}"):
        edge.set_intra_op_threads(bad)  # type: ignore[arg-type]


def test_results_do_not_depend_on_the_thread_count() -> None:
    model = small_model()
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    context = edge.build(model.SerializeToString()).create_context()
    outputs = []
    for count in (1, CORES):
        edge.set_intra_op_threads(count)
        outputs.append(context.run({"x": x})["y"])
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-6)


def test_cli_threads_flag(tmp_path: Path) -> None:
    model, engine = tmp_path / "small.onnx", tmp_path / "small.engine"
    onnx.save(small_model(), model)
    assert main(["build", str(model), "-o", str(engine)]) == 0
    assert main(["run", str(engine), "--threads", "1"]) == 0
    assert _blas_threads() == {1} and edge.intra_op_threads() == 1
