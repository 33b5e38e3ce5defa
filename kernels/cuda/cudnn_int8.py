"""cuDNN's INT8 convolutions as tactics of the integer convolution layers in channels-last form.

A step reads its input as INT8 codes (NHWC): the tensor itself where the plan stores it as
codes (:mod:`edge.plan.int8_storage`), else quantized into the context's scratch. One cuDNN
graph then computes int8 x int8 -> int32 over them and the weight's codes (KRSC):

- ``cudnn_int8<i>``: the graph also scales each channel's sums, adds the bias and the residual,
  applies a Relu / Clip and clamps to the output's INT8 range. Into float16 (float32) storage
  the output is not rounded to its INT8 grid (cuDNN has no such step): it is within half a
  step of the CPU's, and the next INT8 layer, which rounds its input to that grid, reads the
  same codes but at rounding boundaries. Into INT8 storage the factors are divided by the
  output's scale (and a residual's codes scaled by s_z / s_y), so cuDNN's conversion to INT8
  writes the codes; rounding x·(m/s) rather than (x·m)/s moves a code only at a boundary.
  Offered where the residual is itself a tensor written as INT8 (on its grid: the CPU would
  not move it) and the activation is none, Relu or Clip. Where no engine fuses it, the step
  runs as ``cudnn_int8<i>c``.
- ``cudnn_int8<i>c``: cuDNN writes the int32 sums to scratch and the integer kernels' own
  epilogue (``imma_rows_epilogue`` of int8.cu) finishes: the CPU's float32 operations in its
  order, requantization (or the output's codes) included.

``<i>`` is the rank of the plan in the graph's list (heuristics mode A, then the fallback
list), as for the float convolutions (:mod:`.cudnn_conv`). cuDNN's INT8 engines take channel
counts in multiples of 4. The auto-tuner times these after the NVRTC integer kernels, whose
result a cuDNN plan must match.
"""
from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from edge.ir.layout import is_channels_last
from edge.kernels.backend import StepSpec
from edge.kernels.cuda import cudnn_graphs
from edge.kernels.cuda.conversions import FakeQuant
from edge.kernels.cuda.cudnn_conv import end_padding, image_strides
from edge.kernels.cuda.launch import BLOCK, Body, DeviceTensor, Step, float_suffix, grid_1d, storage_suffix
from edge.kernels.cuda.nn import Conv2d
from edge.kernels.tactics import Tactic
from edge.quant.numerics import quantizer_of

__all__ = ["PLANS", "build_cudnn_int8_conv", "epilogue_suffix", "fused_bounds", "int8_conv_candidates"]

PLANS = 4
"""Execution plans of each graph's ranked list offered as tactics."""
CHANNEL_MULTIPLE = 4
"""cuDNN's INT8 convolutions take input and output channels in multiples of this."""
FUSED_ACTIVATIONS = ("", "Relu", "Clip")
"""Activations the fused graph expresses with the output's clamp (one cuDNN RELU with clips)."""
CODES, SUMS = "int8_codes", "int8_sums"
"""Context scratch purposes: the quantized input, the int32 sums of the unfused form."""


def int8_conv_candidates(spec: StepSpec) -> list[Tactic]:
    """cuDNN's INT8 plans for a channels-last integer convolution (none without cuDNN, for NCHW
    steps or channel counts cuDNN's INT8 engines do not take): fused where allowed, then unfused."""
    node = spec.node
    if not cudnn_graphs.available() or not is_channels_last(node):
        return []
    channels, outputs = spec.inputs[0].shape[-1], spec.outputs[0].shape[-1]
    if channels % CHANNEL_MULTIPLE or outputs % CHANNEL_MULTIPLE:
        return []
    bare = [Tactic(f"cudnn_int8{i}c", {"source": "cudnn", "plan": i, "epilogue": "nvrtc"}) for i in range(PLANS)]
    if not _fusable(node):
        return bare
    return [Tactic(f"cudnn_int8{i}", {"source": "cudnn", "plan": i}) for i in range(PLANS)] + bare


def _fusable(node: Any) -> bool:
    """Whether the fused graph computes this layer's epilogue (see the module doc)."""
    residual = node.inputs[3] if len(node.inputs) > 3 else None
    on_grid = residual is None or quantizer_of(residual.meta) is None or bool(residual.meta.get("int8_output"))
    return on_grid and node.attrs.get("activation", "") in FUSED_ACTIVATIONS


def fused_bounds(activation: str, p0: float, p1: float, output: FakeQuant) -> tuple[float | None, float | None]:
    """(lower, upper) clamp of the fused graph: the activation's (Relu's 0, Clip's bounds) within
    the output's INT8 range (scale 0: none); None for an open side."""
    lower, upper = -math.inf, math.inf
    if output.scale != 0.0:
        lower, upper = (output.low - output.zero) * output.scale, (output.high - output.zero) * output.scale
    if activation == "Relu":
        lower = max(lower, 0.0)
    elif activation == "Clip":
        lower, upper = max(lower, p0), min(upper, p1)
    return (None if lower == -math.inf else lower), (None if upper == math.inf else upper)


