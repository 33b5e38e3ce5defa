"""`service install` checks (issue 24): --power-mode by `edgetrt power`'s rule, and no engine or
virtualenv under the /tmp that PrivateTmp=yes hides from the service."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

import edge
from edge.builder import BuilderConfig
from edge.cli import main
from edge.service import ServiceSpec, plan_install


def _model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def orin_nx_engine(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("engines") / "det.engine"
    edge.build(_model(), BuilderConfig(profile="orin-nx-16gb")).save(path)
    path.chmod(0o644)
    return path


def _unit_lines(capsys, engine: Path, *extra: str) -> list[str]:
    code = main(["service", "install", str(engine), "--name", "det", "--dry-run", "--no-warm", "--user", "edgetrt", *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out.splitlines()


@pytest.mark.parametrize("mode, expected", [("MAXN", 0), ("maxn", 0), ("15W", 2), ("MODE_25W", 3), ("1", 1)])
def test_power_mode_takes_names_as_power_set_does(orin_nx_engine, capsys, monkeypatch, mode, expected) -> None:
    monkeypatch.setattr("edge.service.manager.PRIVATE_TMP_DIRS", ())  # pytest's folders are under /tmp
    lines = _unit_lines(capsys, orin_nx_engine, "--power-mode", mode)
    assert [line.split("nvpmodel", 1)[1] for line in lines if line.startswith("ExecStartPre=+")] == [f" -m {expected}"]
    # `edgetrt power set` resolves the same text to the same id on the same profile.
    assert main(["power", "set", mode, "--profile", "orin-nx-16gb", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"nvpmodel -m {expected}"]


@pytest.mark.parametrize("mode, message", [("99", "unknown power mode '99' for profile orin-nx-16gb"), ("TURBO", "unknown power mode 'TURBO'")])
def test_power_mode_the_profile_lacks_is_refused(orin_nx_engine, capsys, monkeypatch, mode, message) -> None:
    monkeypatch.setattr("edge.service.manager.PRIVATE_TMP_DIRS", ())
    assert main(["service", "install", str(orin_nx_engine), "--name", "det", "--dry-run", "--user", "edgetrt", "--power-mode", mode]) == 1
    captured = capsys.readouterr()
    assert message in captured.err and "0=MAXN" in captured.err and "[Service]" not in captured.out


def test_engine_under_private_tmp_is_refused(orin_nx_engine, capsys) -> None:
    assert orin_nx_engine.is_relative_to("/tmp")  # pytest's tmp folders: exactly the case
    assert main(["service", "install", str(orin_nx_engine), "--name", "det", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert f"engine '{orin_nx_engine}' lies under /tmp, which the service cannot see (its unit has PrivateTmp=yes)" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("where", ["script", "interpreter"])
def test_edgetrt_or_its_virtualenv_under_private_tmp_is_refused(tmp_path, monkeypatch, where) -> None:
    monkeypatch.setattr("edge.service.manager.PRIVATE_TMP_DIRS", (tmp_path / "private",))
    venv_bin = tmp_path / ("private" if where == "interpreter" else "venv") / "bin"
    script_dir = tmp_path / ("private" if where == "script" else "opt") / "bin"
    for folder in (venv_bin, script_dir):
        folder.mkdir(parents=True, exist_ok=True)
    (venv_bin / "python").symlink_to(sys.executable)  # resolves outside: the link's own path counts
    script = script_dir / "edgetrt"
    script.write_text(f"#!{venv_bin / 'python'}\n")
    spec = ServiceSpec("det", (), script, Path("/etc/edgetrt/det.env"))
    expected = "edgetrt executable" if where == "script" else "edgetrt's Python (its virtualenv)"
    with pytest.raises(edge.errors.EdgeError, match=rf"^{re.escape(expected)} '.*' lies under .*private, which the service cannot see"):
        plan_install(spec, tmp_path / "units", warm=False)
