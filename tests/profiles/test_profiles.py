"""Device profiles: every bundled file validates, facts match jetson.md, schema errors name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge.errors import ProfileError
from edge.profiles import list_profiles, load_profile, parse_profile
from edge.profiles.detect import _gpu_peaks

JETSONS = ["agx-orin-64gb", "agx-orin-32gb", "orin-nx-16gb", "orin-nx-8gb", "orin-nano-8gb", "orin-nano-4gb", "agx-xavier", "xavier-nx"]


def test_list_profiles() -> None:
    assert list_profiles() == sorted(JETSONS + ["cpu", "desktop-cuda"])


@pytest.mark.parametrize("name", JETSONS)
def test_jetson_profiles_validate(name: str) -> None:
    p = load_profile(name)
    assert p.name == name and p.source == f"{name}.yaml"
    assert p.power_mode().id == p.default_power_mode
    assert p.tegrastats_rails
    for mode in p.power_modes:
        assert mode.gpu_max_mhz <= p.gpu.max_mhz
        assert mode.online_cpus <= p.cpu.cores
        if p.dla is not None:
            assert mode.dla_max_mhz <= p.dla.max_mhz


def test_facts_from_jetson_md() -> None:
    orin = load_profile("agx-orin-64gb")
    assert (orin.dla.cores, orin.dla.version, orin.gpu.sms, orin.gpu.compute_capability) == (2, 2, 16, "8.7")
    assert [(m.id, m.name, m.gpu_max_mhz, m.gpu_tpcs) for m in orin.power_modes] == [
        (0, "MAXN", 1300, 8), (1, "MODE_15W", 408, 3), (2, "MODE_30W", 612, 4), (3, "MODE_50W", 816, 8)]
    assert orin.power_mode("MODE_15W").dla_max_mhz == 614.4 and orin.power_mode("maxn").budget_w is None
    assert load_profile("orin-nx-8gb").dla.cores == 1
    assert load_profile("orin-nano-8gb").dla is None and load_profile("orin-nano-4gb").dla is None
    xavier = load_profile("agx-xavier")
    assert xavier.dla.version == 1 and xavier.power_mode(7).dla_max_mhz == 115.2
    assert load_profile("xavier-nx").power_mode("MODE_20W_6CORE").emc_max_mhz == 1866
    assert load_profile("orin-nx-16gb").total_power_rail == "VDD_IN"
    assert load_profile("agx-xavier").tegrastats_rails == ["GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"]


def test_power_mode_lookup_errors() -> None:
    orin = load_profile("agx-orin-64gb")
    assert orin.power_mode("3").name == "MODE_50W"
    with pytest.raises(ProfileError, match=r"no power mode '9' \(modes: 0=MAXN, 1=MODE_15W"):
        orin.power_mode(9)


def test_cpu_profile_reads_the_host() -> None:
    import os

    p = load_profile("cpu")
    assert p.gpu is None and p.dla is None and p.cpu.cores == (os.cpu_count() or 1)
    assert p.power_modes[0].gpu_max_mhz is None and p.memory_gb > 0


def test_desktop_cuda_without_gpu_is_a_clear_error() -> None:
    from tests.conftest import has_gpu

    if has_gpu():
        pytest.skip("a GPU is present")
    with pytest.raises(ProfileError, match="^desktop-cuda: "):
        load_profile("desktop-cuda")


@pytest.mark.gpu
def test_desktop_cuda_reads_the_local_gpu() -> None:
    p = load_profile("desktop-cuda")
    assert p.gpu.sms > 0 and p.gpu.max_mhz > 0 and p.memory_bandwidth_gbps > 100 and p.dla is None


def test_gpu_peak_estimates_match_published_figures() -> None:
    """Independent reference: NVIDIA's dense FP16 tensor peak of the A100 (312 TFLOPS: 108 SMs at
    1410 MHz) and the FP32 peak of the RTX 3090 (35.6 TFLOPS: 82 SMs at 1695 MHz)."""
    assert _gpu_peaks((8, 0), 108, 1410)["peak_fp16_tflops"] == pytest.approx(312, rel=0.01)
    assert _gpu_peaks((8, 6), 82, 1695)["peak_fp32_tflops"] == pytest.approx(35.6, rel=0.01)


def test_user_profile_path(tmp_path: Path) -> None:
    data = yaml.safe_load((Path(__file__).parents[2] / "profiles" / "orin-nx-16gb.yaml").read_text())
    data["name"] = "my-board"
    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump(data))
    p = load_profile(str(path))
    assert p.name == "my-board" and p.source == str(path) and p.dla.cores == 2


def _bad(tmp_path: Path, edit) -> str:
    data = yaml.safe_load((Path(__file__).parents[2] / "profiles" / "agx-orin-64gb.yaml").read_text())
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError) as info:
        load_profile(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def test_schema_errors_name_file_key_and_problem(tmp_path: Path) -> None:
    assert "missing required key 'gpu.sms'" in _bad(tmp_path, lambda d: d["gpu"].pop("sms"))
    assert "key 'gpu.sms': expected an integer, got str 'sixteen'" in _bad(tmp_path, lambda d: d["gpu"].update(sms="sixteen"))
    assert "key 'memory_gb': expected a number, got str" in _bad(tmp_path, lambda d: d.update(memory_gb="lots"))
    assert "key 'power_modes[1].gpu_max_mhz': expected a number" in _bad(tmp_path, lambda d: d["power_modes"][1].update(gpu_max_mhz=[1]))
    assert "key 'power_modes': expected a list" in _bad(tmp_path, lambda d: d.update(power_modes={"id": 0}))
    assert "unknown key 'gpu.smz'" in _bad(tmp_path, lambda d: d["gpu"].update(smz=3))
    assert "key 'dla.version': must be 1 (Xavier) or 2 (Orin), got 3" in _bad(tmp_path, lambda d: d["dla"].update(version=3))
    assert "key 'default_power_mode': 7 is not a power mode id" in _bad(tmp_path, lambda d: d.update(default_power_mode=7))
    assert "key 'power_modes[1].id': duplicate power mode id 0" in _bad(tmp_path, lambda d: d["power_modes"][1].update(id=0))
    assert "key 'power_modes[0].dla_max_mhz': required" in _bad(tmp_path, lambda d: d["power_modes"][0].update(dla_max_mhz=None))
    assert "dla_max_mhz': set, but the profile has no DLA" in _bad(tmp_path, lambda d: d.update(dla=None))
    assert "key 'gpu.max_mhz': must be positive" in _bad(tmp_path, lambda d: d["gpu"].update(max_mhz=0))
    assert "key 'dla': expected a mapping" in _bad(tmp_path, lambda d: d.update(dla=[1, 2]))


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ngpu: {sms: 16\nmodule: y\n")
    with pytest.raises(ProfileError, match=rf"^{path}: malformed YAML at line \d+, column \d+"):
        load_profile(str(path))
    with pytest.raises(ProfileError, match=r"^inline: top level: expected a mapping, got list"):
        parse_profile("- a\n- b\n", "inline")


def test_unknown_profile_and_missing_file() -> None:
    with pytest.raises(ProfileError, match=r"unknown profile 'orin-agx-64' \(profiles: agx-orin-32gb, agx-orin-64gb"):
        load_profile("orin-agx-64")
    with pytest.raises(ProfileError, match="profile file 'nowhere/board.yaml' does not exist"):
        load_profile("nowhere/board.yaml")
    with pytest.raises(ProfileError, match="key 'detect': expected one of"):
        parse_profile("name: x\ndetect: fpga\n", "x.yaml")


def test_power_mode_names_resolve_like_nvpmodel() -> None:
    """'15W' is MODE_15W everywhere (partition/build use the profile; `power set` uses the same rule)."""
    profile = load_profile("agx-orin-64gb")
    assert profile.power_mode("15W").name == "MODE_15W"
    assert profile.power_mode("mode_15w").name == "MODE_15W"
    with pytest.raises(ProfileError, match="no power mode '16W'"):
        profile.power_mode("16W")
