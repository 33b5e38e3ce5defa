"""``edgetrt trtexec`` and trtexec's export layouts, checked field by field.

The layouts are trtexec's (samples/common/sampleReporting.cpp: exportJSONTrace and
Profiler::exportJSONProfile) and TensorRT's engine inspector's, read the way TensorRT Engine
Explorer (trex) reads them: the profile keeps records of 4 or 5 keys and joins them to the
graph's layers by position; layers need Name, LayerType, Inputs and Outputs whose tensors
have Name, Dimensions and a Format/Datatype string trex knows; the timing file is read for
``latencyMs``. The log lines are matched with the patterns scripts use on trtexec's output.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest

import edge
from edge.cli import main
from edge.partitioner.trtexec_profile import read_trtexec_profile
from edge.precision import PINNED
from edge.runtime.bench import BenchResult
from edge.runtime.exports import write_times
from tests.models import mobile_cnn

TIMES_KEYS = [
    "startEnqMs", "endEnqMs", "startH2dMs", "endH2dMs", "startComputeMs", "endComputeMs",
    "startD2hMs", "endD2hMs", "h2dMs", "computeMs", "d2hMs", "latencyMs",
]  # fmt: skip
# Format/Datatype strings of linear tensors trex's activations table knows.
TREX_FORMATS = {
    "Row major linear FP32", "Row major linear FP16 format", "Row major Int8 format", "Row major linear Int32",
    "Row major linear Int64 format", "Row major linear BOOL", "Row major linear UInt8 format", "Row major linear BFloat16 format",
}  # fmt: skip
NUMBER = r"([-+0-9.e]+|inf|nan)"


def stats_pattern(label: str, percentiles: list[str]) -> re.Pattern:
    tail = "".join(rf", percentile\({re.escape(p)}%\) = {NUMBER} ms" for p in percentiles)
    return re.compile(rf"\[I\] {label}: min = {NUMBER} ms, max = {NUMBER} ms, mean = {NUMBER} ms, median = {NUMBER} ms{tail}$", re.M)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("trtexec") / "cnn.onnx"
    onnx.save(mobile_cnn(), path)
    return path


def test_builds_benchmarks_and_exports_in_trtexecs_layouts(model_path, tmp_path, capsys) -> None:
    engine, times, profile, layers = (tmp_path / n for n in ("cnn.engine", "times.json", "profile.json", "layers.json"))
    argv = ["trtexec", f"--onnx={model_path}", f"--saveEngine={engine}", "--iterations=20", "--duration=0", "--warmUp=0"]
    argv += ["--avgRuns=5", "--percentile=50,99", f"--exportTimes={times}", f"--exportProfile={profile}", f"--exportLayerInfo={layers}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("&&&& RUNNING edgetrt.trtexec") and out.rstrip().endswith("&&&& PASSED edgetrt.trtexec")
    assert re.search(r"\[I\] Timing trace has 20 queries over ", out)
    assert re.search(r"\[I\] Trace averages of 5 runs:", out) and len(re.findall(r"\[I\] Average on 5 runs - GPU latency: ", out)) == 4

    trace = json.loads(times.read_text())
    assert len(trace) == 20 and all(list(row) == TIMES_KEYS for row in trace)
    latencies = np.array([row["latencyMs"] for row in trace])  # what trex's read_timing_file takes
    latency = [float(v) for v in stats_pattern("Latency", ["50", "99"]).search(out).groups()]
    ordered = np.sort(latencies)
    expected = [ordered[0], ordered[-1], latencies.mean(), np.median(latencies), ordered[9], ordered[19]]  # ranks 10 and 20 of 20
    np.testing.assert_allclose(latency, expected, rtol=1e-5)
    compute = [float(v) for v in stats_pattern("GPU Compute Time", ["50", "99"]).search(out).groups()]
    np.testing.assert_allclose(compute[2], np.mean([row["computeMs"] for row in trace]), rtol=1e-5)
    for label in ("H2D Latency", "D2H Latency"):  # the CPU has no copies: trtexec's zeros, as with --noDataTransfers
        assert [float(v) for v in stats_pattern(label, ["50", "99"]).search(out).groups()] == [0.0] * 6
    assert stats_pattern("Enqueue Time", ["50", "99"]).search(out)
    walltime = float(re.search(rf"\[I\] Total Host Walltime: {NUMBER} s", out).group(1))
    throughput = float(re.search(rf"\[I\] Throughput: {NUMBER} qps", out).group(1))
    assert throughput == pytest.approx(20 / walltime, rel=1e-4)
    assert walltime * 1000 >= trace[-1]["endD2hMs"] - trace[0]["startEnqMs"] - 1e-3
    total_compute = float(re.search(rf"\[I\] Total GPU Compute Time: {NUMBER} s", out).group(1))
    assert total_compute == pytest.approx(sum(row["computeMs"] for row in trace) / 1000, rel=1e-4)

    graph = json.loads(layers.read_text())
    assert list(graph) == ["Layers", "Bindings"]
    loaded = edge.load(engine)  # --saveEngine wrote a real engine
    assert [layer["Name"] for layer in graph["Layers"]] == [node.name for node in loaded.graph.nodes]
    # trex keeps profile records of 4 or 5 keys and joins them to the layers by position
    records = json.loads(profile.read_text())
    assert records[0] == {"count": 20}
    kept = [r for r in records if len(r) in (4, 5)]
    assert [r["name"] for r in kept] == [layer["Name"] for layer in graph["Layers"]]
    assert all(list(r) == ["name", "timeMs", "averageMs", "medianMs", "percentage"] for r in kept)
    parsed = read_trtexec_profile(profile)  # edgetrt's reader of real trtexec profiles
    assert parsed.count == 20 and sum(layer.percentage for layer in parsed.layers) == pytest.approx(100.0)
    for layer in parsed.layers:
        assert layer.time_ms == pytest.approx(20 * layer.average_ms)


def test_layer_info_matches_the_onnx_model(model_path, tmp_path, capsys) -> None:
    layers = tmp_path / "layers.json"
    assert main(["trtexec", f"--onnx={model_path}", "--skipInference", f"--exportLayerInfo={layers}"]) == 0
    assert "Performance summary" not in capsys.readouterr().out
    graph = json.loads(layers.read_text())
    model = onnx.load(model_path)
    declared = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*model.graph.input, *model.graph.output)}
    assert graph["Bindings"] == list(declared)
    first, last = graph["Layers"][0], graph["Layers"][-1]
    assert first["Inputs"][0]["Name"] == "image" and first["Inputs"][0]["Dimensions"] == declared["image"]
    assert last["Outputs"][0]["Name"] == "features" and last["Outputs"][0]["Dimensions"] == declared["features"]
    nodes = {node.name: node for node in model.graph.node}
    weights = {init.name: list(init.dims) for init in model.graph.initializer}
    convolutions = 0
    for layer in graph["Layers"]:
        assert {"Name", "LayerType", "Inputs", "Outputs", "TacticName", "Metadata"} <= set(layer)
        for tensor in layer["Inputs"] + layer["Outputs"]:
            assert tensor["Location"] == "Host" and tensor["Format/Datatype"] in TREX_FORMATS
            assert all(isinstance(d, int) for d in tensor["Dimensions"])
        origins = [re.fullmatch(r"\[ONNX Layer: (.+)\]", part).group(1) for part in layer["Metadata"].split("\x1e")]
        assert all(name in nodes for name in origins)
        if layer.get("ParameterType") == "Convolution":
            convolutions += 1
            (conv,) = [nodes[n] for n in origins if nodes[n].op_type == "Conv"]
            shape = weights[conv.input[1]]
            group = next((a.i for a in conv.attribute if a.name == "group"), 1)
            assert layer["OutMaps"] == shape[0] and layer["Kernel"] == shape[2:] and layer["Groups"] == group
            assert layer["Weights"] == {"Type": "Float", "Count": int(np.prod(shape))}
            n, c, h, w = layer["Inputs"][0]["Dimensions"]  # trex's convolution analysis reads NCHW
            assert c == shape[1] * group
    assert convolutions == sum(node.op_type == "Conv" for node in model.graph.node)


def test_gpu_flags_have_no_effect_on_the_cpu(model_path, tmp_path, capsys) -> None:
    engine = tmp_path / "cnn.engine"
    assert main(["trtexec", f"--onnx={model_path}", f"--saveEngine={engine}", "--skipInference"]) == 0
    capsys.readouterr()
    argv = ["trtexec", f"--loadEngine={engine}", "--duration=0", "--warmUp=0"]
    assert main(argv + ["--useCudaGraph", "--noDataTransfers", "--useSpinWait", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "[I] Engine loaded in" in out
    assert "[I] Timing trace has 10 queries" in out  # trtexec's --iterations default holds with --duration alone
    for flag in ("--useCudaGraph", "--noDataTransfers", "--useSpinWait"):
        assert re.search(rf"\[W\] {flag}: no effect on this backend \(cpu\)$", out, re.M)
    assert "[V] GPU Compute Time: the layers' own time" in out
    assert stats_pattern("Latency", ["90", "95", "99"]).search(out)  # trtexec's default percentiles


def test_layer_precisions_pin_layers_as_builds_do(model_path, tmp_path, capsys) -> None:
    engine, pins = tmp_path / "pinned.engine", tmp_path / "cnn.precisions"
    pins.write_text("conv_10:fp32\n")  # build's @FILE form, as calibrate --keep-fp16 writes it
    argv = ["trtexec", f"--onnx={model_path}", "--fp16", f"--layerPrecisions=@{pins}", f"--saveEngine={engine}", "--skipInference"]
    assert main(argv) == 0
    assert "--precisionConstraints=none: edgetrt obeys --layerPrecisions all the same" in capsys.readouterr().out
    assert main([*argv, "--precisionConstraints=obey"]) == 0
    assert "precisionConstraints" not in capsys.readouterr().out
    built = edge.load(engine)
    (pinned,) = [n for n in built.graph.nodes if "conv_10" in n.origin]
    assert pinned.meta["precision"] == "fp32" and pinned.meta["precision_note"] == PINNED
    assert {n.meta["precision"] for n in built.graph.nodes if n.op_type == "FusedConv" and n is not pinned} == {"fp16"}
    capsys.readouterr()
    assert main(["trtexec", f"--onnx={model_path}", "--fp16", "--layerPrecisions=conv_10:int8", "--skipInference"]) == 1
    err = capsys.readouterr().err
    assert "layer precision 'conv_10:int8' needs a int8 build" in err and len(err.strip().splitlines()) == 1
    assert main([*argv, "--precisionConstraints=always"]) == 1
    assert "--precisionConstraints=always: expected one of none, prefer, obey" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "give one of --onnx=MODEL.onnx (build, then benchmark) or --loadEngine=FILE.engine"),
        (["--onnx=a.onnx", "--loadEngine=a.engine"], "give one of --onnx=MODEL.onnx"),
        (["--loadEngine=missing.engine", "--percentile=120"], "--percentile 120 is outside [0, 100]"),
        (["--loadEngine=missing.engine"], "engine file 'missing.engine' does not exist"),
    ],
)
def test_bad_input_is_one_line(argv, message, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["trtexec", *argv]) == 1
    captured = capsys.readouterr()
    assert message in captured.err and len(captured.err.strip().splitlines()) == 1
    assert "Traceback" not in captured.err


def test_times_lay_each_querys_parts_end_to_end(tmp_path) -> None:
    nan = np.nan
    result = BenchResult(
        engine="net",
        backend="cuda",
        streams=1,
        shapes={},
        times_ms={
            "latency": np.array([3.5, 3.0]),
            "enqueue": np.array([0.25, nan]),
            "h2d": np.array([1.0, nan]),
            "compute": np.array([2.0, nan]),
            "d2h": np.array([0.5, nan]),
            "host": np.array([4.0, 3.0]),
        },
        start_times_s=np.array([0.001, 0.005]),
        stream_ids=np.array([0, 0]),
        wall_s=0.008,
        device=True,
    )
    path = tmp_path / "times.json"
    write_times(result, path)
    first, second = json.loads(path.read_text())
    assert first == {
        "startEnqMs": 1.0, "endEnqMs": 1.25, "startH2dMs": 1.0, "endH2dMs": 2.0, "startComputeMs": 2.0, "endComputeMs": 4.0,
        "startD2hMs": 4.0, "endD2hMs": 4.5, "h2dMs": 1.0, "computeMs": 2.0, "d2hMs": 0.5, "latencyMs": 3.5,
    }  # fmt: skip
    # an unsplit run: no copies measured, compute is its latency, enqueue its host time
    assert second["h2dMs"] == second["d2hMs"] == 0.0 and second["computeMs"] == second["latencyMs"] == 3.0
    assert second["endEnqMs"] - second["startEnqMs"] == pytest.approx(3.0)


def _readme_trtexec_table() -> dict[str, str]:
    """README's trtexec table as {flag: classification}; each flag in backticks in the first column."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    body = text[text.index("| trtexec flag | | in edgetrt |") :].split("\n\n")[0].splitlines()[2:]
    table = {}
    for row in body:
        flags, kind = re.split(r"(?<!\\)\|", row)[1:3]
        for flag in re.findall(r"`(--[A-Za-z0-9]+)`", flags):
            assert flag not in table, f"{flag} is listed twice"
            table[flag] = kind.strip()
    return table


def test_readme_classifies_every_trtexec_flag_and_same_meaning_flags_work():
    import typer.main

    import edge.cli.trtexec  # registers the command
    from edge.cli.app import app

    listed = Path(__file__).resolve().parent / "data" / "trtexec_flags.txt"
    trtexec_flags = [line for line in listed.read_text().splitlines() if line and not line.startswith("#")]
    table = _readme_trtexec_table()
    assert sorted(set(trtexec_flags) - set(table)) == []
    assert set(table.values()) <= {"same meaning", "different spelling", "not applicable", "not built"}
    command = typer.main.get_command(app).commands["trtexec"]
    accepted = {opt for param in command.params for opt in param.opts} | {"--help"}  # click adds --help itself
    assert sorted(flag for flag, kind in table.items() if kind == "same meaning" and flag not in accepted) == []
    # and a trtexec flag `edgetrt trtexec` takes is never listed as something else
    assert sorted(flag for flag, kind in table.items() if kind != "same meaning" and flag in accepted) == []
