"""`edgetrt service`: generated units verified by systemd itself; install/uninstall end to end."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

import edge
from edge.cli import main
from edge.service import ServiceError, ServiceSpec, render_unit

STANDIN_SYSTEMCTL = """#!/bin/sh
echo "$@" >> "{log}"
case "$1" in
  show) printf 'LoadState=loaded\\nActiveState={active}\\nSubState=running\\nMainPID=4242\\n' ;;
  *) [ -n "{fail}" ] && {{ echo "{fail}" >&2; exit 1; }} ;;
esac
exit 0
"""


@pytest.fixture(autouse=True)
def tmp_is_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    """These engines live under /tmp (tempfile's folders); the PrivateTmp refusal has its own tests."""
    monkeypatch.setattr("edge.service.manager.PRIVATE_TMP_DIRS", ())


@pytest.fixture(scope="module")
def engine_file() -> Iterator[Path]:
    """A world-readable engine (a dynamic service user must read it) under a quoted-path dir."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    folder = Path(tempfile.mkdtemp(prefix="edgetrt engine %"))  # a space and a % to quote
    folder.chmod(0o755)  # pytest's own tmp dirs are private to root
    path = folder / "relu.engine"
    edge.build(model).save(path)
    path.chmod(0o644)
    yield path
    shutil.rmtree(folder)


@pytest.fixture
def jetson_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand-in nvpmodel / jetson_clocks on PATH (systemd-analyze checks the binaries exist)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("nvpmodel", "jetson_clocks"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    return bin_dir


def _systemctl(bin_dir: Path, log: Path, active: str = "active", fail: str = "") -> None:
    script = bin_dir / "systemctl"
    script.write_text(STANDIN_SYSTEMCTL.format(log=log, active=active, fail=fail))
    script.chmod(0o755)


def _dry_run_unit(capsys, args: list[str]) -> str:
    assert main(["service", "install", *args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    return out.split(" ---\n", 1)[1].split("\n# --- ", 1)[0]


@pytest.mark.parametrize(
    "extra",
    [
        ["--power-mode", "2", "--jetson-clocks"],
        ["--user", "edgetrt", "--port", "80", "--host", "0.0.0.0"],
        [],
    ],
)
def test_units_pass_systemd_analyze_verify(engine_file, jetson_tools, tmp_path, capsys, extra):
    analyze = shutil.which("systemd-analyze", path="/usr/bin:/bin")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian/Ubuntu package: systemd)")
    unit_text = _dry_run_unit(capsys, [str(engine_file), "--name", "det", *extra])
    unit = tmp_path / "edgetrt-det.service"
    unit.write_text(unit_text)
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stdout + proc.stderr
    security = subprocess.run([analyze, "security", "--offline=true", str(unit)], capture_output=True, text=True)
    if security.returncode == 0:  # systemd >= 250 can score a unit file offline
        score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout).group(1))
        assert score < 4.0, security.stdout  # an unhardened service scores about 9.6


def test_unit_hardening_and_privileged_power_steps(engine_file, jetson_tools, capsys):
    unit = _dry_run_unit(capsys, [str(engine_file), "--name", "det", "--power-mode", "2", "--jetson-clocks", "--port", "9000"])
    lines = unit.splitlines()
    for directive in (
        "Type=notify",
        "Restart=on-failure",
        "WatchdogSec=30s",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
    ):
        assert directive in lines, directive
    assert any(line.startswith("ProtectHome=") for line in lines)
    pre = [i for i, line in enumerate(lines) if line.startswith("ExecStartPre=+")]
    start = lines.index(next(line for line in lines if line.startswith("ExecStart=")))
    assert lines[pre[0]] == f"ExecStartPre=+{jetson_tools / 'nvpmodel'} -m 2"
    assert lines[pre[1]] == f"ExecStartPre=+{jetson_tools / 'jetson_clocks'}"
    assert pre[1] < start
    quoted = str(engine_file).replace("%", "%%")
    assert lines[start].endswith(f' serve "{engine_file.stem}={quoted}"') and " serve " in lines[start]


def test_install_status_uninstall_end_to_end(engine_file, jetson_tools, tmp_path, capsys):
    log = tmp_path / "systemctl.log"
    _systemctl(jetson_tools, log)
    units, envs = tmp_path / "units", tmp_path / "env"
    args = ["service", "install", str(engine_file), "--name", "det", "--port", "8100", "--unit-dir", str(units), "--env-dir", str(envs), "--no-warm"]
    assert main(args) == 0
    unit, env = units / "edgetrt-det.service", envs / "det.env"
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644 and stat.S_IMODE(env.stat().st_mode) == 0o644
    assert f"EnvironmentFile={env}" in unit.read_text().splitlines()
    assert "EDGETRT_PORT=8100" in env.read_text().splitlines()
    assert sorted(p.name for p in units.iterdir()) == ["edgetrt-det.service"]  # no temp files left
    assert log.read_text().splitlines() == ["daemon-reload", "enable edgetrt-det.service", "restart edgetrt-det.service"]

    assert main(["service", "status", "det"]) == 0
    assert "4242" in capsys.readouterr().out
    _systemctl(jetson_tools, log, active="failed")
    assert main(["service", "status", "det"]) == 3

    log.unlink()
    assert main(["service", "uninstall", "det", "--unit-dir", str(units), "--env-dir", str(envs)]) == 0
    assert not unit.exists() and not env.exists()
    assert log.read_text().splitlines() == ["disable --now edgetrt-det.service", "daemon-reload"]
    assert main(["service", "uninstall", "det", "--unit-dir", str(units), "--env-dir", str(envs)]) == 1
    assert "no service 'det'" in capsys.readouterr().err


def test_systemctl_failure_is_one_line(engine_file, jetson_tools, tmp_path, capsys):
    _systemctl(jetson_tools, tmp_path / "log", fail="Access denied")
    args = ["service", "install", str(engine_file), "--name", "det", "--unit-dir", str(tmp_path / "u"), "--env-dir", str(tmp_path / "e"), "--no-warm"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "`systemctl daemon-reload` failed with exit code 1: Access denied" in err and "Traceback" not in err


def test_dry_run_writes_nothing(engine_file, jetson_tools, tmp_path, capsys):
    log = tmp_path / "log"
    _systemctl(jetson_tools, log)
    args = ["service", "install", str(engine_file), "--name", "det", "--unit-dir", str(tmp_path / "u"), "--env-dir", str(tmp_path / "e")]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[Service]" in out and "EDGETRT_HOST=127.0.0.1" in out and "systemctl restart edgetrt-det.service" in out
    assert not (tmp_path / "u").exists() and not (tmp_path / "e").exists() and not log.exists()


def test_bad_requests_are_refused(engine_file, jetson_tools, tmp_path, capsys):
    base = ["service", "install", "--dry-run", "--unit-dir", str(tmp_path)]
    assert main([*base, str(engine_file), "--name", "bad name"]) == 1
    assert "service name 'bad name'" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "none.engine"), "--name", "x"]) == 1
    assert "does not exist" in capsys.readouterr().err
    not_engine = tmp_path / "model.onnx"
    onnx.save(helper.make_model(helper.make_graph([], "g", [], [])), not_engine)
    not_engine.chmod(0o644)
    assert main([*base, str(not_engine), "--name", "x"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(not_engine) in err and len(err.strip().splitlines()) == 1
    private = tmp_path / "private.engine"
    shutil.copy(engine_file, private)
    private.chmod(0o600)
    assert main([*base, str(private), "--name", "x"]) == 1
    assert "not readable by other users" in capsys.readouterr().err
    assert main([*base, str(private), "--name", "x", "--user", "edgetrt"]) == 0  # a named user may own it
    with pytest.raises(ServiceError, match="outside 1-65535"):
        ServiceSpec("x", (engine_file,), Path("/usr/bin/edgetrt"), Path("/etc/edgetrt/x.env"), port=70000)


def test_render_unit_without_home_paths_protects_home():
    spec = ServiceSpec("x", (Path("/opt/m.engine"),), Path("/usr/local/bin/edgetrt"), Path("/etc/edgetrt/x.env"))
    assert "ProtectHome=yes" in render_unit(spec).splitlines()
    home = ServiceSpec("x", (Path("/home/me/m.engine"),), Path("/usr/local/bin/edgetrt"), Path("/etc/edgetrt/x.env"))
    assert "ProtectHome=read-only" in render_unit(home).splitlines()


@pytest.mark.parametrize(
    "paths, message",
    [
        (["/srv/a/det.engine", "/srv/b/det.engine"], "would both serve as model 'det'"),
        (["/srv/my model.engine"], "would serve as model 'my model'"),
        (["/srv/x=y.engine"], "would serve as model 'x=y'"),
    ],
)
def test_engines_the_server_could_not_name_are_refused(paths: list[str], message: str) -> None:
    with pytest.raises(ServiceError, match=re.escape(message)):
        ServiceSpec(name="det", engines=tuple(Path(p) for p in paths), executable=Path("/usr/bin/edgetrt"), env_file=Path("/etc/edgetrt/det.env"))


def test_unit_names_models_explicitly_so_equals_signs_stay_in_paths() -> None:
    spec = ServiceSpec(name="det", engines=(Path("/srv/v=2/det.engine"),), executable=Path("/usr/bin/edgetrt"), env_file=Path("/etc/edgetrt/det.env"))
    assert spec.models == ["det=/srv/v=2/det.engine"]
    assert "ExecStart=/usr/bin/edgetrt serve det=/srv/v=2/det.engine" in render_unit(spec).splitlines()
