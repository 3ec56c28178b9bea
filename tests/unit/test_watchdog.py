"""app/watchdog.py against a real AF_UNIX datagram socket standing in for systemd's.

Both spellings of $NOTIFY_SOCKET systemd uses are covered: a path, and an abstract name
('@…'). The messages and their pace are read from the socket, as systemd would.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.watchdog import Watchdog


class NotifySocket:
    """A bound datagram socket, and the environment systemd would give its service."""

    def __init__(self, address: str, spelling: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(5)
        self.env = {"NOTIFY_SOCKET": spelling}

    def receive(self) -> str:
        return self.sock.recv(4096).decode()

    def pending(self) -> list[str]:
        """Everything sent so far, without waiting for more."""
        self.sock.setblocking(False)
        try:
            got = []
            while True:
                try:
                    got.append(self.receive())
                except BlockingIOError:
                    return got
        finally:
            self.sock.settimeout(5)


@pytest.fixture(params=["path", "abstract"])
def notify(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifySocket]:
    if request.param == "path":
        path = str(tmp_path / "notify")
        server = NotifySocket(path, path)
    else:
        name = f"parley-test-notify-{os.getpid()}-{time.monotonic_ns()}"
        server = NotifySocket("\0" + name, "@" + name)
    yield server
    server.sock.close()


def watchdog_env(notify: NotifySocket, period_us: int, pid: int | None = None) -> dict[str, str]:
    env = dict(notify.env, WATCHDOG_USEC=str(period_us))
    if pid is not None:
        env["WATCHDOG_PID"] = str(pid)
    return env


def test_ready_and_stopping_are_told(notify: NotifySocket) -> None:
    watchdog = Watchdog(notify.env)  # Type=notify with no WatchdogSec: no pings
    assert watchdog.interval_s is None
    watchdog.ready()
    watchdog.stopping()
    assert notify.pending() == ["READY=1", "STOPPING=1"]


def test_the_interval_is_half_the_watchdog_period(notify: NotifySocket) -> None:
    assert Watchdog(watchdog_env(notify, 30_000_000)).interval_s == 15.0
    assert Watchdog(watchdog_env(notify, 30_000_000, os.getpid())).interval_s == 15.0
    # A period meant for another process (a child inherits the environment) is not ours.
    assert Watchdog(watchdog_env(notify, 30_000_000, os.getpid() + 1)).interval_s is None
    assert Watchdog(watchdog_env(notify, 0)).interval_s is None
    assert Watchdog(dict(notify.env, WATCHDOG_USEC="soon")).interval_s is None


def test_the_loop_pings_once_ready_and_stops_on_stopping(notify: NotifySocket) -> None:
    """Before READY the task extends the start timeout by a whole period; after it, a
    WATCHDOG=1 every half period; after STOPPING=1, nothing."""

    async def run() -> list[tuple[float, str]]:
        watchdog = Watchdog(watchdog_env(notify, 200_000))  # 0.2 s: pings every 0.1 s
        loop = asyncio.get_running_loop()
        got: list[tuple[float, str]] = []

        async def take(count: int) -> None:
            for _ in range(count):
                message = await loop.run_in_executor(None, notify.receive)
                got.append((time.monotonic(), message))

        watchdog.start()
        await take(2)
        watchdog.ready()
        await take(5)  # READY=1, the WATCHDOG=1 with it, then three from the task
        watchdog.stopping()
        await take(1)
        return got

    got = asyncio.run(run())
    messages = [m for _, m in got]
    assert messages[:2] == ["EXTEND_TIMEOUT_USEC=200000"] * 2
    assert messages[2:4] == ["READY=1", "WATCHDOG=1"]
    assert messages[4:7] == ["WATCHDOG=1"] * 3
    assert messages[7] == "STOPPING=1"
    assert notify.pending() == []  # the task is gone
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(got[4:7])]
    assert all(0.05 <= gap < 1.0 for gap in gaps), gaps  # ~0.1 s apart, on a busy machine


def test_a_stalled_loop_sends_nothing(notify: NotifySocket) -> None:
    """The point of pinging from the loop: while it is blocked, systemd hears nothing."""

    async def run() -> list[str]:
        watchdog = Watchdog(watchdog_env(notify, 100_000))
        watchdog.start()
        watchdog.ready()
        await asyncio.sleep(0)  # the task's first ping
        first = notify.pending()
        time.sleep(0.3)  # the loop is stuck: three intervals pass with no ping
        stalled = notify.pending()
        watchdog.stopping()
        return [*first, "--", *stalled]

    assert asyncio.run(run()) == ["READY=1", "WATCHDOG=1", "WATCHDOG=1", "--"]


def test_without_systemd_it_does_nothing() -> None:
    async def run() -> None:
        watchdog = Watchdog({"WATCHDOG_USEC": "100000"})  # no NOTIFY_SOCKET
        watchdog.start()
        watchdog.ready()
        await asyncio.sleep(0.05)
        watchdog.stopping()

    asyncio.run(run())  # no socket to send to, no task, no error
    assert Watchdog({}).address == ""


def test_a_vanished_socket_is_not_an_error(tmp_path: Path) -> None:
    """systemd shutting down closes its socket; Parley's own shutdown must not fail on it."""
    path = str(tmp_path / "gone")
    watchdog = Watchdog({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    watchdog.ready()
    watchdog.stopping()
