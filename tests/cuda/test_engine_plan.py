"""GPU-free: whole engines planned onto the CUDA backend (a stand-in device runs nothing but
checks every kernel name and records launches and copies): lowering, fp16 reformats,
transfers, the device arena and a context run go through the real CudaBackend code."""

from __future__ import annotations

import numpy as np
import pytest

import edge
from edge.kernels.backend import register_backend
from tests.cuda.conftest import FakeDevice
from tests.models import random_feeds, resnet_block_cnn, transformer_encoder


@pytest.fixture
def stand_in(cubins, without_libraries):
    from edge.kernels.cuda.backend import CudaBackend

    device = FakeDevice(cubins)
    backend = CudaBackend(device=device)
    register_backend("cuda", lambda: backend)
    yield device
    register_backend("cuda", lambda: _unavailable())


def _unavailable():
    from edge.kernels.cuda import create_backend

    return create_backend()


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("make", [resnet_block_cnn, transformer_encoder], ids=["cnn", "encoder"])
def test_models_plan_onto_the_cuda_backend(stand_in, make, precision):
    model = make()
    engine = edge.build(model.SerializeToString(), edge.BuilderConfig(profile="agx-orin-64gb", precision=precision, backends={"gpu": "cuda"}, optimization_level=0))
    plan = engine.plan
    on_gpu = [s for s in plan.steps if s.kind == "kernel" and s.backend == "cuda"]
    assert len(on_gpu) >= len([s for s in plan.steps if s.kind == "kernel"]) // 2
    reformats = [s for s in plan.steps if s.kind == "reformat"]
    assert bool(reformats) == (precision == "fp16")  # fp32 in from the host, fp16 on the device
    for step in on_gpu:
        for name in step.outputs:
            assert plan.spaces[name] == "device"
    assert "device" in engine.build["memory"]["spaces"]
    # What each GPU kernel is handed: an fp16 layer reads and writes float16 storage only, so
    # the kernels (chosen by their tensors' dtype) and the arena views agree on element size.
    for step in engine.schedule().steps:
        if step.plan.kind == "kernel" and step.plan.backend == "cuda":
            floats = {np.dtype(t.dtype) for t in [*step.spec.inputs, *step.spec.outputs] if t is not None and np.dtype(t.dtype).kind == "f"}
            assert floats <= ({np.dtype(np.float16)} if step.plan.precision == "fp16" else {np.dtype(np.float32)}), (step.plan.node, floats)
    context = engine.create_context()
    context.run(random_feeds(model))  # the stand-in computes nothing: this checks the plumbing
    assert stand_in.launches and any(kind == "h2d" for kind, *_ in stand_in.copies)
    assert any(kind == "d2h" for kind, *_ in stand_in.copies)


def test_warm_runs_replay_one_captured_graph(stand_in):
    """Run 1 launches kernel by kernel, run 2 captures them into one graph and replays it,
    run 3 only replays; a context without CUDA graphs keeps launching every kernel."""
    model = resnet_block_cnn()
    engine = edge.build(model.SerializeToString(), edge.BuilderConfig(profile="agx-orin-64gb", precision="fp16", backends={"gpu": "cuda"}, optimization_level=0))
    feeds = random_feeds(model)
    context = engine.create_context()
    per_run = []
    for _ in range(3):
        launches, calls = len(stand_in.launches), len(stand_in.calls)
        context.run(feeds)
        per_run.append((len(stand_in.launches) - launches, stand_in.calls[calls:]))
    kernels = per_run[0][0]
    assert kernels > 5 and "cuGraphLaunch" not in per_run[0][1]
    assert per_run[1][0] == kernels and per_run[1][1].count("cuStreamBeginCapture") == 1 and per_run[1][1].count("cuGraphLaunch") == 1
    assert per_run[2][0] == 0 and per_run[2][1].count("cuGraphLaunch") == 1 and "cuStreamBeginCapture" not in per_run[2][1]
    plain = engine.create_context(cuda_graph=False)
    for _ in range(2):
        launches = len(stand_in.launches)
        plain.run(feeds)
        assert len(stand_in.launches) - launches == kernels


def test_gpu_runs_time_their_phases_and_can_skip_transfers(stand_in):
    """A GPU engine's run reports H2D / compute / D2H from device events and the host's
    launch time; warm runs without transfers make no copies and return no device outputs."""
    model = resnet_block_cnn()
    engine = edge.build(model.SerializeToString(), edge.BuilderConfig(profile="agx-orin-64gb", precision="fp32", backends={"gpu": "cuda"}, optimization_level=0))
    feeds = random_feeds(model)
    context = engine.create_context()
    assert set(context.run(feeds)) == {v.name for v in model.graph.output}
    times = context.last_times
    assert times.h2d_ms == times.compute_ms == times.d2h_ms == 1.0  # one interval each at the stand-in's 1 ms
    assert times.enqueue_ms is not None and times.host_ms >= times.enqueue_ms
    copies = len(stand_in.copies)
    assert context.run(feeds, transfers=False) == {}
    assert len(stand_in.copies) == copies and context.last_times.h2d_ms is None and context.last_times.compute_ms == 1.0
    assert set(context.run(feeds, spin_wait=True)) == {v.name for v in model.graph.output}