def epilogue_suffix(step: Step, residual: int | None) -> str:
    """The name suffix of the integer epilogue kernels for ``step``'s storage: the output's
    ("f16", "f32", "i8"), then the residual's where it differs (``residual``: its input index)."""
    out = storage_suffix(step.output(0).dtype)
    z = out if residual is None else storage_suffix(step.input(residual).dtype)
    return out if z == out else f"{out}_{z}"


def _problem(g: Conv2d, dtypes: tuple[np.dtype, np.dtype | None], bias: bool, clamp: tuple[float | None, float | None] | None,
             z_factor: bool) -> dict[str, Any] | None:
    """The graph's description: ``dtypes`` the (output, residual) storage, ``clamp`` None for
    the unfused graph, ``z_factor`` whether the residual is scaled (INT8 codes on either side);
    None where cuDNN's output size cannot be the layer's."""
    post = end_padding(g)
    if post is None:
        return None
    fused = clamp is not None
    return {
        "y_dtype": np.dtype(dtypes[0]) if fused else np.dtype(np.int32),
        "z_dtype": None if dtypes[1] is None or not fused else np.dtype(dtypes[1]),
        "x": (g.n, g.c, g.h, g.w), "w": (g.m, g.c, g.kh, g.kw), "y": (g.n, g.m, g.oh, g.ow),
        "pre": (g.ph, g.pw), "post": post, "stride": (g.sh, g.sw), "dilation": (g.dh, g.dw),
        "fused": fused, "bias": bias and fused, "clamp": clamp, "z_factor": z_factor and fused,
    }


