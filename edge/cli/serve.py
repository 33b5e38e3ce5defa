"""``edgetrt serve``: serve engines over the KServe v2 / Triton HTTP protocol."""

from __future__ import annotations

from pathlib import Path

import typer

from edge.cli.app import app
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
    engines: list[str] = typer.Argument(..., help="Engine files to serve, each PATH or NAME=PATH.", show_default=False),
    host: str = typer.Option(
        "127.0.0.1", "--host", envvar="EDGETRT_HOST", help="Address to bind; anything but loopback exposes the server."
    ),
    port: int = typer.Option(8000, "--port", envvar="EDGETRT_PORT", help="TCP port (0 picks a free one)."),
    max_batch: int = typer.Option(8, "--max-batch", envvar="EDGETRT_MAX_BATCH", help="Largest dynamic batch; 1 disables batching."),
    max_queue_delay_ms: float = typer.Option(
        1.0, "--max-queue-delay-ms", envvar="EDGETRT_MAX_QUEUE_DELAY_MS", help="Longest a request waits for a batch to fill."
    ),
    instances: int = typer.Option(1, "--instances", envvar="EDGETRT_INSTANCES", help="Execution contexts (threads) per model."),
    max_body_mb: float = typer.Option(64.0, "--max-body-mb", envvar="EDGETRT_MAX_BODY_MB", help="Largest request body; bigger gets 413."),
    max_queue: int = typer.Option(128, "--max-queue", envvar="EDGETRT_MAX_QUEUE", help="Queued requests per model before 503."),
    max_connections: int = typer.Option(
        1024, "--max-connections", envvar="EDGETRT_MAX_CONNECTIONS",
        help="Open connections at most; past it the oldest idle one is closed to let a new client in.",
    ),
    header_timeout_s: float = typer.Option(
        10.0, "--header-timeout-s", envvar="EDGETRT_HEADER_TIMEOUT_S",
        help="Seconds a client may take to send a request header before its connection is closed.",
    ),
) -> None:
    """Serve engines over HTTP with the KServe v2 / Triton protocol.

    Endpoints: /v2, /v2/health/live, /v2/health/ready, /v2/models/NAME (metadata) and its /ready,
    /config, /stats and /infer (optionally after /versions/1), and Prometheus metrics at /metrics.
    SIGTERM drains in-flight requests, then exits. Every option can also be set through the
    environment variable shown.

    Examples:

        edgetrt serve resnet50.engine

        edgetrt serve det=yolo.engine cls=resnet50.engine --max-batch 16 --max-queue-delay-ms 2

        edgetrt serve model.engine --host 0.0.0.0 --port 8000 --instances 2
    """
    checks = {
        "--port": 0 <= port <= 65535,
        "--max-batch": max_batch >= 1,
        "--max-queue-delay-ms": max_queue_delay_ms >= 0,
        "--instances": instances >= 1,
        "--max-body-mb": max_body_mb > 0,
        "--max-queue": max_queue >= 1,
        "--max-connections": max_connections >= 1,
        "--header-timeout-s": header_timeout_s > 0,
    }
    bad = [flag for flag, ok in checks.items() if not ok]
    if bad:
        raise EdgeError(f"{bad[0]} is out of range (port 0-65535, delay >= 0, body and timeout > 0, the rest >= 1)")
    try:
        from edge.serve.app import ServeConfig
        from edge.serve.batcher import BatchingConfig
        from edge.serve.connections import ConnectionLimits
        from edge.serve.model import ServedModel
        from edge.serve.server import serve
    except ImportError as exc:
        raise EdgeError(f"serving needs the 'serve' extra ({exc.name} is missing): pip install 'edgetrt[serve]'") from None
    import edge

    models = []
    for item in engines:
        name, path = parse_engine_arg(item)
        if not path.is_file():
            raise EdgeError(f"engine file '{path}' does not exist")
        models.append(ServedModel(edge.load(path), name))
    names = [m.name for m in models]
    config = ServeConfig(
        host=host,
        port=port,
        batching=BatchingConfig(max_batch, max_queue_delay_ms / 1000, instances, max_queue),
        max_body_bytes=int(max_body_mb * (1 << 20)),
        connections=ConnectionLimits(max_connections, header_timeout_s),
    )

    def announce(bound_host: str, bound_port: int) -> None:
        # stderr, like the rest of the server's log; stdout stays free for scripts.
        typer.echo(
            f"edgetrt: serving {', '.join(names)} on http://{bound_host}:{bound_port} "
            f"(max batch {max_batch}, delay {max_queue_delay_ms:g} ms, {instances} instance(s)); SIGTERM drains and exits",
            err=True,
        )

    serve(models, config, on_ready=announce)
