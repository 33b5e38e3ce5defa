"""nvpmodel and jetson_clocks control: query, list and set power modes, pin clocks, restore on exit.

Every command line edgetrt runs against the board is built by :class:`Commands` and executed by
:meth:`PowerController.run`, so ``--dry-run`` prints exactly what would run. nvpmodel is never
left waiting on its interactive reboot prompt: modes whose GPU power-gating mask differs from the
current one are refused up front (they cannot switch live; see ``jetson.md`` section 2.3), and
stdin is closed so a prompt we failed to predict ends instead of hanging.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from edge.errors import PowerError, ProfileError
from edge.profiles.schema import same_mode_name

if TYPE_CHECKING:
    from edge.profiles import DeviceProfile

__all__ = [
    "Commands",
    "ModeInfo",
    "CurrentMode",
    "PowerController",
    "parse_nvpmodel_conf",
    "parse_nvpmodel_query",
    "clocks_pinned",
]

_COMMAND_TIMEOUT_S = 120.0


class Commands:
    """Builds every nvpmodel / jetson_clocks command line edgetrt runs (the only place that does)."""

    NVPMODEL = "nvpmodel"
    JETSON_CLOCKS = "jetson_clocks"

    @staticmethod
    def query_mode() -> list[str]:
        return [Commands.NVPMODEL, "-q"]

    @staticmethod
    def set_mode(mode_id: int | str) -> list[str]:
        return [Commands.NVPMODEL, "-m", str(mode_id)]

    @staticmethod
    def clocks_show() -> list[str]:
        return [Commands.JETSON_CLOCKS, "--show"]

    @staticmethod
    def clocks_store(path: str | Path) -> list[str]:
        return [Commands.JETSON_CLOCKS, "--store", str(path)]

    @staticmethod
    def clocks_restore(path: str | Path) -> list[str]:
        return [Commands.JETSON_CLOCKS, "--restore", str(path)]

    @staticmethod
    def clocks_lock() -> list[str]:
        return [Commands.JETSON_CLOCKS]


@dataclass(frozen=True)
class ModeInfo:
    """One power mode of the board, from the device profile and/or the nvpmodel config.

    Clock caps are in MHz; ``None`` means uncapped (hardware maximum). ``tpc_pg_mask`` /
    ``fbp_pg_mask`` (nvpmodel.conf) or ``gpu_tpcs`` (profile) tell whether a switch needs a reboot.
    """

    id: int
    name: str
    budget_w: float | None = None
    online_cpus: int | None = None
    cpu_max_mhz: float | None = None
    gpu_max_mhz: float | None = None
    emc_max_mhz: float | None = None
    dla_max_mhz: float | None = None
    tpc_pg_mask: int | None = None
    fbp_pg_mask: int | None = None
    gpu_tpcs: int | None = None
    is_default: bool = False
    source: str = "profile"


@dataclass(frozen=True)
class CurrentMode:
    """What ``nvpmodel -q`` reports."""

    id: int
    name: str


def parse_nvpmodel_query(output: str) -> CurrentMode:
    """Parse ``nvpmodel -q``: ``NV Power Mode: NAME`` then the numeric id (warnings may precede)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        match = re.match(r"NV Power Mode:\s*(.+)$", line)
        if match and index + 1 < len(lines) and lines[index + 1].isdigit():
            return CurrentMode(id=int(lines[index + 1]), name=match.group(1).strip())
    raise PowerError(f"cannot read the power mode from 'nvpmodel -q' output: {' | '.join(lines)[:200]!r}")


def _cap(value: str, scale: float) -> float | None:
    """A CLOCK value from nvpmodel.conf in MHz; -1 (INT_MAX) and 0 (EMC) mean no cap."""
    number = int(value)
    return None if number <= 0 else number / scale


