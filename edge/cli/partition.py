"""``edgetrt partition`` (DLA/GPU placement report), ``edgetrt partition calibrate`` (refit the cost
model from trtexec profiles) and ``edgetrt profiles list|show``.

``partition`` is a group whose default command is the report, so ``edgetrt partition model.onnx``
and ``edgetrt partition calibrate run.json ...`` both work.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

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
    SHAPES,
    parse_shapes,
    precision_from_flags,
)
from edge.errors import EdgeError, ProfileError
from edge.fileio import write_atomic
from edge.ir import Graph
from edge.partitioner import PartitionOptions
from edge.partitioner.fit import FIT_BOUNDS, Observation, error_summary, fit_constants
from edge.partitioner.measured import ProfileMatch
from edge.partitioner.report import PartitionReport, build_report
from edge.partitioner.trtexec_layers import read_trtexec_layer_info
from edge.partitioner.trtexec_profile import read_trtexec_profile
from edge.frontend.onnx_import import load_model_proto
from edge.profiles import DeviceProfile, list_profiles, load_profile, profile_text, replace_cost_section

__all__ = ["partition_command", "calibrate_command", "profiles_list_command", "profiles_show_command"]


class _ReportByDefault(TyperGroup):
    """``edgetrt partition ARGS`` runs the report unless ARGS start with a subcommand name."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands:
            args = ["report", *args]
        return super().parse_args(ctx, args)


partition_app = typer.Typer(cls=_ReportByDefault, help="DLA/GPU placement report, and cost-model calibration.")
app.add_typer(partition_app, name="partition")
BATCH = typer.Option(None, "--batch", min=1, help="Batch size: the leading dimension of every input not given in --shapes.")

profiles_app = typer.Typer(
    help="List and show device profiles.\n\nExamples:\n\n    edgetrt profiles list\n\n    edgetrt profiles show orin-nx-16gb",
    no_args_is_help=True,
)
app.add_typer(profiles_app, name="profiles")


@partition_app.command("report", hidden=True)
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
    batch: int = BATCH,
    shapes: str = SHAPES,
    measured: Path = typer.Option(None, "--measured", help="A trtexec --exportProfile JSON of this model: report measured vs predicted."),
    layer_info: Path = typer.Option(None, "--layer-info", help="A trtexec --exportLayerInfo JSON of this model: report measured vs planned devices and precisions."),
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

        edgetrt partition resnet50.onnx --batch 8 --dla 0 --gpu-fallback --int8   (throughput of GPU + 2 DLAs)

        edgetrt partition resnet50.onnx --dla 0 --gpu-fallback --int8 --measured trtexec-profile.json

        edgetrt partition model.onnx --dla 0 --gpu-fallback --int8 --measured profile.json --layer-info layers.json   (an export-trt folder)

    Refit the cost model from trtexec profiles with ``edgetrt partition calibrate --help``.
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
    graph = _load(model, shapes, batch, not no_optimize)
    trtexec = read_trtexec_profile(measured) if measured is not None else None
    info = read_trtexec_layer_info(layer_info) if layer_info is not None else None
    report = build_report(graph, device_profile, options, model=model.name, measured=trtexec, layer_info=info)
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
    _print_rows(f"Estimated throughput at batch {report.batch}", report.throughput)
    if report.measured is not None:
        _print_rows(f"Measured ({report.measured['source']}) vs predicted per trtexec layer (ms)", report.measured["layers"])
        _print_rows("Measured vs predicted per segment (ms)", report.measured["segments"])
        if report.measured["unmatched_ir_layers"]:
            names = ", ".join(report.measured["unmatched_ir_layers"][:10])
            console.print(f"[yellow]note:[/yellow] IR layers no trtexec layer names: {names}", highlight=False)
        placement = report.measured["placement"]
        _print_rows(f"Measured ({report.measured.get('layer_info')}) vs planned device and precision", placement)
        differ = [row["layer"] for row in placement if row["agrees"] is False]
        if differ:
            console.print(f"[yellow]note:[/yellow] {len(differ)} engine layer(s) ran elsewhere or in another precision than planned: "
                          f"{escape(', '.join(differ[:5]))}", highlight=False)
    for suggestion in report.suggestions:
        console.print(f"[yellow]suggestion:[/yellow] {suggestion}", highlight=False)
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)


def _print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    table = Table(title=title, title_justify="left")
    for key in rows[0]:
        table.add_column(key, overflow="fold")
    for row in rows:
        table.add_row(*("-" if v is None else escape(str(v)) for v in row.values()))  # trtexec names hold [...]
    console.print(table)


def _load(model: Path, shapes: str | None, batch: int | None, optimized: bool) -> Graph:
    """Import the model with --shapes and --batch applied, optimized as ``edgetrt build`` does.

    ``--batch N`` sets the leading dimension of every input not in --shapes (also a fixed
    one: the model is re-batched, its outputs' batch left to shape inference)."""
    fixed = parse_shapes(shapes)
    source: Any = model
    if batch is not None:
        proto = load_model_proto(model)
        inits = {t.name for t in proto.graph.initializer}
        for value in proto.graph.input:
            if value.name in fixed or value.name in inits:
                continue
            dims = value.type.tensor_type.shape.dim
            if not dims:
                raise EdgeError(f"--batch {batch}: input '{value.name}' is a scalar; give its shape with --shapes")
            dims[0].Clear()
            dims[0].dim_value = batch
        for value in proto.graph.output:
            if value.type.tensor_type.shape.dim:
                value.type.tensor_type.shape.dim[0].Clear()
                value.type.tensor_type.shape.dim[0].dim_param = "batch"
        del proto.graph.value_info[:]
        source = proto
    graph = edge.load_onnx(source, input_shapes=fixed or None)
    if optimized:
        from edge.passes import optimize

        optimize(graph)
    return graph


