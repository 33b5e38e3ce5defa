"""The typer application object and console helpers shared by every command module."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from edge.version import __version__

__all__ = ["app", "console", "console_error", "console_warning"]

# Piped output (logs, CI) gets a wide console instead of rich's 80-column default, so layer
# tables stay readable; COLUMNS still wins when set.
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)
_stderr = Console(stderr=True)

app = typer.Typer(
    name="edgetrt",
    help="Build ONNX models into optimized engines for NVIDIA Jetson (GPU + DLA) and run them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def console_error(message: str) -> None:
    """Print a one-line user error to stderr."""
    _stderr.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)


def console_warning(message: str) -> None:
    """Print a one-line warning to stderr."""
    _stderr.print(f"[bold yellow]warning:[/bold yellow] {message}", highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"edgetrt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """edgetrt: ONNX -> optimized engines for NVIDIA Jetson, with a CPU reference runtime."""
