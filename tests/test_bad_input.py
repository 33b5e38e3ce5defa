"""Hostile or broken user input (models, data files, flags): a one-line EdgeError, never a
crash, a traceback, a memory bomb or a hang (issue 26)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edge
from edge.errors import ModelImportError


def window_model(op: str, **attrs: object) -> onnx.ModelProto:
    """One Conv/ConvTranspose/pooling node on a 1x2x8x8 input with the given attributes."""
    inits, inputs = [], ["x"]
    if "Conv" in op:
        inits = [numpy_helper.from_array(np.ones((2, 2, 3, 3), np.float32), "w")]
        inputs.append("w")
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["y"], name="layer", **attrs)],
        "window",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    ("op", "attrs", "match"),
    [
        ("MaxPool", {"kernel_shape": [-3, -3]}, r"kernel_shape=\[-3, -3\] must hold integers >= 1"),
        ("MaxPool", {"kernel_shape": [2, 2], "pads": [-4, -4, 0, 0]}, r"pads=\[-4, -4, 0, 0\] must hold integers >= 0"),
        ("AveragePool", {"kernel_shape": [2, 2], "strides": [0, 1]}, r"strides=\[0, 1\] must hold integers >= 1"),
        ("Conv", {"pads": [-2, -2, -2, -2]}, r"pads=\[-2, -2, -2, -2\]"),
        ("Conv", {"kernel_shape": [0, 3]}, r"kernel_shape=\[0, 3\]"),
        ("Conv", {"dilations": [-1, -1]}, r"dilations=\[-1, -1\]"),
        ("ConvTranspose", {"strides": [-2, 2]}, r"strides=\[-2, 2\]"),
        ("MaxPool", {"kernel_shape": [20, 20]}, r"window 20 .* larger than input 'x'"),
        # Windows wholly in the padding: -inf from MaxPool, 0/0 from AveragePool (onnxruntime refuses them too).
        ("MaxPool", {"kernel_shape": [2, 2], "pads": [3, 3, 3, 3]}, r"pads=\[3, 3, 3, 3\] must each be smaller than kernel_shape=\[2, 2\]"),
        ("AveragePool", {"kernel_shape": [2, 2], "pads": [0, 2, 0, 0]}, r"must each be smaller than kernel_shape"),
        ("Conv", {"kernel_shape": [5, 5]}, r"kernel_shape=\[5, 5\] does not match the weight's spatial dims \[3, 3\]"),
        ("Conv", {"group": 3}, r"input 'x' has 2 channels, which group=3 and weight 'w' of shape \[2, 2, 3, 3\] do not match"),
        ("Conv", {"group": 2}, r"group=2 and weight 'w'"),
        ("ConvTranspose", {"output_shape": [-5, -5]}, r"output_shape=\[-5, -5\] must hold integers >= 1"),
    ],
)
def test_bad_window_attributes_are_refused_at_import(op: str, attrs: dict, match: str) -> None:
    with pytest.raises(ModelImportError, match=rf"node 'layer' \({op}\): .*{match}"):
        edge.build(window_model(op, **attrs).SerializeToString())


# -- memory bombs and hangs ------------------------------------------------------------

from pathlib import Path  # noqa: E402

from edge.cli import main  # noqa: E402
from edge.errors import CalibrationError, EdgeError, FileWriteError, KernelError  # noqa: E402
from edge.ir import Value  # noqa: E402
from edge.quant.data import load_calibration_data  # noqa: E402
from tests.test_engine_file import small_model  # noqa: E402

IMAGE = Value("image", np.float32, (1, 4))


def test_zip_bomb_npz_is_refused_before_inflating(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "bomb.npz", image=np.zeros((18_000_000, 4), np.float32))
    assert (tmp_path / "bomb.npz").stat().st_size < 1_000_000
    with pytest.raises(CalibrationError, match=r"bomb.npz' member 'image.npy' expands .* zip bomb"):
        load_calibration_data(tmp_path, [IMAGE])


def test_fifo_named_npy_is_refused_not_read(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "image.npy")
    with pytest.raises(CalibrationError, match="is not a regular file"):
        load_calibration_data(tmp_path, [IMAGE])


def test_constant_of_shape_bomb_is_not_folded_at_build() -> None:
    """A 8.6 GB ConstantOfShape stays a runtime node: the build never allocates it."""
    import tracemalloc

    shape = numpy_helper.from_array(np.array([65536, 32768], np.int64), "shape")
    graph = helper.make_graph(
        [
            helper.make_node("ConstantOfShape", ["shape"], ["big"], name="bomb"),
            helper.make_node("Mul", ["big", "x"], ["scaled"], name="scale"),
            helper.make_node("ReduceMax", ["scaled"], ["y"], name="reduce", keepdims=0),
        ],
        "bomb",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        [shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    tracemalloc.start()
    try:
        engine = edge.build(model.SerializeToString())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 30, f"build allocated {peak / 1e9:.1f} GB"
    assert "ConstantOfShape" in {n.op_type for n in engine.graph.nodes}


def test_declared_huge_dims_are_refused_at_import_with_an_estimate() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="act")],
        "huge",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1_000_000_000, 1000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1_000_000_000, 1000])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelImportError, match=r"tensor 'x' .* would need 4\.0 TB, more than this machine's .* of RAM"):
        edge.build(model.SerializeToString())


def endless_loop_model() -> onnx.ModelProto:
    """A Loop with no trip count whose body passes its condition (true) straight through."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["acc_in", "one"], ["acc_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.ones(1, np.float32), "one")],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["", "cond", "x"], ["y"], name="forever", body=body)],
        "endless",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.array(True), "cond")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_loop_without_trip_count_is_bounded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge.kernels.cpu.control import DEFAULT_MAX_LOOP_ITERATIONS, set_max_loop_iterations

    model_path, engine_path = tmp_path / "loop.onnx", tmp_path / "loop.engine"
    onnx.save(endless_loop_model(), model_path)
    assert main(["build", str(model_path), "-o", str(engine_path)]) == 0
    try:
        assert main(["run", str(engine_path), "--max-loop-iterations", "25"]) == 1
    finally:
        set_max_loop_iterations(DEFAULT_MAX_LOOP_ITERATIONS)
    err = capsys.readouterr().err
    assert "node 'forever' (Loop) did not end within 25 iterations (trip count none)" in err
    assert "Traceback" not in err
    with pytest.raises(KernelError, match="did not end within"):
        set_max_loop_iterations(40)
        try:
            edge.load(engine_path).create_context().run({"x": np.zeros(1, np.float32)})
        finally:
            set_max_loop_iterations(DEFAULT_MAX_LOOP_ITERATIONS)


