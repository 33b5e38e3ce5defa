"""The CLI as a user meets it: help with examples, happy paths, one-line errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge.cli import main
from tests.test_engine_file import small_model

def _command_paths() -> list[list[str]]:
    """Every command and subcommand of the CLI, walked from the click tree typer builds."""
    import typer.main

    from edge.cli import _load_commands
    from edge.cli.app import app

    _load_commands()
    paths: list[list[str]] = []

    def walk(command, prefix: list[str]) -> None:
        subcommands = getattr(command, "commands", {})
        for name, sub in sorted(subcommands.items()):
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(typer.main.get_command(app), [])
    return paths


COMMANDS = _command_paths()


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "small.onnx"
    onnx.save(small_model(), path)
    return path


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("edgetrt 0.")


def test_the_command_tree_is_complete() -> None:
    top = {path[0] for path in COMMANDS}
    expected = {"build", "run", "inspect", "partition", "profiles", "bench", "profile", "power", "telemetry", "serve", "service"}
    assert expected <= top


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_every_command_has_help_with_examples(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    assert "Examples" in capsys.readouterr().out


def test_build_run_inspect(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = tmp_path / "small.engine"
    assert main(["build", str(model_file), "-o", str(engine), "--shapes", "x:2x4", "--verbose"]) == 0
    assert engine.is_file()
    x = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npz"
    assert main(["run", str(engine), "--input", f"x={tmp_path / 'x.npy'}", "--output", str(out)]) == 0
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in small_model().graph.initializer}
    expected = np.maximum(x @ weights["w"] + weights["b"], 0)
    np.testing.assert_allclose(np.load(out)["y"], expected, rtol=1e-6)
    capsys.readouterr()
    assert main(["inspect", str(engine), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "engine" and info["header"]["precision"] == "fp32"
    assert info["inputs"][0]["shape"] == [2, 4]
    assert {row["op"] for row in info["layers"]} <= {"MatMul", "Add", "Relu", "Gemm", "edgetrt::FusedGemm"}


def test_run_with_random_inputs_is_seeded(model_file: Path, tmp_path: Path) -> None:
    engine = tmp_path / "small.engine"
    assert main(["build", str(model_file), "-o", str(engine)]) == 0
    outputs = []
    for name in ("a", "b"):
        assert main(["run", str(engine), "--seed", "7", "--batch", "3", "-o", str(tmp_path / f"{name}.npz")]) == 0
        outputs.append(np.load(tmp_path / f"{name}.npz")["y"])
    assert outputs[0].shape == (3, 3)
    np.testing.assert_array_equal(outputs[0], outputs[1])


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((2, 4), np.float64), "input 'x' has dtype float64, the engine expects float32"),
        (np.zeros((2, 5), np.float32), "input 'x' has shape 2x5, the engine expects batchx4"),
        (np.zeros((4,), np.float32), "rank 1"),
    ],
)
def test_wrong_inputs_get_one_line_errors(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], array: np.ndarray, message: str
) -> None:
    engine = tmp_path / "small.engine"
    assert main(["build", str(model_file), "-o", str(engine)]) == 0
    np.save(tmp_path / "x.npy", array)
    capsys.readouterr()
    assert main(["run", str(engine), "--input", f"x={tmp_path / 'x.npy'}"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_unknown_input_name(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = tmp_path / "small.engine"
    assert main(["build", str(model_file), "-o", str(engine)]) == 0
    np.save(tmp_path / "z.npy", np.zeros((2, 4), np.float32))
    assert main(["run", str(engine), "--input", f"zz={tmp_path / 'z.npy'}"]) == 1
    assert "unknown input 'zz'; the engine's inputs are ['x']" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["build", "{model}", "--shapes", "x=2x4"], "is not NAME:DIMS"),
        (["build", "{model}", "--shapes", "x:2xq"], "are not integers"),
        (["build", "{model}", "--shapes", "nope:2x4"], "the model's inputs are ['x']"),
        (["build", "{tmp}/missing.onnx"], "does not exist"),
        (["run", "{model}"], "not an edgetrt engine"),
        (["inspect", "{tmp}/missing.engine"], "does not exist"),
    ],
)
def test_bad_arguments(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    argv = [a.format(model=model_file, tmp=tmp_path) for a in args]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.engine"))


def test_truncated_engine_on_the_command_line(model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = tmp_path / "small.engine"
    assert main(["build", str(model_file), "-o", str(engine)]) == 0
    engine.write_bytes(engine.read_bytes()[:100])
    capsys.readouterr()
    assert main(["run", str(engine)]) == 1
    assert "truncated" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["build", "model.onnx", "--fp17"], "No such option: --fp17"),
        (["run", "model.engine", "--threads", "0"], "--threads"),
        (["bench"], "Missing argument 'ENGINE'"),
    ],
)
def test_usage_errors_exit_2_without_a_traceback(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
