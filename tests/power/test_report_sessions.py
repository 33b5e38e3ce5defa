"""`telemetry report` (issue 24): sessions of an appended log reported apart, DLA/NVENC load and
RAM plotted over time, throttling and the benchmark window shaded on the plots."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from edge.cli import main
from edge.power.report import render_plots
from edge.power.tegrastats import parse_log

DATA = Path(__file__).resolve().parents[1] / "data" / "tegrastats"
# The AGX Orin JetPack 6 line of orin_agx.log (recorded on a device), without its timestamp.
AGX = [l for l in (DATA / "orin_agx.log").read_text().splitlines() if l.startswith("05-09-2026")][0][len("05-09-2026 18:42:06 ") :]


def _line(when: datetime, gpu_mhz: int = 1300, dla: int = 0, nvenc: int = 79, ram: int = 18207, rail_mw: int = 2412) -> str:
    text = (
        AGX.replace("GR3D_FREQ 0%@[0,0]", f"GR3D_FREQ 98%@[{gpu_mhz},{gpu_mhz}]")
        .replace("NVDLA0 off", f"NVDLA0 {dla}%@1369")
        .replace("NVENC 79%@166", f"NVENC {nvenc}%@166")
        .replace("RAM 18207/", f"RAM {ram}/")
        .replace("VDD_GPU_SOC 2412mW", f"VDD_GPU_SOC {rail_mw}mW")
    )
    return when.strftime("%m-%d-%Y %H:%M:%S ") + text


def _appended_log(tmp_path: Path) -> Path:
    """Two runs of `tegrastats --logfile` into one file, 393 days apart, at different power."""
    day1, day394 = datetime(2025, 4, 8, 9, 0, 0), datetime(2026, 5, 6, 17, 30, 0)
    lines = [_line(day1 + timedelta(seconds=i), rail_mw=1000) for i in range(30)]
    lines += [_line(day394 + timedelta(seconds=i), rail_mw=4000) for i in range(20)]
    path = tmp_path / "tegrastats.log"
    path.write_text("\n".join(lines) + "\n")
    return path


def _module_w(rail_mw: int) -> float:
    # AGX Orin has no input rail: the module power is the sum of VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0.
    return (rail_mw + 1607 + 4707) / 1000.0


def test_an_appended_log_is_reported_per_session(tmp_path: Path, capsys) -> None:
    log = _appended_log(tmp_path)
    assert main(["telemetry", "report", str(log), "--report", str(tmp_path / "last")]) == 0
    printed = capsys.readouterr().out
    assert "holds 2 recording sessions; reporting session 2" in printed
    document = json.loads((tmp_path / "last" / "report.json").read_text())
    assert document["summary"]["avg_power_w"] == pytest.approx(_module_w(4000))
    assert document["summary"]["samples"] == 20 and max(s["time_s"] for s in document["samples"]) == 19
    sessions = document["meta"]["sessions"]
    assert [(s["samples"], s["start"]) for s in sessions] == [(30, "2025-04-08 09:00:00"), (20, "2026-05-06 17:30:00")]
    assert [s["avg_power_w"] for s in sessions] == pytest.approx([_module_w(1000), _module_w(4000)])

    assert main(["telemetry", "report", str(log), "--session", "1", "--report", str(tmp_path / "first")]) == 0
    first = json.loads((tmp_path / "first" / "report.json").read_text())
    assert first["summary"]["avg_power_w"] == pytest.approx(_module_w(1000)) and first["summary"]["samples"] == 30
    capsys.readouterr()
    assert main(["telemetry", "report", str(log), "--session", "3", "--report", str(tmp_path / "none")]) == 1
    assert "holds 2 session(s), numbered 1-2" in capsys.readouterr().err


def test_a_pause_of_minutes_within_a_run_stays_one_session() -> None:
    start = datetime(2026, 5, 6, 17, 30, 0)
    lines = [_line(start + timedelta(seconds=i)) for i in range(5)] + [_line(start + timedelta(seconds=300 + i)) for i in range(5)]
    log = parse_log(lines)
    assert len(log.sessions) == 1 and log.samples[-1].time_s == 304


def _shaded_fraction(png: bytes, rgb: tuple[float, float, float]) -> float:
    """Share of the image's pixels of one colour (the shading over the white plot area)."""
    image = imread(io.BytesIO(png))[..., :3]
    return float(np.mean(np.all(np.abs(image - np.asarray(rgb)) < 0.02, axis=-1)))


RED_SHADE = (1.0, 0.75, 0.75)  # red at alpha 0.25 over white
GREY_SHADE = (0.88, 0.88, 0.88)


def test_plots_show_accelerators_memory_throttling_and_the_window(tmp_path: Path, capsys) -> None:
    start = datetime(2026, 5, 6, 17, 30, 0)
    # 60 s: the DLA works from 10 s to 50 s, NVENC throughout, RAM grows, the GPU clock falls to
    # 612 MHz from 30 s on while the GPU stays 98 % busy.
    lines = [
        _line(start + timedelta(seconds=i), gpu_mhz=1300 if i < 30 else 612, dla=90 if 10 <= i < 50 else 0, nvenc=40, ram=18000 + 50 * i)
        for i in range(60)
    ]
    log = tmp_path / "run.log"
    log.write_text("\n".join(lines) + "\n")
    assert main(["telemetry", "report", str(log), "--window", "10:50", "--report", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    document = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {"accelerators", "memory"} <= set(document["plots"])
    assert document["summary"]["window_samples"] == 41  # 10 s .. 50 s inclusive
    assert any("GPU clock dropped to 612 MHz at t=30.0 s" in w for w in document["summary"]["warnings"])

    samples = parse_log(lines).samples
    marked = render_plots(samples, window=(10.0, 50.0))
    for name in ("clocks", "accelerators", "memory", "power"):
        assert _shaded_fraction(marked[name], RED_SHADE) > 0.02, name  # 30-59 s of 59 s is throttled (partly over the window)
        assert _shaded_fraction(marked[name], GREY_SHADE) > 0.02, name  # the window
    steady = render_plots([s for s in samples if s.time_s < 30])
    assert _shaded_fraction(steady["clocks"], RED_SHADE) < 0.001 and _shaded_fraction(steady["clocks"], GREY_SHADE) < 0.001
    dla = [s.engines["NVDLA0"].load_pct for s in samples]
    assert dla[:10] == [0] * 10 and dla[10:50] == [90] * 40
    (tmp_path / "clocks.png").write_bytes(marked["clocks"])
    (tmp_path / "accelerators.png").write_bytes(marked["accelerators"])
