"""cuDNN as a tactic source of the convolution family, through the cuDNN frontend's graph API
(``nvidia-cudnn-frontend``): one operation graph per convolution, conv -> bias -> residual
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
import functools
import threading
from typing import Any

import numpy as np

from edge.ir.layout import TO_CHANNELS_LAST, is_channels_last
from edge.kernels.backend import StepSpec
from edge.kernels.cuda.launch import ACTIVATION_CODES, BLOCK, Body, Step, contiguous_strides, float_suffix, grid_1d
from edge.kernels.tactics import Tactic

__all__ = ["available", "conv_candidates", "build_cudnn_conv", "library_version"]

PLANS = 8
"""Execution plans of each ranked list offered as tactics."""
DEEP_PLANS = 4
"""Plans from this rank on are timed at builder optimization level 4 and 5 only: on the H100
they won 10 of 102 convolutions of ResNet-18/50 and MobileNetV2 (at most 21 % faster, the
median gain nil), and they are half of each conv's cuDNN candidates (the first call that
timed all 16 built ResNet-50 in 186 s cold, against 27 s with 4 plans and eager timing)."""


@functools.cache
def _library() -> Any:
    """The ``cudnn`` frontend module with libcudnn loaded, or None."""
    try:
        import cudnn

        cudnn.backend_version()
    except Exception:  # not installed, or libcudnn missing: the source offers nothing
        return None
    return cudnn


def available() -> bool:
    return _library() is not None


def library_version() -> str | None:
    """cuDNN's version ("9.19.0"), or None without it."""
    cudnn = _library()
    if cudnn is None:
        return None
    version = int(cudnn.backend_version())
    return f"{version // 10000}.{version // 100 % 100}.{version % 100}"