def test_gpu_layer_profile_times_each_step_inside_a_captured_graph(stand_in):
    """A layer profile on a warm GPU engine captures a second graph with an event-record node
    between its steps (so launch gaps do not count; the stand-in's interval is 1 ms each),
    copies nothing back per layer, and its steps add up to the run's compute time; without
    the profiler the plain graph replays again."""
    from edge.runtime.bench import LayerProfiler

    model = resnet_block_cnn()
    engine = edge.build(model.SerializeToString(), edge.BuilderConfig(profile="agx-orin-64gb", precision="fp16", backends={"gpu": "cuda"}, optimization_level=0))
    feeds = random_feeds(model)
    context = engine.create_context()
    for _ in range(2):
        context.run(feeds)  # warm, then the plain graph captured
    profiler = LayerProfiler()
    context.layer_profiler = profiler
    calls, d2h = len(stand_in.calls), sum(kind == "d2h" for kind, *_ in stand_in.copies)
    for _ in range(2):
        context.run(feeds)
    profiled = stand_in.calls[calls:]
    assert profiled.count("cuStreamBeginCapture") == 1 and profiled.count("cuGraphLaunch") == 2
    assert profiled.count("cuEventRecordWithFlags") >= 5  # the in-graph marks, captured once
    assert sum(kind == "d2h" for kind, *_ in stand_in.copies) - d2h == 2 * len(model.graph.output)
    rows = profiler.rows(2)
    steps = engine.schedule().steps
    assert [r["name"] for r in rows] == [s.node.name for s in steps]
    assert all(r["ms_per_run"] == 1.0 for r in rows)
    assert context.last_times.compute_ms == sum(r["ms_per_run"] for r in rows if r["backend"] == "cuda" and r["op"] != "Copy")
    context.layer_profiler = None
    calls = len(stand_in.calls)
    context.run(feeds)
    assert stand_in.calls[calls:].count("cuGraphLaunch") == 1 and "cuStreamBeginCapture" not in stand_in.calls[calls:]


def test_tactic_timing_replays_a_captured_graph_of_the_calls(stand_in):
    """The auto-tuner's clock on the GPU: one warm-up call, then ``repeat`` calls captured
    once and the graph replayed TIMED_REPLAYS times; each time is a replay's per call."""
    from edge.kernels.backend import RunState
    from edge.kernels.cuda.backend import TIMED_REPLAYS, CudaBackend

    backend = CudaBackend(device=stand_in)
    state = RunState({"cuda": backend.new_state()})
    calls = []
    launch_calls = len(stand_in.calls)
    times = backend.time_launch(lambda i, o, s: calls.append(1), [], [], state, 4)
    assert len(calls) == 1 + 4  # the warm-up, then the captured calls; replays run none
    made = stand_in.calls[launch_calls:]
    assert made.count("cuStreamBeginCapture") == 1 and made.count("cuGraphLaunch") == TIMED_REPLAYS
    assert times == [1e-3 / 4] * TIMED_REPLAYS


def test_fp16_conv_regions_plan_channels_last_onto_cudnn(stand_in, monkeypatch, tmp_path):
    """With cuDNN present, an FP16 GPU build runs its conv regions in NHWC: channels-last
    convolutions with cuDNN tactics (and the NHWC direct kernel), the NHWC pool kernel, Transposes at the boundary;
    the engine file keeps the layout. FP32 layers and ``channels_last=False`` stay NCHW."""
    from edge.kernels.cuda import cudnn_graphs

    monkeypatch.setattr(cudnn_graphs, "available", lambda: True)  # candidates only: nothing runs at level 0
    model = resnet_block_cnn().SerializeToString()
    config = dict(profile="agx-orin-64gb", backends={"gpu": "cuda"}, optimization_level=0)
    engine = edge.build(model, edge.BuilderConfig(precision="fp16", **config))
    assert engine.build["layout"]["converted_regions"] == 1
    kernels = [s for s in engine.plan.steps if s.kind == "kernel"]
    convs = [s for s in kernels if s.op == "edgetrt::FusedConv"]
    # cuDNN's, or the NVRTC direct kernel's NHWC form where it leads (8-channel convs here)
    assert all(s.backend == "cuda" and (s.tactic.name.startswith("cudnn") or s.tactic.name == "direct") for s in convs)
    assert any(s.tactic.name.startswith("cudnn") for s in convs) and any(s.tactic.name == "direct" for s in convs)
    assert [s.kernel for s in kernels if s.op == "edgetrt::MaxPool"] and all(s.backend == "cuda" for s in kernels if s.op in ("Transpose", "edgetrt::MaxPool"))
    path = tmp_path / "nhwc.engine"
    engine.save(path)
    loaded = edge.load(path)
    assert [(n.op_type, n.attrs.get("channels_last", 0)) for n in loaded.graph.nodes] == [(n.op_type, n.attrs.get("channels_last", 0)) for n in engine.graph.nodes]
    for kept in (edge.BuilderConfig(precision="fp32", **config), edge.BuilderConfig(precision="fp16", channels_last=False, **config)):
        graph = edge.build(model, kept).graph
        assert not any(n.attrs.get("channels_last") for n in graph.nodes) and "Transpose" not in graph.op_types()
