"""Garbage tegrastats lines (issue 26) never become samples, skew power or raise false
throttling warnings, and report.json stays strict JSON.

Real-format lines come from tests/data/tegrastats (recorded on devices, sources cited there);
the garbage is generated with a fixed seed and a bounded count.
"""

from __future__ import annotations

import json
import random
import re
import string
from pathlib import Path

import numpy as np
import pytest

from edge.cli import main
from edge.power.report import summarize, write_report
from edge.power.tegrastats import Rail, Sample, parse_line, parse_log

DATA = Path(__file__).resolve().parents[1] / "data" / "tegrastats"
SEED, COUNT = 26, 400


def _real(name: str) -> list[str]:
    return [line for line in (DATA / name).read_text().splitlines() if line.strip() and not line.startswith("#")]


# Corruptions of one field of a real line to a value no Jetson reports; each must refuse the line.
IMPOSSIBLE = [
    (r"VDD_IN \d+mW", "VDD_IN 6016986000mW"),  # 6,016,986 W
    (r"VDD_IN (\d+)mW/\d+mW", r"VDD_IN \1mW/" + "9" * 400 + "mW"),  # float() of this is inf
    (r"RAM \d+/(\d+)MB", r"RAM 99999/\1MB"),  # used above total
    (r"RAM \d+/\d+MB", "RAM 0/0MB"),
    (r"CPU \[\d+%", "CPU [250%"),
    (r"@729\]", "@99999]"),  # a 100 GHz core
    (r"GR3D_FREQ \d+%", "GR3D_FREQ 1000%"),
    (r"tj@[\d.]+C", "tj@5000C"),
    (r"SWAP \d+/(\d+)MB", r"SWAP 9999999/\1MB"),
]


def _impossible_lines(rng: random.Random, real: list[str]) -> list[str]:
    lines: list[str] = []
    while len(lines) < COUNT // 4:
        pattern, replacement = rng.choice(IMPOSSIBLE)
        line, changed = re.subn(pattern, replacement, rng.choice(real), count=1)
        if changed:  # the field is on this line
            lines.append(line)
    return lines


