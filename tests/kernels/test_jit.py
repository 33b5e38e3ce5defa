"""The numba kernels (depthwise conv, pools, conv columns and output, Winograd transforms,
BatchNormalization, Softmax) vs numpy and onnxruntime.

Every case is a one- or two-node model built into an engine and run three times through one
execution context (planned output buffers, reused scratch), once with the compiled kernels and
once with ``EDGETRT_JIT=0`` (the numpy reference kernels); both must match onnxruntime, and
a spy checks the compiled routine really ran. Skipped without numba.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import edge
from tests.conftest import assert_close, ort_run

numba = pytest.importorskip("numba")
jit = pytest.importorskip("edge.kernels.cpu.jit")

# (channels, multiplier, height, width, kernel, strides, dilations, pads | auto_pad, bias, batch, activation)
DEPTHWISE = [
    (8, 1, 9, 7, (3, 3), (1, 1), (1, 1), [1, 1, 1, 1], True, 1, "Relu"),  # unit-stride path
    (8, 1, 9, 7, (3, 3), (1, 1), (1, 1), [1, 1, 1, 1], False, 2, ""),
    (6, 1, 12, 10, (3, 3), (1, 1), (2, 2), [2, 2, 2, 2], True, 1, ""),  # dilated
    (6, 2, 9, 7, (3, 3), (1, 1), (1, 1), [1, 1, 1, 1], True, 1, "Relu"),  # multiplier 2
    (4, 3, 8, 8, (3, 3), (2, 2), (1, 1), [1, 1, 1, 1], True, 2, ""),  # multiplier 3, stride 2
    (8, 1, 15, 13, (3, 3), (2, 2), (1, 1), [1, 1, 1, 1], True, 1, ""),  # stride 2, odd sizes
    (5, 1, 11, 9, (5, 3), (3, 2), (1, 2), [2, 0, 1, 3], True, 1, ""),  # asymmetric everything
    (4, 1, 6, 6, (3, 3), (1, 1), (1, 1), [0, 1, 2, 0], True, 1, "Relu"),  # asymmetric pads, unit stride
    (4, 1, 7, 5, (3, 3), (1, 1), (1, 1), [0, 0, 0, 0], False, 1, ""),  # no padding
    (3, 1, 10, 10, (5, 5), (2, 1), (1, 1), "SAME_UPPER", True, 1, ""),
    (3, 2, 9, 8, (2, 4), (1, 1), (1, 1), "SAME_LOWER", True, 1, ""),
    (16, 1, 4, 4, (3, 3), (1, 1), (3, 3), [3, 3, 3, 3], True, 1, ""),  # dilation past the image
    (2, 1, 3, 3, (3, 3), (1, 1), (1, 1), [4, 4, 4, 4], True, 1, ""),  # pads wider than the kernel
    # stride 2 over larger planes: many chunks of outputs accumulated in registers, a ragged last one
    (6, 1, 30, 29, (5, 5), (2, 2), (1, 1), [2, 1, 2, 3], True, 1, "Relu"),
    (4, 2, 20, 26, (3, 4), (2, 2), (1, 1), [0, 2, 1, 0], False, 2, ""),  # multiplier 2, kw 4
    (3, 1, 9, 9, (3, 3), (2, 2), (1, 1), "SAME_UPPER", True, 1, ""),
    (2, 1, 5, 4, (3, 3), (2, 2), (1, 1), [3, 3, 3, 3], True, 1, ""),  # rows and columns of padding only
    (3, 1, 40, 37, (3, 3), (1, 1), (1, 1), [1, 1, 1, 1], True, 1, ""),  # unit stride, 44 chunks
    (4, 1, 9, 11, (1, 1), (1, 1), (1, 1), [0, 0, 0, 0], True, 1, ""),  # one tap
]

# (op, channels, height, width, kernel, strides, dilations, pads | auto_pad, ceil_mode, count_include_pad, batch)
POOLS = [
    ("MaxPool", 6, 11, 11, (3, 3), (2, 2), (1, 1), [0, 0, 0, 0], 0, 0, 1),  # squeezenet-like
    ("MaxPool", 4, 12, 12, (3, 3), (2, 2), (1, 1), [1, 1, 1, 1], 0, 0, 2),  # shufflenet-like
    ("MaxPool", 3, 10, 9, (3, 3), (2, 2), (1, 1), [0, 0, 0, 0], 1, 0, 1),  # ceil_mode
    ("MaxPool", 3, 9, 10, (2, 3), (1, 3), (2, 1), [1, 0, 0, 2], 1, 0, 1),  # dilated, asymmetric
    ("MaxPool", 5, 8, 8, (3, 3), (1, 1), (1, 1), "SAME_UPPER", 0, 0, 1),
    ("MaxPool", 2, 7, 7, (2, 2), (2, 2), (1, 1), [0, 0, 0, 0], 1, 0, 1),
    # stride 2 on rows 12+ outputs wide: the separable routine (rows folded, then columns)
    ("MaxPool", 3, 30, 29, (3, 3), (2, 2), (1, 1), [0, 0, 1, 1], 0, 0, 2),  # inception-like
    ("MaxPool", 2, 27, 31, (3, 3), (2, 2), (1, 1), [1, 1, 1, 1], 1, 0, 1),  # ceil_mode
    ("MaxPool", 2, 26, 26, (2, 4), (2, 2), (1, 1), [0, 2, 1, 1], 0, 0, 1),  # even kernel, wide pads
    # average pools: taps summed in registers (several chunks of outputs per plane)
    ("AveragePool", 3, 28, 28, (3, 3), (2, 2), (1, 1), [1, 1, 1, 1], 0, 0, 1),  # shufflenet-like
    ("AveragePool", 2, 29, 30, (3, 3), (2, 2), (1, 1), [1, 0, 0, 1], 1, 1, 1),  # ceil + counted pads
    ("AveragePool", 2, 26, 26, (2, 2), (2, 2), (1, 1), [0, 0, 0, 0], 0, 0, 1),  # DenseNet's transitions
    ("AveragePool", 6, 12, 12, (3, 3), (2, 2), (1, 1), [1, 1, 1, 1], 0, 0, 2),  # shufflenet-like
    ("AveragePool", 6, 12, 12, (3, 3), (2, 2), (1, 1), [1, 1, 1, 1], 0, 1, 1),  # count_include_pad
    ("AveragePool", 3, 10, 9, (3, 3), (2, 2), (1, 1), [1, 0, 0, 1], 1, 0, 1),  # ceil_mode
    ("AveragePool", 3, 10, 9, (3, 3), (2, 2), (1, 1), [1, 0, 0, 1], 1, 1, 1),  # ceil + counted pads
    ("AveragePool", 4, 9, 11, (2, 4), (1, 2), (2, 1), [0, 1, 1, 2], 0, 1, 1),  # dilated (opset 19)
    ("AveragePool", 4, 8, 8, (3, 3), (1, 1), (1, 1), "SAME_LOWER", 0, 0, 1),
]


def _spy(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Count calls of compiled routine ``name`` (it still runs)."""
    calls: list[int] = []
    routine = getattr(jit, name)

    def counted(*args: object) -> None:
        calls.append(1)
        routine(*args)

    monkeypatch.setattr(jit, name, counted)
    return calls


