"""Text from models and engines made safe for the terminal before rich prints it.

Node, tensor and file names come from user files: a control character (an ANSI escape, a
carriage return) must not reach the terminal raw, and a ``[tag]`` must not be read as rich
markup. Both are escaped, so the name is shown as it is written.
"""

from __future__ import annotations

from rich.markup import escape

__all__ = ["terminal_text"]

_CONTROL = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}


def terminal_text(text: object) -> str:
    """``str(text)`` with control characters as ``\\xNN`` and rich markup escaped."""
    return escape(str(text).translate(_CONTROL))
