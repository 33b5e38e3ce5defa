"""The ``edgetrt`` command line: a thin typer shell over the Python API.

Each command group lives in its own module and registers onto ``app`` when imported; this
module only assembles them and turns user errors into one-line messages and exit codes.
"""

from __future__ import annotations

import importlib
import sys

from edge.cli.app import app, console_error

__all__ = ["app", "main"]

_COMMAND_MODULES = (
    "edge.cli.core",
    "edge.cli.partition",
    "edge.cli.bench",
    "edge.cli.trtexec",
    "edge.cli.power",
    "edge.cli.serve",
    "edge.cli.service",
    "edge.cli.compare",
    "edge.cli.doctor",
    "edge.cli.calibrate",
    "edge.cli.deploy",
    "edge.cli.trt",
)


def _load_commands() -> None:
    for module in _COMMAND_MODULES:
        importlib.import_module(module)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    from edge.cli.text import terminal_text
    from edge.errors import EdgeError

    _load_commands()
    try:
        code = app(args=argv, standalone_mode=False)  # click returns typer.Exit's code here
    except EdgeError as exc:
        console_error(terminal_text(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        console_error("interrupted")
        return 130
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        import typer

        # typer >= 0.29 raises its own vendored copy of click's exceptions, not click's
        # classes: recognise a usage error by what it offers (show() and an exit code)
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            return exc.exit_code
        if isinstance(exc, typer.Abort):
            console_error("aborted")
            return 1
        raise
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
