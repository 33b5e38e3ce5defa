"""``edgetrt service install|uninstall|status``: manage a systemd service that serves an engine."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from edge.cli.app import app, console
from edge.errors import EdgeError
from edge.service import ENV_DIR, UNIT_DIR, ServiceSpec, install, plan_install, status, uninstall, unit_name
from edge.service.manager import edgetrt_executable, find_tool

__all__ = ["service_app"]

service_app = typer.Typer(
    name="service",
    help="Install, remove or query a systemd service running `edgetrt serve`.\n\n"
    "Examples:\n\n    edgetrt service install model.engine --name detector --dry-run\n\n"
    "    edgetrt service status detector",
    no_args_is_help=True,
)
app.add_typer(service_app)


@service_app.command("install")
def install_command(
    engines: list[Path] = typer.Argument(..., help="Engine file(s) the service serves.", show_default=False),
    name: str = typer.Option(..., "--name", help="Service name; the unit is edgetrt-NAME.service.", show_default=False),
    power_mode: str = typer.Option(
        None, "--power-mode", help="nvpmodel mode id or name (as `edgetrt power set` takes it), set as root before the server starts."
    ),
    jetson_clocks: bool = typer.Option(False, "--jetson-clocks", help="Run jetson_clocks (as root) before the server starts."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address the server binds; anything but loopback exposes it."),
    port: int = typer.Option(8000, "--port", help="TCP port of the server."),
    user: str = typer.Option(None, "--user", help="Existing unprivileged user to run as \\[default: a systemd dynamic user]."),
    unit_dir: Path = typer.Option(UNIT_DIR, "--unit-dir", help="Where the unit file goes."),
    env_dir: Path = typer.Option(ENV_DIR, "--env-dir", help="Where the environment file goes."),
    warm: bool = typer.Option(
        True, "--warm/--no-warm", help="Compile the CPU kernels into the service's cache now, so its first start is not cold."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the files and systemctl calls; change nothing."),
) -> None:
    """Write a hardened systemd unit + environment file, then enable and (re)start the service.

    The server runs unprivileged in a read-only sandbox with Type=notify, a watchdog and
    Restart=on-failure; the power mode and clocks are set by privileged ExecStartPre=+ steps.

    Examples:

        sudo edgetrt service install /opt/models/yolo.engine --name det --power-mode 0 --jetson-clocks

        edgetrt service install model.engine --name cls --port 8080 --host 0.0.0.0 --dry-run
    """
    engine_paths = tuple(p.absolute() for p in engines)
    spec = ServiceSpec(
        name=name,
        engines=engine_paths,
        executable=edgetrt_executable(),
        env_file=(env_dir / f"{name}.env").absolute(),
        host=host,
        port=port,
        user=user,
        power_mode=None if power_mode is None else _power_mode_id(power_mode, engine_paths),
        jetson_clocks=jetson_clocks,
        nvpmodel=find_tool("nvpmodel", Path("/usr/sbin/nvpmodel")),
        jetson_clocks_path=find_tool("jetson_clocks", Path("/usr/bin/jetson_clocks")),
    )
    plan = plan_install(spec, unit_dir.absolute(), warm=warm)
    if dry_run:
        typer.echo(plan.describe(), nl=False)
        return
    if warm:
        console.print(f"compiling the CPU kernels into {plan.warm_env['NUMBA_CACHE_DIR']} (minutes the first time)")
    install(plan)
    console.print(f"installed and started [bold]{unit_name(name)}[/bold]: " + ", ".join(str(p) for p in plan.files))


def _power_mode_id(mode: str, engines: tuple[Path, ...]) -> int:
    """The nvpmodel id for ``mode``, by `edgetrt power`'s rule, against this board's
    /etc/nvpmodel.conf and the device profile the first engine was built for."""
    import edge
    from edge.cli.power import power_controller

    profile = edge.load(engines[0], check_machine=False).header.get("profile") if engines[0].is_file() else None
    return power_controller(profile=profile).resolve_mode(mode).id


@service_app.command("uninstall")
def uninstall_command(
    name: str = typer.Argument(..., help="Service name given at install.", show_default=False),
    unit_dir: Path = typer.Option(UNIT_DIR, "--unit-dir", help="Where the unit file is."),
    env_dir: Path = typer.Option(ENV_DIR, "--env-dir", help="Where the environment file is."),
) -> None:
    """Stop and disable the service and delete its unit and environment file.

    Examples:

        sudo edgetrt service uninstall det
    """
    removed = uninstall(name, unit_dir.absolute(), env_dir.absolute())
    console.print(f"removed {unit_name(name)}: " + ", ".join(str(p) for p in removed))


@service_app.command("status")
def status_command(name: str = typer.Argument(..., help="Service name given at install.", show_default=False)) -> None:
    """Show systemd's view of the service; exits 3 when it is not active (like systemctl).

    Examples:

        edgetrt service status det
    """
    props = status(name)
    table = Table("property", "value", title=unit_name(name))
    for key, value in props.items():
        table.add_row(key, value)
    console.print(table)
    if props.get("ActiveState") != "active":
        raise _NotActive(f"{unit_name(name)} is not active (ActiveState={props.get('ActiveState', '?')})")


class _NotActive(EdgeError):
    """Exit code 3 for an inactive unit, as `systemctl status` does."""

    exit_code = 3
