"""``edgetrt power``, ``profile`` and ``telemetry``: power modes, clocks, and telemetry-backed reports."""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

import typer
from rich.table import Table

from edge.cli.app import app, console
from edge.cli.options import ALLOW_MISMATCH, load_engine
from edge.errors import EdgeError, PowerError, TelemetryError

__all__ = ["power_controller", "show_command", "modes_command", "set_command", "clocks_command", "profile_command", "telemetry_report_command", "telemetry_record_command"]

power_app = typer.Typer(
    help="Power modes (nvpmodel) and clocks (jetson_clocks) on a Jetson.\n\n"
    "Examples:\n\n    edgetrt power show\n\n    edgetrt power set MAXN --dry-run\n\n    edgetrt power clocks on",
    no_args_is_help=True,
)
telemetry_app = typer.Typer(
    help="Record tegrastats and turn recordings into reports.\n\n"
    "Examples:\n\n    sudo edgetrt telemetry record -o run.log --duration 60\n\n    edgetrt telemetry report run.log --report out/",
    no_args_is_help=True,
)
app.add_typer(power_app, name="power")
app.add_typer(telemetry_app, name="telemetry")

_DRY_RUN = typer.Option(False, "--dry-run", help="Print the exact commands instead of running them.")
_PROFILE = typer.Option(None, "--profile", help="Device profile whose power modes to use (see `edgetrt profiles list`).")


def power_controller(dry_run: bool = False, profile: str | None = None):
    """The controller every command resolves and applies power modes with; ``profile`` names
    the device profile whose mode table joins /etc/nvpmodel.conf (``cpu`` has none)."""
    from edge.power.control import PowerController

    loaded = None
    if profile and profile != "cpu":
        from edge.profiles import load_profile

        loaded = load_profile(profile)
    return PowerController(dry_run=dry_run, echo=console.print, profile=loaded)


def _mhz(value: float | None) -> str:
    return "HW" if value is None else f"{value:g}"


@power_app.command("show")
def show_command() -> None:
    """Print the current power mode, and whether jetson_clocks pinned the clocks (root only).

    Examples:

        edgetrt power show
    """
    import os

    from edge.power.control import clocks_pinned

    controller = power_controller()
    mode = controller.query_mode()
    console.print(f"power mode: {mode.name} (id {mode.id})")
    if os.geteuid() == 0:
        pinned = clocks_pinned(controller.clocks_show())
        console.print("jetson_clocks: " + {True: "clocks pinned to the mode's maxima", False: "dynamic (not pinned)", None: "unknown"}[pinned])


@power_app.command("modes")
def modes_command(profile: str = _PROFILE) -> None:
    """List the board's power modes from the device profile and /etc/nvpmodel.conf.

    Examples:

        edgetrt power modes

        edgetrt power modes --profile orin-nx-16gb
    """
    controller = power_controller(profile=profile)
    modes = controller.list_modes()
    no_dla = controller.profile is not None and controller.profile.dla is None
    if not modes:
        raise PowerError("no power modes known: no /etc/nvpmodel.conf here; pass --profile NAME")
    table = Table("id", "name", "budget W", "CPUs", "CPU max MHz", "GPU max MHz", "EMC max MHz", "DLA max MHz", "source")
    for m in modes:
        table.add_row(
            f"{m.id}{' (default)' if m.is_default else ''}",
            m.name,
            "-" if m.budget_w is None else f"{m.budget_w:g}",
            "-" if m.online_cpus is None else str(m.online_cpus),
            _mhz(m.cpu_max_mhz),
            _mhz(m.gpu_max_mhz),
            _mhz(m.emc_max_mhz),
            "-" if no_dla else _mhz(m.dla_max_mhz),
            m.source,
        )
    console.print(table)


@power_app.command("set")
def set_command(
    mode: str = typer.Argument(..., help="Mode id or name (e.g. 0, MAXN, 15W)."),
    profile: str = _PROFILE,
    dry_run: bool = _DRY_RUN,
) -> None:
    """Switch the power mode (live switches only; modes that need a reboot are refused).

    Examples:

        sudo edgetrt power set 0

        sudo edgetrt power set 15W --profile orin-nano-8gb

        edgetrt power set MAXN --dry-run
    """
    target = power_controller(dry_run, profile).set_mode(mode)
    if not dry_run:
        console.print(f"power mode set to {target.name} (id {target.id})")


