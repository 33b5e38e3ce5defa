"""Power control against stand-in nvpmodel / jetson_clocks executables on PATH.

The stand-ins (small Python scripts written into tmp_path) log every invocation and keep the
current mode in a state file, mimicking the real tools' output and their reboot prompt as
described in shared/reference/jetson.md section 2. Nothing here touches a real board.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import textwrap

import pytest

from edge.cli import main
from edge.errors import PowerError, ProfileError
from edge.profiles import PowerMode, load_profile
from edge.power.control import (
    Commands,
    PowerController,
    clocks_pinned,
    parse_nvpmodel_conf,
    parse_nvpmodel_query,
)

# A config in nvpmodel's grammar with the AGX Orin 64GB caps from jetson.md section 3
# (written for this test, not NVIDIA's file). Mode 1 has a different TPC mask: reboot needed.
CONF = """
< PARAM TYPE=FILE NAME=CPU_ONLINE >
CORE_0 /sys/devices/system/cpu/cpu0/online
<PARAM TYPE=CLOCK NAME=EMC >
MAX_FREQ /sys/kernel/nvpmodel_emc_cap/emc_iso_cap

< POWER_MODEL ID=0 NAME=MAXN >
CPU_ONLINE CORE_0 1
CPU_ONLINE CORE_1 1
TPC_POWER_GATING TPC_PG_MASK 0
CPU_A78_0 MAX_FREQ -1
GPU MAX_FREQ -1
EMC MAX_FREQ 0

< POWER_MODEL ID=1 NAME=MODE_15W >
CPU_ONLINE CORE_0 1
CPU_ONLINE CORE_1 0
TPC_POWER_GATING TPC_PG_MASK 248
CPU_A78_0 MAX_FREQ 1113600
GPU MAX_FREQ 408000000
EMC MAX_FREQ 2133000000
DLA0_CORE MAX_FREQ 614400000

< POWER_MODEL ID=2 NAME=MODE_30W >
CPU_ONLINE CORE_0 1
CPU_ONLINE CORE_1 1
TPC_POWER_GATING TPC_PG_MASK 0
CPU_A78_0 MAX_FREQ 1728000
GPU MAX_FREQ 612000000

< POWER_MODEL ID=3 NAME=MODE_50W >
CPU_ONLINE CORE_0 1
CPU_ONLINE CORE_1 1
TPC_POWER_GATING TPC_PG_MASK 0
CPU_A78_0 MAX_FREQ 1497600
GPU MAX_FREQ 816000000

# No power-gating lines: the mask check cannot predict that this one needs a reboot.
< POWER_MODEL ID=9 NAME=MODE_9 >
CPU_ONLINE CORE_0 1

# mandatory
< PM_CONFIG DEFAULT=2 >
"""

NVPMODEL = """
import os, sys
state = os.environ["STANDIN_STATE"]
with open(os.path.join(state, "calls.log"), "a") as log:
    log.write(" ".join(["nvpmodel", *sys.argv[1:]]) + "\\n")
names = {0: "MAXN", 1: "MODE_15W", 2: "MODE_30W", 3: "MODE_50W", 9: "MODE_9"}
mode_file = os.path.join(state, "mode")
current = int(open(mode_file).read()) if os.path.exists(mode_file) else 2
args = sys.argv[1:]
if args == ["-q"]:
    print("NVPM WARN: fan mode is not set!")
    print("NV Power Mode: " + names[current])
    print(current)
elif args[:1] == ["-m"]:
    target = int(args[1])
    if target == 9:  # the prompt nvpmodel shows for a mode whose GPU mask differs
        print("NVPM WARN: Reboot required for changing to this power mode: 9")
        print("DO YOU WANT TO REBOOT NOW? enter YES/yes to confirm:")
        if sys.stdin.readline().strip().lower() != "yes":
            print("NVPM ERROR: optMask is 1, no request for power mode")
        sys.exit(0)
    open(mode_file, "w").write(str(target))
"""

JETSON_CLOCKS = """
import os, sys
state = os.environ["STANDIN_STATE"]
with open(os.path.join(state, "calls.log"), "a") as log:
    log.write(" ".join(["jetson_clocks", *sys.argv[1:]]) + "\\n")