# -- ordinary errors: one line, no traceback ---------------------------------------------


@pytest.fixture()
def built(tmp_path: Path) -> tuple[Path, Path]:
    model_path, engine_path = tmp_path / "small.onnx", tmp_path / "small.engine"
    onnx.save(small_model(), model_path)
    assert main(["build", str(model_path), "-o", str(engine_path)]) == 0
    return model_path, engine_path


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int, match: str) -> str:
    import re

    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err and "aborted" not in err, err
    assert re.search(match, err), err
    return err


def _bad_array_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04" + bytes(range(200)))
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    return {
        "object": (obj, "object array"),
        "corrupt_npz": (corrupt, "is not a valid .npz archive"),
        "empty_npy": (empty, "is not a valid .npy array"),
    }


@pytest.mark.parametrize("kind", ["object", "corrupt_npz", "empty_npy"])
def test_bad_input_files_give_one_line(built, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    path, match = _bad_array_files(tmp_path)[kind]
    capsys.readouterr()
    _one_line_error(capsys, main(["run", str(built[1]), "--input", f"x={path}"]), match)


def test_bad_calibration_files_give_calibration_errors(tmp_path: Path) -> None:
    for kind, (path, match) in _bad_array_files(tmp_path).items():
        folder = tmp_path / kind
        folder.mkdir()
        path.rename(folder / f"image{path.suffix}")
        with pytest.raises(CalibrationError, match=match):
            load_calibration_data(folder, [IMAGE])


@pytest.mark.parametrize("where", ["folder", "below_a_file"])
def test_output_that_cannot_be_written(built, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str) -> None:
    (tmp_path / "plain.txt").write_text("x")
    target = tmp_path if where == "folder" else tmp_path / "plain.txt" / "out.engine"
    capsys.readouterr()
    _one_line_error(capsys, main(["build", str(built[0]), "-o", str(target)]), r"cannot write .*")
    capsys.readouterr()
    _one_line_error(capsys, main(["run", str(built[1]), "-o", str(target)]), r"cannot write .*")


def test_full_disk_leaves_nothing(built, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    import errno

    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    target = tmp_path / "out" / "full.engine"
    capsys.readouterr()
    _one_line_error(capsys, main(["build", str(built[0]), "-o", str(target)]), "no space left on the device; nothing was written")
    assert not target.exists() and not [p for p in target.parent.iterdir()]
    with pytest.raises(FileWriteError):
        edge.load(built[1]).save(target)


@pytest.mark.parametrize("command", ["run", "bench", "compare"])
def test_negative_seed_is_a_usage_error(built, capsys: pytest.CaptureFixture[str], command: str) -> None:
    capsys.readouterr()
    target = built[0] if command == "compare" else built[1]
    code = main([command, str(target), "--seed", "-1"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "--seed" in err, err


@pytest.mark.parametrize("command", ["run", "bench"])
def test_run_shapes_larger_than_ram_are_refused_before_allocating(built, capsys: pytest.CaptureFixture[str], command: str) -> None:
    """A dynamic batch of 10^11 (x is batch x 4 floats) used to end in numpy's MemoryError traceback."""
    capsys.readouterr()
    code = main([command, str(built[1]), "--shapes", "x:99999999999x4"])
    _one_line_error(capsys, code, r"random input 'x' of shape 99999999999x4 would need 3\.2 TB, more than this machine's .* of RAM")


def _model_with(graph_change) -> bytes:
    model = small_model()
    graph_change(model)
    return model.SerializeToString()


def _elem_999(model: onnx.ModelProto) -> None:
    model.graph.input[0].type.tensor_type.elem_type = 999


def _bad_utf8(model: onnx.ModelProto) -> None:
    model.graph.node.append(helper.make_node("Constant", [], ["label"], name="label", value_string=b"\xff\xfe bad"))


def _huge_sparse(model: onnx.ModelProto) -> None:
    values = numpy_helper.from_array(np.ones(1, np.float32), "sp")
    indices = numpy_helper.from_array(np.zeros(1, np.int64), "sp_idx")
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [1 << 31, 1 << 20]))
    model.graph.node.append(helper.make_node("Add", ["y", "sp"], ["z"], name="use_sparse"))
    model.graph.output[0].name = "z"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_elem_999, r"tensor 'x' has ONNX element type 999, which is not a known type"),
        (_bad_utf8, r"not valid UTF-8"),
        (_huge_sparse, r"sparse tensor 'sp' has dims \[2147483648, 1048576\]: its dense form would need 9007\.2 TB"),
    ],
)
def test_malformed_models_give_one_line_errors(change, match: str) -> None:
    with pytest.raises(EdgeError, match=match) as info:
        edge.build(_model_with(change))
    assert "\n" not in str(info.value)


def test_control_characters_in_names_are_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = window_model("MaxPool", kernel_shape=[-1, -1])
    model.graph.node[0].name = "evil\x1b[2J\rname[/bold]"
    path = tmp_path / "evil.onnx"
    onnx.save(model, path)
    capsys.readouterr()
    err = _one_line_error(capsys, main(["build", str(path)]), r"evil\\x1b\[2J\\x0dname\[/bold\]")
    assert "\x1b[2J" not in err and "\r" not in err


def test_inspect_escapes_markup_and_control_characters(built, capsys: pytest.CaptureFixture[str]) -> None:
    """A crafted header name with rich markup and an ANSI escape prints as written, no crash."""
    from edge.engine.format import read_engine, write_engine

    blob = read_engine(built[1])
    header = {k: v for k, v in blob.header.items() if k not in ("format_version", "body_length")}
    header["name"] = "[/]\x1b[31mred[bold]"
    write_engine(built[1], header, blob.document, bytes(blob.blobs))
    capsys.readouterr()
    assert main(["inspect", str(built[1])]) == 0
    out = capsys.readouterr().out
    assert "\x1b[31m" not in out and "[/]\\x1b[31mred[bold]" in out