def parse_nvpmodel_conf(text: str) -> list[ModeInfo]:
    """Read the POWER_MODEL blocks of an nvpmodel config (``/etc/nvpmodel.conf``).

    CPU caps are in kHz (cpufreq units), GPU/EMC/DLA in Hz, per the file grammar.
    """
    modes: list[ModeInfo] = []
    default_id: int | None = None
    current: dict | None = None

    def close() -> None:
        if current is not None:
            params = current.pop("params")
            cores = [v for (p, _), v in params.items() if p == "CPU_ONLINE"]
            cpu_caps = [_cap(v, 1e3) for (p, a), v in params.items() if p.startswith("CPU_") and a == "MAX_FREQ"]
            dla_caps = [_cap(v, 1e6) for (p, a), v in params.items() if p.startswith("DLA") and a == "MAX_FREQ"]
            mask = params.get(("TPC_POWER_GATING", "TPC_PG_MASK"))
            fbp = params.get(("FBP_POWER_GATING", "FBP_PG_MASK"))
            modes.append(
                ModeInfo(
                    id=current["id"],
                    name=current["name"],
                    online_cpus=sum(1 for v in cores if v == "1") if cores else None,
                    cpu_max_mhz=None if not cpu_caps or None in cpu_caps else max(cpu_caps),
                    gpu_max_mhz=_cap(params[("GPU", "MAX_FREQ")], 1e6) if ("GPU", "MAX_FREQ") in params else None,
                    emc_max_mhz=_cap(params[("EMC", "MAX_FREQ")], 1e6) if ("EMC", "MAX_FREQ") in params else None,
                    dla_max_mhz=None if not dla_caps or None in dla_caps else max(dla_caps),
                    tpc_pg_mask=int(mask) if mask is not None else None,
                    fbp_pg_mask=int(fbp) if fbp is not None else None,
                    source="nvpmodel.conf",
                )
            )

    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        header = re.fullmatch(r"<\s*(\w+)\s*(.*?)\s*>", line)
        if header:
            close()
            current = None
            attrs = dict(re.findall(r"(\w+)=(\S+)", header.group(2)))
            if header.group(1) == "POWER_MODEL" and "ID" in attrs:
                current = {"id": int(attrs["ID"]), "name": attrs.get("NAME", attrs["ID"]), "params": {}}
            elif header.group(1) == "PM_CONFIG" and "DEFAULT" in attrs:
                default_id = int(attrs["DEFAULT"])
            continue
        parts = line.split()
        if current is not None and len(parts) == 3:
            current["params"][(parts[0], parts[1])] = parts[2]
    close()
    return [replace(m, is_default=m.id == default_id) for m in modes]


def clocks_pinned(show_output: str) -> bool | None:
    """Whether ``jetson_clocks --show`` describes pinned clocks (MinFreq == MaxFreq for every
    online CPU and the GPU); ``None`` when the output has no clock lines."""
    pairs = re.findall(r"^(cpu\d+):.*?MinFreq=(\d+)\s+MaxFreq=(\d+)", show_output, flags=re.M)
    pairs += re.findall(r"^(GPU)\s+MinFreq=(\d+)\s+MaxFreq=(\d+)", show_output, flags=re.M)
    online = re.findall(r"^(cpu\d+):\s+Online=0", show_output, flags=re.M)
    relevant = [(n, lo, hi) for n, lo, hi in pairs if n not in online]
    if not relevant:
        return None
    return all(lo == hi for _, lo, hi in relevant)


