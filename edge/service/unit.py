"""The systemd unit and environment file that run ``edgetrt serve`` as a hardened service.

The unit runs the server unprivileged (``User=`` or ``DynamicUser=``) in a read-only,
namespaced sandbox, tells systemd when it is ready (``Type=notify``) and pings the
watchdog; only the ``ExecStartPre=+`` steps that set the Jetson power mode and clocks run
with full privileges. Tunables live in the environment file, which ``edgetrt serve`` reads
through its ``EDGETRT_*`` variables, so changing the port needs no unit edit.

Only directives known to systemd 245 (JetPack 5 / Ubuntu 20.04) are used.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePath

from edge.errors import EdgeError

__all__ = ["ServiceSpec", "ServiceError", "SYSTEM_CACHE_ROOT", "check_unit_text", "kernel_cache_dir", "unit_name", "render_unit", "render_env", "NAME_PATTERN"]

NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}")
_HOME_ROOTS = (PurePath("/home"), PurePath("/root"), PurePath("/run/user"))
_WATCHDOG_SEC = 30
# systemd resolves CacheDirectory= and %C under /var/cache for system units.
SYSTEM_CACHE_ROOT = Path("/var/cache")
CACHE_NAME = "edgetrt"
KERNEL_CACHE = f"{CACHE_NAME}/numba"
# File descriptors: one per connection, so the soft default of 1024 would let ~1,000 idle
# clients lock the server out.
_OPEN_FILES = 65536
_DRAIN_SEC = 45  # > the server's 30 s drain, so systemd's SIGKILL never cuts a drain short


class ServiceError(EdgeError):
    """A service cannot be installed, removed or queried; the message says why."""


@dataclass(frozen=True)
class ServiceSpec:
    """Everything the unit needs, with paths already resolved to absolute ones."""

    name: str
    engines: tuple[Path, ...]
    executable: Path
    env_file: Path
    host: str = "127.0.0.1"
    port: int = 8000
    user: str | None = None
    power_mode: int | None = None
    jetson_clocks: bool = False
    nvpmodel: Path = Path("/usr/sbin/nvpmodel")
    jetson_clocks_path: Path = Path("/usr/bin/jetson_clocks")

    def __post_init__(self) -> None:
        if not NAME_PATTERN.fullmatch(self.name):
            raise ServiceError(f"service name '{self.name}' may hold only letters, digits, '_', '.', '-' (at most 64)")
        if not 1 <= self.port <= 65535:
            raise ServiceError(f"--port {self.port} is outside 1-65535")
        if self.power_mode is not None and self.power_mode < 0:
            raise ServiceError(f"--power-mode {self.power_mode} must be a non-negative nvpmodel mode id")
        if self.user is not None and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}\$?", self.user):
            raise ServiceError(f"--user '{self.user}' is not a valid user name")
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9.\-]+", self.host):
                raise ServiceError(f"--host '{self.host}' is neither an IP address nor a host name") from None
        for path in (*self.engines, self.executable, self.env_file, self.nvpmodel, self.jetson_clocks_path):
            check_unit_text(str(path))
            if not path.is_absolute():
                raise ServiceError(f"'{path}' must be an absolute path")
        if re.search(r"\s", str(self.env_file)):
            raise ServiceError(f"environment file path '{self.env_file}' must not contain whitespace")
        seen: dict[str, Path] = {}
        for path in self.engines:
            model = path.stem
            if not NAME_PATTERN.fullmatch(model):
                raise ServiceError(
                    f"engine '{path}' would serve as model '{model}'; model names may hold only letters, digits, '_', '.', '-'"
                )
            if model in seen:
                raise ServiceError(f"engines '{seen[model]}' and '{path}' would both serve as model '{model}'; rename one")
            seen[model] = path

    @property
    def models(self) -> list[str]:
        """``NAME=PATH`` arguments for ``edgetrt serve``: explicit, so a '=' in a path stays a path."""
        return [f"{path.stem}={path}" for path in self.engines]


def check_unit_text(text: str) -> None:
    """Refuse text a unit file cannot carry literally: control characters (a newline would end
    the directive and start a new one, e.g. an injected ``[Install]`` block) and text that is
    not valid UTF-8 (systemd rejects such unit files); everything else is escaped by quoting.

    Raises:
        ServiceError: naming the path with the offending character escaped.
    """
    for char in text:
        if unicodedata.category(char).startswith("C"):
            raise ServiceError(
                f"path {ascii(text)} holds the character U+{ord(char):04X}, which a systemd unit cannot carry; rename it"
            )


def unit_name(name: str) -> str:
    """``"det"`` -> ``"edgetrt-det.service"``."""
    return f"edgetrt-{name}.service"


def render_unit(spec: ServiceSpec) -> str:
    """The unit file text for ``spec``."""
    needs_home = any(_under_home(p) for p in (*spec.engines, spec.executable))
    exec_start = _command([spec.executable, "serve", *spec.models])
    if spec.user is None:
        identity = ["DynamicUser=yes"]
    else:
        identity = [f"User={spec.user}"]
    # Ports below 1024 need exactly one capability; everything else needs none.
    caps = "CAP_NET_BIND_SERVICE" if spec.port < 1024 else ""
    pre = []
    if spec.power_mode is not None:
        pre.append("ExecStartPre=+" + _command([spec.nvpmodel, "-m", str(spec.power_mode)]))
    if spec.jetson_clocks:
        pre.append("ExecStartPre=+" + _command([spec.jetson_clocks_path]))
    lines = [
        "# Generated by `edgetrt service install`; edit the environment file, not this unit.",
        "[Unit]",
        f"Description=edgetrt inference server ({spec.name})",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"EnvironmentFile={_escape(str(spec.env_file))}",
        *pre,
        f"ExecStart={exec_start}",
        "Restart=on-failure",
        "RestartSec=2s",
        f"WatchdogSec={_WATCHDOG_SEC}s",
        "TimeoutStartSec=300s",
        f"TimeoutStopSec={_DRAIN_SEC}s",
        *identity,
        # GPU and DLA device nodes on L4T belong to the video group.
        "SupplementaryGroups=video",
        # The sandbox makes the package folder read-only: compiled kernels (numba) and the CUDA
        # JIT cache go to the service's own cache directory, which install warms.
        f"CacheDirectory={CACHE_NAME}",
        f"Environment=CUDA_CACHE_PATH=%C/{CACHE_NAME} NUMBA_CACHE_DIR=%C/{KERNEL_CACHE}",
        f"LimitNOFILE={_OPEN_FILES}",
        "UMask=0077",
        "NoNewPrivileges=yes",
        f"CapabilityBoundingSet={caps}",
        f"AmbientCapabilities={caps}",
        "ProtectSystem=strict",
        f"ProtectHome={'read-only' if needs_home else 'yes'}",
        "PrivateTmp=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectHostname=yes",
        # AF_UNIX for sd_notify; the inet families for HTTP.
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        # No MemoryDenyWriteExecute: the CUDA driver JIT-compiles into executable memory.
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallErrorNumber=EPERM",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def render_env(spec: ServiceSpec) -> str:
    """The environment file: the server's ``EDGETRT_*`` settings (see ``edgetrt serve --help``)."""
    return "\n".join(
        [
            f"# edgetrt service '{spec.name}': settings for `edgetrt serve`; restart the unit after editing.",
            f"EDGETRT_HOST={spec.host}",
            f"EDGETRT_PORT={spec.port}",
            "# Optional (defaults in `edgetrt serve --help`): EDGETRT_MAX_BATCH, EDGETRT_MAX_QUEUE_DELAY_MS,",
            "# EDGETRT_INSTANCES, EDGETRT_MAX_QUEUE, EDGETRT_MAX_BODY_MB.",
            "",
        ]
    )


