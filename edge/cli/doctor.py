"""``edgetrt doctor``: a table of what this machine can do for edgetrt, with a hint per gap."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from edge.cli.app import app, console
from edge.doctor import MISSING, OK, run_checks
from edge.errors import EdgeError

__all__ = ["doctor_command"]

_STYLE = {OK: "green", MISSING: "yellow"}


@app.command("doctor")
def doctor_command(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Check libraries, BLAS threads, Jetson tools, GPU and optional extras on this machine.

    Each check is ok, missing or n/a (does not apply here) with a one-line hint. Exits 1
    only when the core (numpy, onnx) is broken.

    Examples:

        edgetrt doctor

        edgetrt doctor --json > doctor.json
    """
    report = run_checks()
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        table = Table("group", "check", "status", "found", "hint", title="edgetrt doctor")
        for check in report.checks:
            style = _STYLE.get(check.status, "dim")
            table.add_row(check.group, check.name, f"[{style}]{check.status}[/{style}]", escape(check.detail), escape(check.hint))
        console.print(table)
    if not report.core_ok:
        broken = [c.name for c in report.checks if c.core and c.status != OK]
        raise EdgeError(f"edgetrt cannot run here: {', '.join(broken)} missing or broken")
