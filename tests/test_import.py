"""ONNX import: errors for bad models, unsupported ops all at once, external data, plugins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import edge
from edge.cli import main
from tests.test_engine_file import small_model


def test_unsupported_operators_are_listed_at_once() -> None:
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["a"], name="ok"),
            helper.make_node("FancyOp", ["a"], ["b"], name="f1"),
            helper.make_node("FancyOp", ["b"], ["c"], name="f2"),
            helper.make_node("Warp", ["c"], ["y"], name="w1", domain="vendor"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("vendor", 1)])
    with pytest.raises(edge.UnsupportedOperatorError) as info:
        edge.load_onnx(model)
    message = str(info.value)
    assert "FancyOp x2 ('f1', 'f2')" in message and "vendor::Warp x1 ('w1')" in message
    assert info.value.exit_code == 2


def test_unsupported_operator_exit_code_is_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    graph = helper.make_graph(
        [helper.make_node("FancyOp", ["x"], ["y"], name="f1")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert main(["build", str(path), "-o", str(tmp_path / "m.engine")]) == 2
    err = capsys.readouterr().err
    assert "FancyOp x1" in err and "Traceback" not in err
    assert not (tmp_path / "m.engine").exists()


@pytest.mark.parametrize(
    "content, reason",
    [(b"\x08\x07\x12\xff\xff", "not a valid ONNX model"), (b"", "holds no ONNX graph")],
)
def test_malformed_files_get_one_line_errors(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(edge.ModelImportError, match=reason) as info:
        edge.load_onnx(path)
    assert "\n" not in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(edge.ModelImportError, match="does not exist"):
        edge.load_onnx("/nonexistent/model.onnx")


def test_invalid_graph_names_the_problem() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["nowhere"], ["y"], name="r")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(edge.ModelImportError, match="nowhere"):
        edge.load_onnx(model)


def test_external_data_is_loaded(tmp_path: Path) -> None:
    model = small_model()
    expected = onnx.numpy_helper.to_array(model.graph.initializer[0])
    path = tmp_path / "ext.onnx"
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").exists()
    graph = edge.load_onnx(path)
    weight = next(v for v in graph.constants() if v.name == "w")
    np.testing.assert_array_equal(weight.const, expected)
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(edge.ModelImportError, match="external data"):
        edge.load_onnx(path)


def test_input_shape_override_and_errors() -> None:
    graph = edge.load_onnx(small_model(), input_shapes={"x": (8, 4)})
    assert graph.inputs[0].shape == (8, 4)
    assert graph.outputs[0].shape == (8, 3)
    with pytest.raises(edge.ModelImportError, match="rank 3"):
        edge.load_onnx(small_model(), input_shapes={"x": (1, 2, 4)})
    with pytest.raises(edge.ModelImportError, match="dim 1 to 5, but the model fixes it to 4"):
        edge.load_onnx(small_model(), input_shapes={"x": (1, 5)})


def test_symbolic_and_static_dims_are_kept() -> None:
    graph = edge.load_onnx(small_model())
    assert graph.inputs[0].shape == ("batch", 4)
    assert graph.outputs[0].shape == ("batch", 3)


def _custom_model(op: str, rank: int | None) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], name="custom", domain="acme", factor=3.0)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None if rank is None else [None] * rank)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("acme", 1)])


def test_custom_op_plugin_with_and_without_shape_function() -> None:
    def triple_and_pool(ctx, x):
        return (x * ctx.attr("factor")).sum(axis=1)

    edge.register_custom_op("TriplePool", triple_and_pool, domain="acme")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    engine = edge.build(_custom_model("TriplePool", None).SerializeToString())
    assert engine.outputs[0].shape == (2,)  # found by running the kernel on zeros
    np.testing.assert_allclose(engine.create_context().run({"x": x})["y"], [9.0, 36.0])

    edge.register_custom_op(
        "TripleKeep", lambda ctx, x: x * ctx.attr("factor"), shape_fn=lambda ctx, x: [(x.dtype, x.shape)], domain="acme"
    )
    engine = edge.build(_custom_model("TripleKeep", 2).SerializeToString())
    assert engine.outputs[0].shape == (2, 3)
    np.testing.assert_allclose(engine.create_context().run({"x": x})["y"], x * 3)