@power_app.command("clocks")
def clocks_command(
    action: str = typer.Argument(..., help="on | off | restore | show", metavar="on|off|restore|show"),
    file: Path = typer.Option(None, "--file", help="Snapshot file for on/restore \\[default: /var/lib/edgetrt/jetson_clocks.conf]."),
    dry_run: bool = _DRY_RUN,
) -> None:
    """Pin clocks to the mode's maxima (on), undo it (off), restore a snapshot, or show them.

    `on` first stores the current settings so `off` can put them back.

    Examples:

        sudo edgetrt power clocks on

        sudo edgetrt power clocks off

        edgetrt power clocks on --dry-run
    """
    controller = power_controller(dry_run)
    if action == "on":
        controller.clocks_store(file)
        controller.clocks_lock()
    elif action in ("off", "restore"):
        controller.clocks_restore(file)
        if action == "off" and not dry_run:
            (file or controller.clocks_store_file).unlink(missing_ok=True)
    elif action == "show":
        console.print(controller.clocks_show(), highlight=False, markup=False)
    else:
        raise EdgeError(f"unknown clocks action '{action}'; use on, off, restore or show")


def _print_summary(summary: dict, out_dir: Path) -> None:
    from edge.power.report import format_summary

    for line in format_summary(summary):
        console.print(line, highlight=False)
    for warning in summary["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    console.print(f"report: {out_dir / 'report.html'}, {out_dir / 'report.json'}")


@app.command("profile")
def profile_command(
    engine_path: Path = typer.Argument(..., help="Engine file to benchmark.", show_default=False),
    duration: float = typer.Option(30.0, "--duration", help="Benchmark length in seconds."),
    power_mode: str = typer.Option(None, "--power-mode", help="Switch to this nvpmodel mode for the run, then back."),
    lock_clocks: bool = typer.Option(False, "--lock-clocks", help="Pin clocks with jetson_clocks for the run, then restore."),
    interval: int = typer.Option(100, "--interval", help="Telemetry sampling period in ms."),
    sampler: str = typer.Option("auto", "--sampler", help="auto, tegrastats, jtop, nvml or psutil."),
    report: Path = typer.Option(..., "--report", help="Directory for report.html and report.json."),
    allow_mismatch: bool = ALLOW_MISMATCH,
) -> None:
    """Benchmark an engine while sampling power, clocks and temperatures; write a report.

    Prints throughput, p50/p90/p99 latency, average power, energy per inference (mJ),
    inferences per joule and peak temperature, and warns when clocks dropped or the power
    mode is not the one asked for. Power mode and clocks are restored afterwards, also on Ctrl-C.

    Examples:

        edgetrt profile resnet50.engine --duration 30 --report out/

        sudo edgetrt profile yolo.engine --power-mode MAXN --lock-clocks --interval 50 --report out/
    """
    from edge.cli.bench import measure
    from edge.power.report import BenchData, align_bench, write_report
    from edge.power.samplers import make_sampler
    from edge.runtime.bench import BenchConfig

    if duration <= 0:
        raise EdgeError(f"--duration must be positive, got {duration}")
    engine = load_engine(engine_path, allow_mismatch)
    profile_name = engine.header.get("profile")
    controller = power_controller(profile=profile_name)
    on_jetson = controller.is_jetson()
    if (power_mode or lock_clocks) and not on_jetson:
        raise PowerError("--power-mode / --lock-clocks need a Jetson (nvpmodel and jetson_clocks exist only there)")
    telemetry = make_sampler(sampler, interval)
    session = controller.session(power_mode, lock_clocks) if (power_mode or lock_clocks) else nullcontext(None)
    with session as mode_in_force:
        actual = mode_in_force or (controller.query_mode() if on_jetson else None)
        t0 = time.perf_counter()
        telemetry.start(t0)
        try:
            result = measure(engine, BenchConfig(duration_s=duration))  # with a progress bar on a terminal
            finished = time.perf_counter() - t0
        finally:
            samples = telemetry.stop()
    bench = align_bench(BenchData.from_result(result), finished)
    requested = None
    if power_mode is not None:
        wanted = controller.resolve_mode(power_mode)
        # A bare id with no mode table to name it: name it after what nvpmodel reports for that id.
        requested = actual.name if actual is not None and wanted.id == actual.id else wanted.name
    elif engine.header.get("power_mode"):
        requested = str(engine.header["power_mode"])
    meta = {
        "title": f"edgetrt profile: {engine_path.name}",
        "engine": str(engine_path),
        "profile": profile_name,
        "precision": engine.header.get("precision"),
        "sampler": telemetry.name,
        "interval_ms": interval,
        "duration_s": duration,
        "clocks_locked": lock_clocks,
        "sampler_error": telemetry.error,
    }
    summary = write_report(
        report, samples, bench, meta=meta, power_mode_requested=requested, power_mode_actual=actual.name if actual else None
    )
    _print_summary(summary, report)


@telemetry_app.command("report")
def telemetry_report_command(
    log: Path = typer.Argument(..., help="tegrastats log (tegrastats --logfile, or its redirected output).", show_default=False),
    report: Path = typer.Option(..., "--report", help="Directory for report.html and report.json."),
    interval: int = typer.Option(None, "--interval", help="Sampling period of the log in ms \\[default: from timestamps, else 1000]."),
    session: int = typer.Option(
        None, "--session", help="Which recording session of the log to report (1 = oldest); a pause over 10 min starts one \\[default: the last]."
    ),
    window: str = typer.Option(
        None, "--window", help="Benchmark window START:END, seconds from the session's start: shaded on the plots, statistics inside it.", show_default=False
    ),
) -> None:
    """Make the profiling report (telemetry only) from a tegrastats log recorded elsewhere.

    A log that `tegrastats --logfile` appended to across runs holds several sessions; the
    report covers one (the last unless --session says), never an average across the pauses.

    Examples:

        edgetrt telemetry report tegrastats.log --report out/

        edgetrt telemetry report run.log --session 1 --window 10:70 --report out/
    """
    from edge.power.report import summarize, write_report
    from edge.power.tegrastats import read_log

    recording = read_log(log, interval_ms=interval)
    sessions = recording.sessions
    chosen = len(sessions) if session is None else session
    if not 1 <= chosen <= len(sessions):
        raise TelemetryError(f"--session {session}: '{log}' holds {len(sessions)} session(s), numbered 1-{len(sessions)}")
    bounds = _window(window)
    overview = [_session_overview(index, samples, summarize(samples)) for index, samples in enumerate(sessions, start=1)]
    meta = {
        "title": f"edgetrt telemetry: {log.name}" + (f" (session {chosen} of {len(sessions)})" if len(sessions) > 1 else ""),
        "log": str(log),
        "malformed_lines": recording.malformed,
        "session": chosen,
        "sessions": overview,
        "window_s": list(bounds) if bounds else None,
    }
    summary = write_report(report, sessions[chosen - 1], meta=meta, window=bounds)
    if recording.malformed:
        console.print(f"skipped {recording.malformed} lines that are not tegrastats output")
    if len(sessions) > 1:
        console.print(f"'{log.name}' holds {len(sessions)} recording sessions; reporting session {chosen} (pick one with --session):")
        for entry in overview:
            console.print(
                f"  {entry['session']}: {entry['start']} .. {entry['end']}, {entry['samples']} samples, average power "
                + ("n/a" if entry["avg_power_w"] is None else f"{entry['avg_power_w']:.2f} W"),
                highlight=False,
            )
    _print_summary(summary, report)


def _window(text: str | None) -> tuple[float, float] | None:
    """``"10:70"`` -> (10.0, 70.0)."""
    if text is None:
        return None
    try:
        start, end = (float(part) for part in text.split(":"))
    except ValueError:
        raise TelemetryError(f"--window '{text}' is not START:END in seconds (e.g. 10:70)") from None
    if not 0 <= start < end:
        raise TelemetryError(f"--window '{text}': START must be >= 0 and below END")
    return start, end


def _session_overview(index: int, samples: list, summary: dict) -> dict:
    """One line of the sessions table: when it ran, how many samples, its own average power."""
    stamps = [s.wallclock for s in samples if s.wallclock is not None]
    return {
        "session": index,
        "start": stamps[0].isoformat(sep=" ") if stamps else None,
        "end": stamps[-1].isoformat(sep=" ") if stamps else None,
        "samples": len(samples),
        "duration_s": samples[-1].time_s - samples[0].time_s,
        "avg_power_w": summary["avg_power_w"],
    }


@telemetry_app.command("record")
def telemetry_record_command(
    output: Path = typer.Option(..., "--output", "-o", help="Log file to write (raw tegrastats lines)."),
    duration: float = typer.Option(10.0, "--duration", help="Seconds to record."),
    interval: int = typer.Option(100, "--interval", help="Sampling period in ms."),
) -> None:
    """Record tegrastats output to a log for `edgetrt telemetry report`.

    Examples:

        sudo edgetrt telemetry record -o run.log --duration 60 --interval 100
    """
    from edge.power.samplers import TegrastatsSampler

    if duration <= 0:
        raise TelemetryError(f"--duration must be positive, got {duration}")
    sampler = TegrastatsSampler(interval, logfile=output)
    with sampler:
        time.sleep(duration)
    console.print(f"recorded {len(sampler.samples)} samples to {output}")
