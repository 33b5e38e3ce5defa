"""INT8 layers for the CUDA INT8 tests: nodes carrying what the INT8 build stage leaves on them
(activation scales, per-channel weight codes, tensors written as INT8), their steps for the
CUDA backend, and the CPU backend's result for them (the oracle).

Activations are drawn as float16 values: the GPU reads them from float16 storage and the CPU
gets the same numbers as float32, so both quantize the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.ir import EDGETRT_DOMAIN, Node, Value
from edge.ir.layout import CHANNELS_LAST, to_channels_last
from edge.kernels.backend import RunState, StepSpec, TensorInfo
from edge.kernels.cpu.backend import HostBackend
from edge.kernels.cuda.nn import conv_geometry
from edge.kernels.registry import Workspace
from edge.quant.numerics import SYMMETRIC_MAX, weight_axis, weight_codes

__all__ = ["Int8Case", "conv_case", "gemm_case", "matmul_case", "cpu_result", "gpu_spec", "quantization_steps", "code_steps"]

RNG = np.random.default_rng(21)


@dataclass
class Int8Case:
    """One INT8 layer: its node (constants and meta on its values) and its activation inputs."""

    id: str
    node: Node
    activations: dict[int, np.ndarray] = field(default_factory=dict)

    def arrays(self) -> list[np.ndarray | None]:
        """The CPU's inputs: activations as float32, constants as the node holds them."""
        return [self.activations.get(i, None if v is None else v.const) for i, v in enumerate(self.node.inputs)]


def _activation(name: str, shape: tuple[int, ...], spread: float = 2.0) -> tuple[Value, np.ndarray]:
    """A float16-valued activation and its value carrying a calibrated scale (clipping the tails)."""
    array = (RNG.standard_normal(shape) * spread).astype(np.float16).astype(np.float32)
    value = Value(name, np.float32, shape)
    value.meta.update(int8_scale=float(np.float32(np.abs(array).max() * 0.9 / SYMMETRIC_MAX)), int8_zero_point=0)
    return value, array


def _weight(node_op: str, array: np.ndarray, attrs: dict) -> Value:
    """A constant weight as the INT8 build leaves it: fake-quantized, its codes and scales in meta."""
    axis = weight_axis(node_op, 1, attrs)
    codes, scale = weight_codes(array.astype(np.float32), axis)
    value = Value("w", const=(codes * scale).astype(np.float32))
    value.meta.update(int8_weight=codes, int8_scale=scale.reshape(-1), int8_zero_point=np.zeros((), np.int8), int8_axis=axis % codes.ndim)
    return value


def _finish(case: Int8Case, requantize: bool) -> Int8Case:
    """Give the output a scale from the layer's own float result (and mark it INT8 when
    ``requantize``), as calibration and the INT8 build stage would."""
    out = case.node.outputs[0]
    out.meta.update(int8_scale=1.0, int8_zero_point=0)
    probe = cpu_result(case)
    out.shape = probe.shape
    out.meta["int8_scale"] = float(np.float32(max(float(np.abs(probe).max()), 1e-3) * 0.9 / SYMMETRIC_MAX))
    if requantize:
        out.meta["int8_output"] = True
    return case


def _node(op: str, inputs: list[Value | None], attrs: dict, domain: str) -> Node:
    node = Node(op, inputs, [Value("y", np.float32)], attrs, name=f"{op.lower()}_int8", domain=domain)
    node.meta["precision"] = "int8"
    return node


def conv_case(id: str, x: tuple[int, ...], w: tuple[int, ...], attrs: dict | None = None, *, bias: bool = True,
              residual: bool = False, activation: str = "", params: tuple = (), requantize: bool = True,
              channels_last: bool = False, residual_on_grid: bool = False) -> Int8Case:
    """An INT8 Conv (FusedConv with a residual, an activation or ``channels_last``: then ``x``
    is still given as (N, C, H, W) and the tensors are NHWC). ``residual_on_grid``: the
    residual is a tensor an INT8 layer wrote as INT8."""
    attrs = dict(attrs or {})
    fused = residual or bool(activation) or channels_last
    if activation:
        attrs.update(activation=activation, activation_params=list(params))
    op = "FusedConv" if fused else "Conv"
    stored = to_channels_last if channels_last else tuple
    g = conv_geometry(Node(op, [], [], attrs), 17, x, w)
    xv, xa = _activation("x", stored(x))
    if channels_last:
        attrs[CHANNELS_LAST] = 1
    weight = _weight(op, RNG.standard_normal(w) * np.sqrt(2.0 / np.prod(w[1:])), attrs)
    inputs: list[Value | None] = [xv, weight, Value("b", const=RNG.uniform(-0.5, 0.5, w[0]).astype(np.float32)) if bias else None]
    activations = {0: xa}
    if residual:
        zv, z = _activation("z", stored((x[0], w[0], g.oh, g.ow) if len(x) == 4 else (x[0], w[0], g.ow)), 1.0)
        if residual_on_grid:
            scale = np.float32(zv.meta["int8_scale"])
            z = (np.clip(np.rint(z / scale), -SYMMETRIC_MAX, SYMMETRIC_MAX) * scale).astype(np.float16).astype(np.float32)
            zv.meta["int8_output"] = True
        activations[3] = z
        inputs.append(zv)
    return _finish(Int8Case(id, _node(op, inputs, attrs, EDGETRT_DOMAIN if fused else ""), activations), requantize)


