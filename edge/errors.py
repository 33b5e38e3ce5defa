"""Exceptions for user errors: each carries a one-line message the CLI prints as is.

Anything derived from ``EdgeError`` is the user's input being wrong (a file, a flag, a
tensor); the CLI shows its message without a traceback and exits with ``exit_code``.
"""

from __future__ import annotations

__all__ = [
    "EdgeError",
    "GraphError",
    "ModelImportError",
    "UnsupportedOperatorError",
    "EngineFormatError",
    "EngineMismatchError",
    "EngineMismatchWarning",
    "InputError",
    "ProfileError",
    "KernelError",
    "PowerError",
    "TelemetryError",
    "CalibrationError",
    "TrtexecProfileError",
    "FileWriteError",
]


class EdgeError(Exception):
    """Base of every user-facing error."""

    exit_code = 1


class GraphError(EdgeError):
    """The IR is malformed (dangling input, cycle, shape conflict)."""


class ModelImportError(EdgeError):
    """An ONNX file could not be read or is not a valid model."""


class UnsupportedOperatorError(ModelImportError):
    """The model uses operators no backend implements; lists them all at once."""

    exit_code = 2

    def __init__(self, missing: dict[str, list[str]]) -> None:
        self.missing = missing
        parts = []
        for op, names in sorted(missing.items()):
            shown = ", ".join(f"'{n}'" for n in names[:3]) + (", ..." if len(names) > 3 else "")
            parts.append(f"{op} x{len(names)} ({shown})")
        super().__init__(f"unsupported operators: {'; '.join(parts)}")


class EngineFormatError(EdgeError):
    """An engine file is truncated, corrupted, foreign or of a newer format."""


class EngineMismatchError(EngineFormatError):
    """An engine was built for another machine (board, power mode, GPU or library versions)."""


class EngineMismatchWarning(UserWarning):
    """An engine loaded with ``allow_mismatch`` differs from this machine (one warning per difference)."""


class InputError(EdgeError):
    """Inputs given at run time do not match the engine (name, shape, dtype)."""


class ProfileError(EdgeError):
    """A device profile is unknown or invalid, or a flag does not fit the profile."""


class KernelError(EdgeError):
    """A kernel failed on its inputs; names the node."""


class PowerError(EdgeError):
    """A power-mode or clock change cannot be made (not a Jetson, no root, missing tool, reboot needed)."""


class TelemetryError(EdgeError):
    """Telemetry cannot be read: a log holds no tegrastats line, or no sampler is available."""


class CalibrationError(EdgeError):
    """Calibration data or a calibration cache is missing, malformed or does not fit the model."""


class TrtexecProfileError(EdgeError):
    """A trtexec --exportProfile file is unreadable or not in trtexec's layout."""


class FileWriteError(EdgeError):
    """An output file cannot be written (a folder in its place, no permission, disk full)."""
