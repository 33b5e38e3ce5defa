"""DLA rules: every layer type of dla.md at and just past each limit, on DLA version 1 and 2."""

from __future__ import annotations

import numpy as np
import pytest

from edge.ir import Node, Value
from edge.partitioner.rules import DLA_RULES, GPU_ONLY, RuleContext, check_node, dla_precision
from edge.refusal import Refusal


def make(op: str, inputs: list, out_shape: tuple | list, domain: str = "", out_dtype=np.float32, **attrs) -> Node:
    """A node whose inputs are shapes (activations), arrays (constants) or None (omitted)."""
    values = []
    for i, spec in enumerate(inputs):
        if spec is None:
            values.append(None)
        elif isinstance(spec, np.ndarray):
            values.append(Value(f"c{i}", const=spec))
        else:
            values.append(Value(f"x{i}", np.float32, tuple(spec)))
    outs = out_shape if isinstance(out_shape, list) else [out_shape]
    outputs = [Value(f"y{i}", out_dtype, s) for i, s in enumerate(outs)]
    return Node(op, values, outputs, attrs, name=f"stage3/{op.lower()}", domain=domain)


def refusal(node: Node, version: int = 2, precision: str = "fp16", opset: int = 17) -> Refusal | None:
    return check_node(node, RuleContext(version, precision, frozenset(), opset))


def check(node: Node, version: int = 2, precision: str = "fp16", opset: int = 17) -> str | None:
    """The refusal's sentence (its code is checked in test_refusal_codes)."""
    found = refusal(node, version, precision, opset)
    return None if found is None else found.detail


def w(*shape: int) -> np.ndarray:
    return np.zeros(shape, np.float32)


