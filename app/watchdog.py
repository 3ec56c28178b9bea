"""Tells systemd how Parley is doing (sd_notify), so a dead or frozen Parley is restarted.

Under `packaging/parley.service` (Type=notify, WatchdogSec=) systemd hands Parley a socket
($NOTIFY_SOCKET) and a watchdog period ($WATCHDOG_USEC). Parley says READY=1 once its
models are loaded, then WATCHDOG=1 every half period from a task on its own event loop:
the pings prove the loop runs, so a loop that stalls stops them and systemd kills and
restarts Parley. Until it is ready, the same task keeps extending the start timeout
(EXTEND_TIMEOUT_USEC), so a slow model load or a kiosk waiting for a model download is not
killed while its loop is alive. Outside systemd every call here does nothing.

The protocol is one datagram per message to an AF_UNIX socket (a leading '@' names the
abstract namespace); it is small enough that a library for it would not pay its way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Watchdog:
    """One per process: `start()` on the running loop early, `ready()` once the models are
    loaded, `stopping()` on the way out."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.interval_s = _interval_s(env) if self.address else None
        self.is_ready = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin the periodic messages on the running loop (nothing without a watchdog)."""
        if self.interval_s is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._keep_alive())

    def ready(self) -> None:
        """Start-up is done: systemd's start job ends and its watchdog clock begins."""
        self.is_ready = True
        self._send("READY=1")
        if self.interval_s is not None:
            self._send("WATCHDOG=1")

    def stopping(self) -> None:
        """Parley is closing on purpose: no more pings, and systemd is told why."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._send("STOPPING=1")

    async def _keep_alive(self) -> None:
        assert self.interval_s is not None
        extend_us = int(self.interval_s * 2 * 1_000_000)
        while True:
            self._send("WATCHDOG=1" if self.is_ready else f"EXTEND_TIMEOUT_USEC={extend_us}")
            await asyncio.sleep(self.interval_s)

    def _send(self, message: str) -> None:
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message.encode(), self.address)
        except OSError as err:  # systemd gone (shutting down): nothing to tell, nothing to fix
            log.debug("sd_notify %s failed: %s", message, err)


def _address(notify_socket: str) -> str:
    """The socket address to send to: Linux spells an abstract one with a leading NUL."""
    if notify_socket.startswith("@"):
        return "\0" + notify_socket[1:]
    return notify_socket if notify_socket.startswith("/") else ""


def _interval_s(env: Mapping[str, str]) -> float | None:
    """Half the watchdog period, as sd_watchdog_enabled() reads it; None without one, or
    when it was meant for another process (WATCHDOG_PID, inherited by a child)."""
    with contextlib.suppress(ValueError):
        period_us = int(env.get("WATCHDOG_USEC", ""))
        pid = env.get("WATCHDOG_PID")
        if period_us > 0 and (pid is None or int(pid) == os.getpid()):
            return period_us / 2 / 1_000_000
    return None
