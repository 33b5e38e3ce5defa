"""GPU-free: which edgetrt::Attention steps are offered cuDNN's fused attention ("cudnn_sdpa")
and why the others are refused, and how a prepared step hands its pointers, workspace and
stream to a stand-in frontend (the real one needs libcudnn and a GPU: tests/cuda/test_gpu_ops.py)."""

from __future__ import annotations


import numpy as np
import pytest

from edge.kernels import registry
from edge.kernels.backend import RunState
from edge.kernels.cuda import cudnn_graphs, cudnn_sdpa
from edge.kernels.tactics import Tactic
from tests.cuda.conftest import StandInGraph, StandInTensor, make_step, stand_in_frontend

F32, F16 = np.dtype(np.float32), np.dtype(np.float16)
BERT = (1, 12, 128, 64)


def attention(q=BERT, k=BERT, v=BERT, mask=(1, 1, 1, 128), dtype=F16, mask_dtype=None, tactic=None, bshd=False):
    """An Attention step (scale 1/8) of these shapes; ``mask`` None for none; ``bshd``: the
    tensors hold (batch, sequence, heads, size)."""
    inputs = [("q", dtype, q), ("k", dtype, k), ("v", dtype, v)]
    if mask is not None:
        inputs.append(("m", mask_dtype or dtype, mask))
    out = (*q[:-1], v[-1])
    attrs = {"scale": 0.125, **({"bshd": 1} if bshd else {})}
    return make_step("Attention", inputs, [(dtype, out)], attrs, "edgetrt", precision="fp16" if dtype == F16 else "fp32", tactic=tactic)


def offered(spec) -> list[tuple[str, str]]:
    kernel = registry.lookup("Attention", "edgetrt", backend="cuda", precision=spec.precision)
    return [(t.name, t.params["source"]) for t in kernel.tactics(spec)]


@pytest.mark.parametrize("mask", [None, (1, 1, 1, 128), (128,), (1, 12, 128, 128)], ids=["no-mask", "key-mask", "1-d", "full"])
def test_cudnn_sdpa_follows_the_nvrtc_default_where_cudnn_computes_the_step(monkeypatch, mask):
    monkeypatch.setattr(cudnn_graphs, "available", lambda: True)
    assert offered(attention(mask=mask)) == [("nvrtc", "nvrtc"), ("cudnn_sdpa", "cudnn")]


def test_without_cudnn_only_the_nvrtc_path_is_offered(monkeypatch):
    monkeypatch.setattr(cudnn_graphs, "available", lambda: False)
    assert offered(attention()) == [("nvrtc", "nvrtc")]


@pytest.mark.parametrize(
    "spec, why",
    [
        (attention(dtype=F32), "float32 tensors"),
        (attention(q=(12, 128, 64), k=(12, 128, 64), v=(12, 128, 64), mask=None), "[batch, heads, sequence, head size]"),
        (attention(k=(1, 1, 128, 64), v=(1, 1, 128, 64)), "broadcast over Q's batch or heads"),
        (attention(q=(1, 12, 128, 160), k=(1, 12, 128, 160), v=(1, 12, 128, 160)), "head sizes 160 and 160"),
        (attention(q=(1, 12, 128, 36), k=(1, 12, 128, 36)), "head sizes 36 and 64"),
        (attention(mask=(1, 1, 128, 1)), "over all 128 keys"),
        (attention(mask=(2, 1, 1, 128)), "broadcast over batch"),
        (attention(mask=(1, 1, 1, 1, 128)), "a mask of shape (1, 1, 1, 1, 128)"),
        (attention(mask_dtype=F32), "a float32 mask"),
    ],
    ids=["fp32", "3-d", "shared-kv-heads", "head-160", "head-36", "key-broadcast-mask", "wider-batch-mask", "5-d-mask", "fp32-mask"],
)
def test_steps_cudnn_does_not_compute_are_refused_with_the_reason(monkeypatch, spec, why):
    monkeypatch.setattr(cudnn_graphs, "available", lambda: True)
    reason = cudnn_sdpa._problem(spec)
    assert isinstance(reason, str) and why in reason, reason
    assert offered(spec) == [("nvrtc", "nvrtc")]


