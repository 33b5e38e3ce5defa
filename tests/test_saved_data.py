"""Polygraphy's saved-data workflow: files Polygraphy itself reads and writes, per-output
tolerances, error statistics, several iterations, data-loader scripts, --validate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from polygraphy.comparator import RunResults
from polygraphy.json import load_json, save_json

import edge
from edge.cli import main
from edge.compare import compare, compare_arrays
from edge.saved_data import read_inputs, read_outputs, write_inputs, write_outputs

WEIGHT = (np.arange(12, dtype=np.float32).reshape(4, 3) - 6) / 7


def two_output_model() -> onnx.ModelProto:
    """logits = x @ W; probs = softmax(logits): two outputs of different scales."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["logits"], name="fc"), helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=-1)],
        "two_outputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 3]), helper.make_tensor_value_info("probs", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(WEIGHT, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def numpy_outputs(x: np.ndarray) -> dict[str, np.ndarray]:
    logits = x.astype(np.float64) @ WEIGHT
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return {"logits": logits, "probs": e / e.sum(axis=-1, keepdims=True)}


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "two.onnx"
    onnx.save(two_output_model(), path)
    return path


@pytest.fixture()
def engine_file(model_file: Path, tmp_path: Path) -> Path:
    path = tmp_path / "two.engine"
    edge.build(model_file).save(path)
    return path


