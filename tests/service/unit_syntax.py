"""An independent reader of systemd unit files (systemd.syntax(7)), for checking what edgetrt writes.

Written from the manual, not from edgetrt's writer: sections and ``Key=value`` lines, specifier
resolution (only ``%%`` is allowed here: any other specifier in a written value is a bug),
then word splitting with double/single quotes and C escapes, then ``$$`` -> ``$`` in the
arguments (the executable gets no variable expansion).
"""

from __future__ import annotations

import re

_C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"', "'": "'", "s": " "}


def parse_unit(text: str) -> list[tuple[str, str, str]]:
    """(section, key, raw value) for every directive, in file order; a line outside a section fails."""
    directives = []
    section = None
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        assert not stripped.endswith("\\"), f"line {number}: a continuation line"
        header = re.fullmatch(r"\[([^\[\]]+)\]", stripped)
        if header:
            section = header.group(1)
            continue
        assert section is not None and "=" in stripped, f"line {number} is not a directive: {line!r}"
        key, value = stripped.split("=", 1)
        directives.append((section, key.strip(), value.strip()))
    return directives


def resolve_specifiers(value: str) -> str:
    """``%%`` -> ``%``; any other specifier fails (for values that carry user text, where none belongs)."""
    out, i = [], 0
    while i < len(value):
        if value[i] == "%":
            nxt = value[i + 1 : i + 2]
            assert nxt == "%", f"specifier %{nxt} in {value!r}"
            out.append("%")
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def command_words(value: str) -> list[str]:
    """The argv systemd runs for an ``ExecStart=`` value (after specifiers)."""
    words: list[str] = []
    i, n = 0, len(value)
    while i < n:
        if value[i] in " \t":
            i += 1
            continue
        word, quote = [], None
        while i < n and (quote or value[i] not in " \t"):
            char = value[i]
            if char == "\\":
                code = value[i + 1]
                if code == "x":
                    word.append(chr(int(value[i + 2 : i + 4], 16)))
                    i += 4
                    continue
                assert code in _C_ESCAPES, f"unknown escape \\{code} in {value!r}"
                word.append(_C_ESCAPES[code])
                i += 2
                continue
            if quote is None and char in "\"'" :
                quote = char
            elif char == quote:
                quote = None
            else:
                word.append(char)
            i += 1
        assert quote is None, f"unbalanced quote in {value!r}"
        words.append("".join(word))
    for argument in words[1:]:
        assert "$" not in argument.replace("$$", ""), f"variable reference in {argument!r}"
    return words[:1] + [argument.replace("$$", "$") for argument in words[1:]]
