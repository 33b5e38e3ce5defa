"""Installing, removing and querying edgetrt services; every ``systemctl`` call goes through here."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from edge.fileio import write_atomic
from edge.service.unit import (
    SYSTEM_CACHE_ROOT,
    ServiceError,
    ServiceSpec,
    kernel_cache_dir,
    render_env,
    render_unit,
    unit_name,
)

__all__ = [
    "UNIT_DIR",
    "ENV_DIR",
    "InstallPlan",
    "edgetrt_executable",
    "find_tool",
    "plan_install",
    "install",
    "uninstall",
    "status",
    "systemctl",
    "warm_kernel_cache",
]

UNIT_DIR = Path("/etc/systemd/system")
ENV_DIR = Path("/etc/edgetrt")
# Importing the compiled-kernel module compiles every routine once (minutes on a Jetson, cold);
# with NUMBA_CACHE_DIR set, numba writes the result there and never into the package folder.
_WARM_CODE = "import edge.kernels.cpu.jit"
# The unit's PrivateTmp=yes gives the service empty /tmp and /var/tmp of its own.
PRIVATE_TMP_DIRS = (Path("/tmp"), Path("/var/tmp"))
STATUS_PROPERTIES = ("LoadState", "ActiveState", "SubState", "UnitFileState", "MainPID", "NRestarts", "FragmentPath")


@dataclass(frozen=True)
class InstallPlan:
    """The files an install writes (path -> text), the kernel-cache warm-up, then the systemctl calls."""

    spec: ServiceSpec
    files: dict[Path, str]
    commands: list[list[str]]
    warm: list[str] = field(default_factory=list)
    warm_env: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """Human-readable dry-run output: each file under a header, then the commands."""
        parts = [f"# --- {path} ---\n{text}" for path, text in self.files.items()]
        steps = [" ".join(f"{k}={shlex.quote(v)}" for k, v in self.warm_env.items()) + " " + shlex.join(self.warm)] if self.warm else []
        steps += ["systemctl " + " ".join(c) for c in self.commands]
        parts.append("# --- then ---\n" + "\n".join(steps) + "\n")
        return "\n".join(parts)


def edgetrt_executable() -> Path:
    """The ``edgetrt`` console script of this installation (beside the running interpreter first)."""
    beside = Path(sys.executable).parent / "edgetrt"
    found = beside if beside.is_file() else shutil.which("edgetrt")
    if found is None:
        raise ServiceError("cannot find the 'edgetrt' executable; install edgetrt (pip install 'edgetrt[serve]') first")
    return Path(found).absolute()


def find_tool(name: str, default: Path) -> Path:
    """Where a Jetson tool lives: on PATH if present, else its usual L4T location."""
    found = shutil.which(name)
    return Path(found).absolute() if found else default


def plan_install(spec: ServiceSpec, unit_dir: Path = UNIT_DIR, *, warm: bool = True, cache_root: Path = SYSTEM_CACHE_ROOT) -> InstallPlan:
    """Check the engines and render the files, writing nothing.

    With ``warm``, the plan first compiles the CPU kernels into the unit's ``NUMBA_CACHE_DIR``
    (``cache_root`` stands for the unit's ``%C``), so the service's first start loads them
    instead of compiling them for minutes inside its start timeout.

    Raises:
        ServiceError: a missing engine, one the service's dynamic user could not read, or one (or
            edgetrt itself) under the /tmp that PrivateTmp=yes hides.
        EngineFormatError: a file that is not a loadable engine.
    """
    import edge

    _refuse_private_tmp(spec)
    for engine in spec.engines:
        if not engine.is_file():
            raise ServiceError(f"engine file '{engine}' does not exist")
        edge.load(engine)  # refuse a corrupt or foreign file now, not at the first service start
        if spec.user is None and not _world_readable(engine):
            raise ServiceError(
                f"engine '{engine}' is not readable by other users, but the service runs as a dynamic user; "
                "make it and its directories world-readable or pass --user"
            )
    unit = unit_name(spec.name)
    files = {unit_dir / unit: render_unit(spec), spec.env_file: render_env(spec)}
    plan = InstallPlan(spec, files, [["daemon-reload"], ["enable", unit], ["restart", unit]])
    if warm:
        plan.warm[:] = [sys.executable, "-c", _WARM_CODE]
        plan.warm_env["NUMBA_CACHE_DIR"] = str(kernel_cache_dir(cache_root))
    return plan


def install(plan: InstallPlan) -> None:
    """Write the plan's files atomically, warm the kernel cache, then reload systemd and (re)start."""
    for path, text in plan.files.items():
        write_atomic(path, text, mode=0o644)
    if plan.warm:
        warm_kernel_cache(plan.warm, plan.warm_env)
    for command in plan.commands:
        systemctl(*command)


