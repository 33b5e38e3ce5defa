"""systemd's sd_notify protocol: READY/WATCHDOG/STOPPING datagrams to ``$NOTIFY_SOCKET``.

The protocol is one ``AF_UNIX`` datagram of newline-separated ``KEY=VALUE`` lines sent to the
socket systemd names in ``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace).
Outside systemd the variable is unset and every call is a no-op.
"""

from __future__ import annotations

import os
import socket

__all__ = ["notify", "watchdog_interval_s"]


def notify(message: str) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``); True if a socket was configured and took it."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Never block the event loop: a receiver that stops reading fills its queue.
            sock.setblocking(False)
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True


def watchdog_interval_s() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of ``$WATCHDOG_USEC``), None when not requested.

    ``$WATCHDOG_PID``, when set, must be this process: the watchdog is meant for the main PID.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6
