"""tegrastats parser on real lines from public sources (tests/data/tegrastats/*.log cite each one).

Expected values are read off the fixture lines by hand, so a parser bug cannot agree with itself.
"""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

import pytest

from edge.errors import TelemetryError
from edge.power.tegrastats import parse_line, parse_log, read_log

DATA = Path(__file__).resolve().parents[1] / "data" / "tegrastats"


def _lines(name: str) -> list[str]:
    return [l for l in (DATA / name).read_text().splitlines() if l.strip() and not l.startswith("#")]


def test_every_fixture_line_parses_with_no_malformed():
    for path in sorted(DATA.glob("*.log")):
        log = read_log(path)
        assert log.malformed == 0, path.name
        assert len(log.samples) == len(_lines(path.name)), path.name
        for sample in log.samples:
            assert sample.ram_total_mb and sample.cpus, path.name


def test_orin_agx_jetpack6():
    sample = parse_line(_lines("orin_agx.log")[1])
    assert sample.wallclock == datetime(2026, 5, 9, 18, 42, 6)
    assert (sample.ram_used_mb, sample.ram_total_mb) == (18207, 62841)
    assert (sample.swap_used_mb, sample.swap_total_mb, sample.swap_cached_mb) == (86, 31420, 0)
    assert len(sample.cpus) == 12
    assert (sample.cpus[0].load_pct, sample.cpus[0].freq_mhz) == (14, 2188)
    assert (sample.cpus[11].load_pct, sample.cpus[11].freq_mhz) == (10, 1036)
    assert (sample.emc_load_pct, sample.emc_freq_mhz) == (3, 2133)
    assert (sample.gpu_load_pct, sample.gpu_gpc_freqs_mhz, sample.gpu_freq_mhz) == (0, [0, 0], 0)
    nvenc = sample.engines["NVENC"]
    assert (nvenc.load_pct, nvenc.freq_mhz, nvenc.online) == (79, 166, True)
    assert not sample.engines["NVDLA0"].online and not sample.engines["NVDLA1"].online
    assert not sample.engines["PVA0"].online  # PVA0_FREQ off
    assert sample.engines["APE"].freq_mhz == 174
    assert sample.temperatures_c == {"cpu": 52.562, "soc2": 48.437, "soc0": 49.093, "tj": 52.562, "soc1": 49.656}
    assert {k: (r.instant_mw, r.average_mw) for k, r in sample.rails.items()} == {
        "VDD_GPU_SOC": (2412, 2412),
        "VDD_CPU_CV": (1607, 1607),
        "VIN_SYS_5V0": (4707, 4707),
    }
    # AGX Orin has no input rail: the module total is the sum of the rails.
    assert sample.total_power_mw() == 2412 + 1607 + 4707
    assert sample.unknown == []


def test_orin_agx_jetpack5_invalid_zones_and_nc_rails():
    sample = parse_line(_lines("orin_agx.log")[0])
    assert sample.gpu_gpc_freqs_mhz == [0, 0]
    assert "GPU" not in sample.temperatures_c and "CV0" not in sample.temperatures_c  # -256C = no reading
    assert {"CV0@-256C", "CV1@-256C", "GPU@-256C", "CV2@-256C"} <= set(sample.unknown)
    assert sample.temperatures_c["tj"] == 44.343
    assert "NC" not in sample.rails
    assert sample.rails["VDDQ_VDD2_1V8AO"].instant_mw == 301
    assert sample.engines["VIC"].freq_mhz == 729  # VIC_FREQ 729


def test_orin_jetpack72_abridged_line_keeps_unknown_tokens():
    sample = parse_line(_lines("orin_agx.log")[4])
    assert (sample.gpu_load_pct, sample.gpu_gpc_freqs_mhz) == (0, [1300, 1300])
    assert [(c.load_pct, c.freq_mhz) for c in sample.cpus] == [(23, 2201), (10, 2201)]
    assert "CPU[2]=..." in sample.unknown and "..." in sample.unknown
    assert sample.temperatures_c == {"cpu": 52.968}
    assert not sample.engines["NVENC0"].online


def test_orin_nano_without_root():
    log = read_log(DATA / "orin_nano.log")
    first = log.samples[0]
    assert first.gpu_load_pct == 0 and first.gpu_freq_mhz is None  # "GR3D_FREQ 0%": no clock without root
    assert first.emc_freq_mhz is None
    assert len(first.cpus) == 6 and all(c.freq_mhz == 729 for c in first.cpus)
    assert first.rails["VDD_IN"].instant_mw == 4761 and first.rails["VDD_IN"].average_mw == 4778
    assert first.total_power_mw() == 4761  # VDD_IN, not VDD_IN + its subsets
    # Times come from the printed timestamps: 14:59:41 -> 15:00:54 is 73 s.
    assert [s.time_s for s in log.samples] == [0, 1, 2, 73, 74, 75]
    assert log.samples[3].cpus[0].freq_mhz == 1344  # after jetson_clocks