def conv(k: int = 3, stride: int = 1, pad: int = 1, dilation: int = 1, cout: int = 8, size: int = 64, op: str = "Conv", **attrs) -> Node:
    out = (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    return make(op, [(1, 4, size, size), w(cout, 4, k, k)], (1, cout, out, out), domain="edgetrt" if op.startswith("Fused") else "",
                kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, dilations=[dilation, dilation], **attrs)


BOTH = (1, 2)


# -- convolution -----------------------------------------------------------------------

@pytest.mark.parametrize("version", BOTH)
@pytest.mark.parametrize(
    "kwargs, problem",
    [
        (dict(k=32, pad=0), None),
        (dict(k=33, pad=0), "kernel 33x33 exceeds DLA limit 32"),
        (dict(k=3, stride=8), None),
        (dict(k=3, stride=9), "stride 9x9 exceeds DLA limit 8"),
        (dict(k=3, pad=0, dilation=32, size=128), None),
        (dict(k=3, pad=0, dilation=33, size=128), "dilation 33x33 exceeds DLA limit 32"),
        (dict(k=32, pad=31), None),
        (dict(k=32, pad=32), "padding 32 exceeds DLA limit 31"),
        (dict(k=3, pad=2), None),
        (dict(k=3, pad=3), "padding 3 is not smaller than the kernel (3) along H"),
        (dict(k=1, pad=0, cout=8192), None),
        (dict(k=1, pad=0, cout=8193), "8193 exceeds DLA limit 8192"),
    ],
)
def test_conv_limits(version: int, kwargs: dict, problem: str | None) -> None:
    reason = check(conv(**kwargs), version)
    if problem is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith("Conv 'stage3/conv': ") and problem in reason


def test_conv_reason_has_the_issue_wording() -> None:
    assert check(conv(k=35, pad=0)) == "Conv 'stage3/conv': kernel 35x35 exceeds DLA limit 32"


def test_conv_same_padding_resolved_from_shapes() -> None:
    node = make("Conv", [(1, 4, 64, 64), w(8, 4, 3, 3)], (1, 8, 64, 64), kernel_shape=[3, 3], auto_pad="SAME_UPPER")
    assert check(node) is None


def test_conv_runtime_weights_and_3d_are_refused() -> None:
    runtime = make("Conv", [(1, 4, 8, 8), (8, 4, 3, 3)], (1, 8, 6, 6))
    assert "must be a build-time constant" in check(runtime)
    volumetric = make("Conv", [(1, 4, 8, 8, 8), w(8, 4, 3, 3, 3)], (1, 8, 6, 6, 6))
    assert "rank 5" in check(volumetric)


@pytest.mark.parametrize("version", BOTH)
def test_fused_conv_activations(version: int) -> None:
    assert check(conv(op="FusedConv", activation="Relu"), version) is None
    assert check(conv(op="FusedConv", activation="SiLU"), version) is None
    assert check(conv(op="FusedConv", activation="Clip", activation_params=[0.0, 6.0]), version) is None
    assert check(conv(op="FusedConv", activation="Clip", activation_params=[0.0, 127.0]), version) is None
    assert "Clip max 128 outside [1, 127]" in check(conv(op="FusedConv", activation="Clip", activation_params=[0.0, 128.0]), version)
    assert "fused activation HardSwish" in check(conv(op="FusedConv", activation="HardSwish"), version)
    assert "fused activation Gelu" in check(conv(op="FusedConv", activation="Gelu"), version)
    assert "kernel 33x33" in check(conv(op="FusedConv", k=33, pad=0, activation="Relu"), version)


def deconv(k: tuple[int, int] = (2, 2), stride: tuple[int, int] = (2, 2), op: str = "ConvTranspose", **attrs) -> Node:
    out = (8 - 1) * stride[0] + k[0], (8 - 1) * stride[1] + k[1]
    return make(op, [(1, 4, 8, 8), w(4, 8, *k)], (1, 8, *out), domain="edgetrt" if op.startswith("Fused") else "",
                kernel_shape=list(k), strides=list(stride), **attrs)


@pytest.mark.parametrize("version", BOTH)
@pytest.mark.parametrize(
    "kwargs, problem",
    [
        (dict(k=(32, 32), stride=(1, 1)), "v2-square"),
        (dict(k=(33, 33), stride=(1, 1)), "kernel 33x33 outside DLA limits"),
        (dict(k=(1, 64), stride=(1, 1)), None),
        (dict(k=(64, 64), stride=(1, 1)), "kernel 64x64 outside DLA limits"),
        (dict(k=(2, 2), stride=(1, 128)), None),
        (dict(k=(2, 2), stride=(2, 33)), "stride 2x33 outside DLA limits"),
        (dict(k=(22, 22), stride=(2, 2)), None),
        (dict(k=(24, 24), stride=(2, 2)), "v2-square"),
        (dict(pads=[1, 1, 1, 1]), "padding must be 0"),
        (dict(output_padding=[1, 1]), "padding must be 0"),
        (dict(group=2), "group 2"),
        (dict(dilations=[2, 2]), "dilation must be 1"),
    ],
)
def test_deconv_limits(version: int, kwargs: dict, problem: str | None) -> None:
    reason = check(deconv(**kwargs), version)
    if problem == "v2-square":  # square kernels 23..32 are disabled on Orin only (unverified in dla.md)
        assert (reason is None) == (version == 1)
        if version == 2:
            assert "23..32 is disabled on Orin" in reason
    elif problem is None:
        assert reason is None
    else:
        assert problem in reason


def test_fused_deconv_checks_activation() -> None:
    assert check(deconv(op="FusedConvTranspose", activation="Relu")) is None
    assert "HardSigmoid" in check(deconv(op="FusedConvTranspose", activation="HardSigmoid"))


# -- fully connected -------------------------------------------------------------------

@pytest.mark.parametrize("op", ["Gemm", "MatMul", "FusedGemm"])
@pytest.mark.parametrize("version", BOTH)
def test_fully_connected(op: str, version: int) -> None:
    domain = "edgetrt" if op == "FusedGemm" else ""
    assert check(make(op, [(1, 2048), w(2048, 1000)], (1, 1000), domain=domain), version) is None
    assert "two runtime inputs" in check(make(op, [(1, 2048), (2048, 1000)], (1, 1000), domain=domain), version)
    assert "rank 3" in check(make(op, [(1, 7, 2048), w(2048, 1000)], (1, 7, 1000), domain=domain), version)
    assert "8193 exceeds DLA limit 8192" in check(make(op, [(1, 8193), w(8193, 10)], (1, 10), domain=domain), version)


# -- activations, elementwise, comparison, unary -----------------------------------------

@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Tanh", "LeakyRelu", "Abs"])
@pytest.mark.parametrize("version", BOTH)
def test_activations_and_abs(op: str, version: int) -> None:
    assert check(make(op, [(1, 8, 4, 4)], (1, 8, 4, 4)), version) is None


def test_silu_fused_op() -> None:
    assert check(make("SiLU", [(1, 8, 4, 4)], (1, 8, 4, 4), domain="edgetrt")) is None


@pytest.mark.parametrize("version", BOTH)
def test_clip_bounds(version: int) -> None:
    def clip(hi: float) -> Node:
        return make("Clip", [(1, 8, 4, 4), np.array(0.0, np.float32), np.array(hi, np.float32)], (1, 8, 4, 4))

    assert check(clip(127.0), version) is None
    assert check(clip(1.0), version) is None
    assert "Clip max 128 outside" in check(clip(128.0), version)
    assert "Clip max 0.5 outside" in check(clip(0.5), version)
    runtime_bound = make("Clip", [(1, 8, 4, 4), None, (1,)], (1, 8, 4, 4))
    assert "must be a build-time constant" in check(runtime_bound, version)


def test_prelu_slope() -> None:
    assert check(make("PRelu", [(1, 8, 4, 4), w(8, 1, 1)], (1, 8, 4, 4))) is None
    assert "must be a build-time constant" in check(make("PRelu", [(1, 8, 4, 4), (8, 1, 1)], (1, 8, 4, 4)))


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Max", "Min"])
@pytest.mark.parametrize("version", BOTH)
def test_elementwise_broadcasts(op: str, version: int) -> None:
    out = (2, 8, 4, 4)
    assert check(make(op, [out, out], out), version) is None
    assert check(make(op, [out, (2, 8, 1, 1)], out), version) is None  # NC11
    assert check(make(op, [out, w(8, 1, 1)], out), version) is None  # per-channel constant (Scale)
    assert check(make(op, [out, (2, 1, 1, 1)], out), version) is None  # N111
    assert "broadcast of 'x1' [1x1x1x4]" in check(make(op, [out, (1, 1, 1, 4)], out), version)


@pytest.mark.parametrize("op", ["Div", "Pow"])
def test_div_pow_need_orin(op: str) -> None:
    second = np.full((1, 1, 1, 1), 2.0, np.float32) if op == "Pow" else (1, 8, 4, 4)
    node = make(op, [(1, 8, 4, 4), second], (1, 8, 4, 4))
    assert "not supported on DLA version 1" in check(node, 1)
    assert check(node, 2) is None


@pytest.mark.parametrize("op", ["Equal", "Greater", "Less"])
def test_comparisons_orin_int8_only(op: str) -> None:
    node = make(op, [(1, 8, 4, 4), (1, 8, 4, 4)], (1, 8, 4, 4), out_dtype=np.bool_)
    assert "version 1" in check(node, 1, "int8")
    assert "INT8 only" in check(node, 2, "fp16")
    assert check(node, 2, "int8") is None


@pytest.mark.parametrize("op", ["Sin", "Cos", "Atanh", "Exp", "Sqrt", "Neg"])
def test_unary_ops_other_than_abs_are_gpu_only(op: str) -> None:
    assert check(make(op, [(1, 8, 4, 4)], (1, 8, 4, 4))) is not None


# -- scale, LRN, pooling, reduce ---------------------------------------------------------

@pytest.mark.parametrize("version", BOTH)
def test_batchnorm_and_lrn(version: int) -> None:
    bn = make("BatchNormalization", [(1, 8, 4, 4), w(8), w(8), w(8), w(8)], (1, 8, 4, 4))
    assert check(bn, version) is None
    for size in (3, 5, 7, 9):
        assert check(make("LRN", [(1, 8, 4, 4)], (1, 8, 4, 4), size=size), version) is None
    assert "window 11" in check(make("LRN", [(1, 8, 4, 4)], (1, 8, 4, 4), size=11), version)
    assert dla_precision(make("LRN", [(1, 8, 4, 4)], (1, 8, 4, 4), size=5), "int8") == "fp16"


def test_fused_batchnorm_checks_activation() -> None:
    def fused(activation: str, params: list[float]) -> Node:
        inputs = [(1, 8, 4, 4), w(8), w(8), w(8), w(8)]
        return make("FusedBatchNormalization", inputs, (1, 8, 4, 4), domain="edgetrt", activation=activation, activation_params=params)

    assert check(fused("Relu", [])) is None
    assert "HardSwish" in check(fused("HardSwish", []))
    assert "Clip max 200" in check(fused("Clip", [0.0, 200.0]))
    runtime_scale = make("FusedBatchNormalization", [(1, 8, 4, 4), (8,), w(8), w(8), w(8)], (1, 8, 4, 4), domain="edgetrt", activation="Relu")
    assert "must be a build-time constant" in check(runtime_scale)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("version", BOTH)
@pytest.mark.parametrize(
    "window, stride, pad, problem",
    [
        (8, 1, 0, None),
        (9, 1, 0, "window 9x9 exceeds DLA limit 8"),
        (2, 16, 0, None),
        (2, 17, 0, "stride 17x17 exceeds DLA limit 16"),
        (8, 1, 7, None),
        (8, 1, 8, "padding 8 exceeds DLA limit 7"),
    ],
)
def test_pool_limits(op: str, version: int, window: int, stride: int, pad: int, problem: str | None) -> None:
    size = 64
    out = (size + 2 * pad - window) // stride + 1
    node = make(op, [(1, 8, size, size)], (1, 8, out, out), kernel_shape=[window, window], strides=[stride, stride], pads=[pad] * 4)
    reason = check(node, version)
    assert reason is None if problem is None else problem in reason


def test_global_pools_and_reduce() -> None:
    gap = make("GlobalAveragePool", [(1, 8, 7, 7)], (1, 8, 1, 1))
    assert "mean Reduce" in check(gap, 1) and "mean Reduce" in check(gap, 2)
    gmp = make("GlobalMaxPool", [(1, 8, 7, 7)], (1, 8, 1, 1))
    assert "version 1" in check(gmp, 1) and check(gmp, 2) is None
    rmax = make("ReduceMax", [(1, 8, 7, 7)], (1, 8, 1, 1), axes=[2, 3], keepdims=1)
    assert check(rmax, 2, opset=13) is None
    batch = make("ReduceMax", [(2, 8, 7, 7)], (1, 8, 7, 7), axes=[0], keepdims=1)
    assert "batch dimension" in check(batch, 2, opset=13)
    assert "MAX only" in check(make("ReduceMean", [(1, 8, 7, 7)], (1, 8, 1, 1), axes=[2, 3]), 2)


# -- concat, resize, shuffles, slice, softmax --------------------------------------------

@pytest.mark.parametrize("version", BOTH)
def test_concat_axis(version: int) -> None:
    assert check(make("Concat", [(1, 8, 4, 4), (1, 8, 4, 4)], (1, 16, 4, 4), axis=1), version) is None
    assert check(make("Concat", [(1, 8, 4, 4), (1, 8, 4, 4)], (1, 16, 4, 4), axis=-3), version) is None
    assert "only on the channel axis" in check(make("Concat", [(1, 8, 4, 4), (1, 8, 4, 4)], (1, 8, 8, 4), axis=2), version)


def resize(scale: float, mode: str = "nearest", **attrs) -> Node:
    out = int(8 * scale)
    return make("Resize", [(1, 8, 8, 8), None, np.array([1, 1, scale, scale], np.float32)], (1, 8, out, out), mode=mode, **attrs)


@pytest.mark.parametrize("version", BOTH)
def test_resize_nearest(version: int) -> None:
    assert check(resize(2), version) is None
    assert check(resize(32), version) is None
    assert "nearest scale 33 exceeds DLA limit 32" in check(resize(33), version)
    assert "not an integer" in check(resize(1.5), version)
    assert check(resize(2, coordinate_transformation_mode="asymmetric", nearest_mode="floor"), version) is None
    assert check(resize(2, nearest_mode="round_prefer_ceil"), version) is None
    assert "align_corners" in check(resize(2, coordinate_transformation_mode="align_corners"), version)
    assert "uses cubic mode" in check(resize(2, "cubic"), version)
    sizes = make("Resize", [(1, 8, 8, 8), None, None, np.array([1, 8, 16, 16], np.int64)], (1, 8, 16, 16))
    assert "explicit output sizes" in check(sizes, version)


def test_resize_bilinear_orin_only() -> None:
    assert "nearest only" in check(resize(2, "linear"), 1)
    assert check(resize(4, "linear"), 2) is None
    assert "bilinear scale 5 exceeds DLA limit 4" in check(resize(5, "linear"), 2)
    assert "half_pixel only" in check(resize(2, "linear", coordinate_transformation_mode="asymmetric"), 2)


@pytest.mark.parametrize("version", BOTH)
def test_shuffles(version: int) -> None:
    ok = make("Reshape", [(1, 64, 8, 8), np.array([1, 16, 16, 16], np.int64)], (1, 16, 16, 16))
    assert check(ok, version) is None
    batch = make("Reshape", [(1, 64, 8, 8), np.array([2, 32, 8, 8], np.int64)], (2, 32, 8, 8))
    assert "involves the batch dimension" in check(batch, version)
    flat = make("Flatten", [(1, 64, 8, 8)], (1, 4096), axis=1)
    assert "rank 2" in check(flat, version)
    assert check(make("Transpose", [(1, 8, 4, 6)], (1, 4, 6, 8), perm=[0, 2, 3, 1]), version) is None
    assert "moves the batch dimension" in check(make("Transpose", [(2, 8, 4, 6)], (8, 2, 4, 6), perm=[1, 0, 2, 3]), version)


def test_reshape_next_to_concat_only_refused_on_orin() -> None:
    cat_out = Value("cat", np.float32, (1, 16, 4, 4))
    Node("Concat", [Value("a", np.float32, (1, 8, 4, 4)), Value("b", np.float32, (1, 8, 4, 4))], [cat_out], {"axis": 1}, name="cat")
    reshape = Node("Reshape", [cat_out, Value("s", const=np.array([1, 64, 2, 2], np.int64))], [Value("r", np.float32, (1, 64, 2, 2))], name="r")
    assert check(reshape, 1) is None
    assert "directly connected to Concat 'cat'" in check(reshape, 2)


@pytest.mark.parametrize("version", BOTH)
def test_slice_and_split(version: int) -> None:
    def slice_(axes: list[int], steps: list[int]) -> Node:
        return make(
            "Slice",
            [(1, 8, 8, 8), np.array([0], np.int64), np.array([4], np.int64), np.array(axes, np.int64), np.array(steps, np.int64)],
            (1, 4, 8, 8),
        )

    assert check(slice_([1], [1]), version) is None
    assert "stride 1" in check(slice_([1], [2]), version)
    assert "batch dimension" in check(slice_([0], [1]), version)
    assert dla_precision(slice_([1], [1]), "int8") == "fp16"
    split = make("Split", [(1, 8, 4, 4), np.array([4, 4], np.int64)], [(1, 4, 4, 4), (1, 4, 4, 4)], axis=1)
    assert check(split, version) is None
    split0 = make("Split", [(2, 8, 4, 4), np.array([1, 1], np.int64)], [(1, 8, 4, 4), (1, 8, 4, 4)], axis=0)
    assert "splits the batch dimension" in check(split0, version)


def test_softmax_orin_only_with_axis_limits() -> None:
    assert "version 1" in check(make("Softmax", [(1, 1000, 1, 1)], (1, 1000, 1, 1), axis=1), 1)
    assert check(make("Softmax", [(1, 8192, 1, 1)], (1, 8192, 1, 1), axis=1), 2) is None
    assert check(make("Softmax", [(1, 1024, 2, 2)], (1, 1024, 2, 2), axis=1), 2) is None
    assert "axis size 1025 exceeds DLA limit 1024" in check(make("Softmax", [(1, 1025, 2, 2)], (1, 1025, 2, 2), axis=1), 2)
    assert "batch dimension" in check(make("Softmax", [(4, 8, 2, 2)], (4, 8, 2, 2), axis=0), 2)


# -- ops that never run on the DLA, and the general constraints ---------------------------

@pytest.mark.parametrize("op", ["QuantizeLinear", "DequantizeLinear", "Gather", "Where", "LayerNormalization",
                                "GroupNormalization", "InstanceNormalization", "TopK", "NonMaxSuppression", "ArgMax",
                                "Cast", "DepthToSpace", "LSTM", "HardSwish", "Gelu", "GlobalAveragePool"])
@pytest.mark.parametrize("version", BOTH)
def test_gpu_only_ops(op: str, version: int) -> None:
    reason = check(make(op, [(1, 8, 4, 4)], (1, 8, 4, 4)), version)
    assert reason == f"{op} 'stage3/{op.lower()}': {GPU_ONLY[op]}"


def test_attention_and_plugins_and_unknown_ops() -> None:
    attention = make("Attention", [(1, 8, 16, 64), (1, 8, 16, 64), (1, 8, 16, 64)], (1, 8, 16, 64), domain="edgetrt")
    assert "GPU only" in check(attention)
    shuffle = make("ChannelShuffle", [(1, 8, 4, 4)], (1, 8, 4, 4), domain="edgetrt", groups=2)
    assert "5 dims" in check(shuffle)
    assert "plugin" in check(make("MyOp", [(1, 8, 4, 4)], (1, 8, 4, 4), domain="com.vendor"))
    assert "no DLA implementation" in check(make("Pad", [(1, 8, 4, 4), np.zeros(8, np.int64)], (1, 8, 4, 4)))


@pytest.mark.parametrize("version", BOTH)
def test_general_constraints(version: int) -> None:
    assert check(make("Relu", [(4096, 1, 1, 1)], (4096, 1, 1, 1)), version) is None
    assert "batch 4097 exceeds DLA limit 4096" in check(make("Relu", [(4097, 1, 1, 1)], (4097, 1, 1, 1)), version)
    for shape in ((1, 8192, 1, 1), (1, 1, 8192, 1), (1, 1, 1, 8192)):
        assert check(make("Relu", [shape], shape), version) is None
    for shape in ((1, 8193, 1, 1), (1, 1, 8193, 1), (1, 1, 1, 8193)):
        assert "8193 exceeds DLA limit 8192" in check(make("Relu", [shape], shape), version)
    assert "rank 5" in check(make("Relu", [(1, 2, 3, 4, 5)], (1, 2, 3, 4, 5)), version)
    assert "rank 3" in check(make("Relu", [(1, 2, 3)], (1, 2, 3)), version)
    dynamic = make("Relu", [("N", 8, 4, 4)], ("N", 8, 4, 4))
    assert "dynamic shape [?x8x4x4]" in check(dynamic, version)
    integer = make("Relu", [(1, 8, 4, 4)], (1, 8, 4, 4), out_dtype=np.int64)
    assert "is int64; DLA computes in FP16/INT8 only" in check(integer, version)


def test_every_rule_and_gpu_only_op_is_exercised_by_a_test_above() -> None:
    """The table is the contract: adding an op without a rule test here should be noticed."""
    covered = {
        "Conv", "FusedConv", "ConvTranspose", "FusedConvTranspose", "Gemm", "MatMul", "FusedGemm", "Relu", "Sigmoid",
        "Tanh", "LeakyRelu", "Clip", "SiLU", "PRelu", "Add", "Sub", "Mul", "Max", "Min", "Div", "Pow", "Equal",
        "Greater", "Less", "Abs", "BatchNormalization", "FusedBatchNormalization", "LRN", "MaxPool", "AveragePool", "GlobalMaxPool", "ReduceMax",
        "Concat", "Resize", "Upsample", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Slice", "Split",
        "Softmax", "Identity", "Dropout",
    }
    assert set(DLA_RULES) == covered


@pytest.mark.parametrize("op", ["Squeeze", "Unsqueeze"])
def test_rank_changing_shuffles_are_refused(op: str) -> None:
    node = make(op, [(1, 8, 1, 4), np.array([2], np.int64)], (1, 8, 4)) if op == "Squeeze" else make(op, [(1, 8, 4), np.array([2], np.int64)], (1, 8, 1, 4))
    assert "rank 3" in check(node)


def test_upsample_and_passthrough_ops() -> None:
    up = make("Upsample", [(1, 8, 8, 8), np.array([1, 1, 2, 2], np.float32)], (1, 8, 16, 16), mode="nearest")
    assert check(up, 1, opset=9) is None
    assert check(make("Identity", [(1, 8)], (1, 8))) is None
    assert check(make("Dropout", [(1, 8, 4, 4)], (1, 8, 4, 4))) is None


def test_precision_int8_where_supported() -> None:
    assert dla_precision(conv(), "int8") == "int8"
    assert dla_precision(conv(), "fp16") == "fp16"
    assert dla_precision(make("Softmax", [(1, 8, 1, 1)], (1, 8, 1, 1)), "int8") == "fp16"


def test_refusal_codes() -> None:
    """Each refusal carries a stable code the report dispatches on, with the sentence unchanged."""
    assert refusal(conv(k=35, pad=0)) == Refusal("dla.kernel_limit", "Conv 'stage3/conv': kernel 35x35 exceeds DLA limit 32")
    assert refusal(conv(k=3, stride=9)).code == "dla.stride_limit"
    assert refusal(conv(op="FusedConv", activation="HardSwish")).code == "dla.activation_not_exposed"
    scales = np.array([1, 1, 2, 2], np.float32)
    cubic = make("Resize", [(1, 8, 4, 4), None, scales], (1, 8, 8, 8), mode="cubic")
    assert refusal(cubic).code == "dla.resize_mode"
    assert refusal(make("GlobalAveragePool", [(1, 8, 7, 7)], (1, 8, 1, 1))).code == "dla.global_average_pool"
    assert refusal(make("HardSwish", [(1, 8, 4, 4)], (1, 8, 4, 4))).code == "dla.not_exposed"
    assert refusal(make("TopK", [(1, 8, 4, 4)], (1, 8, 4, 4))).code == "dla.gpu_only"
    assert refusal(make("Relu", [(1, 8, "h", 4)], (1, 8, "h", 4))).code == "dla.dynamic_shape"
    assert refusal(make("NoSuchOp", [(1, 8, 4, 4)], (1, 8, 4, 4))).code == "dla.no_implementation"
