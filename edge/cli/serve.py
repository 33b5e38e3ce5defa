"""``edgetrt serve``: serve engines or a Triton-style model repository over the KServe v2 / Triton protocol."""

from __future__ import annotations

from pathlib import Path

import typer

from edge.cli.app import app
from edge.cli.options import load_engine
from edge.errors import EdgeError

__all__ = ["serve_command", "parse_engine_arg"]


def parse_engine_arg(item: str) -> tuple[str, Path]:
    """``"NAME=PATH"`` -> (NAME, PATH); a bare ``PATH`` is named after its file stem."""
    name, sep, path = item.partition("=")
    if sep and name and path:
        return name, Path(path)
    return Path(item).stem, Path(item)


@app.command("serve")
def serve_command(
    engines: list[str] = typer.Argument(None, help="Engine files to serve, each PATH or NAME=PATH.", show_default=False),
    model_repository: Path = typer.Option(
        None, "--model-repository", envvar="EDGETRT_MODEL_REPOSITORY", show_default=False,
        help="Triton-style model repository: NAME/config.pbtxt and NAME/<version>/model.engine.",
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", envvar="EDGETRT_HOST", help="Address to bind; anything but loopback exposes the server."
    ),
    port: int = typer.Option(8000, "--port", envvar="EDGETRT_PORT", help="TCP port (0 picks a free one)."),
    metrics_port: int = typer.Option(
        None, "--metrics-port", envvar="EDGETRT_METRICS_PORT", show_default=False,
        help="Also serve /metrics on this port (Triton uses 8002).",
    ),
    max_batch: int = typer.Option(8, "--max-batch", envvar="EDGETRT_MAX_BATCH", help="Largest dynamic batch for engine files; 1 disables batching."),
    max_queue_delay_ms: float = typer.Option(
        1.0, "--max-queue-delay-ms", envvar="EDGETRT_MAX_QUEUE_DELAY_MS", help="Longest a request waits for a batch to fill."
    ),
    instances: int = typer.Option(1, "--instances", envvar="EDGETRT_INSTANCES", help="Execution contexts (threads) per engine file."),
    max_body_mb: float = typer.Option(64.0, "--max-body-mb", envvar="EDGETRT_MAX_BODY_MB", help="Largest request body; bigger gets 413."),
    max_queue: int = typer.Option(128, "--max-queue", envvar="EDGETRT_MAX_QUEUE", help="Queued requests per model before 503."),
    max_connections: int = typer.Option(
        1024, "--max-connections", envvar="EDGETRT_MAX_CONNECTIONS",
        help="Open connections at most; past it the oldest idle one is closed to let a new client in.",
    ),
    header_timeout_s: float = typer.Option(
        10.0, "--header-timeout-s", envvar="EDGETRT_HEADER_TIMEOUT_S",
        help="Seconds a client may take to send a request header, or leave its body stalled, before its connection is closed.",
    ),
    log_verbose: int = typer.Option(0, "--log-verbose", envvar="EDGETRT_LOG_VERBOSE", help="1 or more: log one line per request to stderr."),
    telemetry: bool = typer.Option(
        False, "--telemetry", envvar="EDGETRT_TELEMETRY",
        help="Export power, temperatures, clocks and GPU/DLA load (tegrastats, jtop, NVML or psutil) in /metrics.",
    ),
    allow_mismatch: bool = typer.Option(
        False, "--allow-mismatch", envvar="EDGETRT_ALLOW_MISMATCH",
        help="Serve engines built for another machine (board, power mode, GPU, versions), warning about each difference.",
    ),
) -> None:
    """Serve engines over HTTP with the KServe v2 / Triton protocol.

    Endpoints: /v2, /v2/health/live, /v2/health/ready, /v2/models/NAME (metadata) and its /ready,
    /config, /stats and /infer (optionally after /versions/N), Prometheus metrics at /metrics, and
    with --model-repository Triton's repository extension (/v2/repository/index, .../load, .../unload).
    In a repository, config.pbtxt sets batching and instances per model; the batching flags apply to
    engine files. SIGTERM drains in-flight requests, then exits. Every option can also be set
    through the environment variable shown.

    Examples:

        edgetrt serve resnet50.engine

        edgetrt serve det=yolo.engine cls=resnet50.engine --max-batch 16 --max-queue-delay-ms 2

        edgetrt serve --model-repository models/ --host 0.0.0.0 --metrics-port 8002 --telemetry
    """
    checks = {
        "--port": 0 <= port <= 65535,
        "--metrics-port": metrics_port is None or 0 <= metrics_port <= 65535,
        "--max-batch": max_batch >= 1,
        "--max-queue-delay-ms": max_queue_delay_ms >= 0,
        "--instances": instances >= 1,
        "--max-body-mb": max_body_mb > 0,
        "--max-queue": max_queue >= 1,
        "--max-connections": max_connections >= 1,
        "--header-timeout-s": header_timeout_s > 0,
        "--log-verbose": log_verbose >= 0,
    }
    bad = [flag for flag, ok in checks.items() if not ok]
    if bad:
        raise EdgeError(f"{bad[0]} is out of range (ports 0-65535, delay and log level >= 0, body and timeout > 0, the rest >= 1)")
    if not engines and model_repository is None:
        raise EdgeError("nothing to serve: give engine files or --model-repository DIR")
    if model_repository is not None and not model_repository.is_dir():
        raise EdgeError(f"model repository '{model_repository}' is not a folder")
    try:
        from edge.serve.app import ServeConfig
        from edge.serve.batcher import BatchingConfig
        from edge.serve.connections import ConnectionLimits
        from edge.serve.model import ServedModel
        from edge.serve.repository import Repository
        from edge.serve.server import serve
    except ImportError as exc:
        raise EdgeError(f"serving needs the 'serve' extra ({exc.name} is missing): pip install 'edgetrt[serve]'") from None
    import edge

    batching = BatchingConfig(max_batch, max_queue_delay_ms / 1000, instances, max_queue)
    models = []
    for item in engines or ():
        name, path = parse_engine_arg(item)
        if not path.is_file():
            raise EdgeError(f"engine file '{path}' does not exist")
        models.append(ServedModel.from_engine(load_engine(path, allow_mismatch), name, batching))
    config = ServeConfig(
        host=host,
        port=port,
        max_body_bytes=int(max_body_mb * (1 << 20)),
        connections=ConnectionLimits(max_connections, header_timeout_s),
        metrics_port=metrics_port,
        log_verbose=log_verbose,
    )
    extra_metrics = []
    sampler = None
    if telemetry:
        from edge.power.samplers import make_sampler
        from edge.serve.telemetry import TelemetryCollector

        sampler = make_sampler("auto", interval_ms=1000)
        extra_metrics.append(TelemetryCollector(sampler))
        sampler.start()

    def announce(bound_host: str, bound_port: int, state) -> None:
        # stderr, like the rest of the server's log; stdout stays free for scripts.
        served = [m for versions in state.models.values() for m in versions.values()]
        extras = f"; metrics also on :{state.metrics_port}" if state.metrics_port is not None else ""
        if sampler is not None:
            extras += f"; telemetry from {sampler.name}"
        names = ", ".join(sorted({m.name for m in served}))
        typer.echo(f"edgetrt: serving {names} on http://{bound_host}:{bound_port}{extras}; SIGTERM drains and exits", err=True)
        for model in served:
            typer.echo(f"edgetrt:   {model.name} v{model.version}: {model.describe_batching()}", err=True)

    repository = Repository(model_repository, max_queue, allow_mismatch) if model_repository is not None else None
    try:
        serve(models, config, repository=repository, extra_metrics=extra_metrics, on_ready=announce)
    finally:
        if sampler is not None:
            sampler.stop()
