"""Execution contexts: several on one engine share weights, own their arenas, and run concurrently."""

from __future__ import annotations

import threading

import numpy as np
import onnx

import edge
from tests.models import random_feeds, resnet_block_cnn
from tests.runtime.models import dynamic_encoder

THREADS, RUNS = 4, 6


def _hammer(engine, feeds_per_thread) -> list[list[dict[str, np.ndarray]]]:
    """THREADS threads, one context each, RUNS runs each over that thread's inputs (started together)."""
    results: list[list[dict[str, np.ndarray]]] = [[] for _ in feeds_per_thread]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(feeds_per_thread))

    def work(index: int) -> None:
        try:
            context = engine.create_context()
            barrier.wait()
            for feeds in feeds_per_thread[index]:
                results[index].append(context.run(feeds))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(feeds_per_thread))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def test_static_engine_threads_match_the_single_threaded_oracle(tmp_path) -> None:
    model = resnet_block_cnn(batch=2)
    path = tmp_path / "cnn.engine"
    edge.build(model.SerializeToString()).save(path)
    engine = edge.load(path)
    base = random_feeds(model, seed=0)
    feeds = [[{k: v * (1 + 0.1 * t) + 0.01 * r for k, v in base.items()} for r in range(RUNS)] for t in range(THREADS)]
    oracle = engine.create_context()
    expected = [[oracle.run(f) for f in per_thread] for per_thread in feeds]
    got = _hammer(engine, feeds)
    for t in range(THREADS):
        for r in range(RUNS):
            for name, array in expected[t][r].items():
                np.testing.assert_array_equal(got[t][r][name], array, err_msg=f"thread {t} run {r} {name}")
    # different inputs really gave different outputs (a shared arena would mix them up)
    first_output = engine.outputs[0].name
    assert not np.array_equal(expected[0][0][first_output], expected[1][0][first_output])


def test_contexts_share_weights_but_not_arenas(tmp_path) -> None:
    model = resnet_block_cnn()
    path = tmp_path / "cnn.engine"
    edge.build(model.SerializeToString()).save(path)
    engine = edge.load(path)
    first, second = engine.create_context(), engine.create_context()
    feeds = random_feeds(model)
    first.run(feeds)
    second.run(feeds)
    assert not np.may_share_memory(first.arena, second.arena)
    weights = [v.const for v in engine.graph.constants() if v.const.size > 16]
    assert weights and all(not w.flags.writeable for w in weights)  # read-only views of the engine file
    assert engine.schedule() is first._schedule is second._schedule


def test_dynamic_engine_threads_with_different_shapes_match_the_oracle() -> None:
    model = dynamic_encoder()
    profile = {"ids": ((1, 1), (2, 8), (8, 32)), "mask": ((1, 1), (2, 8), (8, 32))}
    engine = edge.build(model.SerializeToString(), edge.BuilderConfig(optimization_profiles=[profile]))
    rng = np.random.default_rng(0)
    feeds = []
    for t in range(THREADS):
        per_thread = []
        for r in range(RUNS):
            shape = (1 + (t + r) % 3, 4 + 7 * ((t * r) % 4))  # shapes repeat across threads: shared plan cache
            mask = np.ones(shape, np.float32)
            mask[:, shape[1] // 2 :] = rng.random((shape[0], shape[1] - shape[1] // 2)) < 0.5
            per_thread.append({"ids": rng.integers(0, 50, shape).astype(np.int64), "mask": mask})
        feeds.append(per_thread)
    oracle = engine.create_context()
    expected = [[oracle.run(f) for f in per_thread] for per_thread in feeds]
    fresh = edge.build(model.SerializeToString(), edge.BuilderConfig(optimization_profiles=[profile]))
    got = _hammer(fresh, feeds)  # a fresh engine: threads race to plan the same shapes
    for t in range(THREADS):
        for r in range(RUNS):
            for name, array in expected[t][r].items():
                np.testing.assert_array_equal(got[t][r][name], array, err_msg=f"thread {t} run {r} {name}")


def test_subgraph_schedules_are_compiled_with_their_schedule() -> None:
    """If/Loop bodies are compiled when the parent schedule is, so runs mutate nothing shared."""
    then_graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", "x"], ["y_then"])], "then", [], [onnx.helper.make_tensor_value_info("y_then", 1, [3])]
    )
    else_graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Neg", ["x"], ["y_else"])], "else", [], [onnx.helper.make_tensor_value_info("y_else", 1, [3])]
    )
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("If", ["c"], ["y"], then_branch=then_graph, else_branch=else_graph)],
        "branchy",
        [onnx.helper.make_tensor_value_info("c", onnx.TensorProto.BOOL, []), onnx.helper.make_tensor_value_info("x", 1, [3])],
        [onnx.helper.make_tensor_value_info("y", 1, [3])],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    engine = edge.build(model.SerializeToString())
    schedule = engine.schedule()
    assert len(schedule.subschedules) == 2
    x = np.arange(3, dtype=np.float32)
    context = engine.create_context()
    np.testing.assert_array_equal(context.run({"c": np.array(True), "x": x})["y"], 2 * x)
    np.testing.assert_array_equal(context.run({"c": np.array(False), "x": x})["y"], -x)