args = sys.argv[1:]
locked = os.path.join(state, "locked")
if args[:1] == ["--store"]:
    if os.path.exists(args[1]):
        print("Can I overwrite it? Y/N:")
        sys.exit(1)
    open(args[1], "w").write("locked=%d\\n" % os.path.exists(locked))
elif args[:1] == ["--restore"]:
    if not os.path.exists(args[1]):
        print("file not found")
        sys.exit(1)
    if open(args[1]).read().strip() == "locked=0" and os.path.exists(locked):
        os.remove(locked)
elif args == ["--show"]:
    lo = "1984000" if os.path.exists(locked) else "729600"
    print("SOC family:tegra234  Machine:test")
    print("cpu0:  Online=1 Governor=schedutil MinFreq=%s MaxFreq=1984000 CurrentFreq=1984000 IdleStates: WFI=1 c7=1" % lo)
    print("GPU MinFreq=%s MaxFreq=1984000 CurrentFreq=1984000" % lo)
elif not args:
    open(locked, "w").write("1")
"""


@pytest.fixture
def board(tmp_path, monkeypatch):
    """A fake Jetson: sysroot with nv_tegra_release and nvpmodel.conf, stand-ins first on PATH."""
    sysroot, bindir, state = tmp_path / "root", tmp_path / "bin", tmp_path / "state"
    for folder in (sysroot / "etc", bindir, state):
        folder.mkdir(parents=True)
    (sysroot / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 4.4\n")
    (sysroot / "etc/nvpmodel.conf").write_text(CONF)
    for name, body in (("nvpmodel", NVPMODEL), ("jetson_clocks", JETSON_CLOCKS)):
        script = bindir / name
        script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STANDIN_STATE", str(state))

    class Board:
        root = sysroot
        bin = bindir

        @staticmethod
        def calls() -> list[str]:
            log = state / "calls.log"
            return log.read_text().splitlines() if log.exists() else []

        @staticmethod
        def mode() -> int:
            mode = state / "mode"
            return int(mode.read_text()) if mode.exists() else 2

        @staticmethod
        def locked() -> bool:
            return (state / "locked").exists()

    return Board


def _controller(board, **kwargs) -> PowerController:
    return PowerController(sysroot=board.root, euid=0, echo=lambda line: None, **kwargs)


def test_command_lines():
    assert Commands.query_mode() == ["nvpmodel", "-q"]
    assert Commands.set_mode(3) == ["nvpmodel", "-m", "3"]
    assert Commands.clocks_show() == ["jetson_clocks", "--show"]
    assert Commands.clocks_store("/x/y") == ["jetson_clocks", "--store", "/x/y"]
    assert Commands.clocks_restore("/x/y") == ["jetson_clocks", "--restore", "/x/y"]
    assert Commands.clocks_lock() == ["jetson_clocks"]


def test_parse_query_and_conf():
    assert parse_nvpmodel_query("NVPM WARN: fan mode is not set!\nNV Power Mode: MODE_15W\n1\n").id == 1
    with pytest.raises(PowerError, match="cannot read"):
        parse_nvpmodel_query("NVPM ERROR: something\n")
    modes = {m.id: m for m in parse_nvpmodel_conf(CONF)}
    assert [m.name for m in modes.values()] == ["MAXN", "MODE_15W", "MODE_30W", "MODE_50W", "MODE_9"]
    assert modes[2].is_default and not modes[0].is_default
    maxn, low = modes[0], modes[1]
    assert (maxn.cpu_max_mhz, maxn.gpu_max_mhz, maxn.emc_max_mhz, maxn.tpc_pg_mask, maxn.online_cpus) == (None, None, None, 0, 2)
    assert (low.cpu_max_mhz, low.gpu_max_mhz, low.emc_max_mhz, low.dla_max_mhz) == (1113.6, 408, 2133, 614.4)
    assert (low.tpc_pg_mask, low.online_cpus) == (248, 1)


def test_clocks_pinned():
    # Format of `jetson_clocks --show` as posted in open-rdc/orne-box issue #121 (Orin NX).
    dynamic = (
        "SOC family:tegra234  Machine:NVIDIA Jetson Orin NX Engineering Reference Developer Kit\n"
        "Online CPUs: 0-7\n"
        "cpu0:  Online=1 Governor=schedutil MinFreq=729600 MaxFreq=1984000 CurrentFreq=1728000 IdleStates: WFI=1 c7=1 \n"
        "GPU MinFreq=306000000 MaxFreq=918000000 CurrentFreq=306000000\n"
    )
    assert clocks_pinned(dynamic) is False
    assert clocks_pinned(dynamic.replace("MinFreq=729600", "MinFreq=1984000").replace("MinFreq=306000000", "MinFreq=918000000"))
    assert clocks_pinned("nothing useful") is None


def test_query_and_set_mode_run_exact_commands(board):
    controller = _controller(board)
    assert controller.query_mode().name == "MODE_30W"
    assert controller.set_mode("50W").id == 3  # name match ignores the MODE_ prefix
    assert board.mode() == 3
    assert board.calls() == ["nvpmodel -q", "nvpmodel -q", "nvpmodel -m 3", "nvpmodel -q"]


def test_mode_needing_reboot_is_refused_without_running_nvpmodel(board):
    controller = _controller(board)
    with pytest.raises(PowerError, match=r"needs a reboot.*TPC mask 248.*\(0\)"):
        controller.set_mode(1)
    assert "nvpmodel -m 1" not in board.calls() and board.mode() == 2


def test_reboot_prompt_is_answered_no_and_reported(board):
    # Mode 9 has no TPC mask in nvpmodel.conf, so the mask check cannot predict it; nvpmodel prompts,
    # gets EOF on stdin (never a hang), and edgetrt reports the refusal.
    with pytest.raises(PowerError, match="needs a reboot"):
        _controller(board).set_mode(9)
    assert board.mode() == 2


def test_unknown_mode_name(board):
    with pytest.raises(ProfileError, match="unknown power mode 'TURBO'.*0=MAXN"):
        _controller(board).set_mode("TURBO")


def test_an_id_the_board_does_not_have_is_refused_before_nvpmodel_runs(board):
    with pytest.raises(ProfileError, match=r"unknown power mode '99' for this board; modes: 0=MAXN, 1=MODE_15W"):
        _controller(board).set_mode(99)
    assert "nvpmodel -m 99" not in board.calls()
    with pytest.raises(ProfileError, match="unknown power mode '99'"):
        _controller(board, dry_run=True).set_mode("99")


def test_cli_power_set_refuses_an_id_the_profile_lacks_also_in_dry_run(capsys):
    assert main(["power", "set", "99", "--profile", "orin-nano-8gb", "--dry-run"]) == 1
    captured = capsys.readouterr()
    assert "unknown power mode '99' for profile orin-nano-8gb" in captured.err and "nvpmodel" not in captured.out
    assert len(captured.err.strip().splitlines()) == 1
    assert main(["power", "set", "1", "--profile", "orin-nano-8gb", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == ["nvpmodel -m 1"]


def test_a_bare_id_passes_only_when_no_mode_table_is_known(tmp_path):
    assert PowerController(sysroot=tmp_path, dry_run=True, echo=lambda line: None).resolve_mode("7").id == 7
    with pytest.raises(ProfileError, match="none known"):
        PowerController(sysroot=tmp_path, dry_run=True, echo=lambda line: None).resolve_mode("MAXN")


def test_session_restores_mode_and_clocks(board):
    controller = _controller(board)
    with controller.session(mode="MAXN", lock_clocks=True) as mode:
        assert mode.name == "MAXN" and board.mode() == 0 and board.locked()
    store = board.root / "var/lib/edgetrt/session_clocks.conf"
    changing = [c for c in board.calls() if not c.endswith(("-q", "--show"))]
    assert changing == [
        f"jetson_clocks --store {store}",
        "nvpmodel -m 0",
        "jetson_clocks",
        "nvpmodel -m 2",  # the original mode first ...
        f"jetson_clocks --restore {store}",  # ... then the clocks stored under it
    ]
    assert board.mode() == 2 and not board.locked()


def test_session_restores_on_ctrl_c(board):
    controller = _controller(board)
    with pytest.raises(KeyboardInterrupt):
        with controller.session(mode=3, lock_clocks=True):
            assert board.mode() == 3 and board.locked()
            raise KeyboardInterrupt
    assert board.mode() == 2 and not board.locked()
    assert board.calls()[-2:] == ["nvpmodel -m 2", f"jetson_clocks --restore {board.root / 'var/lib/edgetrt/session_clocks.conf'}"]


def test_session_leaves_an_already_current_mode_alone(board):
    with _controller(board).session(mode=2):
        pass
    assert not any(c.startswith("nvpmodel -m") for c in board.calls())


def test_clocks_store_overwrites_without_prompt_and_restore_needs_a_store(board):
    controller = _controller(board)
    with pytest.raises(PowerError, match="no stored clock settings"):
        controller.clocks_restore()
    controller.clocks_store()
    controller.clocks_store()  # a second store would hit jetson_clocks' overwrite prompt without the unlink
    controller.clocks_lock()
    assert clocks_pinned(controller.clocks_show()) is True
    controller.clocks_restore()
    assert clocks_pinned(controller.clocks_show()) is False


def test_dry_run_prints_and_runs_nothing(board):
    printed: list[str] = []
    controller = PowerController(dry_run=True, sysroot=board.root, euid=1000, echo=printed.append)
    with controller.session(mode=3, lock_clocks=True):
        pass
    store = board.root / "var/lib/edgetrt/session_clocks.conf"
    assert printed == [
        "nvpmodel -q",
        f"jetson_clocks --store {store}",
        "nvpmodel -m 3",
        "jetson_clocks",
        "nvpmodel -m '<original mode id>'",
        f"jetson_clocks --restore {store}",
    ]
    assert board.calls() == []


def test_refusals(board, tmp_path, monkeypatch):
    with pytest.raises(PowerError, match="needs root"):
        PowerController(sysroot=board.root, euid=1000).set_mode(3)
    assert PowerController(sysroot=board.root, euid=1000).query_mode().id == 2  # -q needs no root
    with pytest.raises(PowerError, match="not a Jetson"):
        PowerController(sysroot=tmp_path / "plain-linux", euid=0).query_mode()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(PowerError, match="'nvpmodel' not found on PATH"):
        _controller(board).query_mode()


def test_device_tree_compatible_identifies_a_jetson(tmp_path):
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/compatible").write_bytes(b"nvidia,p3768-0000+p3767-0005\x00nvidia,tegra234\x00")
    assert PowerController(sysroot=tmp_path).is_jetson()


def test_profile_and_conf_modes_merge(board):
    def mode(id, name, budget_w, gpu_tpcs):
        return PowerMode(id, name, budget_w, online_cpus=6, cpu_max_mhz=1500.0, gpu_max_mhz=600.0,
                         dla_max_mhz=None, emc_max_mhz=2133.0, gpu_tpcs=gpu_tpcs)

    profile = dataclasses.replace(
        load_profile("orin-nano-8gb"),
        power_modes=[mode(0, "MAXN", None, 8), mode(1, "15W", 15.0, 3), mode(4, "EXTRA", 40.0, 8)],
        default_power_mode=2,
    )
    modes = {m.id: m for m in _controller(board, profile=profile).list_modes()}
    assert modes[1].budget_w == 15.0 and modes[1].source == "profile+nvpmodel.conf" and modes[1].gpu_max_mhz == 408
    assert modes[2].source == "nvpmodel.conf" and modes[2].is_default
    assert modes[4].source == "profile" and modes[4].budget_w == 40.0 and modes[4].cpu_max_mhz == 1500.0


def test_cli_refuses_off_jetson_in_one_line(capsys):
    assert main(["power", "show"]) == 1
    err = capsys.readouterr().err
    assert "not a Jetson" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_dry_run_prints_exact_commands(capsys):
    assert main(["power", "set", "MAXN", "--profile", "agx-orin-64gb", "--dry-run"]) == 0
    assert main(["power", "clocks", "on", "--file", "/tmp/c.conf", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "nvpmodel -m 0",
        "jetson_clocks --store /tmp/c.conf",
        "jetson_clocks",
    ]


def test_cli_modes_from_profile(capsys):
    assert main(["power", "modes", "--profile", "orin-nano-8gb"]) == 0
    out = capsys.readouterr().out
    assert "15W" in out and "7W" in out