def _graph(cudnn: Any, handle: Any, p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The INT8 graph of ``p`` with its ranked plans listed (none built yet) and its tensors by role."""
    types = {np.dtype(np.float16): cudnn.data_type.HALF, np.dtype(np.float32): cudnn.data_type.FLOAT,
             np.dtype(np.int8): cudnn.data_type.INT8, np.dtype(np.int32): cudnn.data_type.INT32}
    intermediate = cudnn.data_type.FLOAT if p["fused"] else cudnn.data_type.INT32
    graph = cudnn.pygraph(io_data_type=cudnn.data_type.INT8, intermediate_data_type=intermediate,
                          compute_data_type=cudnn.data_type.INT32, handle=handle)

    def tensor(name: str, dims: tuple[int, ...], data_type: Any) -> Any:
        return graph.tensor(name=name, dim=list(dims), stride=image_strides(dims, True), data_type=data_type)

    channel = (1, p["y"][1], 1, 1)
    tensors = {"x": tensor("x", p["x"], cudnn.data_type.INT8), "w": tensor("w", p["w"], cudnn.data_type.INT8)}
    y = graph.conv_fprop(image=tensors["x"], weight=tensors["w"], pre_padding=list(p["pre"]), post_padding=list(p["post"]),
                         stride=list(p["stride"]), dilation=list(p["dilation"]), compute_data_type=cudnn.data_type.INT32)
    if p["fused"]:
        tensors["s"] = tensor("s", channel, cudnn.data_type.FLOAT)
        y = graph.mul(a=y, b=tensors["s"])
        if p["bias"]:
            tensors["b"] = tensor("b", channel, cudnn.data_type.FLOAT)
            y = graph.add(a=y, b=tensors["b"])
        if p["z_dtype"] is not None:
            z = tensors["z"] = tensor("z", p["y"], types[p["z_dtype"]])
            if p["z_factor"]:
                tensors["zs"] = tensor("zs", channel, cudnn.data_type.FLOAT)
                z = graph.mul(a=z, b=tensors["zs"])
            y = graph.add(a=y, b=z)
        clips = {name: bound for name, bound in zip(("lower_clip", "upper_clip"), p["clamp"]) if bound is not None}
        if clips:
            y = graph.relu(input=y, **clips)
    else:
        y = graph.identity(input=y)
    y.set_output(True).set_data_type(types[p["y_dtype"]])
    y.set_dim(list(p["y"])).set_stride(image_strides(p["y"], True))
    tensors["y"] = y
    graph.validate()
    graph.build_operation_graph()
    graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    return graph, tensors


def build_cudnn_int8_conv(step: Step, problem: Any, epilogue: Any, tactic: Tactic) -> Body:
    """The step as the cuDNN plan of rank ``tactic`` (or the next that builds). ``problem`` is
    the layer's integer GEMM (``int8._Problem``: geometry, KRSC weight codes, channel factors,
    bias, residual), ``epilogue`` its ``Imma`` struct (quantizers, activation) for the NVRTC
    epilogue of the unfused form. An input stored as INT8 codes is read as it is; an output
    stored as INT8 gets the fused graph's factors divided by its scale, so cuDNN's conversion
    to INT8 writes its codes."""
    if not cudnn_graphs.available() or not is_channels_last(step.node):
        raise ValueError(f"node '{step.node.name}': tactic '{tactic.name}' needs cuDNN and a channels-last convolution")
    g = problem.pack
    out_dtype = np.dtype(step.output(0).dtype)
    z_dtype = None if problem.residual is None else np.dtype(step.input(problem.residual).dtype)
    codes_out = out_dtype == np.int8
    unit = float(epilogue.yq.scale) if codes_out else 1.0  # the fused graph computes in the output's units
    z_scale = float(epilogue.zq.scale) if z_dtype == np.int8 else 1.0
    clamp = None
    if tactic.params.get("epilogue") != "nvrtc":
        bounds = fused_bounds(step.node.attrs.get("activation", ""), epilogue.p0, epilogue.p1, epilogue.yq)
        clamp = tuple(None if bound is None else bound / unit for bound in bounds)
    dtypes = (out_dtype, z_dtype)
    shared = cudnn_graphs.Graphs.of(step.backend)
    p = _problem(g, dtypes, problem.bias is not None, clamp, z_scale != unit)
    built = None if p is None else shared.built(p, _graph)
    if isinstance(built, str) and p["fused"]:  # no engine fuses this epilogue: the unfused form
        p = _problem(g, dtypes, False, None, False)
        built = shared.built(p, _graph)
    if p is None or isinstance(built, str):
        why = built or "cuDNN's output size differs"
        raise ValueError(f"node '{step.node.name}': no cuDNN INT8 execution plan builds for this convolution ({why})")
    graph, tensors = built
    plan = shared.plan(graph, int(tactic.params.get("plan", 0)))
    if plan is None:
        raise ValueError(f"node '{step.node.name}': no cuDNN INT8 execution plan from rank {tactic.params.get('plan', 0)} builds")
    weight = step.place(1, np.ascontiguousarray(problem.weight.astype(np.int8)))
    if p["fused"]:
        multiplier = step.upload((problem.multiplier / np.float32(unit)).astype(np.float32))
        bias = None if problem.bias is None else step.place(2, (problem.bias / np.float32(unit)).astype(np.float32))
        z_factor = step.upload(np.full(g.m, np.float32(z_scale) / np.float32(unit), np.float32)) if p["z_factor"] else None
    else:
        multiplier = step.upload(problem.multiplier)
        bias = None if problem.bias is None else step.place(2, problem.bias)
        finish = step.function("int8", f"imma_rows_epilogue_{epilogue_suffix(step, problem.residual)}")
    quantize = _input_codes(step)
    sums = problem.rows * g.m * 4

    def body(inputs: list, outputs: list, state) -> None:
        pack = {tensors["x"]: quantize(inputs[0], state), tensors["w"]: weight.ptr}
        z = inputs[problem.residual] if problem.residual is not None else None
        if p["fused"]:
            pack[tensors["s"]] = multiplier.ptr
            pack.update({tensors[role]: t.ptr for role, t in (("b", bias), ("z", z), ("zs", z_factor)) if role in tensors})
            pack[tensors["y"]] = outputs[0].ptr
            plan.execute(pack, state, step.backend)
            return
        acc = DeviceTensor(state.workspace(step.backend, sums, SUMS), (problem.rows, g.m), np.dtype(np.int32))
        pack[tensors["y"]] = acc.ptr
        plan.execute(pack, state, step.backend)
        finish(state, grid_1d(problem.rows * g.m), (BLOCK, 1, 1), acc, multiplier, bias, z, outputs[0], epilogue)

    return body


def _input_codes(step: Step) -> Callable[[Any, Any], int]:
    """``codes(x, state)``: the device address of the step's input as INT8 codes, quantized
    into the context's scratch, or the input itself where it is stored as codes."""
    info = step.input(0)
    if np.dtype(info.dtype) == np.int8:
        return lambda x, state: x.ptr
    n = math.prod(info.shape)
    fn = step.function("int8", f"quantize_codes_{float_suffix(info.dtype)}")
    args = (ctypes.c_int64(n), FakeQuant.of(quantizer_of(step.node.inputs[0].meta)))

    def codes(x: Any, state: Any) -> int:
        address = state.workspace(step.backend, n, CODES)
        fn(state, grid_1d(n), (BLOCK, 1, 1), x, DeviceTensor(address, (n,), np.dtype(np.int8)), *args)
        return address

    return codes