@dataclass
class PowerController:
    """Runs nvpmodel / jetson_clocks with the checks that turn board problems into one-line errors.

    Args:
        dry_run: print the commands (via ``echo``) instead of running them.
        sysroot: root of the filesystem to inspect (``/`` on a device; tests point it elsewhere).
        euid: effective user id to assume (``None``: the process's own).
        echo: where dry-run and progress lines go.
        profile: device profile whose power modes are listed alongside nvpmodel.conf.
    """

    dry_run: bool = False
    sysroot: Path = Path("/")
    euid: int | None = None
    echo: Callable[[str], None] = print
    profile: DeviceProfile | None = None
    executed: list[list[str]] = field(default_factory=list)

    # -- environment checks -------------------------------------------------------------------
    def is_jetson(self) -> bool:
        """True on an L4T system (``/etc/nv_tegra_release`` or a tegra device-tree compatible)."""
        if (self.sysroot / "etc/nv_tegra_release").is_file():
            return True
        compatible = self.sysroot / "proc/device-tree/compatible"
        try:
            return b"nvidia,tegra" in compatible.read_bytes()
        except OSError:
            return False

    def _require(self, argv: Sequence[str], *, root: bool) -> str:
        if not self.is_jetson():
            raise PowerError(
                f"not a Jetson (no {self.sysroot / 'etc/nv_tegra_release'}): '{argv[0]}' only exists on NVIDIA Jetson / L4T"
            )
        binary = shutil.which(argv[0])
        if binary is None:
            raise PowerError(f"'{argv[0]}' not found on PATH; it ships with L4T (JetPack) in /usr/bin or /usr/sbin")
        euid = os.geteuid() if self.euid is None else self.euid
        if root and euid != 0:
            raise PowerError(f"'{shlex.join(argv)}' needs root; run edgetrt with sudo")
        return binary

    # -- the single place commands are executed --------------------------------------------------
    def run(self, argv: list[str], *, root: bool = True) -> str:
        """Run one command (or print it under dry-run) and return its stdout.

        nvpmodel prints errors on stdout with exit status 0, so ``NVPM ERROR`` is checked too.
        """
        if self.dry_run:
            self.echo(shlex.join(argv))
            self.executed.append(list(argv))
            return ""
        binary = self._require(argv, root=root)
        self.executed.append(list(argv))
        try:
            done = subprocess.run(
                [binary, *argv[1:]],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_COMMAND_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise PowerError(f"'{shlex.join(argv)}' did not finish within {_COMMAND_TIMEOUT_S:.0f} s") from None
        output = done.stdout + done.stderr
        if "Reboot required" in output or "optMask is 1" in output:
            raise PowerError(
                f"'{shlex.join(argv)}': this power mode needs a reboot; nvpmodel left the mode unchanged "
                f"(run 'sudo {shlex.join(argv)}' interactively and answer YES to reboot)"
            )
        errors = [line.strip() for line in output.splitlines() if "ERROR" in line]
        if done.returncode != 0 or errors:
            detail = errors[0] if errors else (output.strip().splitlines() or ["no output"])[-1]
            raise PowerError(f"'{shlex.join(argv)}' failed (exit {done.returncode}): {detail}")
        return done.stdout

    # -- power modes -------------------------------------------------------------------------------
    def query_mode(self) -> CurrentMode:
        """The current mode (``nvpmodel -q``; needs no root)."""
        return parse_nvpmodel_query(self.run(Commands.query_mode(), root=False))

    def list_modes(self) -> list[ModeInfo]:
        """Modes from the device profile merged with ``/etc/nvpmodel.conf`` (the board's own file wins)."""
        merged: dict[int, ModeInfo] = {}
        if self.profile is not None:
            for mode in self.profile.power_modes:  # profile PowerMode fields are a subset of ModeInfo's
                merged[mode.id] = ModeInfo(**asdict(mode), is_default=mode.id == self.profile.default_power_mode)
        conf = self.sysroot / "etc/nvpmodel.conf"
        if conf.is_file():
            for mode in parse_nvpmodel_conf(conf.read_text(errors="replace")):
                known = merged.get(mode.id)
                same = known is not None and same_mode_name(known.name, mode.name)
                merged[mode.id] = replace(
                    mode,
                    budget_w=known.budget_w if same else None,
                    gpu_tpcs=known.gpu_tpcs if same else None,
                    source="profile+nvpmodel.conf" if same else mode.source,
                )
        return [merged[k] for k in sorted(merged)]

    def resolve_mode(self, mode: str | int) -> ModeInfo:
        """Find a mode by id or name (``15W`` matches ``MODE_15W``, case-insensitive): the one rule
        for every ``--power-mode`` and ``power set``.

        An id is taken as is only when no mode table is known (no profile, no nvpmodel.conf);
        otherwise it must be one of the table's modes, so a typo is refused before anything runs.
        """
        modes = self.list_modes()
        text = str(mode).strip()
        for candidate in modes:
            if (text.isdigit() and candidate.id == int(text)) or same_mode_name(candidate.name, text):
                return candidate
        if text.isdigit() and not modes:
            return ModeInfo(id=int(text), name=text, source="command line")
        known = ", ".join(f"{m.id}={m.name}" for m in modes) or "none known (no profile, no /etc/nvpmodel.conf)"
        where = f"profile {self.profile.name}" if self.profile is not None else "this board"
        raise ProfileError(f"unknown power mode '{text}' for {where}; modes: {known}")

    def set_mode(self, mode: str | int) -> ModeInfo:
        """Switch to ``mode`` live; refuses modes that would need a reboot.

        A mode whose GPU power-gating mask (TPC/FBP) differs from the current one cannot switch
        live: nvpmodel would ask to reboot. That is refused here with an explanation instead.
        """
        current = None if self.dry_run else self.query_mode()  # first, so "not a Jetson" wins over naming errors
        target = self.resolve_mode(mode)
        if current is not None:
            if current.id == target.id:
                return target
            now = next((m for m in self.list_modes() if m.id == current.id), None)
            for attr, label in (("tpc_pg_mask", "TPC mask"), ("fbp_pg_mask", "FBP mask"), ("gpu_tpcs", "TPC count")):
                before, after = getattr(now, attr, None), getattr(target, attr)
                if before is not None and after is not None and before != after:
                    raise PowerError(
                        f"power mode {target.id} ({target.name}) needs a reboot: its GPU power-gating ({label} {after}) "
                        f"differs from the current mode's ({before}); run 'sudo nvpmodel -m {target.id}' and reboot"
                    )
        self.run(Commands.set_mode(target.id))
        if not self.dry_run:
            after_switch = self.query_mode()
            if after_switch.id != target.id:
                raise PowerError(
                    f"nvpmodel accepted mode {target.id} ({target.name}) but now reports {after_switch.id} ({after_switch.name})"
                )
        return target

    # -- jetson_clocks -------------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        """Where edgetrt keeps the jetson_clocks snapshot it restores from."""
        return self.sysroot / "var/lib/edgetrt"

    @property
    def clocks_store_file(self) -> Path:
        return self.state_dir / "jetson_clocks.conf"

    def clocks_show(self) -> str:
        return self.run(Commands.clocks_show())

    def clocks_store(self, path: Path | None = None) -> Path:
        """Save the current clock settings; an existing file is removed first because
        ``jetson_clocks --store`` would otherwise stop and ask before overwriting it."""
        target = path or self.clocks_store_file
        if not self.dry_run:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
        self.run(Commands.clocks_store(target))
        return target

    def clocks_restore(self, path: Path | None = None) -> None:
        target = path or self.clocks_store_file
        if not self.dry_run and not target.is_file():
            raise PowerError(f"no stored clock settings at '{target}'; nothing to restore (run 'edgetrt power clocks on' first)")
        self.run(Commands.clocks_restore(target))

    def clocks_lock(self) -> None:
        """Pin CPU/GPU/EMC clocks to the current mode's maxima."""
        self.run(Commands.clocks_lock())

    # -- benchmark session ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def session(self, mode: str | int | None = None, lock_clocks: bool = False) -> Iterator[CurrentMode | None]:
        """Apply a power mode and/or pinned clocks for the duration of a ``with`` block.

        Whatever was changed is put back when the block ends, raises, or is interrupted
        (Ctrl-C, or SIGTERM, which is turned into KeyboardInterrupt while the session lasts):
        the original mode first, then the stored clock settings, because jetson_clocks values
        saved under the original mode may exceed the caps of the benchmark's mode.

        Yields the mode in force inside the block (``None`` under dry-run).
        """
        original: CurrentMode | None = None
        stored: Path | None = None
        changed_mode = False
        previous_handler = _install_sigterm()
        try:
            if not self.dry_run:
                original = self.query_mode()
            else:
                self.run(Commands.query_mode(), root=False)
            if lock_clocks:
                stored = self.clocks_store(self.state_dir / "session_clocks.conf")
            if mode is not None:
                target = self.resolve_mode(mode)
                if self.dry_run or original is None or original.id != target.id:
                    changed_mode = True  # set first: a failed verification may still have switched
                    self.set_mode(target.id)
            if lock_clocks:
                # jetson_clocks pins the maxima of the mode in force, so it runs after the switch.
                self.clocks_lock()
            yield None if self.dry_run else self.query_mode()
        finally:
            try:
                if changed_mode:
                    self.run(Commands.set_mode(original.id if original else "<original mode id>"))
                if stored is not None:
                    self.run(Commands.clocks_restore(stored))
            finally:
                _restore_sigterm(previous_handler)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _install_sigterm() -> object | None:
    if threading.current_thread() is not threading.main_thread() or sys.platform == "win32":
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)


def _restore_sigterm(previous: object | None) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
