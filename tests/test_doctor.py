"""``edge.doctor`` / ``edgetrt doctor``: the checks on this machine and on a faked Jetson board."""

from __future__ import annotations

import json
import os
import platform
import stat
from pathlib import Path

import numpy as np
import onnx
import pytest

import edge.doctor
from edge.cli import main
from edge.doctor import MISSING, NA, OK, match_profile, run_checks


def _fake_jetson(root: Path, model: str, mem_kb: int) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 3.0, GCID: 1, BOARD: generic, EABI: aarch64\n")
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_bytes(model.encode() + b"\x00")
    (root / "proc/meminfo").write_text(f"MemTotal:       {mem_kb} kB\nMemFree:        1000 kB\n")


def _stand_ins(directory: Path, *names: str) -> str:
    directory.mkdir()
    for name in names:
        tool = directory / name
        tool.write_text("#!/bin/sh\nexit 0\n")
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return str(directory)


def test_this_machine(tmp_path: Path) -> None:
    report = run_checks(sysroot=tmp_path, path=str(tmp_path))
    assert report.core_ok
    assert report.get("numpy").detail == np.__version__
    assert report.get("onnx").detail.startswith(onnx.__version__)
    assert report.get("python").detail == platform.python_version()
    assert report.get("cpu cores").detail.endswith(f"of {os.cpu_count()} ({platform.machine()})")
    assert report.get("jetson").status == NA and report.get("nvpmodel").status == NA
    assert report.get("profile").detail == "cpu"  # no nvidia-smi on the given PATH
    assert report.get("systemd").status == MISSING  # no systemctl on PATH, no /run/systemd/system
    assert all(c.status in (OK, MISSING, NA) for c in report.checks)


def test_fake_jetson_is_detected(tmp_path: Path) -> None:
    _fake_jetson(tmp_path / "root", "NVIDIA Jetson AGX Orin Developer Kit", 64_300_000)
    tools = _stand_ins(tmp_path / "bin", "nvpmodel", "jetson_clocks", "tegrastats")
    report = run_checks(sysroot=tmp_path / "root", path=tools, euid=1000)
    jetson = report.get("jetson")
    assert jetson.status == OK and "AGX Orin" in jetson.detail and "R36" in jetson.detail
    assert (report.get("profile").status, report.get("profile").detail) == (OK, "agx-orin-64gb")
    for tool in ("nvpmodel", "jetson_clocks", "tegrastats"):
        assert report.get(tool).status == OK and report.get(tool).detail == str(tmp_path / "bin" / tool)
    assert report.get("root").status == MISSING and "sudo" in report.get("root").hint
    assert report.get("desktop-cuda").status == NA


def test_fake_jetson_without_tools(tmp_path: Path) -> None:
    _fake_jetson(tmp_path / "root", "NVIDIA Jetson Orin Nano Developer Kit", 7_600_000)
    report = run_checks(sysroot=tmp_path / "root", path=_stand_ins(tmp_path / "bin"), euid=0)
    assert report.get("profile").detail == "orin-nano-8gb"
    assert report.get("nvpmodel").status == MISSING and "L4T" in report.get("nvpmodel").hint
    assert report.get("root").status == OK


@pytest.mark.parametrize(
    "model, mem_gb, expected",
    [
        ("NVIDIA Jetson AGX Orin Developer Kit", 31.0, "agx-orin-32gb"),
        ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", 15.3, "orin-nx-16gb"),
        ("NVIDIA Jetson Orin Nano Developer Kit", 3.7, "orin-nano-4gb"),
        ("NVIDIA Jetson Xavier NX Developer Kit", 7.6, "xavier-nx"),
        ("Raspberry Pi 4 Model B", 4.0, None),
    ],
)
def test_profile_match(model: str, mem_gb: float, expected: str | None) -> None:
    assert match_profile(model, mem_gb) == expected


def test_cli_table_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _fake_jetson(tmp_path / "root", "NVIDIA Jetson AGX Orin Developer Kit", 64_300_000)
    monkeypatch.setattr(edge.doctor, "SYSROOT", tmp_path / "root")
    monkeypatch.setenv("PATH", _stand_ins(tmp_path / "bin", "nvpmodel", "tegrastats") + os.pathsep + os.environ["PATH"])
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "agx-orin-64gb" in out and "nvpmodel" in out
    assert main(["doctor", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in data["checks"]}
    assert data["core_ok"] is True
    assert checks["jetson"]["status"] == OK and checks["profile"]["detail"] == "agx-orin-64gb"
    assert checks["tegrastats"]["status"] == OK
    assert {"numpy", "onnx", "onnxruntime", "blas", "tensorrt", "nvidia-smi", "desktop-cuda", "serve", "telemetry", "systemd"} <= set(checks)


def test_broken_core_exits_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real = edge.doctor._import

    def no_onnx(module: str):
        if module == "onnx":
            raise ImportError("libprotobuf.so: cannot open shared object file")
        return real(module)

    monkeypatch.setattr(edge.doctor, "_import", no_onnx)
    assert main(["doctor"]) == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "onnx missing or broken" in err


@pytest.mark.parametrize("jetson", [False, True])
def test_no_hint_suggests_tensorrt(tmp_path: Path, jetson: bool) -> None:
    """edgetrt has no TensorRT backend: doctor must not send users to install one."""
    root = tmp_path / "root"
    if jetson:
        _fake_jetson(root, "NVIDIA Jetson AGX Orin Developer Kit", 64_300_000)
    report = run_checks(sysroot=root, path=str(tmp_path))
    assert report.get("tensorrt").status == NA
    assert not [c for c in report.checks if "tensorrt" in c.hint.lower() or "libnvinfer" in c.hint]
