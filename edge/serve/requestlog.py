"""``--log-verbose``: one log line per HTTP request (client, method, path, status, bytes, time)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

__all__ = ["RequestLog", "LOGGER_NAME", "enable_request_log"]

LOGGER_NAME = "edgetrt.serve.requests"
_log = logging.getLogger(LOGGER_NAME)


def enable_request_log() -> None:
    """Send request lines to stderr (where the rest of the server's log goes)."""
    if not _log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s edgetrt: %(message)s"))
        _log.addHandler(handler)
    _log.setLevel(logging.INFO)
    _log.propagate = False


class RequestLog:
    """ASGI middleware that logs each request once its response has been sent."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status, sent = 500, 0

        async def logged_send(message: dict) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, logged_send)
        finally:
            client = scope.get("client") or ("-", 0)
            _log.info(
                "%s:%s %s %s %d %d B %.2f ms",
                client[0], client[1], scope["method"], scope["path"], status, sent, (time.perf_counter() - start) * 1e3,
            )
