"""The wheel installs into a fresh virtualenv with every mapped package and data file."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import importlib, importlib.resources as res
for name in ("edge", "edge.ir", "edge.frontend", "edge.engine", "edge.runtime", "edge.cli",
             "edge.passes", "edge.partitioner", "edge.kernels", "edge.kernels.cpu", "edge.power",
             "edge.profiles", "edge.serve", "edge.service", "edge.quant", "edge.compare", "edge.doctor",
             "edge.kernels.cpu.jit", "edge.runtime.bench", "edge.kernels.cuda"):
    importlib.import_module(name)
import edge
assert edge.__file__.startswith(SITE), edge.__file__
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
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    wheel = next(wheels.glob("edgetrt-*.whl"))
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    result = subprocess.run(
        [str(python), "-c", f"SITE = {site!r}\n" + CHECK], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")
    cli = subprocess.run([str(env_dir / "bin" / "edgetrt"), "--version"], capture_output=True, text=True)
    assert cli.returncode == 0 and cli.stdout.startswith("edgetrt ")
