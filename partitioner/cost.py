"""Cost model: per-node FLOPs and bytes -> estimated GPU / DLA / CPU time and energy at a power mode.

Each layer costs ``max(flops / (eff * peak), bytes / (eff_bw * bandwidth)) + overhead``
(a roofline), with peaks scaled from the profile by the power mode's clock caps and active
GPU TPCs. Every DLA<->GPU transition adds a GPU reformat kernel over the tensor (DLA and GPU
default formats differ) plus a synchronisation; every DLA subgraph adds a submission.

The efficiencies and overheads below are estimates, not measurements: the DLA compute
efficiency is fitted to NVIDIA's ResNet-50 figure (2 DLAs, INT8, MAXN: 2037 images/s ->
~8.4 of 26.25 dense TOPS per core); the others are typical values. Calibrate them on the
device with trtexec --exportProfile before trusting absolute numbers; ratios between
placements are what the partitioner uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge.ir import Node, Value
from edge.profiles import DeviceProfile, PowerMode

__all__ = ["CostModel", "node_flops", "tensor_bytes", "FLOP_RULES", "PRECISION_BYTES"]

PRECISION_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}

GPU_COMPUTE_EFF = 0.25  # batch-1 single stream; GPU/DLA ratio ~2x at MAXN as for YOLOv5s (dla.md section 8)
GPU_MEMORY_EFF = 0.70
GPU_LAUNCH_MS = 0.004  # per GPU kernel
DLA_COMPUTE_EFF = 0.32  # fitted to ResNet-50 on AGX Orin (dla.md section 8)
DLA_MEMORY_EFF = 0.40  # DLA's share of DRAM bandwidth
DLA_LAYER_MS = 0.002  # per layer inside a loadable
DLA_SUBMIT_MS = 0.040  # per DLA subgraph (task submission + completion signal)
TRANSITION_SYNC_MS = 0.010  # per DLA<->GPU edge, on top of the reformat kernel
CPU_COMPUTE_EFF = 0.25
GPU_POWER_SHARE = 0.6  # fraction of the mode budget a busy GPU draws
DLA_PERF_PER_WATT_GAIN = 4.0  # DLA is ~3-5x more images/s per watt than the GPU (dla.md section 8)


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
    keys = int(k.shape[-2])
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


def node_flops(node: Node) -> float:
    """Floating-point operations of one execution of ``node`` (multiply-add = 2)."""
    rule = FLOP_RULES.get(node.op_type)
    return rule(node) if rule is not None else float(_out(node))


def _node_bytes(node: Node, precision: str) -> float:
    """Activations read and written plus weights, at the storage size of ``precision``."""
    size = PRECISION_BYTES[precision]
    elements = sum(_numel(v) for v in node.inputs if v is not None) + _out(node)
    return float(elements * size)


@dataclass(frozen=True)
class CostModel:
    """Time and energy estimates for one profile at one power mode (see module docstring)."""

    profile: DeviceProfile
    mode: PowerMode

    # -- throughput at the mode's caps --------------------------------------------------
    def _gpu_scale(self) -> float:
        gpu = self.profile.gpu
        clock = (self.mode.gpu_max_mhz or gpu.max_mhz) / gpu.max_mhz
        tpcs = (self.mode.gpu_tpcs / gpu.tpcs) if (self.mode.gpu_tpcs and gpu.tpcs) else 1.0
        return clock * tpcs

    def gpu_peak(self, precision: str) -> float:
        """Ops/s of the whole GPU at this mode."""
        gpu = self.profile.gpu
        tera = {"fp32": gpu.peak_fp32_tflops, "fp16": gpu.peak_fp16_tflops, "int8": gpu.peak_int8_tops}[precision]
        return tera * 1e12 * self._gpu_scale()

    def dla_peak(self, precision: str) -> float:
        """Ops/s of one DLA core at this mode."""
        dla = self.profile.dla
        tera = dla.peak_int8_tops if precision == "int8" else dla.peak_fp16_tflops
        return tera * 1e12 * (self.mode.dla_max_mhz or dla.max_mhz) / dla.max_mhz

    def bandwidth(self) -> float:
        """DRAM bytes/s at this mode's EMC cap."""
        scale = min(1.0, self.mode.emc_max_mhz / self.profile.emc_max_mhz)
        return self.profile.memory_bandwidth_gbps * 1e9 * scale

    def cpu_peak(self) -> float:
        cpu = self.profile.cpu
        scale = (self.mode.online_cpus / cpu.cores) * (self.mode.cpu_max_mhz / cpu.max_mhz)
        return max(cpu.peak_fp32_gflops, 1.0) * 1e9 * scale

    # -- per-layer times (milliseconds) --------------------------------------------------
    def gpu_ms(self, node: Node, precision: str) -> float:
        compute = node_flops(node) / (GPU_COMPUTE_EFF * self.gpu_peak(precision))
        memory = _node_bytes(node, precision) / (GPU_MEMORY_EFF * self.bandwidth())
        return 1e3 * max(compute, memory) + GPU_LAUNCH_MS

    def dla_ms(self, node: Node, precision: str) -> float:
        compute = node_flops(node) / (DLA_COMPUTE_EFF * self.dla_peak(precision))
        memory = _node_bytes(node, precision) / (DLA_MEMORY_EFF * self.bandwidth())
        return 1e3 * max(compute, memory) + DLA_LAYER_MS

    def cpu_ms(self, node: Node) -> float:
        compute = node_flops(node) / (CPU_COMPUTE_EFF * self.cpu_peak())
        memory = _node_bytes(node, "fp32") / self.bandwidth()
        return 1e3 * max(compute, memory)

    # -- boundaries -------------------------------------------------------------------
    def transition_ms(self, nbytes: float) -> float:
        """One DLA<->GPU edge: a GPU reformat kernel (read + write) plus a sync."""
        return 1e3 * 2 * nbytes / (GPU_MEMORY_EFF * self.bandwidth()) + GPU_LAUNCH_MS + TRANSITION_SYNC_MS

    @property
    def dla_submit_ms(self) -> float:
        return DLA_SUBMIT_MS

    # -- power ------------------------------------------------------------------------
    @property
    def gpu_power_w(self) -> float:
        budget = self.mode.budget_w or self.profile.max_power_w
        return GPU_POWER_SHARE * budget

    @property
    def dla_power_w(self) -> float:
        """Per busy DLA core: GPU power scaled by relative INT8 throughput, divided by the perf/W gain."""
        if self.profile.dla is None or self.profile.gpu is None:
            return 0.0
        ratio = self.dla_peak("int8") / self.gpu_peak("int8")
        return self.gpu_power_w * ratio / DLA_PERF_PER_WATT_GAIN


def tensor_bytes(value: Value, precision: str) -> float:
    """Bytes of ``value`` at the storage size of ``precision`` (0 when its shape is unknown)."""
    return float(_numel(value) * PRECISION_BYTES[precision])

