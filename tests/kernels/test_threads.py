"""The intra-op thread count: what it sets, what it refuses, and the CLI flag that sets it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import edge
from edge.cli import main
from edge.kernels import threads
from tests.test_engine_file import small_model


def _blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    """Put the process-wide setting back as it was (other tests time or thread nothing, but
    must not inherit a one-thread BLAS pool)."""
    saved = threads._threads
    with threadpool_limits(limits=None):  # restores the BLAS pool's size on exit
        yield
    threads._threads = saved


def test_setting_caps_the_blas_pool_and_is_reported() -> None:
    edge.set_intra_op_threads(1)
    assert edge.intra_op_threads() == 1
    assert _blas_threads() == {1}
    if threads.available_cores() >= 2:
        edge.set_intra_op_threads(2)
        assert _blas_threads() == {2}


def test_the_default_is_every_available_core() -> None:
    threads._threads = None
    assert edge.intra_op_threads() == threads.available_cores() >= 1


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_bad_counts_are_refused_with_the_value(bad: object) -> None:
    with pytest.raises(ValueError, match=f"positive integer, got {bad!r}"):
        edge.set_intra_op_threads(bad)  # type: ignore[arg-type]


def test_results_do_not_depend_on_the_thread_count() -> None:
    model = small_model()
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    context = edge.build(model.SerializeToString()).create_context()
    outputs = []
    for count in (1, max(1, threads.available_cores())):
        edge.set_intra_op_threads(count)
        outputs.append(context.run({"x": x})["y"])
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-6)


def test_cli_threads_flag(tmp_path: Path) -> None:
    model, engine = tmp_path / "small.onnx", tmp_path / "small.engine"
    onnx.save(small_model(), model)
    assert main(["build", str(model), "-o", str(engine)]) == 0
    assert main(["run", str(engine), "--threads", "1"]) == 0
    assert _blas_threads() == {1} and edge.intra_op_threads() == 1
