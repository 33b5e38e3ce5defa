"""Connection hygiene for the HTTP server: a header-read timeout and a cap on open connections.

Without both, clients that open TCP connections and never finish a request header (half-open
or slowloris connections) pile up until the process runs out of file descriptors, and then no
client gets in. :class:`GuardedHttpProtocol` is uvicorn's httptools protocol plus two rules:

* a request's header must arrive within ``header_timeout_s`` of the connection opening (or of
  its first byte, on a kept-alive connection), and its body may not stall (no bytes) for longer
  than that either, else the connection is closed: a complete header with a body that never
  comes would otherwise keep the connection busy, beyond eviction, for ever;
* when a new connection would exceed ``max_connections``, the oldest connection that is not
  running a request is closed to make room (half-open ones are idle by definition), so a
  well-behaved client always gets in; only when every connection is busy is the new one shut.
"""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from edge.serve.protocol import ServeError

__all__ = ["ConnectionLimits", "GuardedHttpProtocol", "ensure_file_descriptors"]

# Descriptors beyond the connections: the listening sockets, engine files, the telemetry child,
# thread-pool pipes, log files.
_RESERVED_FDS = 64


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections may be open at once and how long a request header may take."""

    max_connections: int
    header_timeout_s: float


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the header timeout and connection cap described above."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._opened_ns = time.monotonic_ns()
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections and not self._evict_idle():
            self.transport.close()
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:  # a kept-alive connection starting its next request
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()
        self._arm_header_timer()  # now the body's stall timer, restarted by every chunk

    def on_body(self, body: bytes) -> None:
        self._disarm_header_timer()
        super().on_body(body)
        self._arm_header_timer()

    def on_message_complete(self) -> None:
        self._disarm_header_timer()
        super().on_message_complete()

    @property
    def busy(self) -> bool:
        """True while a request on this connection has its header read and no response sent."""
        return self.cycle is not None and not self.cycle.response_complete

    def _evict_idle(self) -> bool:
        idle = [c for c in self.connections if c is not self and isinstance(c, GuardedHttpProtocol) and not c.busy]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c._opened_ns)
        oldest.transport.close()
        self.connections.discard(oldest)  # connection_lost follows on the next loop turn
        return True

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self._limits.header_timeout_s, self._header_timed_out)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def ensure_file_descriptors(max_connections: int) -> None:
    """Raise the soft open-file limit so ``max_connections`` sockets fit; refuse if the hard one can't.

    Raises:
        ServeError: the hard limit (systemd's ``LimitNOFILE=``, ``ulimit -Hn``) is too low.
    """
    needed = max_connections + _RESERVED_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise ServeError(
                500,
                f"--max-connections {max_connections} needs {needed} open files but the hard limit is {hard}; "
                "lower --max-connections or raise LimitNOFILE= / ulimit -Hn",
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
