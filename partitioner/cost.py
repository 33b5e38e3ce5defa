"""Cost model: per-layer work (FLOPs, bytes, GEMM shape) -> GPU / DLA / CPU time and energy at a power mode.

The work of a layer (``LayerWork``) does not depend on any constant; the times do, and every
constant comes from the profile's ``cost`` section (fitted by benchmarks/cost_model_fit.py to
published Jetson numbers, or refitted by ``edgetrt partition calibrate``). The terms:

- GPU, per kernel: ``launch_ms`` + a roofline ``max(flops / (peak * eff_class * util),
  bytes / (bandwidth * memory_eff))``. Compute classes (conv, pointwise, depthwise, stem, gemm)
  scale the compute peak; memory classes (elementwise, pool, data, norm) scale the bandwidth.
  ``util`` is wave quantization: the GEMM view of a conv (M = N*H*W, N = Cout) is cut into
  tiles of at most ``tile_m x tile_n`` that run in waves of ``SMs * ctas_per_sm``; a batch-1 layer with a
  few tiles leaves most of the GPU idle, which is why GPU efficiency rises with batch. INT8
  reaches ``int8_factor`` of the FP16 efficiency.
- DLA, per image (the DLA runs a batch image by image): per layer
  ``max(flops / (peak * eff_class * sparse), bytes / dla_bandwidth) + layer_ms``; per subgraph
  ``submit_ms + batch * image_ms``. The DLA's DRAM rate scales with the EMC cap, not its own
  clock, so memory-bound layers and fixed costs do not speed up with the DLA clock.
- Boundaries: each DLA<->GPU tensor costs a GPU reformat kernel (read + write) plus
  ``transition_sync_ms``.
- Several engines at once (GPU + DLA0 + DLA1): each runs ``1 + concurrency_slowdown`` slower
  per other busy engine (shared DRAM).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses
from dataclasses import dataclass

import numpy as np

from edge.ir import Node, Value
from edge.profiles import DeviceProfile, PowerMode
from edge.profiles.schema import CostSpec

__all__ = [
    "CostModel",
    "LayerWork",
    "WorkArrays",
    "layer_work",
    "network_work",
    "node_flops",
    "tensor_bytes",
    "FLOP_RULES",
    "PRECISION_BYTES",
    "COMPUTE_CLASSES",
]

PRECISION_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
COMPUTE_CLASSES = ("conv", "pointwise", "depthwise", "stem", "gemm")
MEMORY_CLASSES = ("elementwise", "pool", "data", "norm")
_CLASSES = COMPUTE_CLASSES + MEMORY_CLASSES
_SPARSE_MIN_CHANNELS = 64  # 2:4 sparsity needs C > 64 on Orin's DLA (dla.md section 1)


def _numel(value: Value | None) -> int:
    if value is None or not value.is_static:
        return 0
    return int(np.prod(value.shape, dtype=np.int64))


def _out(node: Node) -> int:
    return sum(_numel(v) for v in node.outputs)


def _windowed_flops(node: Node, counted: Value) -> float:
    """2 x (elements of ``counted``) x (weight elements per window): one multiply-add per
    weight element for every window; falls back to the output size when W is dynamic."""
    weight = node.inputs[1]
    if weight.shape is None or not weight.is_static:
        return float(_out(node))
    per_window = int(np.prod(weight.shape[1:], dtype=np.int64))
    return 2.0 * _numel(counted) * per_window


def _conv_flops(node: Node) -> float:
    return _windowed_flops(node, node.outputs[0])  # one (C/group) x kernel window per output


def _deconv_flops(node: Node) -> float:
    return _windowed_flops(node, node.inputs[0])  # one (M/group) x kernel window per input


def _matmul_flops(node: Node) -> float:
    a = node.inputs[0]
    if a.shape is None or not a.is_static:
        return float(_out(node))
    k = int(a.shape[0] if node.attrs.get("transA", 0) else a.shape[-1])
    return 2.0 * _numel(node.outputs[0]) * k


def _pool_flops(node: Node) -> float:
    window = node.attrs.get("kernel_shape", [1])
    return float(_out(node) * int(np.prod(window)))


def _global_pool_flops(node: Node) -> float:
    return float(_numel(node.inputs[0]))


def _attention_flops(node: Node) -> float:
    q, k = node.inputs[0], node.inputs[1]
    if not (q.is_static and k.is_static):
        return float(_out(node))
    keys = int(k.shape[1] if node.attrs.get("bshd", 0) else k.shape[-2])  # (B, Sk, H, D) or (..., Sk, D)
    return 4.0 * _numel(q) * keys  # Q K^T and P V


def _per_element(factor: float) -> Callable[[Node], float]:
    return lambda node: factor * _out(node)


FLOP_RULES: dict[str, Callable[[Node], float]] = {
    "Conv": _conv_flops,
    "FusedConv": _conv_flops,
    "ConvTranspose": _deconv_flops,
    "FusedConvTranspose": _deconv_flops,
    "Gemm": _matmul_flops,
    "FusedGemm": _matmul_flops,
    "MatMul": _matmul_flops,
    "MaxPool": _pool_flops,
    "AveragePool": _pool_flops,
    "GlobalAveragePool": _global_pool_flops,
    "GlobalMaxPool": _global_pool_flops,
    "ReduceMean": _global_pool_flops,
    "ReduceMax": _global_pool_flops,
    "Attention": _attention_flops,
    "Softmax": _per_element(5.0),
    "LayerNormalization": _per_element(8.0),
    "GroupNormalization": _per_element(8.0),
    "InstanceNormalization": _per_element(8.0),
    "BatchNormalization": _per_element(2.0),
    "FusedBatchNormalization": _per_element(3.0),
    "SiLU": _per_element(4.0),
    "Sigmoid": _per_element(4.0),
    "Tanh": _per_element(4.0),
    "Gelu": _per_element(8.0),
    "Resize": _per_element(4.0),
    "LRN": _per_element(10.0),
}
"""Op type -> FLOPs of one execution; ops not listed cost one FLOP per output element."""

_CONV_OPS = frozenset({"Conv", "FusedConv", "ConvTranspose", "FusedConvTranspose"})
_GEMM_OPS = frozenset({"Gemm", "FusedGemm", "MatMul", "Attention"})
_POOL_OPS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax",
                       "ReduceSum", "ReduceMin", "LRN"})
_DATA_OPS = frozenset({"Concat", "Split", "Slice", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Resize",
                       "Upsample", "Pad", "Gather", "ChannelShuffle", "DepthToSpace", "SpaceToDepth", "Cast"})
_NORM_OPS = frozenset({"Softmax", "LayerNormalization", "GroupNormalization", "InstanceNormalization", "TopK",
                       "NonMaxSuppression", "ArgMax", "ArgMin"})


def node_flops(node: Node) -> float:
    """Floating-point operations of one execution of ``node`` (multiply-add = 2)."""
    rule = FLOP_RULES.get(node.op_type)
    return rule(node) if rule is not None else float(_out(node))


@dataclass(frozen=True)
class LayerWork:
    """What one layer asks of a device, independent of every cost constant.

    Attributes:
        op_class: one of conv, pointwise, depthwise, stem, gemm, elementwise, pool, data, norm.
        flops: FLOPs of one execution (the whole batch).
        activations: activation elements read and written (the whole batch).
        weights: constant elements read (weights, biases).
        batch: images in one execution (the leading dims, as the DLA counts them).
        gemm_m / gemm_n: output rows and columns of the layer's GEMM view (0 when not a GEMM).
        sparse_eligible: a convolution 2:4 structured sparsity can speed up (C > 64).
        fused: an activation / bias / residual op TensorRT folds into the producing conv or
            GEMM (its epilogue); it costs nothing of its own on the GPU (see ``network_work``).
        dla_fused: the same on the DLA, which folds single-input activations, scales and the
            residual Add but runs SiLU as a separate Sigmoid and elementwise product.
        dla_extra_activations: elements a fused SiLU makes the DLA read and write on top (the
            sigmoid written and read back, the conv output read again).
    """

    op_class: str
    flops: float
    activations: float
    weights: float
    batch: int = 1
    gemm_m: float = 0.0
    gemm_n: float = 0.0
    sparse_eligible: bool = False
    fused: bool = False
    dla_fused: bool = False
    dla_extra_activations: float = 0.0


def _conv_class(node: Node) -> tuple[str, float, float, bool]:
    weight, out = node.inputs[1], node.outputs[0]
    if weight.shape is None or not weight.is_static or not out.is_static:
        return "conv", 0.0, 0.0, False
    groups = int(node.attrs.get("group", 1))
    per_group_in = int(weight.shape[1])
    kernel = tuple(int(d) for d in weight.shape[2:])
    out_maps = int(out.shape[1])
    rows = float(np.prod(out.shape, dtype=np.int64) / out_maps)
    if groups > 1 and per_group_in == 1:
        return "depthwise", rows, float(out_maps), False
    if per_group_in <= 4 and node.op_type in ("Conv", "FusedConv"):
        return "stem", rows, float(out_maps), False
    klass = "pointwise" if all(k == 1 for k in kernel) else "conv"
    return klass, rows, float(out_maps), per_group_in * groups > _SPARSE_MIN_CHANNELS


def layer_work(node: Node) -> LayerWork:
    """The ``LayerWork`` of one IR node (shapes must be static for non-zero work)."""
    activations = float(sum(_numel(v) for v in node.inputs if v is not None and not v.is_const) + _out(node))
    weights = float(sum(_numel(v) for v in node.inputs if v is not None and v.is_const))
    first = node.outputs[0] if node.outputs else None
    batch = 1
    if first is not None and first.is_static and first.shape:
        outer = first.shape[:-3] if len(first.shape) >= 3 else first.shape[:1]
        batch = max(1, int(np.prod(outer, dtype=np.int64))) if outer else 1
    m = n = 0.0
    sparse = False
    silu = 3.0 * _out(node) if node.attrs.get("activation") == "SiLU" else 0.0
    if node.op_type in _CONV_OPS:
        klass, m, n, sparse = _conv_class(node)
    elif node.op_type in _GEMM_OPS:
        klass = "gemm"
        if first is not None and first.is_static and first.shape:
            n = float(first.shape[-1])
            m = float(_numel(first)) / max(n, 1.0)
    elif node.op_type in _POOL_OPS:
        klass = "pool"
    elif node.op_type in _DATA_OPS:
        klass = "data"
    elif node.op_type in _NORM_OPS:
        klass = "norm"
    else:
        klass = "elementwise"
    return LayerWork(klass, node_flops(node), activations, weights, batch, m, n, sparse, dla_extra_activations=silu)


_EPILOGUE_OPS = frozenset({"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "SiLU", "Add", "Mul", "BatchNormalization", "PRelu"})
_DLA_UNFUSED = frozenset({"Sigmoid", "Mul", "SiLU"})  # the DLA runs SiLU as Sigmoid + elementwise product


def network_work(nodes: Sequence[Node]) -> list[LayerWork]:
    """``layer_work`` of every node, marking the epilogues TensorRT fuses into a conv or GEMM:
    an activation, scale or residual Add whose input comes from a conv/GEMM (or an epilogue of
    one) that feeds nothing but epilogue ops, so unfused exports cost what fused engines do."""
    works = [layer_work(n) for n in nodes]
    folded: set[int] = set()  # ids of nodes TensorRT folds into their producer
    for i, node in enumerate(nodes):
        if id(node) in folded:
            works[i] = dataclasses.replace(works[i], fused=True, dla_fused=node.op_type not in _DLA_UNFUSED)
        consumers = [c for v in node.outputs for c in v.consumers]
        head = works[i].op_class in COMPUTE_CLASSES or works[i].fused
        if head and consumers and all(c.op_type in _EPILOGUE_OPS for c in consumers):
            folded.update(id(c) for c in consumers)
    return works


class WorkArrays:
    """Columns of many ``LayerWork`` rows, so a whole network is costed in a few numpy operations."""

    def __init__(self, works: Sequence[LayerWork]) -> None:
        self.works = list(works)
        self.op_class = np.array([_CLASSES.index(w.op_class) for w in works], dtype=np.int64)
        self.flops = np.array([w.flops for w in works], dtype=np.float64)
        self.activations = np.array([w.activations for w in works], dtype=np.float64)
        self.weights = np.array([w.weights for w in works], dtype=np.float64)
        self.batch = np.array([w.batch for w in works], dtype=np.float64)
        self.gemm_m = np.array([w.gemm_m for w in works], dtype=np.float64)
        self.gemm_n = np.array([w.gemm_n for w in works], dtype=np.float64)
        self.sparse_eligible = np.array([w.sparse_eligible for w in works], dtype=bool)
        self.fused = np.array([w.fused for w in works], dtype=bool)
        self.dla_fused = np.array([w.dla_fused for w in works], dtype=bool)
        self.dla_extra = np.array([w.dla_extra_activations for w in works], dtype=np.float64)
        self.compute = np.isin(self.op_class, [_CLASSES.index(c) for c in COMPUTE_CLASSES])

    def __len__(self) -> int:
        return len(self.works)


class CostModel:
    """Time and energy estimates for one profile at one power mode (see module docstring).

    ``constants`` defaults to the profile's ``cost`` section; the fit passes candidates.
    """

    def __init__(self, profile: DeviceProfile, mode: PowerMode, constants: CostSpec | None = None) -> None:
        self.profile = profile
        self.mode = mode
        self.constants = constants if constants is not None else profile.cost

    # -- throughput at the mode's caps --------------------------------------------------
    def _tpc_share(self) -> float:
        gpu = self.profile.gpu
        return (self.mode.gpu_tpcs / gpu.tpcs) if (self.mode.gpu_tpcs and gpu.tpcs) else 1.0

    def gpu_peak(self, precision: str) -> float:
        """Ops/s of the whole GPU at this mode (clock cap x powered TPCs)."""
        gpu = self.profile.gpu
        tera = {"fp32": gpu.peak_fp32_tflops, "fp16": gpu.peak_fp16_tflops, "int8": gpu.peak_int8_tops}[precision]
        clock = (self.mode.gpu_max_mhz or gpu.max_mhz) / gpu.max_mhz
        return tera * 1e12 * clock * self._tpc_share()

    def dla_peak(self, precision: str) -> float:
        """Ops/s of one DLA core at this mode."""
        dla = self.profile.dla
        tera = dla.peak_int8_tops if precision == "int8" else dla.peak_fp16_tflops
        return tera * 1e12 * (self.mode.dla_max_mhz or dla.max_mhz) / dla.max_mhz

    def _emc_scale(self) -> float:
        return min(1.0, self.mode.emc_max_mhz / self.profile.emc_max_mhz)

    def bandwidth(self) -> float:
        """DRAM bytes/s at this mode's EMC cap."""
        return self.profile.memory_bandwidth_gbps * 1e9 * self._emc_scale()

    def cpu_peak(self) -> float:
        cpu = self.profile.cpu
        scale = (self.mode.online_cpus / cpu.cores) * (self.mode.cpu_max_mhz / cpu.max_mhz)
        return max(cpu.peak_fp32_gflops, 1.0) * 1e9 * scale

    # -- per-layer times (milliseconds), vectorized over a network ------------------------
    def _class_eff(self, spec: object, names: Sequence[str]) -> np.ndarray:
        return np.array([getattr(spec, f"eff_{name}").value for name in names])

    def wave_util(self, work: WorkArrays) -> np.ndarray:
        """Fraction of the GPU a GEMM-shaped layer keeps busy: tile padding x wave quantization."""
        c = self.constants.gpu
        slots = max(1.0, round(self.profile.gpu.sms * self._tpc_share()) * c.ctas_per_sm.value)
        m, n = np.maximum(work.gemm_m, 1.0), np.maximum(work.gemm_n, 1.0)
        # a tactic never picks a tile much larger than the problem: the power of two above it (>= 16)
        tm = np.minimum(c.tile_m.value, np.maximum(16.0, 2.0 ** np.ceil(np.log2(m))))
        tn = np.minimum(c.tile_n.value, np.maximum(16.0, 2.0 ** np.ceil(np.log2(n))))
        tiles_m, tiles_n = np.ceil(m / tm), np.ceil(n / tn)
        tiles = tiles_m * tiles_n
        waves = np.ceil(tiles / slots)
        util = (m * n) / (tiles_m * tm * tiles_n * tn) * tiles / (waves * slots)
        return np.where(work.gemm_m > 0, util, 1.0)

    def gpu_times(self, work: WorkArrays, precision: str) -> np.ndarray:
        """Per-layer GPU time of one execution (the whole batch)."""
        c = self.constants.gpu
        eff = self._class_eff(c, _CLASSES)[work.op_class]
        if precision == "int8":
            eff = np.where(work.compute, eff * c.int8_factor.value, eff)
        size = PRECISION_BYTES[precision]
        peak = self.gpu_peak(precision)
        bandwidth = self.bandwidth() * c.memory_eff.value
        compute_eff = np.where(work.compute, eff * self.wave_util(work), 1.0)
        memory_eff = np.where(work.compute, 1.0, eff)
        compute = work.flops / (peak * compute_eff)
        memory = (work.activations + work.weights) * size / (bandwidth * memory_eff)
        return np.where(work.fused, 0.0, 1e3 * np.maximum(compute, memory) + c.launch_ms.value)

    def dla_image_times(self, work: WorkArrays, precisions: Sequence[str], sparse: bool = False) -> np.ndarray:
        """Per-layer DLA time of one image (a batch costs ``batch`` times this)."""
        c = self.constants.dla
        names = ("conv", "pointwise", "depthwise", "stem", "pointwise") + ("other",) * len(MEMORY_CLASSES)  # FC runs as a 1x1 conv
        eff = self._class_eff(c, names)[work.op_class]
        if sparse:
            eff = np.where(work.sparse_eligible, eff * c.sparse_speedup.value, eff)
        peak = np.array([self.dla_peak(p) for p in precisions])
        size = np.array([PRECISION_BYTES[p] for p in precisions], dtype=np.float64)
        batch = np.maximum(work.batch, 1.0)
        compute = work.flops / batch / (peak * eff)
        activations = (work.activations + work.dla_extra) / batch
        memory = (activations + work.weights) * size / (c.bandwidth_gbps.value * 1e9 * self._emc_scale())
        return np.where(work.dla_fused, 0.0, 1e3 * np.maximum(compute, memory) + c.layer_ms.value)

    def dla_times(self, work: WorkArrays, precisions: Sequence[str], sparse: bool = False) -> np.ndarray:
        """Per-layer DLA time of one execution (the whole batch, image by image)."""
        return self.dla_image_times(work, precisions, sparse) * np.maximum(work.batch, 1.0)

    def cpu_times(self, work: WorkArrays) -> np.ndarray:
        compute = work.flops / (self.constants.cpu_eff.value * self.cpu_peak())
        memory = (work.activations + work.weights) * 4 / self.bandwidth()
        return 1e3 * np.maximum(compute, memory)

    # -- single nodes --------------------------------------------------------------------
    def gpu_ms(self, node: Node, precision: str) -> float:
        return float(self.gpu_times(WorkArrays([layer_work(node)]), precision)[0])

    def dla_ms(self, node: Node, precision: str) -> float:
        return float(self.dla_times(WorkArrays([layer_work(node)]), [precision])[0])

    def cpu_ms(self, node: Node) -> float:
        return float(self.cpu_times(WorkArrays([layer_work(node)]))[0])

    # -- subgraphs, boundaries, concurrency ----------------------------------------------
    def dla_subgraph_ms(self, batch: int) -> float:
        """Fixed cost of one DLA subgraph per execution: a submission plus a setup per image."""
        c = self.constants.dla
        return c.submit_ms.value + max(batch, 1) * c.image_ms.value

    def transition_ms(self, nbytes: float) -> float:
        """One DLA<->GPU edge: a GPU reformat kernel (read + write) plus a synchronisation."""
        gpu = self.constants.gpu
        reformat = 1e3 * 2 * nbytes / (gpu.memory_eff.value * self.bandwidth()) + gpu.launch_ms.value
        return reformat + self.constants.dla.transition_sync_ms.value

    def concurrent_factor(self, engines: int) -> float:
        """Slow-down of each engine while ``engines`` run at once (shared DRAM)."""
        return 1.0 + self.constants.concurrency_slowdown.value * max(0, engines - 1)

    # -- power ------------------------------------------------------------------------
    @property
    def gpu_power_w(self) -> float:
        budget = self.mode.budget_w or self.profile.max_power_w
        return self.constants.gpu_power_share.value * budget

    @property
    def dla_power_w(self) -> float:
        """Per busy DLA core: GPU power scaled by relative INT8 throughput, divided by the perf/W gain."""
        if self.profile.dla is None or self.profile.gpu is None:
            return 0.0
        ratio = self.dla_peak("int8") / self.gpu_peak("int8")
        return self.gpu_power_w * ratio / self.constants.dla_perf_per_watt.value


def tensor_bytes(value: Value, precision: str) -> float:
    """Bytes of ``value`` at the storage size of ``precision`` (0 when its shape is unknown)."""
    return float(_numel(value) * PRECISION_BYTES[precision])