@partition_app.command("calibrate")
def calibrate_command(
    profiles: list[Path] = typer.Argument(..., help="trtexec --exportProfile JSON files.", show_default=False),
    model: list[Path] = typer.Option(..., "--model", help="ONNX model the profiles ran (once for all, or once per profile in order)."),
    profile: str = typer.Option("agx-orin-64gb", "--profile", help="Device profile name or YAML path to start from."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the calibrated profile YAML."),
    dla: int = DLA_CORE,
    gpu_fallback: bool = GPU_FALLBACK,
    int8: bool = INT8,
    fp16: bool = FP16,
    best: bool = BEST,
    power_mode: str = POWER_MODE,
    batch: int = BATCH,
    shapes: str = SHAPES,
    no_optimize: bool = typer.Option(False, "--no-optimize", help="Use the graph as imported, without the optimizer."),
) -> None:
    """Refit the cost model's constants to your board from trtexec per-layer profiles.

    Run trtexec with the same flags you pass here, e.g.
    ``trtexec --onnx=m.onnx --int8 --useDLACore=0 --allowGPUFallback --separateProfileRun --exportProfile=run.json``;
    the constants the profiles exercise (GPU or DLA op classes, fixed costs, transitions) are
    refitted and written, with their source, into a copy of the profile.

    Examples:

        edgetrt partition calibrate run.json --model resnet50.onnx --int8 --profile orin-nx-16gb -o my-board.yaml

        edgetrt partition calibrate gpu.json dla.json --model m.onnx --model m.onnx --dla 0 --gpu-fallback --int8 -o my-board.yaml
    """
    if len(model) not in (1, len(profiles)):
        raise EdgeError(f"--model given {len(model)} times for {len(profiles)} profiles: give it once, or once per profile")
    device_profile = load_profile(profile)
    options = PartitionOptions(dla_core=dla, gpu_fallback=gpu_fallback, precision=precision_from_flags(fp16, int8, best),
                               power_mode=power_mode, objective="latency", algorithm="greedy")
    observations: list[Observation] = []
    names: set[str] = set()
    graphs: dict[Path, Graph] = {}
    for index, path in enumerate(profiles):
        model_path = model[index if len(model) > 1 else 0]
        if model_path not in graphs:
            graphs[model_path] = _load(model_path, shapes, batch, not no_optimize)
        match = ProfileMatch(graphs[model_path], device_profile, options, read_trtexec_profile(path))
        found = match.observations()
        if not found:
            raise EdgeError(f"{path}: no trtexec layer matched a layer of {model_path} (were both built from the same model?)")
        observations += found
        names |= _constants_for(match, device_profile)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    source = f"calibrate: edgetrt partition calibrate {' '.join(p.name for p in profiles)} ({stamp})"
    ordered = [n for n in FIT_BOUNDS if n in names]
    before = [(o.id, o.engine, o.measured, o.predict(device_profile.cost)) for o in observations]
    result = fit_constants(device_profile.cost, observations, ordered, source)
    write_atomic(output, replace_cost_section(profile_text(profile)[0], result.cost))
    table = Table(title=f"Calibration: {len(observations)} measured segments, {len(ordered)} constants refitted", title_justify="left")
    for column in ("engine", "rows", "median error before", "after", "worst before", "after"):
        table.add_column(column)
    was, now = error_summary(before), error_summary(result.rows)
    for engine in now:
        table.add_row(engine, f"{now[engine]['rows']:.0f}", f"{100 * was[engine]['median_error']:.1f} %", f"{100 * now[engine]['median_error']:.1f} %",
                      f"{was[engine]['worst_factor']:.2f}x", f"{now[engine]['worst_factor']:.2f}x")
    console.print(table)
    console.print(f"wrote {output} (refitted: {', '.join(ordered)})", highlight=False)


def _constants_for(match: ProfileMatch, profile: DeviceProfile) -> set[str]:
    """The constants a profile's measurements can inform: fixed costs and the op classes it timed."""
    names: set[str] = set()
    classes = match.op_classes()
    if "gpu" in match.engines():
        names |= {"gpu.launch_ms", "gpu.memory_eff"} | {f"gpu.eff_{c}" for c in classes}
    if "dla" in match.engines() and profile.dla is not None:
        dla_classes = {"gemm": "pointwise"}
        names |= {"dla.layer_ms", "dla.bandwidth_gbps", "dla.submit_ms"}
        names |= {f"dla.eff_{dla_classes.get(c, c)}" if c in ("conv", "pointwise", "depthwise", "stem", "gemm") else "dla.eff_other" for c in classes}
    if any(row.kind == "transition" for row in match.rows) and profile.dla is not None:
        names.add("dla.transition_sync_ms")
    return names


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