def _noise_lines(rng: random.Random) -> list[str]:
    alphabet = string.printable.replace("\n", "").replace("\r", "").replace("\x0b", "").replace("\x0c", "")
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 160))) for _ in range(COUNT // 4)]


def _mutated_lines(rng: random.Random, real: list[str]) -> list[str]:
    """Real lines with random edits and token salads: they may or may not stay plausible."""
    tokens = [token for line in real for token in line.split()]
    lines = []
    for _ in range(COUNT // 4):
        chars = list(rng.choice(real))
        for _ in range(rng.randint(1, 10)):
            chars[rng.randrange(len(chars))] = rng.choice("0123456789%@[],/mWCB9")
        lines.append("".join(chars))
        lines.append(" ".join(rng.choice(tokens) if rng.random() < 0.8 else str(rng.randint(0, 10**12)) for _ in range(rng.randint(3, 40))))
    return lines


def _plausible(sample: Sample) -> bool:
    """Independent statement of what a Jetson can report (jetson.md section 5: loads in %, clocks
    in MHz, rails in mW of modules drawing at most 130 W, RAM used within its total)."""
    loads = [sample.gpu_load_pct, sample.emc_load_pct] + [u.load_pct for u in [*sample.cpus, *sample.engines.values()]]
    clocks = [sample.gpu_freq_mhz, sample.emc_freq_mhz, *sample.gpu_gpc_freqs_mhz]
    clocks += [u.freq_mhz for u in [*sample.cpus, *sample.engines.values()]]
    power = [v for r in sample.rails.values() for v in (r.instant_mw, r.average_mw, r.third_mw)]
    return (
        all(v is None or 0 <= v <= 100 for v in loads)
        and all(v is None or 0 <= v <= 10_000 for v in clocks)
        and all(v is None or 0 <= v <= 300_000 for v in power)
        and all(-60 <= v <= 200 for v in sample.temperatures_c.values())
        and (sample.ram_total_mb is None or 0 <= (sample.ram_used_mb or 0) <= sample.ram_total_mb)
    )


def test_impossible_values_and_noise_never_become_samples() -> None:
    rng = random.Random(SEED)
    real = _real("orin_nano.log") + _real("orin_agx.log")
    for line in _impossible_lines(rng, real) + _noise_lines(rng):
        assert parse_line(line) is None, line


def test_whatever_garbage_is_kept_is_plausible() -> None:
    rng = random.Random(SEED + 1)
    real = [line for name in ("orin_nano.log", "orin_agx.log", "xavier.log", "nano.log", "thor.log") for line in _real(name)]
    kept = [s for s in (parse_line(line) for line in _mutated_lines(rng, real)) if s is not None]
    assert kept  # some edits stay plausible (a digit of a load changed): those may stay
    assert all(_plausible(sample) for sample in kept)


def _busy_line(stamp: str, gpu_mhz: int) -> str:
    """An Orin Nano JetPack 6 line (orin_nano.log) with the GPU busy at ``gpu_mhz`` (its x%@[f] form)."""
    line = _real("orin_nano.log")[0].replace("GR3D_FREQ 0%", f"GR3D_FREQ 97%@[{gpu_mhz}]")
    return stamp + line[len("04-27-2026 14:59:41") :]


def test_a_real_log_with_garbage_mixed_in_reports_only_the_real_power(tmp_path: Path, capsys) -> None:
    rng = random.Random(SEED + 2)
    real = [_busy_line(f"04-27-2026 15:00:{second:02d}", 612) for second in range(60)]
    # Stray single samples a naive peak/min rule reads as throttling: one very high clock, one low.
    strays = [_busy_line("04-27-2026 15:00:20", 9_999), _busy_line("04-27-2026 15:00:40", 300)]
    garbage = _impossible_lines(rng, real) + _noise_lines(rng)
    mixed = real[:21] + strays[:1] + real[21:41] + strays[1:] + real[41:]  # in time order
    for line in garbage:
        mixed.insert(rng.randrange(len(mixed) + 1), line)
    log = tmp_path / "tegrastats.log"
    log.write_text("\n".join(mixed) + "\n")
    out = tmp_path / "report"
    assert main(["telemetry", "report", str(log), "--report", str(out)]) == 0
    printed = capsys.readouterr().out
    counted = [line for line in garbage if line.strip() and not line.strip().startswith("#")]  # blanks, comments: not counted
    assert f"skipped {len(counted)} lines" in printed
    text = (out / "report.json").read_text()

    def refuse(constant: str) -> None:
        raise AssertionError(f"report.json holds a bare {constant}")

    document = json.loads(text, parse_constant=refuse)
    kept = [parse_line(line) for line in real + strays]
    expected_w = np.mean([s.rails["VDD_IN"].instant_mw for s in kept]) / 1000.0
    assert document["summary"]["avg_power_w"] == pytest.approx(expected_w)
    assert document["summary"]["samples"] == len(real) + len(strays)
    assert not [w for w in document["summary"]["warnings"] if "throttling" in w], document["summary"]["warnings"]


def test_a_sustained_drop_is_still_throttling() -> None:
    lines = [_busy_line(f"04-27-2026 15:00:{s:02d}", 612 if s < 30 else 408) for s in range(60)]
    warnings = summarize(parse_log(lines).samples)["warnings"]
    assert any(w.startswith("GPU clock dropped to 408 MHz at t=30.0 s while busy (typical 612 MHz)") for w in warnings), warnings


def test_report_json_is_strict_even_for_non_finite_numbers(tmp_path: Path) -> None:
    # A sampler other than tegrastats (NVML, jtop) may hand over inf/NaN: report.json stays strict.
    samples = [Sample(time_s=float(i), rails={"GPU": Rail(float("inf") if i == 1 else 5000.0, float("nan"))}) for i in range(3)]
    write_report(tmp_path, samples)
    text = (tmp_path / "report.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    document = json.loads(text)
    assert document["samples"][1]["rails"]["GPU"]["instant_mw"] is None
