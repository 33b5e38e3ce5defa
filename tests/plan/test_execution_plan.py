"""The execution plan drives execution: segments, transfers, per-space memory, tactics.

A fake device (tests/plan/fake_device.py) stands in for a GPU: it has its own memory space
and counts allocations, copies and launches, so these tests show without a GPU that a new
backend slots in as one registration plus a backend class.
"""

from __future__ import annotations

import json
import re

import numpy as np
import onnxruntime as ort
import pytest

import edge
from edge.kernels.autotune import TimingCache, TimingCacheError
from edge.plan import ExecutionPlan
from tests.models import resnet_block_cnn, random_feeds
from tests.plan.fake_device import NAME, OPS, install

DEVICE = install()


def _build(model, tmp_path=None, **config):
    config.setdefault("profile", "agx-orin-64gb")
    return edge.build(model.SerializeToString(), edge.BuilderConfig(**config))


@pytest.fixture(scope="module")
def model():
    return resnet_block_cnn()


@pytest.fixture(scope="module")
def feeds(model):
    return random_feeds(model)


@pytest.fixture(scope="module")
def reference(model, feeds):
    return ort.InferenceSession(model.SerializeToString()).run(None, feeds)


def test_gpu_layers_run_on_the_device_backend_with_transfers(model, feeds, reference):
    engine = _build(model, backends={"gpu": NAME})
    plan = engine.plan
    kernel_steps = [s for s in plan.steps if s.kind == "kernel"]
    on_device = [s for s in kernel_steps if s.backend == NAME]
    fell_back = [s for s in kernel_steps if s.fallback is not None]
    assert on_device and fell_back, "the model has ops the fake device lacks and ops it runs"
    assert all(s.op.split("::")[-1] in OPS + ("FusedConv",) for s in on_device)
    for step in fell_back:  # each says who refused it and why
        assert step.backend == "cpu" and step.device == "cpu"
        assert step.fallback["backend"] == NAME and step.fallback["code"] == "backend.no_kernel"
    transfers = [s for s in plan.steps if s.kind == "transfer"]
    assert transfers, "crossing memory spaces needs transfer steps"
    # every tensor a device step reads lives in the device's space, every host step's on the host
    for step in kernel_steps:
        space = "fake-device" if step.backend == NAME else "host"
        for name in step.inputs:
            if name in plan.spaces:
                assert plan.spaces[name] == space, (step.node, name)
    # segments alternate between the device and the host, boundaries named
    assert [s.backend for s in plan.segments] == [k for i, k in enumerate(s.backend for s in plan.segments) if i == 0 or k != plan.segments[i - 1].backend]
    assert any(seg.backend == NAME and seg.inputs and seg.outputs for seg in plan.segments)

    DEVICE.reset()
    context = engine.create_context()
    assert DEVICE.allocations == [engine.build["memory"]["spaces"]["fake-device"]["arena_bytes"]]
    outputs = context.run(feeds)
    np.testing.assert_allclose(list(outputs.values())[0], reference[0], rtol=1e-4, atol=1e-5)
    copies_in = sum(1 for s in transfers if plan.spaces[s.outputs[0]] != "host")
    assert (DEVICE.copies_in, DEVICE.copies_out) == (copies_in, len(transfers) - copies_in)
    assert DEVICE.launches == len(on_device)
    launched = DEVICE.launches
    context.run(feeds)  # a second run allocates nothing and prepares nothing
    assert len(DEVICE.allocations) == 1 and DEVICE.launches == 2 * launched


def test_plan_round_trips_through_the_engine_file(model, feeds, tmp_path):
    engine = _build(model, backends={"gpu": NAME})
    path = tmp_path / "m.engine"
    engine.save(path)
    loaded = edge.load(path)
    assert loaded.plan.to_dict() == engine.plan.to_dict()
    assert isinstance(ExecutionPlan.from_dict(json.loads(json.dumps(engine.plan.to_dict()))), ExecutionPlan)
    a = list(engine.create_context().run(feeds).values())[0]
    b = list(loaded.create_context().run(feeds).values())[0]
    np.testing.assert_array_equal(a, b)


