"""The one description of the machine a benchmark ran on (CPU model, cores, versions), for every script here."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

__all__ = ["cpu_model", "describe"]


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (x86 Linux), else what ``platform`` reports (e.g. aarch64)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> str:
    """One line for a benchmark's header: CPU model, core count, Python and numpy versions."""
    return f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"
