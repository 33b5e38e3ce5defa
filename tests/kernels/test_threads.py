"""The intra-op thread count: what it sets, what it refuses, the CLI flag that sets it, and
the pooled routines it splits, checked against onnxruntime and from several threads at once."""

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
from edge.kernels import threads
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
    saved = threads._count
    with threadpool_limits(limits=None):  # restores the pool's size on exit
        yield
    threads._count = saved
    threads.bind_calling_thread()


def test_with_the_compiled_pool_the_count_sizes_it_and_blas_gets_one_thread() -> None:
    """The compiled kernels call BLAS from inside numba's pool: BLAS must not spawn its own
    threads there (nested pools ran 10x slower), and the kernels split into the count."""
    pytest.importorskip("numba")
    import numba

    import edge.kernels.cpu.jit  # noqa: F401  (loading it hands the threads to its pool)
    from edge.kernels.threads import kernel_parts

    edge.set_intra_op_threads(1)
    assert edge.intra_op_threads() == 1 and kernel_parts() == 1 and _blas_threads() == {1}
    if CORES >= 2:
        edge.set_intra_op_threads(2)
        assert edge.intra_op_threads() == 2 and kernel_parts() == 2
        assert _blas_threads() == {1} and numba.get_num_threads() == 2


def test_without_the_compiled_kernels_the_count_sizes_the_blas_pool() -> None:
    script = (
        "import edge; edge.set_intra_op_threads(2)\n"
        "from threadpoolctl import threadpool_info\n"
        "pools = {p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'}\n"
        "from edge.kernels.threads import kernel_parts\n"
        "print(pools, edge.intra_op_threads(), kernel_parts())"
    )
    env = {k: v for k, v in os.environ.items() if k not in BLAS_VARIABLES} | {"EDGETRT_JIT": "0"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True).stdout.split()
    assert out == ["{2}", "2", "1"], out


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


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_bad_counts_are_refused_with_the_value(bad: object) -> None:
    with pytest.raises(ValueError, match=f"positive integer, got {bad!r}"):
        edge.set_intra_op_threads(bad)  # type: ignore[arg-type]


def test_results_do_not_depend_on_the_thread_count() -> None:
    model = small_model()
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    context = edge.build(model.SerializeToString()).create_context()
    outputs = []
    for count in (1, max(2, CORES)):
        edge.set_intra_op_threads(count)
        outputs.append(context.run({"x": x})["y"])
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-6)


def test_cli_threads_flag(tmp_path: Path) -> None:
    model, engine = tmp_path / "small.onnx", tmp_path / "small.engine"
    onnx.save(small_model(), model)
    assert main(["build", str(model), "-o", str(engine)]) == 0
    assert main(["run", str(engine), "--threads", "1"]) == 0
    assert edge.intra_op_threads() == 1


def _conv_net() -> onnx.ModelProto:
    """Every pooled routine: Winograd and pointwise convs, a strided conv on the column
    path, grouped and depthwise convs, pools, BatchNormalization, and a transposed-weight
    Gemm on one row."""
    rng = np.random.default_rng(3)

    def const(name: str, *shape: int) -> onnx.TensorProto:
        return onnx.numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name)

    nodes = [
        onnx.helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),  # 48 -> 40, Winograd
        onnx.helper.make_node("Relu", ["c1"], ["r1"]),
        onnx.helper.make_node("Conv", ["r1", "w2"], ["c2"]),  # pointwise 40 -> 24
        onnx.helper.make_node("Conv", ["c2", "w3"], ["c3"], strides=[2, 2], pads=[1, 1, 1, 1]),  # columns
        onnx.helper.make_node("Conv", ["c3", "w4"], ["c4"], group=3),  # grouped 1x1: 3 blocks on 2 parts
        onnx.helper.make_node("Conv", ["c4", "w5"], ["c5"], group=24, pads=[1, 1, 1, 1]),  # depthwise
        onnx.helper.make_node("MaxPool", ["c5"], ["p1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        onnx.helper.make_node("AveragePool", ["p1"], ["p2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        onnx.helper.make_node("BatchNormalization", ["p2", "s", "sh", "m", "v"], ["bn"]),
        onnx.helper.make_node("Flatten", ["bn"], ["f"]),
        onnx.helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1),
    ]
    weights = [
        const("w1", 40, 48, 3, 3), const("b1", 40), const("w2", 24, 40, 1, 1), const("w3", 24, 24, 3, 3),
        const("w4", 24, 8, 1, 1), const("w5", 24, 1, 3, 3), const("s", 24), const("sh", 24), const("m", 24),
        onnx.numpy_helper.from_array(np.abs(rng.standard_normal(24)).astype(np.float32) + 0.5, "v"),
        const("wf", 10, 24 * 7 * 7), const("bf", 10),
    ]
    graph = onnx.helper.make_graph(
        nodes, "pooled", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 48, 13, 13])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], weights,
    )
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])