def test_two_contexts_have_their_own_device_memory(model, feeds):
    engine = _build(model, backends={"gpu": NAME})
    DEVICE.reset()
    first, second = engine.create_context(), engine.create_context()
    assert len(DEVICE.allocations) == 2
    other = {k: v + 1 for k, v in feeds.items()}
    a1 = list(first.run(feeds).values())[0]
    b1 = list(second.run(other).values())[0]
    assert not np.allclose(a1, b1)
    np.testing.assert_array_equal(list(first.run(feeds).values())[0], a1)


def test_dla_segments_match_the_partition_report(feeds):
    model = resnet_block_cnn()
    engine = _build(model, precision="fp16", dla_core=0, gpu_fallback=True)
    plan = engine.plan
    report = engine.graph.meta["partition"]
    dla_segments = [s for s in plan.segments if s.device == "dla"]
    assert len(dla_segments) == len(report["subgraphs"]) > 0
    for segment, subgraph in zip(dla_segments, report["subgraphs"]):
        layers = [plan.steps[i].node for i in range(*segment.steps) if plan.steps[i].kind == "kernel"]
        assert layers == subgraph["layers"]
        assert sorted(segment.inputs) == sorted(subgraph["inputs"])
        assert segment.emulated and segment.backend == "cpu"
    # off-device the plan runs with DLA/GPU segments on the emulating CPU backend: same numbers
    # as the engine built without segments (layer metadata drives the emulation either way)
    out = list(engine.create_context().run(feeds).values())[0]
    assert np.isfinite(out).all()


def test_tactics_are_timed_cached_and_recorded(model, tmp_path):
    cache_file = tmp_path / "timing.cache"
    first = _build(model, backends={"gpu": NAME}, timing_cache=cache_file)
    tactics = first.build["tactics"]
    assert tactics["timed"] > 0 and tactics["timings"] == 2 * tactics["timed"]
    slowest = tactics["slowest"]  # where the build's timing went, longest first
    assert 0 < len(slowest) <= 5 and [e["seconds"] for e in slowest] == sorted((e["seconds"] for e in slowest), reverse=True)
    assert {e["node"] for e in slowest} <= {s.node for s in first.plan.steps} and tactics["seconds"] >= slowest[0]["seconds"]
    chosen = [s.tactic for s in first.plan.steps if s.backend == NAME and s.kind == "kernel"]
    assert all(t is not None and t.name in ("plain", "other") for t in chosen)
    again = _build(model, backends={"gpu": NAME}, timing_cache=cache_file)
    assert again.build["tactics"]["timings"] == 0 and again.build["tactics"]["cached"] == tactics["timed"]
    assert [s.tactic for s in again.plan.steps] == [s.tactic for s in first.plan.steps]
    deep = _build(model, backends={"gpu": NAME}, optimization_level=4)  # also times the min_level 4 variant
    assert deep.build["tactics"]["timings"] == 3 * deep.build["tactics"]["timed"]
    level0 = _build(model, backends={"gpu": NAME}, optimization_level=0)
    assert level0.build["tactics"]["timings"] == 0
    assert all(s.tactic.name == "plain" for s in level0.plan.steps if s.backend == NAME and s.kind == "kernel")


def test_device_tactics_are_checked_against_the_cpu_reference(model):
    """A wrong tactic never wins, even the heuristic's first one; when every candidate is
    wrong the build stops with one line naming the node."""
    try:
        DEVICE.wrong = {"plain"}
        engine = _build(model, backends={"gpu": NAME})
        chosen = {s.tactic.name for s in engine.plan.steps if s.backend == NAME and s.kind == "kernel"}
        assert chosen == {"other"} and engine.build["tactics"]["timed"] > 0
        DEVICE.wrong = {"plain", "other"}
        with pytest.raises(edge.EdgeError, match=r"^node '.+' \(\w+\): none of its 2 fake tactics computes what the CPU reference does"):
            _build(model, backends={"gpu": NAME})
    finally:
        DEVICE.wrong = set()