def gemm_case(id: str, a: tuple[int, int], b: tuple[int, int], attrs: dict | None = None, *, c: str | None = "const",
              activation: str = "", requantize: bool = True, residual: bool = False) -> Int8Case:
    """An INT8 Gemm (FusedGemm with an activation or a ``residual`` Z); ``c``: "const" (a bias
    row), "activation" (an (M, N) addend) or None."""
    attrs = dict(attrs or {})
    fused = bool(activation) or residual
    op = "FusedGemm" if fused else "Gemm"
    if activation:
        attrs["activation"] = activation
    av, aa = _activation("a", a)
    k = a[0] if attrs.get("transA") else a[1]
    weight = _weight(op, RNG.standard_normal(b) / np.sqrt(k), attrs)
    n = b[0] if attrs.get("transB") else b[1]
    m = a[1] if attrs.get("transA") else a[0]
    inputs: list[Value | None] = [av, weight]
    activations = {0: aa}
    if c == "const":
        inputs.append(Value("c", const=RNG.uniform(-0.5, 0.5, n).astype(np.float32)))
    elif c == "activation":
        cv, ca = _activation("c", (m, n), 1.0)
        inputs.append(cv)
        activations[2] = ca
    if residual:
        zv, activations[3] = _activation("z", (m, n), 1.0)
        inputs += [None] * (3 - len(inputs)) + [zv]
    return _finish(Int8Case(id, _node(op, inputs, attrs, EDGETRT_DOMAIN if fused else ""), activations), requantize)


def matmul_case(id: str, a: tuple[int, ...], b: tuple[int, int], *, requantize: bool = True) -> Int8Case:
    """An INT8 MatMul with a constant (K, N) weight."""
    av, aa = _activation("a", a)
    weight = _weight("MatMul", RNG.standard_normal(b) / np.sqrt(b[0]), {})
    return _finish(Int8Case(id, _node("MatMul", [av, weight], {}, ""), {0: aa}), requantize)


def _spec(case: Int8Case, dtype: np.dtype, out_shape: tuple[int, ...], tactic=None, codes: tuple = ()) -> StepSpec:
    infos: list[TensorInfo | None] = []
    for index, value in enumerate(case.node.inputs):
        if value is None:
            infos.append(None)
        elif value.is_const:
            const = value.const.astype(dtype) if value.const.dtype == np.float32 else value.const
            infos.append(TensorInfo(value.name, const.dtype, tuple(const.shape), const))
        else:
            infos.append(TensorInfo(value.name, np.dtype(np.int8 if index in codes else dtype), tuple(value.shape)))
    outputs = [TensorInfo("y", np.dtype(np.int8 if "y" in codes else dtype), tuple(out_shape))]
    return StepSpec(case.node, 17, "int8", tactic, "nchw", infos, outputs, device="gpu")


def cpu_result(case: Int8Case) -> np.ndarray:
    """The CPU backend's output: inputs put on their grids, integer arithmetic, the output
    requantized when the layer writes it as INT8."""
    spec = _spec(case, np.dtype(np.float32), ())
    launch = HostBackend("cpu").prepare(spec)
    (result,) = launch(case.arrays(), None, RunState(scratch={"cpu": Workspace()}))
    return np.asarray(result)


def gpu_spec(case: Int8Case, dtype: np.dtype, tactic=None, codes: tuple = ()) -> tuple[StepSpec, list[np.ndarray | None]]:
    """The case's CUDA step in ``dtype`` storage and its runtime inputs (None for constants);
    ``codes``: the input positions, and "y" for the output, stored as INT8 codes instead
    (the plan's INT8 storage), whose runtime inputs are then the CPU's codes."""
    out = tuple(case.node.outputs[0].shape)
    runtime = [case.activations[i].astype(dtype) if i in case.activations else None for i in range(len(case.node.inputs))]
    for index in (i for i in codes if i != "y"):
        scale = np.float32(case.node.inputs[index].meta["int8_scale"])
        runtime[index] = np.clip(np.rint(case.activations[index] / scale), -SYMMETRIC_MAX, SYMMETRIC_MAX).astype(np.int8)
    return _spec(case, np.dtype(dtype), out, tactic, codes), runtime


def quantization_steps(actual: np.ndarray, expected: np.ndarray, scale: float) -> np.ndarray:
    """|actual - expected| in steps of ``scale``."""
    return np.abs(actual.astype(np.float64) - expected.astype(np.float64)) / float(scale)


def code_steps(actual: np.ndarray, expected: np.ndarray, scale: float) -> np.ndarray:
    """How many INT8 codes apart two tensors on the grid of ``scale`` are (float16 storage of
    ``q * s`` is up to 0.06 of a step off, its code exact)."""
    return np.abs(np.rint(actual.astype(np.float64) / scale) - np.rint(expected.astype(np.float64) / scale))
