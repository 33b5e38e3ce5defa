"""Help text: what each command's --help says reaches the reader as written."""

from __future__ import annotations

import re

import click
import pytest
import typer.main
from rich.text import Text

from edge.cli import _load_commands, app, main
from edge.errors import ProfileError
from edge.profiles import load_profile


def _commands() -> list[tuple[str, click.Command]]:
    """Every command and subcommand of ``edgetrt`` with its full name."""
    _load_commands()
    found: list[tuple[str, click.Command]] = []

    def walk(prefix: str, command: click.Command) -> None:
        found.append((prefix, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk(f"{prefix} {name}".strip(), sub)

    walk("", typer.main.get_command(app))
    return found


def _help_texts() -> list[tuple[str, str]]:
    texts = []
    for name, command in _commands():
        if command.help:
            texts.append((name or "edgetrt", command.help))
        for param in command.params:
            if getattr(param, "help", None):
                texts.append((f"{name} {param.opts[0]}", param.help))
    return texts


def test_rich_markup_keeps_every_bracket() -> None:
    """Rich reads ``[word ...]`` as a style tag and drops it; every help text must survive
    markup parsing with only its escapes removed (``[default: ...]`` was swallowed)."""
    swallowed = [
        (where, text) for where, text in _help_texts() if Text.from_markup(text).plain != text.replace("\\[", "[")
    ]
    assert not swallowed, swallowed


def test_build_help_shows_its_default(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.setenv("TERMINAL_WIDTH", "300")
    assert main(["build", "--help"]) == 0
    assert "[default: MODEL.engine]" in capsys.readouterr().out


def test_every_profile_named_in_help_exists() -> None:
    named = {(where, m) for where, text in _help_texts() for m in re.findall(r"--profile[ =]([\w.-]+)", text)}
    assert named, "the help examples name no profile at all"
    unknown = []
    for where, profile in sorted(named):
        if profile.isupper() or profile.endswith(".yaml"):
            continue  # a placeholder (NAME) or a file path
        try:
            load_profile(profile)
        except ProfileError:
            unknown.append((where, profile))
    assert not unknown, unknown
