"""Unit-file injection (issue 26): every value edgetrt writes into a unit is escaped or refused.

Checked two ways: systemd's own `systemd-analyze verify`, and an independent reader of the
unit syntax (tests/service/unit_syntax.py) that must see exactly the directives edgetrt meant
and decode ExecStart= back to the exact argv.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli import main
from edge.service import ServiceError, ServiceSpec, render_unit
from tests.service.unit_syntax import command_words, parse_unit, resolve_specifiers

# Folder names a hostile or careless user can create; each must reach the server unchanged.
LEGAL_FOLDERS = [
    "with space",
    "percent %n %i %% %C",
    "dollar $HOME ${PATH} $$",
    'quote " and \' apostrophe',
    "back\\slash \\n not a newline",
    "semi ; colon",
    "[Install] WantedBy=debug-shell.service",
    "hash # and ; at start",
    "unicode é 模型",
]
# Folder names a unit cannot carry: refused with a one-line error.
ILLEGAL_FOLDERS = [
    "x\n[Install]\nWantedBy=debug-shell.service\n[Service]\nExecStartPre=/bin/sh",
    "carriage\rreturn",
    "tab\there",
    "nul\x00byte",
    "bad utf8 \udcff",
    "escape \x1b[31m red",
]


def _spec(folder: str, executable: Path = Path("/usr/bin/edgetrt")) -> ServiceSpec:
    return ServiceSpec(
        name="det", engines=(Path("/srv") / folder / "det.engine",), executable=executable, env_file=Path("/etc/edgetrt/det.env")
    )


@pytest.mark.parametrize("folder", LEGAL_FOLDERS)
def test_hostile_but_legal_paths_round_trip_through_the_unit(folder: str) -> None:
    spec = _spec(folder)
    directives = parse_unit(render_unit(spec))
    assert [s for s, _, _ in directives if s not in ("Unit", "Service", "Install")] == []
    assert [(s, k, v) for s, k, v in directives if s == "Install"] == [("Install", "WantedBy", "multi-user.target")]
    starts = [v for s, k, v in directives if k == "ExecStart"]
    assert len(starts) == 1
    assert command_words(resolve_specifiers(starts[0])) == ["/usr/bin/edgetrt", "serve", f"det=/srv/{folder}/det.engine"]
    assert not [k for _, k, _ in directives if k.startswith("ExecStartPre")]


@pytest.mark.parametrize("folder", ILLEGAL_FOLDERS)
def test_paths_a_unit_cannot_carry_are_refused(folder: str) -> None:
    with pytest.raises(ServiceError, match=r"^path .* holds the character U\+[0-9A-F]{4}, which a systemd unit cannot carry"):
        _spec(folder)


@pytest.mark.parametrize("folder", ['o\'brien', 'quote"d', "back\\slash"])
def test_an_executable_systemd_would_refuse_is_refused_at_render(folder: str) -> None:
    with pytest.raises(ServiceError, match="holds a quote or a backslash, which systemd refuses in ExecStart="):
        render_unit(_spec("models", Path("/opt") / folder / "edgetrt"))


def test_refusal_at_the_command_line_is_one_escaped_line(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "x\n[Install]\nWantedBy=debug-shell.service"
    folder.mkdir()
    engine = folder / "det.engine"
    engine.write_bytes(b"not read: refused before loading")
    assert main(["service", "install", str(engine), "--name", "det", "--dry-run", "--unit-dir", str(tmp_path / "u")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "U+000A" in err and "Traceback" not in err
    assert not (tmp_path / "u").exists()


def test_systemd_accepts_the_escaped_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze", path="/usr/bin:/bin")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian/Ubuntu package: systemd; .ci/run installs it)")
    # The executable itself lives under the most awkward legal folder: verify checks it exists.
    folder = tmp_path / "bin %n $HOME ; [Install] é"
    folder.mkdir()
    executable = folder / "edgetrt"
    executable.write_text(f"#!{sys.executable}\n")
    executable.chmod(0o755)
    unit = tmp_path / "edgetrt-det.service"
    unit.write_text(render_unit(_spec(LEGAL_FOLDERS[1], executable)))
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stdout + proc.stderr
    start = next(v for _, k, v in parse_unit(unit.read_text()) if k == "ExecStart")
    assert command_words(resolve_specifiers(start))[0] == str(executable)