@pytest.mark.parametrize(
    "mask, dims, strides",
    [
        ((1, 1, 1, 128), (1, 1, 128, 128), (128, 128, 0, 1)),
        ((128,), (1, 1, 128, 128), (128, 128, 0, 1)),
        ((1, 12, 1, 128), (1, 12, 128, 128), (1536, 128, 0, 1)),
        ((1, 1, 128, 128), (1, 1, 128, 128), (16384, 16384, 128, 1)),
    ],
)
def test_the_mask_is_a_bias_with_zero_strides_over_query_rows(mask, dims, strides):
    assert cudnn_sdpa._problem(attention(mask=mask))["bias"] == (dims, strides)


def test_a_refused_step_forced_onto_cudnn_raises_in_prepare(fake_backend, monkeypatch):
    """The auto-tuner's contract: a library tactic that cannot serve a step raises while the
    step is prepared (so it is rejected), before anything reaches the library."""
    backend, _ = fake_backend
    monkeypatch.setattr(cudnn_graphs, "library", lambda: pytest.fail("the library was asked"))
    spec = attention(q=(1, 12, 128, 160), k=(1, 12, 128, 160), v=(1, 12, 128, 160), tactic=Tactic("cudnn_sdpa", {"source": "cudnn"}))
    with pytest.raises(ValueError, match="head sizes 160"):
        backend.prepare(spec)


class _Graph(StandInGraph):
    """The stand-in graph with the SDPA node, which returns (output, stats)."""

    def sdpa(self, **kwargs):
        self.sdpa_kwargs = kwargs
        self.tensors["o"] = StandInTensor(name="o")
        return [self.tensors["o"], None]


def _stand_in_frontend(monkeypatch) -> tuple[list[_Graph], list]:
    return stand_in_frontend(monkeypatch, _Graph)


def test_a_prepared_step_runs_the_first_plan_that_builds_on_our_pointers(fake_backend, monkeypatch):
    backend, _ = fake_backend
    graphs, streams = _stand_in_frontend(monkeypatch)
    spec = attention(tactic=Tactic("cudnn_sdpa", {"source": "cudnn"}))
    launch = backend.prepare(spec)
    backend.prepare(spec)  # a second step of the problem reuses its graph
    (graph,) = graphs
    assert graph.built == ["validate", "build_operation_graph", ("create_execution_plans", ("A", "fallback"))]
    assert graph.sdpa_kwargs["attn_scale"] == 0.125 and graph.sdpa_kwargs["generate_stats"] is False
    assert graph.sdpa_kwargs["bias"] is graph.tensors["mask"] and graph.tensors["mask"].stride == [128, 128, 0, 1]
    assert (graph.tensors["o"].output, graph.tensors["o"].dim) == (True, list(BERT))

    arena = backend.allocate(1 << 22)
    ins = [backend.view(arena, offset, info.shape, info.dtype) for offset, info in zip((0, 1 << 20, 2 << 20, 3 << 20), spec.inputs)]
    out = backend.view(arena, (3 << 20) + 4096, BERT, F16)
    state = RunState(scratch={"cuda": backend.new_state()})
    state.scratch["cuda"].stream = 77  # the stand-in device names its stream; cuDNN is handed the handle's integer
    launch(ins, [out], state)
    ((pack, workspace, index, handle),) = graph.executed
    assert {name: pack[graph.tensors[name]] for name in ("q", "k", "v", "mask", "o")} == {
        "q": ins[0].ptr, "k": ins[1].ptr, "v": ins[2].ptr, "mask": ins[3].ptr, "o": out.ptr}
    assert index == 1 and handle == "handle" and streams == [("handle", 77)]
    assert workspace == state.scratch["cuda"].workspace(backend, 1 << 16)  # the context's scratch, no allocation of its own


def test_heads_on_axis_2_reach_cudnn_as_strides(fake_backend, monkeypatch):
    """A ``bshd`` step's Q, K, V and output (batch, sequence, heads, size) are cuDNN's [batch,
    heads, sequence, size] tensors read through strides, in place."""
    backend, _ = fake_backend
    graphs, _ = _stand_in_frontend(monkeypatch)
    b, s_q, h, d = 1, 128, 12, 64
    stored = (b, s_q, h, d)
    backend.prepare(attention(q=stored, k=stored, v=stored, mask=None, bshd=True, tactic=Tactic("cudnn_sdpa", {"source": "cudnn"})))
    (graph,) = graphs
    for role in ("q", "k", "v"):
        assert (graph.tensors[role].dim, graph.tensors[role].stride) == ([b, h, s_q, d], [s_q * h * d, d, h * d, 1]), role
    assert (graph.tensors["o"].dim, graph.tensors["o"].stride) == ([b, h, s_q, d], [s_q * h * d, d, h * d, 1])