def test_agx_xavier_jetpack4_bare_rails():
    sample = parse_line(_lines("xavier.log")[0])
    assert sample.wallclock is None
    assert len(sample.cpus) == 8 and sample.cpus[0].freq_mhz == 1190
    assert (sample.emc_load_pct, sample.emc_freq_mhz) == (0, None)
    assert {k: r.instant_mw for k, r in sample.rails.items()} == {
        "GPU": 463, "CPU": 618, "SOC": 2936, "CV": 0, "VDDRQ": 309, "SYS5V": 3306,
    }
    assert sample.total_power_mw() == 463 + 618 + 2936 + 0 + 309 + 3306
    assert sample.temperatures_c["GPU"] == 30.5 and sample.temperatures_c["thermal"] == 30.8


def test_xavier_nx_offline_cores_and_gr3d_array():
    sample = parse_line(_lines("xavier.log")[1])
    assert [c.online for c in sample.cpus] == [True, True, True, True, False, False]
    assert sample.cpus[4].load_pct is None and sample.cpus[4].freq_mhz is None
    assert (sample.gpu_load_pct, sample.gpu_freq_mhz) == (0, 510)
    assert sample.total_power_mw() == 5079


def test_nano_iram_and_pom_rails():
    first, second = (parse_line(l) for l in _lines("nano.log"))
    assert first.engines["IRAM"].load_pct == 0
    assert (first.gpu_load_pct, first.gpu_freq_mhz) == (0, 76)
    assert first.engines["NVENC"].freq_mhz == 716
    assert first.total_power_mw() == 4520  # POM_5V_IN
    assert first.rails["POM_5V_CPU"].average_mw == 1205
    assert [c.online for c in second.cpus] == [True, True, False, False]
    assert second.cpus[1].load_pct == 67


def test_legacy_tx1_shared_cpu_clock():
    sample = parse_line(_lines("legacy_tx1.log")[1])
    assert [(c.load_pct, c.freq_mhz) for c in sample.cpus] == [(17, 1734), (11, 1734), (65, 1734), (0, 1734)]
    assert (sample.emc_load_pct, sample.emc_freq_mhz) == (1, 1600)
    assert (sample.gpu_load_pct, sample.gpu_freq_mhz) == (39, 76)
    assert sample.rails == {} and sample.total_power_mw() is None


def test_thor_gpc_clocks_without_load():
    sample = parse_line(_lines("thor.log")[1])
    assert sample.gpu_load_pct is None and sample.gpu_gpc_freqs_mhz == [0, 0, 0]
    assert sample.cpus[8].freq_mhz == 2601
    assert sample.engines["NVENC1"].freq_mhz == 0 and not sample.engines["VIC"].online
    assert sample.rails["VDD_CPU_SOC_MSS"].average_mw == 4544


def test_jetpack5_gr3d2_and_jetpack72_three_value_rails():
    # Constructed from the token forms in shared/reference/jetson.md 5.3/5.5 (not a recorded line):
    # JP5.0.x prints a second GPC as GR3D2_FREQ; JP7.2 prints name@tC/tC and three-value rails.
    sample = parse_line(
        "RAM 2257/30536MB (lfb 5392x4MB) CPU [5%@729,off] GR3D_FREQ 99%@917 GR3D2_FREQ 99%@0 "
        "tj@50.5C/105C VDD_GPU_SOC 2390mW/2300mW/2500mW"
    )
    assert (sample.gpu_load_pct, sample.gpu_gpc_freqs_mhz, sample.gpu_freq_mhz) == (99, [917, 0], 917)
    assert sample.temperatures_c == {"tj": 50.5}
    rail = sample.rails["VDD_GPU_SOC"]
    assert (rail.instant_mw, rail.average_mw, rail.third_mw) == (2390, 2300, 2500)


def test_malformed_lines_are_counted_and_skipped():
    real = _lines("nano.log")
    text = [
        "# comment",
        real[0],
        "garbage that is not tegrastats",
        "",
        "RAM",  # truncated
        "NVPM WARN: fan mode is not set!",
        real[1][:40],  # cut mid-line: still has RAM, so it counts as a (partial) sample
        "\x00\x01 binary",
        real[1],
    ]
    log = parse_log(text, interval_s=0.5)
    assert log.malformed == 4
    assert log.malformed_lines == [3, 5, 6, 8]
    assert len(log.samples) == 3
    assert [s.time_s for s in log.samples] == [0.0, 0.5, 1.0]


def test_random_corruption_never_raises():
    rng = random.Random(1234)
    lines = [l for path in DATA.glob("*.log") for l in _lines(path.name)]
    alphabet = "0123456789%@[],/ mWCkBMx-.abcXYZ_()"
    for _ in range(2000):
        chars = list(rng.choice(lines))
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(chars))
            action = rng.randrange(3)
            if action == 0:
                del chars[position]
            elif action == 1:
                chars.insert(position, rng.choice(alphabet))
            else:
                chars[position] = rng.choice(alphabet)
        parse_line("".join(chars))  # must return a Sample or None, never raise


def test_read_log_errors(tmp_path):
    with pytest.raises(TelemetryError, match="does not exist"):
        read_log(tmp_path / "missing.log")
    junk = tmp_path / "junk.log"
    junk.write_text("hello\nworld\n")
    with pytest.raises(TelemetryError, match="no tegrastats line"):
        read_log(junk)
