"""``edgetrt partition`` (DLA/GPU placement report) and ``edgetrt profiles list|show``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

import edge
from edge.cli.app import app, console
from edge.cli.options import (
    BEST,
    DLA_CORE,
    DLA_OBJECTIVE,
    FP16,
    GPU_FALLBACK,
    INT8,
    POWER_MODE,
    precision_from_flags,
)
from edge.errors import ProfileError
from edge.fileio import write_atomic
from edge.partitioner import PartitionOptions
from edge.partitioner.report import PartitionReport, build_report
from edge.profiles import DeviceProfile, list_profiles, load_profile

__all__ = ["partition_command", "profiles_list_command", "profiles_show_command"]

profiles_app = typer.Typer(
    help="List and show device profiles.\n\nExamples:\n\n    edgetrt profiles list\n\n    edgetrt profiles show orin-nx-16gb",
    no_args_is_help=True,
)
app.add_typer(profiles_app, name="profiles")


@app.command("partition")
def partition_command(
    model: Path = typer.Argument(..., help="ONNX model to partition.", show_default=False),
    profile: str = typer.Option("agx-orin-64gb", "--profile", help="Device profile name or YAML path."),
    dla: int = DLA_CORE,
    gpu_fallback: bool = GPU_FALLBACK,
    int8: bool = INT8,
    fp16: bool = FP16,
    best: bool = BEST,
    power_mode: str = POWER_MODE,
    dla_objective: str = DLA_OBJECTIVE,
    latency_budget_ms: float = typer.Option(None, "--latency-budget-ms", help="Latency bound for the offload and energy objectives."),
    greedy: bool = typer.Option(False, "--greedy", help="Apply TensorRT's greedy placement instead of the optimized one."),
    no_optimize: bool = typer.Option(False, "--no-optimize", help="Partition the graph as imported, without the optimizer."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables."),
    html_file: Path = typer.Option(None, "--html", help="Also write a self-contained HTML report to this file."),
) -> None:
    """Show which layers run on the DLA and which on the GPU, why, and what it costs.

    Examples:

        edgetrt partition resnet50.onnx --profile agx-orin-64gb --dla 0 --gpu-fallback --int8

        edgetrt partition yolo.onnx --profile orin-nx-16gb --dla 1 --gpu-fallback --power-mode 15W --html yolo.html

        edgetrt partition yolo.onnx --dla 0 --gpu-fallback --int8 --dla-objective offload --latency-budget-ms 5

        edgetrt partition model.onnx --profile board.yaml --dla 0 --json
    """
    device_profile = load_profile(profile)
    precision = precision_from_flags(fp16, int8, best)
    options = PartitionOptions(
        dla_core=dla,
        gpu_fallback=gpu_fallback,
        precision=precision,
        power_mode=power_mode,
        objective=dla_objective,
        latency_budget_ms=latency_budget_ms,
        algorithm="greedy" if greedy else "optimized",
    )
    graph = edge.load_onnx(model)
    if not no_optimize:
        from edge.passes import optimize

        optimize(graph)
    report = build_report(graph, device_profile, options, model=model.name)
    if html_file is not None:
        write_atomic(html_file, report.to_html())
    if as_json:
        console.print_json(report.to_json())
        return
    _print_report(report)
    if html_file is not None:
        console.print(f"wrote {html_file}")


def _print_report(report: PartitionReport) -> None:
    layers = Table(title=f"{report.model} on {report.device}", title_justify="left")
    for column in ("layer", "op", "device", "precision", "reason"):
        layers.add_column(column, overflow="fold")
    colours = {"dla": "green", "gpu": "blue", "cpu": "dim"}
    for row in report.rows:
        device = f"[{colours[row['device']]}]{row['device']}[/]"
        layers.add_row(row["layer"], row["op"], device, row["precision"], row["reason"] or "")
    console.print(layers)
    summary = Table(title="Summary (latencies are cost-model estimates, not measurements)", show_header=False, title_justify="left")
    summary.add_column("key")
    summary.add_column("value")
    for key, value in report.summary.items():
        summary.add_row(key, "-" if value is None else str(value))
    console.print(summary)
    if report.per_mode:
        modes = Table(title="Estimated latency per power mode (ms)", title_justify="left")
        for key in report.per_mode[0]:
            modes.add_column(key)
        for row in report.per_mode:
            modes.add_row(*(str(v) for v in row.values()))
        console.print(modes)
    for suggestion in report.suggestions:
        console.print(f"[yellow]suggestion:[/yellow] {suggestion}", highlight=False)
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)


@profiles_app.command("list")
def profiles_list_command() -> None:
    """List the bundled device profiles.

    Examples:

        edgetrt profiles list
    """
    table = Table(title="Device profiles (details: edgetrt profiles show NAME)", title_justify="left")
    table.add_column("name", no_wrap=True)
    for column in ("module", "memory", "GPU", "DLA", "modes"):
        table.add_column(column, overflow="fold")
    for name in list_profiles():
        try:
            p = load_profile(name)
        except ProfileError as exc:  # desktop-cuda without a GPU: list it with the reason
            table.add_row(name, f"[dim]{exc}[/dim]", "", "", "", "")
            continue
        gpu = f"sm_{p.gpu.compute_capability.replace('.', '')}, {p.gpu.sms} SMs" if p.gpu is not None else "-"
        dla = f"{p.dla.cores} x v{p.dla.version}" if p.dla is not None else "none"
        table.add_row(name, p.module, f"{p.memory_gb:g} GB", gpu, dla, str(len(p.power_modes)))
    console.print(table)


@profiles_app.command("show")
def profiles_show_command(name: str = typer.Argument(..., help="Profile name or YAML path.", show_default=False)) -> None:
    """Show one profile: memory, GPU, DLA, power modes and tegrastats rails.

    Examples:

        edgetrt profiles show agx-orin-64gb

        edgetrt profiles show ./my-board.yaml
    """
    p = load_profile(name)
    facts = Table(title=f"{p.name}: {p.module}", show_header=False, title_justify="left")
    facts.add_column("key")
    facts.add_column("value")
    facts.add_row("source", p.source)
    facts.add_row("memory", f"{p.memory_gb:g} GB, {p.memory_bandwidth_gbps:g} GB/s")
    facts.add_row("CPU", f"{p.cpu.cores} x {p.cpu.arch or 'cpu'} @ {p.cpu.max_mhz:g} MHz")
    facts.add_row("GPU", _gpu_text(p))
    facts.add_row("DLA", _dla_text(p))
    facts.add_row("tegrastats rails", ", ".join(p.tegrastats_rails) or "-")
    console.print(facts)
    modes = Table(title="Power modes (nvpmodel)", title_justify="left")
    for column in ("id", "name", "budget W", "CPUs", "CPU MHz", "GPU MHz", "TPCs", "DLA MHz", "EMC MHz"):
        modes.add_column(column, no_wrap=column == "name")
    for m in p.power_modes:
        default = " (default)" if m.id == p.default_power_mode else ""
        modes.add_row(
            str(m.id), m.name + default, _num(m.budget_w), str(m.online_cpus), _num(m.cpu_max_mhz),
            _num(m.gpu_max_mhz), _num(m.gpu_tpcs), _num(m.dla_max_mhz), _num(m.emc_max_mhz),
        )
    console.print(modes)


def _num(value: float | int | None) -> str:
    return "-" if value is None else f"{value:g}"


def _gpu_text(p: DeviceProfile) -> str:
    if p.gpu is None:
        return "-"
    g = p.gpu
    return f"sm_{g.compute_capability.replace('.', '')}, {g.sms} SMs @ {g.max_mhz:g} MHz, {g.peak_fp16_tflops:g} FP16 TFLOPS, {g.peak_int8_tops:g} INT8 TOPS"


def _dla_text(p: DeviceProfile) -> str:
    if p.dla is None:
        return "none"
    d = p.dla
    return f"{d.cores} x v{d.version} @ {d.max_mhz:g} MHz, {d.peak_int8_tops:g} INT8 TOPS/core, {d.sram_kb} KB SRAM"
