"""The service's compiled-kernel cache (issue 26): the sandbox (ProtectSystem=strict, DynamicUser)
cannot write the package folder, so the unit points numba at its CacheDirectory= and install
warms that directory before the first start."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from edge.service import ServiceError, ServiceSpec, plan_install, render_unit
from edge.service.manager import install, warm_kernel_cache
from tests.service.unit_syntax import parse_unit

SPEC = ServiceSpec("det", (Path("/srv/det.engine"),), Path("/usr/bin/edgetrt"), Path("/etc/edgetrt/det.env"))


def _service_directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for section, key, value in parse_unit(text):
        if section == "Service":
            found.setdefault(key, []).append(value)
    return found


def test_unit_points_numba_and_cuda_at_its_cache_directory_and_raises_the_fd_limit() -> None:
    service = _service_directives(render_unit(SPEC))
    assert service["CacheDirectory"] == ["edgetrt"] and service["ProtectSystem"] == ["strict"]
    environment = dict(item.split("=", 1) for value in service["Environment"] for item in value.split())
    # %C is /var/cache for a system unit, which is where CacheDirectory=edgetrt lives.
    assert environment["NUMBA_CACHE_DIR"] == "%C/edgetrt/numba" and environment["CUDA_CACHE_PATH"] == "%C/edgetrt"
    assert int(service["LimitNOFILE"][0]) >= 16384


def test_install_warms_the_directory_the_unit_names_before_starting(tmp_path: Path) -> None:
    plan = plan_install(replace(SPEC, engines=()), tmp_path / "units", cache_root=tmp_path / "cache")
    assert plan.warm_env == {"NUMBA_CACHE_DIR": str(tmp_path / "cache/edgetrt/numba")}
    assert plan.warm[:2] == [sys.executable, "-c"] and "edge.kernels.cpu.jit" in plan.warm[2]
    assert "NUMBA_CACHE_DIR=" in plan.describe().split("# --- then ---")[1]
    assert plan_install(replace(SPEC, engines=()), tmp_path / "units", warm=False).warm == []


NUMBA_MODULE = """
import numba

@numba.njit("float64(float64)", cache=True)
def double(x):
    return 2.0 * x
"""


def test_warm_up_writes_the_cache_dir_and_never_the_package_folder(tmp_path: Path) -> None:
    pytest.importorskip("numba")
    package = tmp_path / "site-packages" / "kernels_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(NUMBA_MODULE))
    for path in (package, package.parent):  # read-only, as ProtectSystem=strict makes it
        path.chmod(0o555)
    cache = tmp_path / "cache" / "edgetrt" / "numba"
    argv = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(package.parent)!r}); import kernels_pkg; kernels_pkg.double(1.0)"]
    try:
        warm_kernel_cache(argv, {"NUMBA_CACHE_DIR": str(cache)})
    finally:
        for path in (package.parent, package):
            path.chmod(0o755)
    written = sorted(p.suffix for p in cache.rglob("*") if p.is_file())
    assert ".nbi" in written and ".nbc" in written
    assert [p for p in package.rglob("*") if p.suffix in (".nbi", ".nbc")] == []


def test_a_failed_warm_up_is_one_line_and_nothing_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "systemctl.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> "{log}"\n')
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    plan = plan_install(replace(SPEC, engines=(), env_file=tmp_path / "det.env"), tmp_path / "units", cache_root=tmp_path)
    plan.warm[:] = [sys.executable, "-c", "raise SystemExit('numba: cannot cache function')"]
    with pytest.raises(ServiceError, match=r"^compiling the CPU kernels into '.*numba' failed \(exit 1\): numba: cannot cache function$"):
        install(plan)
    assert not log.exists()  # no systemctl call after a failed warm-up
    plan.warm[:] = [sys.executable, "-c", "import os; os.makedirs(os.environ['NUMBA_CACHE_DIR'])"]
    install(plan)
    assert (tmp_path / "edgetrt" / "numba").is_dir()
    assert log.read_text().splitlines() == ["daemon-reload", "enable edgetrt-det.service", "restart edgetrt-det.service"]