def _feeds(count: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(5)
    return [{"x": rng.standard_normal((2, 4)).astype(np.float32)} for _ in range(count)]


# -- file formats, against Polygraphy itself -------------------------------------------------
def test_inputs_json_round_trips_through_polygraphy(tmp_path: Path) -> None:
    feeds = _feeds(2)
    write_inputs(tmp_path / "ours.json", feeds)
    theirs = load_json(str(tmp_path / "ours.json"))
    assert len(theirs) == 2 and all(np.array_equal(a["x"], b["x"]) for a, b in zip(theirs, feeds))
    save_json(feeds, str(tmp_path / "theirs.json"))
    assert all(np.array_equal(a["x"], b["x"]) for a, b in zip(read_inputs(tmp_path / "theirs.json"), feeds))


def test_outputs_json_round_trips_through_polygraphy(tmp_path: Path) -> None:
    outputs = [{"y": f["x"] * 2} for f in _feeds(3)]
    results = RunResults()
    results.add(outputs, runtime=0.5, runner_name="onnxrt-runner-N0-01/01/26")
    results.save(str(tmp_path / "theirs.json"))
    ours = read_outputs(tmp_path / "theirs.json")
    assert list(ours) == ["onnxrt-runner-N0-01/01/26"]
    assert all(np.array_equal(a["y"], b["y"]) for a, b in zip(ours["onnxrt-runner-N0-01/01/26"], outputs))
    write_outputs(tmp_path / "ours.json", {"edgetrt-runner": outputs})
    loaded = RunResults.load(str(tmp_path / "ours.json"))
    assert list(loaded.keys()) == ["edgetrt-runner"]
    assert all(np.array_equal(it["y"], want["y"]) for it, want in zip(loaded["edgetrt-runner"], outputs))


def test_npz_keeps_several_iterations(tmp_path: Path) -> None:
    feeds = _feeds(3)
    write_inputs(tmp_path / "in.npz", feeds)
    assert sorted(np.load(tmp_path / "in.npz").files) == ["0/x", "1/x", "2/x"]
    assert all(np.array_equal(a["x"], b["x"]) for a, b in zip(read_inputs(tmp_path / "in.npz"), feeds))
    write_inputs(tmp_path / "one.npz", feeds[:1])
    assert np.load(tmp_path / "one.npz").files == ["x"]


def test_a_pickled_array_is_refused(tmp_path: Path) -> None:
    import base64
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    payload = [{"x": {"array": base64.b64encode(buffer.getvalue()).decode(), "polygraphy_class": "ndarray"}}]
    (tmp_path / "evil.json").write_text(json.dumps(payload))
    with pytest.raises(edge.EdgeError, match="an encoded array cannot be read"):
        read_inputs(tmp_path / "evil.json")


# -- the commands ----------------------------------------------------------------------------
def test_compare_saves_then_checks_against_saved_outputs(model_file: Path, engine_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs, outputs = tmp_path / "inputs.json", tmp_path / "outputs.json"
    assert main(["compare", str(model_file), "--iterations", "3", "--save-inputs", str(inputs), "--save-outputs", str(outputs)]) == 0
    feeds = load_json(str(inputs))
    assert len(feeds) == 3 and not np.array_equal(feeds[0]["x"], feeds[1]["x"])  # seed + i per iteration
    saved = RunResults.load(str(outputs))
    reference = saved["onnxrt-runner"]
    for feed, iteration in zip(feeds, reference):
        for name, want in numpy_outputs(feed["x"]).items():
            np.testing.assert_allclose(iteration[name], want, rtol=1e-5, atol=1e-6)
    capsys.readouterr()
    assert main(["compare", str(model_file), "--engine", str(engine_file), "--load-inputs", str(inputs), "--load-outputs", str(outputs)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "saved outputs" in out and "over 3 iterations" in out and "error histogram of 'logits'" in out


def test_run_load_outputs_fails_naming_the_output(engine_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    feeds = _feeds(1)
    wanted = numpy_outputs(feeds[0]["x"])
    wanted["probs"] = wanted["probs"] + 0.01
    save_json(feeds, str(tmp_path / "in.json"))
    results = RunResults()
    results.add([{k: v.astype(np.float32) for k, v in wanted.items()}], runner_name="onnxrt-runner")
    results.save(str(tmp_path / "out.json"))
    assert main(["run", str(engine_file), "--load-inputs", str(tmp_path / "in.json"), "--load-outputs", str(tmp_path / "out.json")]) == 1
    captured = capsys.readouterr()
    assert "1 output(s) differ" in captured.err and "probs" in captured.err
    assert main(["run", str(engine_file), "--load-inputs", str(tmp_path / "in.json"), "--load-outputs", str(tmp_path / "out.json"), "--atol", "probs:0.02"]) == 0


def test_per_output_tolerances(model_file: Path) -> None:
    x = _feeds(1)[0]
    wanted = numpy_outputs(x["x"])
    skewed = [{"logits": wanted["logits"] + 1e-3, "probs": wanted["probs"]}]
    result = compare(model_file, feeds=[x], expected=skewed, rtol=0.0, atol={"": 1e-5, "logits": 2e-3})
    assert result.passed and [(o.name, o.atol) for o in result.outputs] == [("logits", 2e-3), ("probs", 1e-5)]
    result = compare(model_file, feeds=[x], expected=skewed, rtol=0.0, atol=1e-5)
    assert result.failed == ["logits"]
    with pytest.raises(edge.EdgeError, match="atol for 'nope': not an output"):
        compare(model_file, atol={"nope": 1.0})


def test_error_statistics_follow_polygraphy() -> None:
    """median passes where elemwise fails on one outlier; max fails; numbers from numpy."""
    expected = np.linspace(1.0, 2.0, 101)
    actual = expected.copy()
    actual[7] += 0.5
    diff = np.abs(actual - expected)
    assert not compare_arrays("y", actual, expected, 1e-3, 1e-3).passed
    median = compare_arrays("y", actual, expected, 1e-3, 1e-3, "median")
    assert median.passed and median.median_abs == pytest.approx(np.median(diff))
    assert not compare_arrays("y", actual, expected, 1e-3, 1e-3, "max").passed
    assert compare_arrays("y", actual, expected, 1e-3, 1e-2, "mean").passed  # mean abs 0.00495 <= 0.01
    counts, edges = np.histogram(diff, bins=10, range=(0.0, diff.max()))
    assert [(lo, n) for lo, _, n in median.histogram] == [(pytest.approx(e), int(c)) for e, c in zip(edges[:-1], counts)]


def test_cli_check_error_stat(model_file: Path, engine_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["compare", str(model_file), "--engine", str(engine_file), "--rtol", "0", "--atol", "0"]
    capsys.readouterr()
    assert main([*args, "--check-error-stat", "median", "--atol", "probs:1e-6", "--atol", "logits:1e-5"]) == 0
    assert main([*args, "--check-error-stat", "sideways"]) == 1
    assert "error statistic 'sideways'" in capsys.readouterr().err


def test_data_loader_script_feeds_run(engine_file: Path, tmp_path: Path) -> None:
    script = tmp_path / "loader.py"
    script.write_text(
        "import numpy as np\n\n"
        "def batches():\n"
        "    for k in range(2):\n"
        "        yield {'x': np.full((2, 4), k + 1, np.float32)}\n"
    )
    assert main(["run", str(engine_file), "--data-loader-script", f"{script}:batches", "--save-outputs", str(tmp_path / "o.json")]) == 0
    runs = RunResults.load(str(tmp_path / "o.json"))["edgetrt-runner"]
    assert len(runs) == 2
    for k, iteration in enumerate(runs):
        np.testing.assert_allclose(iteration["logits"], numpy_outputs(np.full((2, 4), k + 1, np.float32))["logits"], rtol=1e-5)


def test_validate_fails_on_nan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_fp16_overflow import overflowing_model

    onnx.save(overflowing_model(), tmp_path / "o.onnx")
    edge.build(tmp_path / "o.onnx", edge.BuilderConfig(precision="fp16")).save(tmp_path / "o.engine")
    assert main(["run", str(tmp_path / "o.engine")]) == 0
    assert main(["run", str(tmp_path / "o.engine"), "--validate"]) == 1
    assert "--validate: 1 output(s) hold NaN or inf" in capsys.readouterr().err