@pytest.mark.parametrize("faster", ["fp16", "int8"])
def test_int8_layers_run_fp16_where_that_is_faster_unless_pinned(model, tmp_path, faster):
    """A build's INT8 permits INT8 kernels, as TensorRT's flag does: a device layer whose FP16
    tactics time faster runs FP16, says so in its note and the build's warnings, and a
    ``*:int8`` pin keeps every calibrated layer INT8."""
    np.save(tmp_path / "batch.npy", np.random.default_rng(3).standard_normal((4, 3, 16, 16)).astype(np.float32))
    slower = "int8" if faster == "fp16" else "fp16"
    try:
        DEVICE.seconds = {faster: 1e-4, slower: 1e-3}
        engine = _build(model, backends={"gpu": NAME}, precision="int8", calib_data=tmp_path)
        device_steps = [s for s in engine.plan.steps if s.backend == NAME and s.kind == "kernel"]
        nodes = {n.name: n for n in engine.graph.nodes}
        switched = engine.build["tactics"]["int8_faster_in_fp16"]
        if faster == "fp16":
            assert device_steps and all(s.precision == "fp16" for s in device_steps)
            assert {e["node"] for e in switched} == {s.node for s in device_steps}
            assert all(e["fp16_ms"] < e["int8_ms"] for e in switched)
            assert all(nodes[s.node].meta["precision"] == "fp16" and nodes[s.node].meta["precision_note"].startswith("INT8 allowed, FP16 chosen") for s in device_steps)
            assert any(w.startswith(f"{len(switched)} INT8 layer(s) run FP16") for w in engine.build["warnings"])
            assert "int8" not in engine.build["layer_precisions"] or engine.build["layer_precisions"]["int8"] < len(device_steps)
        else:
            assert any(s.precision == "int8" for s in device_steps) and switched == []
        pinned = _build(model, backends={"gpu": NAME}, precision="int8", calib_data=tmp_path, layer_precisions={"*": "int8"})
        assert pinned.build["tactics"]["int8_faster_in_fp16"] == []
        assert {s.precision for s in pinned.plan.steps if s.backend == NAME and s.kind == "kernel"} >= {"int8"}
    finally:
        DEVICE.seconds = {}


def test_timing_cache_from_another_device_or_format_is_ignored_with_a_note(model, tmp_path):
    cache_file = tmp_path / "timing.cache"
    _build(model, backends={"gpu": NAME}, timing_cache=cache_file)
    data = json.loads(cache_file.read_text())
    (key,) = [k for k in data["devices"] if k.startswith(NAME)]
    data["devices"]["fake:elsewhere"] = data["devices"].pop(key)
    data["entries"]["fake:elsewhere"] = data["entries"].pop(key)
    cache_file.write_text(json.dumps(data))
    other = _build(model, backends={"gpu": NAME}, timing_cache=cache_file)
    assert other.build["tactics"]["timings"] > 0
    assert any("no timings for this fake device" in n for n in other.build["tactics"]["notes"])
    data["format_version"] = 99
    cache_file.write_text(json.dumps(data))
    newer = _build(model, backends={"gpu": NAME}, timing_cache=cache_file)
    assert newer.build["tactics"]["timings"] > 0 and "format 99" in newer.build["tactics"]["notes"][0]


def test_corrupted_timing_cache_is_a_clear_error(tmp_path):
    broken = tmp_path / "timing.cache"
    broken.write_text("{not json")
    with pytest.raises(TimingCacheError, match="corrupted"):
        TimingCache.load(broken)
    broken.write_text(json.dumps({"format_version": 1, "devices": [], "entries": {}}))
    with pytest.raises(TimingCacheError, match="corrupted"):
        TimingCache.load(broken)


def test_unknown_backend_is_a_one_line_error(model):
    with pytest.raises(edge.errors.EdgeError, match="no backend named 'nope'") as refused:
        _build(model, backends={"gpu": "nope"})
    known = re.search(r"\(known: (.*)\)", str(refused.value)).group(1).split(", ")
    assert {"cpu", "cuda", "reference", "tensorrt"} <= set(known)  # every shipped backend, TensorRT's too