_ACTIVATIONS = {ACTIVATION_CODES[name]: name for name in ("", "Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "SiLU", "Gelu")}
"""Fused activations with an exact cuDNN pointwise counterpart (GELU: cuDNN's erf form)."""


def _post_padding(size: int, out: int, kernel: int, stride: int, dilation: int, pad: int) -> int | None:
    """End padding that makes cuDNN's output size ``out`` (None when none does)."""
    span = dilation * (kernel - 1) + 1
    post = max(0, (out - 1) * stride + span - size - pad)
    return post if (size + pad + post - span) // stride + 1 == out else None


def _problem(g: Any, spec: StepSpec) -> dict[str, Any] | None:
    """The graph's description, or None where cuDNN is not offered for this step."""
    dtype = np.dtype(spec.inputs[0].dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float16)) or g.act not in _ACTIVATIONS:
        return None
    post = (_post_padding(g.h, g.oh, g.kh, g.sh, g.dh, g.ph), _post_padding(g.w, g.ow, g.kw, g.sw, g.dw, g.pw))
    if None in post:
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
    p = _problem(geometry, spec) if available() else None
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


def _strides(dims: tuple[int, ...], nhwc: bool) -> list[int]:
    """Element strides of logical (N, C, H, W) ``dims`` stored NCHW or NHWC (a weight's
    (M, C, kH, kW) then KRSC, as cuDNN's channels-last engines take it)."""
    if not nhwc:
        return list(contiguous_strides(dims))
    sn, sh, sw, sc = contiguous_strides((dims[0], dims[2], dims[3], dims[1]))
    return [sn, sc, sh, sw]


class _Graphs:
    """Per backend: one cuDNN handle (its stream set per execution, under a lock) and the
    operation graphs built so far, by problem (a graph serves every step of that geometry)."""

    _lock = threading.Lock()
    _by_backend: dict[int, _Graphs] = {}

    def __init__(self, cudnn: Any) -> None:
        self.handle = cudnn.create_handle()
        self.graphs: dict[tuple, tuple[Any, dict[str, Any]] | str] = {}  # a str: why no engine takes it
        self.lock = threading.Lock()

    @classmethod
    def of(cls, backend: Any) -> _Graphs:
        with cls._lock:
            found = cls._by_backend.get(id(backend))
            if found is None:
                backend.device.call("cuCtxGetCurrent")  # the primary context current for cuDNN
                found = cls._by_backend[id(backend)] = cls(_library())
            return found


def _graph(cudnn: Any, handle: Any, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The operation graph of ``p`` with its ranked plans listed (none built yet) and its
    tensors by role."""
    io = cudnn.data_type.HALF if p["dtype"] == np.float16 else cudnn.data_type.FLOAT
    graph = cudnn.pygraph(io_data_type=io, intermediate_data_type=cudnn.data_type.FLOAT, compute_data_type=cudnn.data_type.FLOAT, handle=handle)

    def tensor(name: str, dims: tuple[int, ...]) -> Any:
        return graph.tensor(name=name, dim=list(dims), stride=_strides(dims, p["nhwc"]), data_type=io)

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
    y.set_output(True).set_data_type(io).set_dim(list(p["y"])).set_stride(_strides(p["y"], p["nhwc"]))
    tensors["y"] = y
    graph.validate()
    graph.build_operation_graph()
    graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    if p["dtype"] == np.float32:
        graph.deselect_numeric_notes([cudnn.numerical_note.TENSOR_CORE, cudnn.numerical_note.DOWN_CONVERT_INPUTS])
    return graph, tensors


def _built(shared: _Graphs, cudnn: Any, p: dict[str, Any]) -> tuple[Any, dict[str, Any]] | str:
    """The graph of ``p``, built once per backend, or why no engine takes it (remembered, not
    retried: e.g. cuDNN 9 has no engine for a residual epilogue in NCHW). Call under the lock."""
    key = tuple(sorted((k, str(v)) for k, v in p.items()))
    if key not in shared.graphs:
        try:
            shared.graphs[key] = _graph(cudnn, shared.handle, p)
        except Exception as exc:  # the frontend's not-supported errors carry the engines' reasons
            shared.graphs[key] = str(exc).splitlines()[0]
    return shared.graphs[key]


def build_cudnn_conv(step: Step, tactic: Tactic, activation: str, params: Any) -> Body:
    """The step as the cuDNN plan of rank ``tactic`` (or the next one that builds). With the
    tactic's NVRTC epilogue, or where no engine fuses the epilogue (a residual add in NCHW),
    cuDNN computes the bare conv and one NVRTC kernel the rest, in place. A channels-last
    step's weight goes to the device as KRSC."""
    from edge.kernels.cuda.nn import conv_geometry

    cudnn = _library()
    g = conv_geometry(step.node, step.spec.opset, tuple(step.input(0).shape), tuple(step.input(1).shape), activation, params)
    p = _problem(g, step.spec)
    if cudnn is None or p is None:
        raise ValueError(f"node '{step.node.name}': tactic '{tactic.name}' needs cuDNN for this convolution, which is not available")
    shared = _Graphs.of(step.backend)
    conv_only = {**p, "bias": False, "residual": False, "act": ""}
    bare = tactic.params.get("epilogue") == "nvrtc" and _has_epilogue(p)
    with shared.lock:
        built = _built(shared, cudnn, conv_only if bare else p)
        if isinstance(built, str) and not bare and _has_epilogue(p):
            bare, built = True, _built(shared, cudnn, conv_only)
        if isinstance(built, str):
            raise ValueError(f"node '{step.node.name}': no cuDNN execution plan builds for this convolution ({built})")
        graph, tensors = built
        count = graph.get_execution_plan_count()
        index = int(tactic.params.get("plan", 0))
        while index < count:
            try:
                graph.build_plan_at_index(index)
                break
            except Exception:  # this plan does not build for the step: try the next ranked one
                index += 1
        if index >= count:
            raise ValueError(f"node '{step.node.name}': no cuDNN execution plan from rank {tactic.params.get('plan', 0)} builds for this convolution")
        workspace = int(graph.get_workspace_size_plan_at_index(index))
    if p["nhwc"]:
        step.place(1, np.ascontiguousarray(step.const(1).transpose(TO_CHANNELS_LAST)))
    roles = [("x", 0), ("w", 1)] + [(role, i) for role, i in (("b", 2), ("z", 3)) if role in tensors]
    epilogue = _epilogue(step, g, p) if bare else None

    def body(inputs: list, outputs: list, state) -> None:
        pack = {tensors[role]: inputs[i].ptr for role, i in roles}
        pack[tensors["y"]] = outputs[0].ptr
        scratch = state.workspace(step.backend, workspace) if workspace else None
        with shared.lock:
            cudnn.set_stream(shared.handle, int(state.stream))
            graph.execute_plan_at_index(pack, scratch, index, handle=shared.handle)
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