def warm_kernel_cache(argv: list[str], env: dict[str, str]) -> None:
    """Run the warm-up; at the service's start systemd hands the cache directory to its user
    (with DynamicUser= it moves it under /var/cache/private and chowns it).

    Raises:
        ServiceError: the warm-up failed (with its last stderr line).
    """
    proc = subprocess.run(argv, env={**os.environ, **env}, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ServiceError(f"compiling the CPU kernels into '{env.get('NUMBA_CACHE_DIR')}' failed (exit {proc.returncode}): {_last_line(proc.stderr)}")


def uninstall(name: str, unit_dir: Path = UNIT_DIR, env_dir: Path = ENV_DIR) -> list[Path]:
    """Stop and disable the service, delete its unit and environment file; returns what was removed.

    Raises:
        ServiceError: no such service in ``unit_dir``, or systemctl failed.
    """
    unit = unit_name(name)
    unit_path = unit_dir / unit
    if not unit_path.is_file():
        raise ServiceError(f"no service '{name}': '{unit_path}' does not exist")
    systemctl("disable", "--now", unit)
    removed = []
    for path in (unit_path, env_dir / f"{name}.env"):
        if path.exists():
            path.unlink()
            removed.append(path)
    systemctl("daemon-reload")
    return removed


def status(name: str) -> dict[str, str]:
    """systemd's view of the service: load/active state, main PID, restarts, unit path.

    Raises:
        ServiceError: systemd does not know the service.
    """
    unit = unit_name(name)
    output = systemctl("show", unit, "--property=" + ",".join(STATUS_PROPERTIES))
    props = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    if props.get("LoadState") == "not-found":
        raise ServiceError(f"no service '{name}' is installed ({unit} not found by systemd)")
    return props


def systemctl(*args: str) -> str:
    """Run ``systemctl ARGS`` (found on PATH); returns stdout.

    Raises:
        ServiceError: systemctl is missing or exits non-zero (with its last stderr line).
    """
    exe = shutil.which("systemctl")
    if exe is None:
        raise ServiceError("systemctl not found: edgetrt services need systemd (use --dry-run to see the files)")
    proc = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ServiceError(f"`systemctl {' '.join(args)}` failed with exit code {proc.returncode}: {_last_line(proc.stderr)}")
    return proc.stdout


def _refuse_private_tmp(spec: ServiceSpec) -> None:
    """Refuse engines, the edgetrt script or its interpreter (a virtualenv) under /tmp or /var/tmp:
    with PrivateTmp=yes the service would not see them."""
    needed = [("engine", path) for path in spec.engines] + [("edgetrt executable", spec.executable)]
    interpreter = _shebang(spec.executable)
    if interpreter is not None:
        needed.append(("edgetrt's Python (its virtualenv)", interpreter))
    for what, path in needed:
        for seen in (path.absolute(), path.resolve()):
            root = next((d for d in PRIVATE_TMP_DIRS if seen.is_relative_to(d)), None)
            if root is not None:
                raise ServiceError(
                    f"{what} '{path}' lies under {root}, which the service cannot see (its unit has PrivateTmp=yes); "
                    "move it to a permanent folder such as /opt or /srv"
                )


def _shebang(script: Path) -> Path | None:
    """The interpreter named on a script's ``#!`` line, if it names an absolute path."""
    try:
        with script.open("rb") as handle:
            first = handle.readline(4096)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    return Path(words[0]) if words and words[0].startswith("/") else None


def _last_line(stderr: str) -> str:
    return (stderr.strip().splitlines() or ["no output"])[-1]


def _world_readable(path: Path) -> bool:
    if not path.stat().st_mode & stat.S_IROTH:
        return False
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)