@pytest.fixture
def split_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Split every call over the parts, however little work it has: the test models are small."""
    jit = pytest.importorskip("edge.kernels.cpu.jit")
    monkeypatch.setattr(jit, "_PART_WORK", 1)


@pytest.mark.skipif(CORES < 2, reason="needs two cores for a pool of two")
def test_little_work_runs_on_one_part(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass too small to repay a pool launch runs its serial build; a large one does not."""
    jit = pytest.importorskip("edge.kernels.cpu.jit")
    serial_calls = []
    routine = jit.conv_epilogue
    serial = routine.serial  # compiled at first use
    monkeypatch.setattr(routine, "_serial", lambda *args: serial_calls.append(args[-1]) or serial(*args))
    edge.set_intra_op_threads(2)
    no_bias, no_residual = np.empty((0, 0), np.float32), np.empty((0, 0, 0, 0), np.float32)
    small = np.ones((1, 4, 8, 8), np.float32)
    large = np.ones((1, 64, 64, 64), np.float32)
    for y in (small, large):
        routine(no_bias, no_residual, 1, 0.0, 0.0, y)
    assert serial_calls == [1]


@pytest.mark.skipif(CORES < 2, reason="needs two cores for a pool of two")
@pytest.mark.usefixtures("split_any_work")
def test_pooled_routines_match_onnxruntime_on_one_and_two_threads() -> None:
    ort = pytest.importorskip("onnxruntime")
    model = _conv_net()
    x = np.random.default_rng(4).standard_normal((1, 48, 13, 13)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    context = edge.build(model.SerializeToString()).create_context()
    for count in (1, 2):
        edge.set_intra_op_threads(count)
        np.testing.assert_allclose(context.run({"x": x})["y"], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(CORES < 2, reason="needs two cores for a pool of two")
@pytest.mark.usefixtures("split_any_work")
def test_threads_may_run_engines_at_once_on_the_pool() -> None:
    """Serving instances and bench streams launch pooled routines from several threads."""
    from concurrent.futures import ThreadPoolExecutor

    model = _conv_net()
    engine = edge.build(model.SerializeToString())
    inputs = [np.random.default_rng(i).standard_normal((1, 48, 13, 13)).astype(np.float32) for i in range(4)]
    edge.set_intra_op_threads(2)
    alone = [engine.create_context().run({"x": x})["y"] for x in inputs]

    def run(i: int) -> np.ndarray:
        context = engine.create_context()
        return [context.run({"x": inputs[i]})["y"] for _ in range(5)][-1]

    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(run, range(4)))
    for a, b in zip(alone, together):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.skipif(CORES < 2, reason="needs two cores for a pool of two")
@pytest.mark.usefixtures("split_any_work")
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool", "Conv"])
def test_fewer_channels_than_parts(op: str) -> None:
    """A one-channel layer on two parts: one part of each pooled routine it runs (the pool's
    window loop, or the conv's phase images, column gather and output pass) has nothing to do."""
    rng = np.random.default_rng(5)
    inputs, weights = ["x"], []
    attributes: dict[str, object] = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    if op == "Conv":
        inputs.append("w")
        weights.append(onnx.numpy_helper.from_array(rng.standard_normal((1, 1, 3, 3)).astype(np.float32), "w"))
        attributes["group"] = 1
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node(op, inputs, ["y"], **attributes)], "one",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 6, 6])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], weights,
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    x = rng.standard_normal((1, 1, 6, 6)).astype(np.float32)
    ort = pytest.importorskip("onnxruntime")
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    edge.set_intra_op_threads(2)
    np.testing.assert_allclose(edge.build(model.SerializeToString()).create_context().run({"x": x})["y"], expected, rtol=1e-5, atol=1e-6)
