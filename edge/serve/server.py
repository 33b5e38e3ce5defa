"""Running the app under uvicorn: listening socket, systemd notifications, graceful SIGTERM drain."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import uvicorn

from edge.serve import sdnotify
from edge.serve.app import ServeConfig, ServerState, create_app, create_metrics_app
from edge.serve.connections import GuardedHttpProtocol, ensure_file_descriptors
from edge.serve.model import ServedModel
from edge.serve.protocol import ServeError
from edge.serve.repository import Repository
from edge.serve.requestlog import enable_request_log

__all__ = ["listen", "serve", "uvicorn_config"]


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (port 0 picks a free one).

    Raises:
        ServeError: the address cannot be resolved or bound, in one line.
    """
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise ServeError(500, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def uvicorn_config(app: object, config: ServeConfig, lifespan: str = "on") -> uvicorn.Config:
    """uvicorn's settings for ``app``: guarded connections, no access log, graceful drain."""
    return uvicorn.Config(
        app,
        http=functools.partial(GuardedHttpProtocol, limits=config.connections),
        log_level="warning",
        access_log=False,
        lifespan=lifespan,
        server_header=False,
        timeout_graceful_shutdown=config.drain_timeout_s,
    )


class MetricsServer(uvicorn.Server):
    """The metrics port's server: it runs beside the main one, which owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Server(uvicorn.Server):
    """uvicorn's server plus sd_notify READY/WATCHDOG/STOPPING and the metrics port around its lifecycle."""

    def __init__(
        self,
        config: uvicorn.Config,
        on_ready: Callable[[str, int, ServerState], None] | None,
        metrics: tuple[MetricsServer, socket.socket] | None,
    ) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self._metrics = metrics
        self._metrics_task: asyncio.Task | None = None
        self._watchdog: asyncio.Task | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit:
            return
        if self._metrics is not None:
            server, sock = self._metrics
            self._metrics_task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started and not self._metrics_task.done():
                await asyncio.sleep(0.01)
        interval = sdnotify.watchdog_interval_s()
        if interval is not None:
            self._watchdog = asyncio.create_task(_ping_watchdog(interval))
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        sdnotify.notify(f"READY=1\nSTATUS=serving on {host}:{port}")
        if self._on_ready is not None:
            self._on_ready(host, port, self.config.app.state.edgetrt)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        sdnotify.notify("STOPPING=1\nSTATUS=draining in-flight requests")
        await super().shutdown(sockets=sockets)
        if self._metrics is not None and self._metrics_task is not None:
            self._metrics[0].should_exit = True
            await self._metrics_task
        if self._watchdog is not None:
            self._watchdog.cancel()


async def _ping_watchdog(interval_s: float) -> None:
    # Pinging from the event loop ties the watchdog to the loop staying responsive.
    while True:
        sdnotify.notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)


def serve(
    models: Sequence[ServedModel],
    config: ServeConfig,
    *,
    repository: Repository | None = None,
    extra_metrics: Sequence[Any] = (),
    sock: socket.socket | None = None,
    on_ready: Callable[[str, int, ServerState], None] | None = None,
) -> None:
    """Serve ``models`` and ``repository`` until SIGTERM/SIGINT, draining in-flight requests.

    Args:
        models: engine files' models to serve.
        config: host/port (unless ``sock`` is given), limits, metrics port, request log.
        repository: a Triton-style model repository whose models are all loaded at start.
        extra_metrics: prometheus-client collectors added to ``/metrics`` (telemetry).
        sock: an already listening socket, e.g. from :func:`listen` with port 0.
        on_ready: called with the bound host, port and server state once requests are accepted.

    SIGTERM stops accepting connections, lets every in-flight request finish (up to
    ``config.drain_timeout_s``), then returns normally, so a service stop exits 0.
    """
    app = create_app(models, config, repository, extra_metrics)  # checks the models before anything is bound
    ensure_file_descriptors(config.connections.max_connections)
    if config.log_verbose > 0:
        enable_request_log()
    sock = sock or listen(config.host, config.port)
    metrics = None
    if config.metrics_port is not None:
        metrics_app = create_metrics_app(app.state.edgetrt)
        metrics = (MetricsServer(uvicorn_config(metrics_app, config, lifespan="off")), listen(config.host, config.metrics_port))
        app.state.edgetrt.metrics_port = metrics[1].getsockname()[1]
    server = _Server(uvicorn_config(app, config), on_ready, metrics)
    in_main = threading.current_thread() is threading.main_thread()
    # uvicorn re-raises the signal it caught once it has drained; a no-op handler makes that
    # a normal return (exit 0) instead of death by SIGTERM.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None) if in_main else None
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        if metrics is not None:
            metrics[1].close()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    if not server.started:
        raise ServeError(500, "the server failed to start; see the log above")
