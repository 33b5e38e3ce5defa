"""Fixtures shared by the power tests: a stand-in ``tegrastats`` that replays a recorded log."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "tegrastats"

REPLAY = """
import sys, time
args = sys.argv[1:]
interval_ms = int(args[args.index("--interval") + 1])
with open(sys.argv[0] + ".args", "w") as record:
    record.write(" ".join(args))
lines = [l.rstrip("\\n") for l in open(REPLAY_LOG) if l.strip() and not l.startswith("#")]
lines.insert(2, "NVPM WARN: not a tegrastats line")
while True:
    for line in lines:
        print(line, flush=True)
        time.sleep(interval_ms / 1000.0)
"""


@pytest.fixture
def replay(tmp_path, monkeypatch):
    """Put a stand-in ``tegrastats`` first on PATH. It records its arguments next to itself and
    prints the real Orin Nano lines of orin_nano.log (plus one non-tegrastats line) in a loop,
    one every ``--interval`` ms, like the real tool."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "tegrastats"
    script.write_text(f"#!{sys.executable}\nREPLAY_LOG = {str(DATA / 'orin_nano.log')!r}\n" + textwrap.dedent(REPLAY))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return script
