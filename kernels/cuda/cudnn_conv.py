"""cuDNN as a tactic source of the convolution family, through the cuDNN frontend's graph API
(:mod:`.cudnn_graphs`): one operation graph per convolution, conv -> bias -> residual
add -> activation, so the epilogue runs fused where an engine supports it (where none fuses
the residual, as in NCHW, cuDNN runs conv -> bias and one NVRTC kernel the rest).

Tactics "cudnn0".."cudnn7" are the first execution plans of the fused graph's ranked list
(heuristics mode A, then the fallback list; ranks 4-7 only at optimization levels 4 and 5);
"cudnn0c".."cudnn7c" those of the bare
convolution's graph, followed by one NVRTC kernel for bias, residual and activation: cuDNN's
precompiled convolution engines are often faster than its runtime-fusion ones in NCHW, and
the build's timing decides. A plan that does not build for the step is passed over for the
next one. Operands are our own device pointers; the plan's workspace is the context's
scratch, so an execution allocates nothing and can be graph-captured. FP32 graphs exclude
tensor-core and down-converting engines (no TF32: results match the CPU).
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from edge.ir.layout import TO_CHANNELS_LAST, is_channels_last
from edge.kernels.backend import StepSpec
from edge.kernels.cuda import cudnn_graphs
from edge.kernels.cuda.launch import ACTIVATION_CODES, BLOCK, Body, Step, contiguous_strides, float_suffix, grid_1d
from edge.kernels.tactics import Tactic

__all__ = ["conv_candidates", "build_cudnn_conv", "end_padding", "image_strides"]

PLANS = 8
"""Execution plans of each ranked list offered as tactics."""
DEEP_PLANS = 4
"""Plans from this rank on are timed at builder optimization level 4 and 5 only: on the H100
they won 10 of 102 convolutions of ResNet-18/50 and MobileNetV2 (at most 21 % faster, the
median gain nil), and they are half of each conv's cuDNN candidates (the first call that
timed all 16 built ResNet-50 in 186 s cold, against 27 s with 4 plans and eager timing)."""


_ACTIVATIONS = {ACTIVATION_CODES[name]: name for name in ("", "Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "SiLU", "Gelu")}
"""Fused activations with an exact cuDNN pointwise counterpart (GELU: cuDNN's erf form)."""


def _post_padding(size: int, out: int, kernel: int, stride: int, dilation: int, pad: int) -> int | None:
    """End padding that makes cuDNN's output size ``out`` (None when none does)."""
    span = dilation * (kernel - 1) + 1
    post = max(0, (out - 1) * stride + span - size - pad)
    return post if (size + pad + post - span) // stride + 1 == out else None


def end_padding(g: Any) -> tuple[int, int] | None:
    """The (bottom, right) padding that gives convolution ``g`` its output size in cuDNN, or
    None where none does."""
    post = (_post_padding(g.h, g.oh, g.kh, g.sh, g.dh, g.ph), _post_padding(g.w, g.ow, g.kw, g.sw, g.dw, g.pw))
    return None if None in post else post  # type: ignore[return-value]


def _problem(g: Any, spec: StepSpec) -> dict[str, Any] | None:
    """The graph's description, or None where cuDNN is not offered for this step."""
    dtype = np.dtype(spec.inputs[0].dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float16)) or g.act not in _ACTIVATIONS:
        return None
    post = end_padding(g)
    if post is None:
        return None
    inputs = spec.inputs
    return {
        "dtype": dtype, "nhwc": is_channels_last(spec.node), "x": (g.n, g.c, g.h, g.w), "w": (g.m, g.c // g.groups, g.kh, g.kw), "y": (g.n, g.m, g.oh, g.ow),
        "pre": (g.ph, g.pw), "post": post, "stride": (g.sh, g.sw), "dilation": (g.dh, g.dw),
        "bias": len(inputs) > 2 and inputs[2] is not None, "residual": len(inputs) > 3 and inputs[3] is not None,
        "act": _ACTIVATIONS[g.act], "p0": float(g.p0), "p1": float(g.p1),
    }


def conv_candidates(spec: StepSpec, geometry: Any) -> list[Tactic]:
    """The first cuDNN execution plans for this convolution, fused and bare (none where cuDNN
    does not apply)."""
    p = _problem(geometry, spec) if cudnn_graphs.available() else None
    if p is None:
        return []
    fused = [Tactic(f"cudnn{index}", _plan_params(index)) for index in range(PLANS)]
    if not _has_epilogue(p):
        return fused
    return fused + [Tactic(f"cudnn{index}c", {**_plan_params(index), "epilogue": "nvrtc"}) for index in range(PLANS)]


def _plan_params(index: int) -> dict[str, int]:
    return {"plan": index, "min_level": 4} if index >= DEEP_PLANS else {"plan": index}


def _has_epilogue(p: dict[str, Any]) -> bool:
    return p["bias"] or p["residual"] or p["act"] != ""


def image_strides(dims: tuple[int, ...], nhwc: bool) -> list[int]:
    """Element strides of logical (N, C, H, W) ``dims`` stored NCHW or NHWC (a weight's
    (M, C, kH, kW) then KRSC, as cuDNN's channels-last engines take it)."""
    if not nhwc:
        return list(contiguous_strides(dims))
    sn, sh, sw, sc = contiguous_strides((dims[0], dims[2], dims[3], dims[1]))
    return [sn, sc, sh, sw]


def _graph(cudnn: Any, handle: Any, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The operation graph of ``p`` with its ranked plans listed (none built yet) and its
    tensors by role."""
    io = cudnn.data_type.HALF if p["dtype"] == np.float16 else cudnn.data_type.FLOAT
    graph = cudnn.pygraph(io_data_type=io, intermediate_data_type=cudnn.data_type.FLOAT, compute_data_type=cudnn.data_type.FLOAT, handle=handle)

    def tensor(name: str, dims: tuple[int, ...]) -> Any:
        return graph.tensor(name=name, dim=list(dims), stride=image_strides(dims, p["nhwc"]), data_type=io)

    tensors = {"x": tensor("x", p["x"]), "w": tensor("w", p["w"])}
    y = graph.conv_fprop(image=tensors["x"], weight=tensors["w"], pre_padding=list(p["pre"]), post_padding=list(p["post"]),
                         stride=list(p["stride"]), dilation=list(p["dilation"]), compute_data_type=cudnn.data_type.FLOAT)
    if p["bias"]:
        tensors["b"] = tensor("b", (1, p["y"][1], 1, 1))
        y = graph.bias(input=y, bias=tensors["b"])
    if p["residual"]:
        tensors["z"] = tensor("z", p["y"])
        y = graph.add(a=y, b=tensors["z"])
    act = p["act"]
    if act == "Relu":
        y = graph.relu(input=y)
    elif act == "Clip":
        y = graph.relu(input=y, lower_clip=p["p0"], upper_clip=p["p1"])
    elif act == "LeakyRelu":
        y = graph.leaky_relu(input=y, negative_slope=p["p0"])
    elif act == "Sigmoid":
        y = graph.sigmoid(input=y)
    elif act == "Tanh":
        y = graph.tanh(input=y)
    elif act == "SiLU":
        y = graph.swish(input=y, swish_beta=1.0)
    elif act == "Gelu":
        y = graph.gelu(input=y)
    y.set_output(True).set_data_type(io).set_dim(list(p["y"])).set_stride(image_strides(p["y"], p["nhwc"]))
    tensors["y"] = y
    graph.validate()
    graph.build_operation_graph()
    graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    if p["dtype"] == np.float32:
        graph.deselect_numeric_notes([cudnn.numerical_note.TENSOR_CORE, cudnn.numerical_note.DOWN_CONVERT_INPUTS])
    return graph, tensors


def build_cudnn_conv(step: Step, tactic: Tactic, activation: str, params: Any) -> Body:
    """The step as the cuDNN plan of rank ``tactic`` (or the next one that builds). With the
    tactic's NVRTC epilogue, or where no engine fuses the epilogue (a residual add in NCHW),
    cuDNN computes the bare conv and one NVRTC kernel the rest, in place. A channels-last
    step's weight goes to the device as KRSC."""
    from edge.kernels.cuda.nn import conv_geometry

    g = conv_geometry(step.node, step.spec.opset, tuple(step.input(0).shape), tuple(step.input(1).shape), activation, params)
    p = _problem(g, step.spec)
    if not cudnn_graphs.available() or p is None:
        raise ValueError(f"node '{step.node.name}': tactic '{tactic.name}' needs cuDNN for this convolution, which is not available")
    shared = cudnn_graphs.Graphs.of(step.backend)
    conv_only = {**p, "bias": False, "residual": False, "act": ""}
    bare = tactic.params.get("epilogue") == "nvrtc" and _has_epilogue(p)
    built = shared.built(conv_only if bare else p, _graph)
    if isinstance(built, str) and not bare and _has_epilogue(p):  # no engine fuses this epilogue
        bare, built = True, shared.built(conv_only, _graph)
    if isinstance(built, str):
        raise ValueError(f"node '{step.node.name}': no cuDNN execution plan builds for this convolution ({built})")
    graph, tensors = built
    plan = shared.plan(graph, int(tactic.params.get("plan", 0)))
    if plan is None:
        raise ValueError(f"node '{step.node.name}': no cuDNN execution plan from rank {tactic.params.get('plan', 0)} builds for this convolution")
    if p["nhwc"]:
        step.place(1, np.ascontiguousarray(step.const(1).transpose(TO_CHANNELS_LAST)))
    roles = [("x", 0), ("w", 1)] + [(role, i) for role, i in (("b", 2), ("z", 3)) if role in tensors]
    epilogue = _epilogue(step, g, p) if bare else None

    def body(inputs: list, outputs: list, state) -> None:
        pack = {tensors[role]: inputs[i].ptr for role, i in roles}
        pack[tensors["y"]] = outputs[0].ptr
        plan.execute(pack, state, step.backend)
        if epilogue is not None:
            epilogue(inputs, outputs, state)

    return body


def _epilogue(step: Step, g: Any, p: dict[str, Any]) -> Body:
    """y = act(y + bias + z) over the output, in place: what the cuDNN graph left out."""
    n = g.n * g.m * g.oh * g.ow
    fn = step.function("elementwise", f"conv_epilogue_{float_suffix(step.output(0).dtype)}")
    grid = grid_1d(n)
    run = 1 if p["nhwc"] else g.oh * g.ow  # consecutive elements of one channel: an NCHW plane, one in NHWC
    bias, residual = p["bias"], p["residual"]
    args = (ctypes.c_int64(n), ctypes.c_int64(run), ctypes.c_int32(g.m), ctypes.c_int32(g.act), ctypes.c_float(g.p0), ctypes.c_float(g.p1))

    def body(inputs: list, outputs: list, state) -> None:
        fn(state, grid, (BLOCK, 1, 1), outputs[0], inputs[2] if bias else None, inputs[3] if residual else None, *args)

    return body
