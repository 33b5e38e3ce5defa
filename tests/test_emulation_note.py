"""``edge.inspect.emulation_note``: engines whose layers this machine only emulates say so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import edge
from edge.cli import main
from edge.inspect import emulation_note, layer_rows
from tests.models import resnet_block_cnn


def _build(**config) -> edge.Engine:
    return edge.build(resnet_block_cnn().SerializeToString(), edge.BuilderConfig(**config))


def test_fp32_cpu_engine_has_no_note() -> None:
    assert emulation_note(_build()) is None


def test_fp16_cpu_engine_counts_its_rounded_layers() -> None:
    engine = _build(precision="fp16")
    fp16 = sum(node.meta.get("precision") == "fp16" for node in engine.graph.nodes)
    assert fp16 > 0
    note = emulation_note(engine)
    assert note is not None and f"{fp16} FP16 layer(s) computed in FP32" in note


def test_dla_engine_counts_layers_per_stand_in_device() -> None:
    engine = _build(precision="fp16", profile="agx-orin-64gb", dla_core=0, gpu_fallback=True, backends={"gpu": "cpu"})
    rows = layer_rows(engine.graph, engine.plan)
    dla = sum(r["emulated"] and r["device"] == "dla" for r in rows)
    gpu = sum(r["emulated"] and r["device"] == "gpu" for r in rows)
    assert dla > 0
    note = emulation_note(engine)
    assert note is not None and f"{dla} DLA" in note and (gpu == 0 or f"{gpu} GPU" in note)


def test_inspect_prints_the_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fp16.engine"
    _build(precision="fp16").save(path)
    capsys.readouterr()
    assert main(["inspect", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "note: emulated here:" in out and "not the target's" in out


def test_bench_and_trtexec_print_the_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fp16, fp32 = tmp_path / "fp16.engine", tmp_path / "fp32.engine"
    _build(precision="fp16").save(fp16)
    _build().save(fp32)
    quick = ["--iterations", "1", "--duration", "0", "--warmup-runs", "0"]
    capsys.readouterr()
    assert main(["bench", str(fp16), *quick]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "note: emulated here:" in out and "FP16 layer(s) computed in FP32" in out
    assert main(["bench", str(fp16), *quick, "--json"]) == 0
    assert "FP16 layer(s) computed in FP32" in json.loads(capsys.readouterr().out)["emulation"]
    assert main(["bench", str(fp32), *quick, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["emulation"] is None
    assert main(["trtexec", f"--loadEngine={fp16}", "--iterations=1", "--duration=0", "--warmUp=0"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "[W] emulated here:" in out and "not the target's" in out
