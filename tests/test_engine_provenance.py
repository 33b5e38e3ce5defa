"""Engine provenance: what the header records, what differs from a machine, and how load/run react."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import pytest
from onnx import TensorProto, helper

import edge
from edge.cli import main
from edge.engine.provenance import MachineFacts, mismatches, read_machine, software_versions
from edge.errors import EngineMismatchError, EngineMismatchWarning
from edge.quant import CalibrationCache, write_cache

HEADER = {
    "edgetrt_version": edge.__version__,
    "profile": "agx-orin-64gb",
    "provenance": {
        "target": {"profile": "agx-orin-64gb", "power_mode": "MAXN", "precision": "int8", "dla_core": 0},
        "built_with": {"edgetrt": edge.__version__, "jetpack": "6.2+b77", "l4t": "36.4.3", "tensorrt": "10.3.0.30", "cuda": "12.6.68"},
    },
}
BOARD = MachineFacts(jetson_profile="agx-orin-64gb", power_mode="MAXN", versions={"jetpack": "6.2+b77", "l4t": "36.4.3", "tensorrt": "10.3.0.30", "cuda": "12.6.68"})


def _described(header: dict, backends: set[str], machine: MachineFacts) -> list[str]:
    return [m.describe() for m in mismatches(header, backends, machine)]


def test_same_board_has_no_mismatch() -> None:
    assert _described(HEADER, {"tensorrt"}, BOARD) == []


def test_each_difference_is_named() -> None:
    other = MachineFacts(jetson_profile="orin-nx-16gb", power_mode="15W", versions={"jetpack": "6.0+b106", "l4t": "36.3.0", "tensorrt": "8.6.2.3", "cuda": "12.2.140"})
    assert _described(HEADER, {"tensorrt"}, other) == [
        "device profile: engine agx-orin-64gb, this machine orin-nx-16gb",
        "power mode: engine MAXN, this machine 15W",
        "JetPack version: engine 6.2+b77, this machine 6.0+b106",
        "L4T version: engine 36.4.3, this machine 36.3.0",
        "CUDA version: engine 12.6.68, this machine 12.2.140",
        "TensorRT version: engine 10.3.0.30, this machine 8.6.2.3",
    ]


def test_libraries_count_only_for_the_backends_that_use_them() -> None:
    other = MachineFacts(jetson_profile="agx-orin-64gb", power_mode="MAXN", versions={"jetpack": "6.2+b77", "l4t": "36.4.3"})
    assert _described(HEADER, {"cpu"}, other) == []
    assert _described(HEADER, {"cuda"}, other) == ["CUDA version: engine 12.6.68, this machine not installed"]


def test_off_jetson_a_jetson_engine_is_emulated_without_complaint() -> None:
    desktop = MachineFacts(versions={"cuda": "12.6.68"})
    assert _described(HEADER, {"cpu"}, desktop) == []


def test_old_engines_compare_on_the_edgetrt_version_only() -> None:
    old = {"edgetrt_version": "0.0.1", "profile": "cpu"}
    assert _described(old, {"cpu"}, BOARD) == [
        f"edgetrt version: engine 0.0.1, this machine {edge.__version__}",
        "device profile: engine cpu, this machine agx-orin-64gb",
    ]


def test_gpu_capability_is_compared_for_gpu_plans() -> None:
    header = {"edgetrt_version": edge.__version__, "profile": "desktop-cuda", "provenance": {"built_with": {"gpu_compute_capability": "8.7"}}}
    machine = MachineFacts(gpu_compute_capability="9.0")
    assert _described(header, {"cuda"}, machine) == ["GPU compute capability: engine 8.7, this machine 9.0"]
    assert _described(header, {"cpu"}, machine) == []


def _fake_board(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n")
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(
        "Package: nvidia-l4t-core\nStatus: install ok installed\nVersion: 36.4.3-20250107174145\n\n"
        "Package: nvidia-jetpack\nStatus: install ok installed\nVersion: 6.2+b77\n\n"
    )
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    (root / "proc/meminfo").write_text("MemTotal:       64335836 kB\n")
    return root


def test_versions_are_read_from_l4t_files(tmp_path: Path) -> None:
    found = software_versions(_fake_board(tmp_path))
    assert found["l4t"] == "36.4.3" and found["jetpack"] == "6.2+b77"


def test_a_board_is_recognised_by_its_device_tree(tmp_path: Path) -> None:
    machine = read_machine(_fake_board(tmp_path))
    assert machine.jetson_profile == "agx-orin-64gb"
    assert machine.power_mode is None  # no nvpmodel on this fake board: unknown, not compared


def _model():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="act")], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 3))], [helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 3))],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_header_records_target_and_cache_hash(tmp_path: Path) -> None:
    cache = tmp_path / "tiny.calib"
    write_cache(cache, CalibrationCache("EntropyCalibration2", {"x": 0.01, "y": 0.01}))
    engine = edge.build(_model(), edge.BuilderConfig(precision="int8", profile="agx-orin-64gb", calib_cache=cache, power_mode="MAXN"))
    target = engine.header["provenance"]["target"]
    assert target["calibration_cache_sha256"] == hashlib.sha256(cache.read_bytes()).hexdigest()
    assert (target["profile"], target["soc"], target["compute_capability"], target["power_mode"], target["precision"]) == (
        "agx-orin-64gb", "Jetson AGX Orin 64GB", "8.7", "MAXN", "int8")
    engine.save(tmp_path / "tiny.engine")
    assert edge.load(tmp_path / "tiny.engine").header["provenance"] == engine.header["provenance"]
    unpinned = edge.build(_model(), edge.BuilderConfig(profile="agx-orin-64gb"))
    assert unpinned.header["provenance"]["target"]["power_mode"] is None  # costed for the default, runs in any mode
    assert unpinned.header["provenance"]["target"]["costed_power_mode"] == "MODE_30W"


@pytest.fixture()
def foreign_engine(tmp_path: Path) -> Path:
    engine = edge.build(_model())
    engine.header["edgetrt_version"] = "0.0.1"
    path = tmp_path / "foreign.engine"
    engine.save(path)
    return path


def test_load_refuses_or_warns(foreign_engine: Path) -> None:
    with pytest.raises(EngineMismatchError, match=r"edgetrt version: engine 0\.0\.1.*--allow-mismatch"):
        edge.load(foreign_engine)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = edge.load(foreign_engine, allow_mismatch=True)
    assert [w.category for w in caught] == [EngineMismatchWarning]
    assert [m.what for m in engine.mismatches] == ["edgetrt version"]
    assert edge.load(foreign_engine, check_machine=False).mismatches == []


def test_run_command_refuses_then_warns(foreign_engine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(foreign_engine)]) == 1
    assert "built for another machine" in capsys.readouterr().err
    assert main(["run", str(foreign_engine), "--allow-mismatch"]) == 0
    out = capsys.readouterr()
    assert "warning:" in out.err and "edgetrt version: engine 0.0.1" in out.err
    assert "float32" in out.out  # the output table was printed
