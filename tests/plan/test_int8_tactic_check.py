"""The auto-tuner's agreement check between an INT8 layer's tactics: one requantizes its output
to the grid and another leaves it unrounded, or rounds a boundary value the other way, so they
may differ by one step of the output's INT8 grid, never more; float layers get no such slack.
Its random inputs that INT8 layers wrote as INT8 are on their grids, as at run time."""

from __future__ import annotations

import numpy as np

from edge.ir import Node, Value
from edge.kernels.autotune import _close, _grid_steps, _on_grids
from edge.kernels.backend import StepSpec, TensorInfo
from edge.plan.int8_storage import likely_codes

SCALE = 0.05


def _spec(precision: str, written_as_int8: bool = True) -> StepSpec:
    x, y = Value("x", np.float32, (4, 8)), Value("y", np.float32, (4, 8))
    for value in (x, y):
        value.meta.update(int8_scale=SCALE, int8_zero_point=0, int8_output=written_as_int8)
    node = Node("Relu", [x], [y], name="relu")
    node.meta["precision"] = precision
    info = [TensorInfo(v.name, np.dtype(np.float16), (4, 8)) for v in (x, y)]
    return StepSpec(node, 17, precision, None, "nchw", info[:1], info[1:], device="gpu")


def test_int8_outputs_may_differ_by_one_step_of_their_grid():
    (step,) = _grid_steps(_spec("int8"))
    assert step == np.float32(SCALE)
    base = np.full((4, 8), 3.0, np.float16)
    assert _close(base + np.float16(0.9 * SCALE), base, step)
    assert not _close(base + np.float16(2 * SCALE), base, step)


def test_float_outputs_and_int8_layers_float_outputs_get_no_slack():
    assert _grid_steps(_spec("fp16")) == [0.0]
    assert _grid_steps(_spec("int8", written_as_int8=False)) == [0.0]
    base = np.full((4, 8), 3.0, np.float16)
    assert not _close(base + np.float16(0.9 * SCALE), base, 0.0)


def test_timing_inputs_written_as_int8_are_on_their_grid():
    host = [np.random.default_rng(0).standard_normal((4, 8)).astype(np.float16)]
    _on_grids(_spec("int8"), host, np.random.default_rng(1))
    codes = host[0].astype(np.float64) / SCALE
    np.testing.assert_allclose(codes, np.rint(codes), atol=0.02)  # float16 storage of q·s
    untouched = [np.full((4, 8), 0.123, np.float16)]
    _on_grids(_spec("int8", written_as_int8=False), untouched, np.random.default_rng(1))
    assert np.all(untouched[0] == np.float16(0.123))


def _layer(op: str, x: Value, precision: str = "int8") -> Node:
    y = Value(f"{x.name}>{op}", np.float32, (4, 8))
    y.meta.update(int8_scale=SCALE, int8_zero_point=0, int8_output=True)
    node = Node(op, [x], [y], name=f"{op}:{x.name}")
    node.meta["precision"] = precision
    return node


def test_tensors_between_integer_layers_are_timed_as_int8_codes():
    """The auto-tuner times an INT8 conv as the plan will likely store its tensors: as codes
    between INT8 Conv / Gemm layers, in float where a pool, an FP16 layer or the network
    output is on the other side."""
    image = Value("image", np.float32, (4, 8))
    image.meta.update(int8_scale=SCALE, int8_zero_point=0, int8_output=True)
    first = _layer("Conv", image)
    middle = _layer("Conv", first.outputs[0])
    last = _layer("Conv", middle.outputs[0])
    assert likely_codes(middle, (0, 3), set()) == ({0}, True)
    assert likely_codes(first, (0, 3), set()) == (set(), True)  # the network input has no INT8 writer
    assert likely_codes(last, (0, 3), {id(last.outputs[0])}) == ({0}, False)  # a network output stays float
    _layer("MaxPool", last.outputs[0])
    assert likely_codes(last, (0, 3), set()) == ({0}, False)  # a pool reads floats
    pooled = _layer("Conv", _layer("Conv", image, precision="fp16").outputs[0])
    assert likely_codes(pooled, (0, 3), set())[0] == set()  # written by an FP16 layer
