"""The wheel installs into a fresh virtualenv with every mapped package and data file.

The fresh virtualenv gets the wheel only (--no-deps); its dependencies come from the test
environment's site-packages through a .pth file. (``system_site_packages`` would not do: a
virtualenv made from a virtualenv's Python sees the *base* interpreter's site-packages, which
hold none of them on a fresh clone's CI.) Paths in a .pth file are added as plain entries, so
the editable install of the test environment does not shadow the wheel.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import importlib, importlib.resources as res, importlib.util
for name in ("edge", "edge.ir", "edge.frontend", "edge.engine", "edge.runtime", "edge.cli",
             "edge.passes", "edge.partitioner", "edge.kernels", "edge.kernels.cpu", "edge.power",
             "edge.profiles", "edge.serve", "edge.service", "edge.quant", "edge.compare", "edge.doctor",
             "edge.runtime.bench", "edge.kernels.cuda", "edge.plan"):
    importlib.import_module(name)
import edge
assert edge.__file__.startswith(SITE), edge.__file__
# Located, not imported: importing it compiles every numba routine (minutes, cold).
jit = importlib.util.find_spec("edge.kernels.cpu.jit")
assert jit is not None and jit.origin.startswith(SITE), jit
profiles = [p.name for p in res.files("edge.profiles").iterdir() if p.name.endswith(".yaml")]
assert len(profiles) >= 2, profiles
assert res.files("edge").joinpath("py.typed").is_file()
assert res.files("edge.kernels.cuda").joinpath("common.cuh").is_file()
assert len([p for p in res.files("edge.kernels.cuda").iterdir() if p.name.endswith(".cu")]) >= 8
print("ok", len(profiles))
"""


@pytest.mark.slow
def test_wheel_installs_and_imports(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
    )
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    wheel = next(wheels.glob("edgetrt-*.whl"))
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    dependencies = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (Path(site) / "test-dependencies.pth").write_text("\n".join(dependencies) + "\n")
    result = subprocess.run(
        [str(python), "-c", f"SITE = {site!r}\n" + CHECK], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")
    cli = subprocess.run([str(env_dir / "bin" / "edgetrt"), "--version"], capture_output=True, text=True)
    assert cli.returncode == 0 and cli.stdout.startswith("edgetrt ")


def _standin_path(tmp_path: Path, apt_exit: int) -> Path:
    """A PATH with only what the scripts need, as root, without systemd-analyze, with an
    apt-get that logs its calls and exits ``apt_exit``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    scripts = {"id": "echo 0", "apt-get": f'echo "apt-get $*" >> "{tmp_path}/apt.log"; exit {apt_exit}'}
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _broken_venv(tmp_path: Path) -> Path:
    venv_dir = tmp_path / "broken-venv"
    (venv_dir / "bin").mkdir(parents=True)
    (venv_dir / "bin" / "python").write_text("#!/bin/sh\necho 'python: bad interpreter' >&2\nexit 127\n")
    (venv_dir / "bin" / "python").chmod(0o755)
    return venv_dir


def test_test_sh_installs_no_system_package_and_refuses_a_broken_venv(tmp_path: Path) -> None:
    bin_dir = _standin_path(tmp_path, apt_exit=0)
    env = {"PATH": str(bin_dir), "EDGE_VENV": str(_broken_venv(tmp_path))}
    proc = subprocess.run([shutil.which("bash"), str(ROOT / "scripts" / "test.sh")], env=env, capture_output=True, text=True)
    assert not (tmp_path / "apt.log").exists(), "scripts/test.sh ran apt-get"
    assert proc.returncode == 1
    assert "is not a working virtualenv" in proc.stderr and env["EDGE_VENV"] in proc.stderr


def test_ci_run_fails_when_installing_systemd_fails(tmp_path: Path) -> None:
    bin_dir = _standin_path(tmp_path, apt_exit=100)
    env = {"PATH": str(bin_dir), "EDGE_VENV": str(_broken_venv(tmp_path))}
    proc = subprocess.run([shutil.which("bash"), str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True)
    assert proc.returncode == 100 and (tmp_path / "apt.log").read_text().startswith("apt-get update")
    assert "not a working virtualenv" not in proc.stderr  # stopped before the tests, not after
