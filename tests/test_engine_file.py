"""Engine files: round trip, and a one-line reason for every kind of bad file."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edge
from edge.cli import main
from edge.engine.format import FORMAT_VERSION, MAGIC


def small_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(np.array([0.5, -0.5, 0.25], np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="fc"),
            helper.make_node("Add", ["h", "b"], ["a"], name="bias"),
            helper.make_node("Relu", ["a"], ["y"], name="act"),
        ],
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [weight, bias],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture()
def engine_file(tmp_path: Path) -> Path:
    path = tmp_path / "small.engine"
    edge.build(small_model().SerializeToString()).save(path)
    return path


def test_round_trip_gives_identical_outputs(engine_file: Path) -> None:
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    built = edge.build(small_model().SerializeToString()).create_context().run({"x": x})
    loaded = edge.load(engine_file)
    assert loaded.header["format_version"] == FORMAT_VERSION
    assert loaded.header["edgetrt_version"] == edge.__version__
    assert [s.describe() for s in loaded.inputs] == ["x: float32[batchx4]"]
    np.testing.assert_array_equal(loaded.create_context().run({"x": x})["y"], built["y"])


def test_no_pickle_in_engine(engine_file: Path) -> None:
    data = engine_file.read_bytes()
    assert data.startswith(MAGIC)
    assert b"\x80\x04\x95" not in data and b"pickle" not in data


@pytest.mark.parametrize("keep", [3, 12, 40, -1])
def test_truncated_file_is_refused(engine_file: Path, keep: int) -> None:
    data = engine_file.read_bytes()
    engine_file.write_bytes(data[:keep])
    with pytest.raises(edge.EngineFormatError, match="truncated"):
        edge.load(engine_file)


def test_flipped_body_byte_is_detected(engine_file: Path) -> None:
    data = bytearray(engine_file.read_bytes())
    data[-20] ^= 0xFF
    engine_file.write_bytes(bytes(data))
    with pytest.raises(edge.EngineFormatError, match="checksum mismatch"):
        edge.load(engine_file)


def test_damaged_header_is_detected(engine_file: Path) -> None:
    data = bytearray(engine_file.read_bytes())
    data[20] = ord("}")
    engine_file.write_bytes(bytes(data))
    with pytest.raises(edge.EngineFormatError, match="corrupted"):
        edge.load(engine_file)


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    onnx_file = tmp_path / "model.engine"
    onnx.save(small_model(), onnx_file)
    with pytest.raises(edge.EngineFormatError, match="not an edgetrt engine"):
        edge.load(onnx_file)


@pytest.mark.parametrize("content", [b"hello\n", b"\x00" * 6, b""])
def test_short_foreign_file_is_not_called_truncated(tmp_path: Path, content: bytes) -> None:
    """A file shorter than the prefix that does not start with the magic is some other file."""
    path = tmp_path / "notes.engine"
    path.write_bytes(content)
    with pytest.raises(edge.EngineFormatError, match="not an edgetrt engine") as caught:
        edge.load(path)
    assert "truncated" not in str(caught.value)


def test_newer_format_is_refused(engine_file: Path) -> None:
    data = bytearray(engine_file.read_bytes())
    struct.pack_into("<I", data, len(MAGIC), FORMAT_VERSION + 1)
    engine_file.write_bytes(bytes(data))
    with pytest.raises(edge.EngineFormatError, match="newer than this edgetrt reads"):
        edge.load(engine_file)


def test_profile_mismatch_is_refused(engine_file: Path) -> None:
    with pytest.raises(edge.EngineFormatError, match="built for profile 'cpu'"):
        edge.load(engine_file, profile="agx-orin-64gb")


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = edge.build(small_model().SerializeToString())

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(edge.errors.FileWriteError, match="disk full; nothing was written"):
        engine.save(tmp_path / "out.engine")
    assert list(tmp_path.iterdir()) == []


def test_weights_are_shared_read_only_views(engine_file: Path) -> None:
    engine = edge.load(engine_file)
    constants = engine.graph.constants()
    assert constants and not any(v.const.flags.writeable for v in constants)
    contexts = [engine.create_context() for _ in range(2)]
    x = np.ones((1, 4), np.float32)
    np.testing.assert_array_equal(contexts[0].run({"x": x})["y"], contexts[1].run({"x": x})["y"])


def test_scalar_constants_keep_rank_zero(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "s"], ["y"], name="scale")],
        "scalar",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        [numpy_helper.from_array(np.array(2.5, np.float32), "s")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    edge.build(model.SerializeToString()).save(tmp_path / "s.engine")
    engine = edge.load(tmp_path / "s.engine")
    assert next(v for v in engine.graph.constants() if v.name == "s").const.shape == ()
    y = engine.create_context().run({"x": np.array(2.0, np.float32)})["y"]
    assert y.shape == () and y == 5.0


def test_engine_file_permissions_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        edge.build(small_model().SerializeToString()).save(tmp_path / "perm.engine")
    finally:
        os.umask(old)
    assert (tmp_path / "perm.engine").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("command", ["inspect", "run", "bench"])
def test_cli_calls_a_short_foreign_engine_file_not_an_engine(tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "six.engine"
    path.write_bytes(b"abcdef")
    assert main([command, str(path)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "'" + str(path) + "' is not an edgetrt engine" in err and "ONNX" not in err and "truncated" not in err