def kernel_cache_dir(cache_root: Path = SYSTEM_CACHE_ROOT) -> Path:
    """Where the unit's ``NUMBA_CACHE_DIR`` points (``%C/edgetrt/numba``) for a given ``%C``."""
    return cache_root / KERNEL_CACHE


def _under_home(path: Path) -> bool:
    return any(path.is_relative_to(root) for root in _HOME_ROOTS)


def _escape(text: str) -> str:
    """Escape systemd specifiers (%) so a path is taken literally."""
    return text.replace("%", "%%")


def _command(argv: list[Path | str]) -> str:
    """A command line in systemd's syntax (systemd.syntax(7) "Quoting", systemd.service(5)
    "Command lines"): ``%%`` for a specifier sign everywhere; in the arguments also ``$$`` for a
    variable sign, and every word that is not plain in double quotes with ``\\`` and ``\"``
    escaped. The executable gets no variable expansion and may not hold a quote or a backslash
    (systemd refuses such a unit: "Executable name contains special characters")."""
    executable, *arguments = map(str, argv)
    check_unit_text(executable)
    if re.search(r"[\"'\\]", executable):
        raise ServiceError(
            f"executable {ascii(executable)} holds a quote or a backslash, which systemd refuses in ExecStart=; "
            "install edgetrt under another folder"
        )
    words = [_quoted(_escape(executable))]
    for arg in arguments:
        check_unit_text(arg)
        words.append(_quoted(_escape(arg).replace("$", "$$").replace("\\", "\\\\").replace('"', '\\"')))
    return " ".join(words)


def _quoted(word: str) -> str:
    """``word`` in double quotes unless it is plain (already escaped for inside quotes)."""
    return word if re.fullmatch(r"[A-Za-z0-9_@%+=:,./\-$]+", word) else f'"{word}"'
