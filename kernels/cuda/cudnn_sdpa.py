"""cuDNN's fused scaled-dot-product attention as a tactic source of edgetrt::Attention, through
the cuDNN frontend's graph API (:mod:`.cudnn_graphs`): one SDPA operation, softmax(Q·Kᵀ·scale +
bias)·V in flash-attention form (the scores never reach memory), FP32 softmax and accumulation.

Tactic "cudnn_sdpa" is the first execution plan of the graph's ranked list that builds
(heuristics mode A, then the fallback list). It is offered where cuDNN computes exactly the
step: FP16 tensors (cuDNN's SDPA takes FP16 and BF16, never FP32; this backend holds no
BF16), Q, K and V of shape [batch, heads, sequence, head size] (or stored (batch, sequence,
heads, size) with ``bshd``, read through strides) with K and V of Q's batch and heads, head
sizes multiples of 8 up to ``MAX_HEAD_SIZE``, and a mask either absent or an
additive bias in Q's dtype that spans every key and broadcasts over batch, heads and query
rows. cuDNN 9 needs SM 8.0 or newer; elsewhere no plan builds and the auto-tuner passes the
tactic over.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.kernels.backend import StepSpec
from edge.kernels.cuda import cudnn_graphs
from edge.kernels.cuda.launch import Body, Step, broadcast_strides, contiguous_strides
from edge.kernels.tactics import Tactic

__all__ = ["MAX_HEAD_SIZE", "sdpa_candidates", "build_cudnn_sdpa"]

MAX_HEAD_SIZE = 128
"""Largest head size offered: the bound of cuDNN's support matrix that every SM 8.0+ GPU meets
(Ampere's decode engines stop at 128; prefill engines reach 256 on Ampere and Hopper)."""

_ROLES = ("q", "k", "v", "mask")
"""The graph's input tensors, in the step's input order."""


def _problem(spec: StepSpec) -> dict[str, Any] | str:
    """The graph's description, or why cuDNN's fused attention does not compute this step."""
    q, k, v = spec.inputs[:3]
    mask = spec.inputs[3] if len(spec.inputs) > 3 else None
    if np.dtype(q.dtype) != np.float16:
        return f"{np.dtype(q.dtype)} tensors: cuDNN's fused attention takes FP16 (and BF16), not FP32"
    shapes = [tuple(t.shape) for t in (q, k, v)]
    if any(len(shape) != 4 for shape in shapes):
        return f"Q, K, V of shapes {shapes}: cuDNN takes [batch, heads, sequence, head size]"
    bshd = bool(spec.node.attrs.get("bshd", 0))
    if bshd:  # (batch, sequence, heads, size) in memory: cuDNN's dims read through its strides
        shapes = [(t[0], t[2], t[1], t[3]) for t in shapes]
    (b, h, s_q, d), (k_b, k_h, s_kv, _), (v_b, v_h, _, d_v) = shapes
    if (k_b, k_h, v_b, v_h) != (b, h, b, h):
        return f"K, V of shapes {shapes[1:]} broadcast over Q's batch or heads {(b, h)}"
    if any(size % 8 or size > MAX_HEAD_SIZE for size in (d, d_v)):
        return f"head sizes {d} and {d_v}: cuDNN is offered multiples of 8 up to {MAX_HEAD_SIZE}"
    bias = None
    if mask is not None:
        m = tuple(mask.shape)
        if np.dtype(mask.dtype) != np.dtype(q.dtype):
            return f"a {np.dtype(mask.dtype)} mask: the bias is read in Q's dtype"
        full = (1,) * (4 - len(m)) + m
        if len(m) > 4 or full[3] != s_kv or full[0] not in (1, b) or full[1] not in (1, h) or full[2] not in (1, s_q):
            return f"a mask of shape {m}: cuDNN takes a bias over all {s_kv} keys, broadcast over batch, heads and queries"
        # cuDNN's bias is [batch or 1, heads or 1, queries, keys]: query rows broadcast by a zero stride.
        dims = (full[0], full[1], s_q, s_kv)
        bias = (dims, broadcast_strides(full, dims))
    logical = {"q": shapes[0], "k": shapes[1], "v": shapes[2], "o": (b, h, s_q, d_v)}
    return {role: (shape, _strides(shape, bshd)) for role, shape in logical.items()} | {
        "bias": bias, "scale": float(spec.node.attrs.get("scale", 1.0))}


def _strides(dims: tuple[int, ...], bshd: bool) -> tuple[int, ...]:
    """Element strides of a [batch, heads, sequence, size] tensor stored as it is, or stored as
    (batch, sequence, heads, size) when ``bshd``."""
    if not bshd:
        return contiguous_strides(dims)
    _, h, s, d = dims
    return (s * h * d, d, h * d, 1)


def sdpa_candidates(spec: StepSpec) -> list[Tactic]:
    """"cudnn_sdpa" where cuDNN is installed and computes this step, else nothing."""
    return [Tactic("cudnn_sdpa")] if cudnn_graphs.available() and not isinstance(_problem(spec), str) else []


def _graph(cudnn: Any, handle: Any, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The SDPA operation graph of ``p`` with its ranked plans listed (none built yet) and its
    tensors by role."""
    io, f32 = cudnn.data_type.HALF, cudnn.data_type.FLOAT
    graph = cudnn.pygraph(io_data_type=io, intermediate_data_type=f32, compute_data_type=f32, handle=handle)

    def tensor(name: str, dims: tuple[int, ...], strides: tuple[int, ...]) -> Any:
        return graph.tensor(name=name, dim=list(dims), stride=list(strides), data_type=io)

    tensors = {role: tensor(role, *p[role]) for role in ("q", "k", "v")}
    if p["bias"] is not None:
        tensors["mask"] = tensor("mask", *p["bias"])
    o, _ = graph.sdpa(q=tensors["q"], k=tensors["k"], v=tensors["v"], attn_scale=p["scale"], bias=tensors.get("mask"),
                      generate_stats=False, name="sdpa")
    o.set_output(True).set_data_type(io).set_dim(list(p["o"][0])).set_stride(list(p["o"][1]))
    tensors["o"] = o
    graph.validate()
    graph.build_operation_graph()
    graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    return graph, tensors


def build_cudnn_sdpa(step: Step, tactic: Tactic) -> Body:
    """The step as cuDNN's fused attention, on the first ranked plan that builds."""
    p = _problem(step.spec)
    if isinstance(p, str) or not cudnn_graphs.available():
        why = p if isinstance(p, str) else "nvidia-cudnn-frontend or libcudnn is not installed"
        raise ValueError(f"node '{step.node.name}': tactic '{tactic.name}' needs cuDNN's fused attention, which does not serve it ({why})")
    shared = cudnn_graphs.Graphs.of(step.backend)
    built = shared.built(p, _graph)
    if isinstance(built, str):
        raise ValueError(f"node '{step.node.name}': no cuDNN execution plan builds for this attention ({built})")
    graph, tensors = built
    plan = shared.plan(graph)
    if plan is None:
        raise ValueError(f"node '{step.node.name}': no cuDNN execution plan builds for this attention")
    roles = [(role, index) for index, role in enumerate(_ROLES) if role in tensors]

    def body(inputs: list, outputs: list, state) -> None:
        pack = {tensors[role]: inputs[index].ptr for role, index in roles}
        pack[tensors["o"]] = outputs[0].ptr
        plan.execute(pack, state, step.backend)

    return body
