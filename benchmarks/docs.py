"""Writes one benchmark's section of docs/benchmarks.md: replaces its last run, leaves the other sections alone."""

from __future__ import annotations

from pathlib import Path

from edge.fileio import write_atomic

__all__ = ["DOCS", "write_section"]

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(heading: str, section: str, path: Path = DOCS) -> None:
    """Put ``section`` (text starting with its ``heading`` line, e.g. "## Runtime") in place of
    the lines from ``heading`` to the next "## " heading, or append it when the file has none."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(f"\n{heading}\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[: start + 1] + section + ("" if end < 0 else text[end:])
    write_atomic(path, text)