def _geometry_attrs(strides, dilations, pads) -> dict:
    attrs = {"strides": list(strides), "dilations": list(dilations)}
    if isinstance(pads, str):
        attrs["auto_pad"] = pads
    else:
        attrs["pads"] = pads
    return attrs


def _one_node_model(node, x: np.ndarray, opset: int):
    """A model of ``node`` alone, input "x" typed like ``x``, output "z"."""
    elem = helper.np_dtype_to_tensor_dtype(x.dtype)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", elem, x.shape)],
        [helper.make_tensor_value_info("z", elem, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run_three_times(model, x: np.ndarray) -> list[np.ndarray]:
    """Three runs of ``model`` built with the heuristic tactics (level 0: the build times no
    candidates, so every call of the spied routine is a run's, through the heuristic's mode)."""
    context = edge.build(model.SerializeToString(), edge.BuilderConfig(optimization_level=0)).create_context()
    return [context.run({"x": x})["z"].copy() for _ in range(3)]


def _compare(monkeypatch, routine: str, model, x: np.ndarray, rtol: float, atol: float, per_run: int = 1) -> None:
    expected = ort_run(model, {"x": x})[0]
    calls = _spy(monkeypatch, routine)
    compiled = _run_three_times(model, x)
    assert len(calls) == 3 * per_run, f"{routine} ran {len(calls)} times for 3 runs"
    monkeypatch.setenv("EDGETRT_JIT", "0")
    reference = _run_three_times(model, x)
    assert len(calls) == 3 * per_run, "EDGETRT_JIT=0 still ran the compiled kernel"
    for run, (fast, slow) in enumerate(zip(compiled, reference)):
        assert fast.shape == expected.shape
        assert_close(fast, expected, rtol, atol, f"compiled vs onnxruntime, run {run}")
        assert_close(fast, slow, rtol, atol, f"compiled vs numpy reference, run {run}")
        assert_close(slow, expected, rtol, atol, f"numpy reference vs onnxruntime, run {run}")


@pytest.mark.parametrize("case", DEPTHWISE, ids=[f"dw{i}" for i in range(len(DEPTHWISE))])
def test_depthwise_conv(monkeypatch: pytest.MonkeyPatch, case) -> None:
    c, mult, h, w, kernel, strides, dilations, pads, bias, batch, activation = case
    rng = np.random.default_rng(len(DEPTHWISE) + c * h)
    x = rng.standard_normal((batch, c, h, w), dtype=np.float32)
    inits = [numpy_helper.from_array(rng.standard_normal((c * mult, 1, *kernel), dtype=np.float32), "w")]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(c * mult, dtype=np.float32), "b"))
    conv_out = "y" if activation else "z"
    nodes = [
        helper.make_node(
            "Conv", ["x", "w"] + (["b"] if bias else []), [conv_out],
            kernel_shape=list(kernel), group=c, **_geometry_attrs(strides, dilations, pads),
        )
    ]
    if activation:
        nodes.append(helper.make_node(activation, ["y"], ["z"]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    _compare(monkeypatch, "depthwise_conv2d", model, x, 1e-5, 1e-5)


@pytest.mark.parametrize("case", POOLS, ids=[f"{c[0]}{i}" for i, c in enumerate(POOLS)])
def test_pool(monkeypatch: pytest.MonkeyPatch, case) -> None:
    op, c, h, w, kernel, strides, dilations, pads, ceil_mode, count_include_pad, batch = case
    x = np.random.default_rng(h * w + c).standard_normal((batch, c, h, w), dtype=np.float32)
    attrs = _geometry_attrs(strides, dilations, pads)
    if op == "AveragePool":
        attrs["count_include_pad"] = count_include_pad
    node = helper.make_node(op, ["x"], ["z"], kernel_shape=list(kernel), ceil_mode=ceil_mode, **attrs)
    model = _one_node_model(node, x, 19)
    routine = "max_pool2d" if op == "MaxPool" else "average_pool2d"
    _compare(monkeypatch, routine, model, x, 1e-6, 1e-6)


# (in, out, size, kernel, strides, pads, bias, epilogue): the conv's layout (see nn._conv_plan)
# and what the pass writing its output must fold in: "" / an activation / "residual" (+ activation)
CONV_OUTPUTS = [
    (8, 12, 14, 3, 1, 1, True, "Relu"),  # shifted images: the GEMM writes y, epilogue in its tiles
    (8, 12, 14, 3, 1, 1, False, "residual Relu"),
    (16, 4, 14, 3, 1, 1, True, "Relu"),  # tap-sum over one phase image: summed, bias added
    (16, 4, 14, 3, 1, 1, True, "residual Clip"),
    (16, 4, 15, 3, 2, 1, True, "Relu"),  # tap-sum over four phase images: numpy sums, crop here
    (8, 12, 15, 3, 2, 1, True, "Sigmoid"),  # shifted, strided; an activation left to numpy
    (8, 12, 9, 1, 1, 0, True, "residual"),  # pointwise: the epilogue in the GEMM (gemm_blocks)
    (8, 12, 9, 1, 1, 0, True, "Clip"),
    (8, 12, 9, 1, 2, 0, True, "Relu"),  # strided 1x1 (shifted): in the GEMM too
    (8, 40, 20, 1, 1, 0, True, "residual Relu"),  # ragged tiles of rows (40) and columns (400)
    # 3x3 stride 1 with 32+ channels: Winograd tiles transformed back by winograd_output
    (32, 40, 13, 3, 1, 1, True, "Relu"),  # odd size: the last tiles cropped
    (32, 32, 14, 3, 1, 1, False, "residual Relu"),
    (40, 32, 9, 3, 1, 1, True, "residual Clip"),
    (32, 36, 12, 3, 1, 0, True, "Sigmoid"),  # unpadded; an activation left to numpy
]


@pytest.mark.parametrize("case", CONV_OUTPUTS, ids=[f"{c[-1] or 'plain'}{i}".replace(" ", "_") for i, c in enumerate(CONV_OUTPUTS)])
def test_conv_output(monkeypatch: pytest.MonkeyPatch, case) -> None:
    """FusedConv's output written by conv_output / winograd_output / the GEMM's epilogue
    matches the unfused graph in onnxruntime and in the numpy kernels."""
    cin, cout, size, kernel, stride, pad, bias, epilogue = case
    rng = np.random.default_rng(cin * size + len(epilogue))
    x = rng.standard_normal((2, cin, size, size), dtype=np.float32)
    inits = [numpy_helper.from_array(rng.standard_normal((cout, cin, kernel, kernel), dtype=np.float32), "w")]
    inits += [numpy_helper.from_array(rng.standard_normal(cout, dtype=np.float32), "b")] if bias else []
    geometry = dict(kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4)
    nodes = [helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["y"], **geometry)]
    last = "y"
    if "residual" in epilogue:  # a second conv of the same output shape, added (and fused as Z)
        inits.append(numpy_helper.from_array(rng.standard_normal((cout, cin, kernel, kernel), dtype=np.float32), "v"))
        nodes += [
            helper.make_node("Conv", ["x", "v"], ["r"], **geometry),
            helper.make_node("Add", ["y", "r"], ["s"]),
        ]
        last = "s"
    activation = epilogue.replace("residual", "").strip()
    if activation == "Clip":
        inits += [numpy_helper.from_array(np.float32(v), n) for v, n in ((-0.5, "lo"), (1.5, "hi"))]
        nodes.append(helper.make_node("Clip", [last, "lo", "hi"], ["a"]))
    elif activation:
        nodes.append(helper.make_node(activation, [last], ["a"]))
    nodes.append(helper.make_node("Identity", ["a" if activation else last], ["z"]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    ops = [node.op_type for node in edge.build(model.SerializeToString()).graph.nodes]
    assert ops == ["Conv", "FusedConv"] if "residual" in epilogue else ops == ["FusedConv"], ops
    # Winograd convs: winograd_output. Tap-sum convs (outputs at most half the inputs):
    # conv_output sums and crops the per-tap products. Others: the GEMM writes y and applies the
    # epilogue tile by tile. The residual branch (a conv of the same layout) runs the same routine
    winograd = kernel == 3 and stride == 1 and min(cin, cout) >= 32
    tap_sum = kernel > 1 and 2 * cout <= cin
    routine = "winograd_output" if winograd else "conv_output" if tap_sum else "gemm_blocks"
    per_run = 2 if "residual" in epilogue else 1
    _compare(monkeypatch, routine, model, x, 1e-4, 1e-4, per_run)


# (in, out, size (h, w), kernel, strides, dilations, pads, group): convs whose column matrix the
# GEMM reads in place from the input's shifted images (nn._ShiftedImages)
SHIFTED = [
    (6, 8, (17, 16), (3, 3), (2, 2), (1, 1), (1, 0, 1, 1), 1),  # strided, uneven pads
    (3, 16, (23, 23), (7, 7), (2, 2), (1, 1), (3, 3, 3, 3), 1),  # a ResNet-style first conv
    (4, 6, (12, 13), (3, 2), (1, 2), (1, 1), (0, 1, 2, 0), 1),  # rectangular kernel and stride
    (5, 7, (14, 14), (3, 3), (1, 1), (2, 2), (2, 2, 2, 2), 1),  # dilated
    (5, 7, (15, 14), (3, 3), (2, 2), (2, 1), (1, 1, 1, 1), 1),  # dilated rows on stride 2: one row phase
    (8, 10, (11, 11), (5, 5), (1, 1), (1, 1), (2, 2, 2, 2), 2),  # grouped
    (6, 9, (10, 10), (1, 1), (2, 2), (1, 1), (0, 0, 0, 0), 3),  # strided 1x1, grouped
    (4, 5, (6, 5), (3, 3), (3, 3), (1, 1), (4, 4, 4, 4), 1),  # pads wider than the input
]


@pytest.mark.parametrize("case", SHIFTED, ids=[f"shifted{i}" for i in range(len(SHIFTED))])
def test_shifted_images(monkeypatch: pytest.MonkeyPatch, case) -> None:
    """Convs of every geometry whose columns the GEMM reads from the compiled routine's
    shifted images give onnxruntime's result and the numpy kernels'."""
    cin, cout, size, kernel, strides, dilations, pads, group = case
    rng = np.random.default_rng(cin * size[0] + cout)
    x = rng.standard_normal((2, cin) + size, dtype=np.float32)
    w = numpy_helper.from_array(rng.standard_normal((cout, cin // group) + kernel, dtype=np.float32), "w")
    node = helper.make_node(
        "Conv", ["x", "w"], ["z"], kernel_shape=list(kernel), group=group, **_geometry_attrs(strides, dilations, pads)
    )
    model = _one_node_model(node, x, 13)
    model.graph.initializer.append(w)
    _compare(monkeypatch, "shifted_images", model, x, 1e-4, 1e-4)


@pytest.mark.parametrize("stride, size", [(1, 6), (2, 30)], ids=["stride1", "stride2-separable"])
def test_max_pool_propagates_nan_like_the_reference(monkeypatch: pytest.MonkeyPatch, stride: int, size: int) -> None:
    """A NaN anywhere in a window makes that output NaN (np.maximum's rule), first tap or later;
    at stride 2 on a plane this wide the separable row/column routine runs."""
    x = np.arange(2 * size * size, dtype=np.float32).reshape(1, 2, size, size)
    x[0, 0, 0, 0] = np.nan  # first tap of window (0, 0)
    x[0, 1, 3, 4] = np.nan  # a middle tap of several windows
    node = helper.make_node("MaxPool", ["x"], ["z"], kernel_shape=[3, 3], strides=[stride, stride], pads=[1, 1, 1, 1])
    model = _one_node_model(node, x, 13)
    calls = _spy(monkeypatch, "max_pool2d")
    compiled = _run_three_times(model, x)[-1]
    assert calls
    monkeypatch.setenv("EDGETRT_JIT", "0")
    reference = _run_three_times(model, x)[-1]
    if stride == 1:
        assert np.isnan(compiled).sum() == 4 + 9
    assert np.isnan(compiled).sum() >= 2
    np.testing.assert_array_equal(np.isnan(compiled), np.isnan(reference))
    np.testing.assert_array_equal(np.nan_to_num(compiled), np.nan_to_num(reference))


def test_non_float32_stays_on_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """float64 inputs are not what the compiled kernels take: the numpy kernel runs, correctly."""
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8))
    node = helper.make_node("MaxPool", ["x"], ["z"], kernel_shape=[3, 3], strides=[2, 2])
    model = _one_node_model(node, x, 13)
    calls = _spy(monkeypatch, "max_pool2d")
    result = _run_three_times(model, x)[-1]
    assert not calls
    assert_close(result, ort_run(model, {"x": x})[0], 0, 0)


def test_compiles_without_a_writable_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no cache folder numba can write (a read-only install, no home), the routines still
    compile, in memory, instead of failing at import."""
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # renamed in numba 0.61
    monkeypatch.setattr(impl, "_locator_classes", [])

    def double(x, kh, kw, sh, sw, dh, dw, top, left, y):  # type: ignore[no-untyped-def]
        y[:] = x * 2

    with pytest.raises(RuntimeError, match="no locator available"):
        numba.njit(cache=True)(double)
    compiled = jit._compile(jit._PLANE, *jit._GEOMETRY, jit._PLANE)(double)
    x = np.ones((1, 1, 2, 2), np.float32)
    y = np.zeros_like(x)
    compiled(x, 1, 1, 1, 1, 1, 1, 0, 0, y)
    np.testing.assert_array_equal(y, 2 * x)


@pytest.mark.parametrize("activation", ["", "Relu", "Clip"])
@pytest.mark.parametrize("shape", [(2, 5, 7, 9), (1, 3, 10), (4, 6)], ids=["4d", "3d", "2d"])
def test_batch_normalization(monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...], activation: str) -> None:
    """Inference BatchNormalization, and the Relu or Clip fused after it, runs as one compiled
    per-channel multiply-add (affine_channels)."""
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape, dtype=np.float32)
    channels = shape[1]
    params = [rng.standard_normal(channels, dtype=np.float32) for _ in range(3)]
    params.append(rng.uniform(0.5, 2.0, channels).astype(np.float32))  # variance
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["n" if activation else "z"], epsilon=1e-3)]
    if activation == "Clip":
        params += [np.float32(-0.5), np.float32(0.8)]
        nodes.append(helper.make_node("Clip", ["n", "lo", "hi"], ["z"]))
    elif activation:
        nodes.append(helper.make_node(activation, ["n"], ["z"]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(p, n) for p, n in zip(params, ["s", "b", "m", "v", "lo", "hi"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    ops = [node.op_type for node in edge.build(model.SerializeToString()).graph.nodes]
    assert ops == ["FusedBatchNormalization" if activation else "BatchNormalization"], ops
    _compare(monkeypatch, "affine_channels", model, x, 1e-5, 1e-5)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize(
    "opset, shape, axis, compiled_runs",
    [
        (11, (2, 1000, 1, 1), 1, 1),  # a classifier's head, flattened to rows at axis 1
        (13, (3, 4, 37), -1, 1),  # attention-like rows on the last axis
        (13, (3, 4, 37), 1, 0),  # another axis: numpy's path
    ],
    ids=["opset11-head", "opset13-last", "opset13-middle"],
)
def test_softmax(monkeypatch: pytest.MonkeyPatch, op: str, opset: int, shape: tuple[int, ...], axis: int, compiled_runs: int) -> None:
    """Softmax and LogSoftmax over the last axis run as one compiled pass per row
    (softmax_rows): large logits (no overflow: the row's maximum comes off first) and -inf
    entries (exp gives 0) included."""
    rng = np.random.default_rng(opset + len(shape))
    x = (rng.standard_normal(shape) * 30).astype(np.float32)
    x.reshape(-1)[:: 7] = -np.inf
    x.reshape(-1)[1] = 85.0
    model = _one_node_model(helper.make_node(op, ["x"], ["z"], axis=axis), x, opset)
    _compare(monkeypatch, "softmax_rows", model, x, 1e-5, 1e-6, per_run=compiled_runs)


@pytest.mark.parametrize("batch, channels, groups, plane", [(2, 12, 3, (5, 6)), (1, 240, 4, (7, 7)), (1, 8, 8, (1, 1))])
def test_channel_shuffle(monkeypatch: pytest.MonkeyPatch, batch: int, channels: int, groups: int, plane: tuple[int, int]) -> None:
    """ShuffleNet's Reshape-Transpose-Reshape, which the optimizer makes one ChannelShuffle,
    runs as compiled plane copies (shuffle_channels) split over the threads (every call
    split, however small, where there are several)."""
    monkeypatch.setattr(jit, "_PART_WORK", 1)
    shape = (batch, channels, *plane)
    x = np.random.default_rng(channels).standard_normal(shape, dtype=np.float32)
    split = np.array([batch, groups, channels // groups, *plane], np.int64)
    nodes = [
        helper.make_node("Reshape", ["x", "split"], ["s"]),
        helper.make_node("Transpose", ["s"], ["t"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t", "merge"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(split, "split"), numpy_helper.from_array(np.array(shape, np.int64), "merge")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert [node.op_type for node in edge.build(model.SerializeToString()).graph.nodes] == ["ChannelShuffle"]
    _compare(monkeypatch, "shuffle_channels", model, x, 0, 0)


def test_softmax_rows_keep_nan_and_infinities_like_numpy() -> None:
    """A row holding NaN, or +inf, gives what numpy's formula gives (NaN where it does); the
    other rows are untouched by them."""
    x = np.array([[1.0, np.nan, 2.0], [np.inf, 0.0, 1.0], [-np.inf, 0.0, 1.0], [3.0, 1.0, 2.0]], np.float32)
    for log in (0, 1):
        y = np.empty_like(x)
        jit.softmax_rows(x, y, log)
        with np.errstate(invalid="ignore"):
            shifted = x - x.max(axis=1, keepdims=True)
            e = np.exp(shifted)
            expected = shifted - np.log(e.sum(axis=1, keepdims=True)) if log else e / e.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-7, equal_nan=True)
