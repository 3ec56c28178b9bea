"""CPU and memory of the window's process and of the engine worker, about once a second."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import psutil

from app.conversation.events import AgentEvent, ProcessUsage

_EVERY_S = 1.0


async def sample_usage(publish: Callable[[AgentEvent], None],
                       worker_pid: Callable[[], int | None]) -> None:
    """Publish `ProcessUsage` until cancelled; a restarted worker is followed by its pid."""
    me = psutil.Process(os.getpid())
    me.cpu_percent()
    worker: psutil.Process | None = None
    while True:
        await asyncio.sleep(_EVERY_S)
        pid = worker_pid()
        if pid is not None and (worker is None or worker.pid != pid):
            worker = psutil.Process(pid)
            worker.cpu_percent()
        try:
            w_cpu = worker.cpu_percent() if worker else 0.0
            w_mb = worker.memory_info().rss / 2**20 if worker else 0.0
        except psutil.Error:
            w_cpu, w_mb = 0.0, 0.0
        publish(ProcessUsage(me.cpu_percent(), me.memory_info().rss / 2**20, w_cpu, w_mb))
