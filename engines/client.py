"""The GUI-side handle on the engine worker: async calls, never blocking the event loop.

A reader thread takes events off the worker's queue and hands them to the asyncio loop;
each request's replies land in its own asyncio.Queue. If the worker dies, every pending
call fails with a WorkerError instead of hanging, and the next call restarts the worker
and reloads its models (the supervisor's job).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing as mp
import queue
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from engines import worker
from engines.errors import ParleyError, WorkerError
from engines.messages import (
    Cancel,
    Event,
    Failure,
    Generate,
    Load,
    Prefill,
    Ready,
    Reply,
    Request,
    Shutdown,
    Synthesize,
    Transcribe,
    stage_of,
)
from engines.model_ref import Kind, ModelRef
from engines.protocols import (
    Audio,
    AudioChunk,
    ChatMessage,
    EngineStats,
    Token,
    ToolSpec,
    Transcript,
)

_START_TIMEOUT_S = 60.0
_CRASH_LOOP_S = 60.0
_CRASH_LOOP_RESTARTS = 3


class EngineClient:
    """Talks to one spawned worker; `stats` holds each engine's latest self-report."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Queue[Reply | Failure | WorkerError]] = {}
        self._loads: dict[Kind, Load] = {}
        self._process: Any = None
        self._reader = threading.Thread()
        self._requests: mp.Queue[Request] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Future[int] | None = None
        self.stats: dict[Kind, EngineStats] = {}
        self.restarts = 0
        self._restarted_at: list[float] = []
        self.hung_after_s = {"load": 600.0, "work": 180.0}
        """How long a request may go without news before its engine counts as hung (a big
        model from a slow disk; a long prompt on a slow board's first token)."""
        self.on_restart: Callable[[WorkerError], None] | None = None
        """Told when a dead worker was replaced, so the user hears about it."""

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        ctx = mp.get_context("spawn")
        self._requests = ctx.Queue()
        events: mp.Queue[Event] = ctx.Queue()
        self._ready = self._loop.create_future()
        self._process = ctx.Process(target=worker.main, args=(self._requests, events),
                                    name="parley-engines", daemon=True)
        await asyncio.to_thread(_spawn, self._process)  # spawning took the loop ~40 ms
        self._reader = threading.Thread(target=self._read, args=(self._process, events),
                                        name="parley-engine-events", daemon=True)
        self._reader.start()
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), _START_TIMEOUT_S)
        except TimeoutError as err:
            raise WorkerError("The engine worker did not start within a minute.",
                              "Check the log; the machine may be out of memory.") from err

    @property
    def pid(self) -> int | None:
        return int(self._process.pid) if self.alive else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    async def close(self) -> None:
        if self._process is None:
            return
        if self.alive and self._requests is not None:
            self._requests.put(Shutdown())
            await asyncio.to_thread(self._process.join, 10)
        if self._process.is_alive():
            self._process.kill()
        self._process = None
        # The reader ends within a poll of the worker's death; joined, it no longer holds
        # this client (and through its callbacks the whole session) while Python exits.
        await asyncio.to_thread(self._reader.join, 1.0)
        self._abandon_queue()

    def _abandon_queue(self) -> None:
        """Requests a dead worker never read must not block this process from exiting."""
        if self._requests is not None:
            self._requests.cancel_join_thread()
            self._requests.close()
            self._requests = None

    async def revive(self) -> None:
        """Start a dead worker again with the models it had (nothing if it runs)."""
        await self._ensure_running()

    async def _ensure_running(self) -> None:
        """Restart a dead worker and reload what it had, so the conversation goes on; but
        not a fourth time within a minute: a worker that keeps dying needs the user."""
        if self.alive:
            return
        now = time.monotonic()
        recent = [t for t in self._restarted_at if now - t < _CRASH_LOOP_S]
        if len(recent) >= _CRASH_LOOP_RESTARTS:
            raise WorkerError(
                f"The engine worker stopped {len(recent) + 1} times within a minute, so "
                "Parley has stopped restarting it.",
                "Run `parley selftest` to see which engine fails, or choose smaller models; "
                "Parley tries again in a minute, or when restarted.")
        self._restarted_at = [*recent, now]
        self.restarts += 1
        exitcode = self._process.exitcode if self._process is not None else None
        self._abandon_queue()
        await self.start()
        for load in list(self._loads.values()):
            await self._call(Load(next(self._ids), load.ref, load.options))
        if self.on_restart is not None:
            self.on_restart(WorkerError(
                f"The engine worker stopped unexpectedly (exit code {exitcode}); "
                "it was restarted and its models reloaded.",
                "If this happens again, run `parley selftest` or try smaller models."))

    # -- calls -----------------------------------------------------------------------------
    async def load(self, ref: ModelRef, options: dict[str, Any] | None = None) -> EngineStats:
        await self._ensure_running()
        req = Load(next(self._ids), ref, dict(options or {}))
        await self._call(req)
        self._loads[ref.kind] = req
        return self.stats[ref.kind]

    async def transcribe(self, audio: Audio, turn: int, generation: int) -> Transcript | None:
        """None when the request was cancelled by a newer generation."""
        await self._ensure_running()
        values = await self._call(Transcribe(next(self._ids), turn, generation, audio))
        return values[0] if values and isinstance(values[0], Transcript) else None

    async def generate(self, messages: list[ChatMessage], turn: int, generation: int,
                       max_tokens: int, temperature: float, tools: Sequence[ToolSpec] = (),
                       may_call: bool = True) -> AsyncIterator[Token]:
        await self._ensure_running()
        req = Generate(next(self._ids), turn, generation, tuple(messages), max_tokens,
                       temperature, tuple(tools), may_call)
        async for value in self._stream(req):
            if isinstance(value, Token):
                yield value

    async def prefill(self, messages: list[ChatMessage], turn: int, generation: int,
                      max_tokens: int, tools: Sequence[ToolSpec] = ()) -> None:
        await self._ensure_running()
        async for _ in self._stream(Prefill(next(self._ids), turn, generation,
                                            tuple(messages), max_tokens, tuple(tools))):
            pass

    async def synthesize(self, text: str, turn: int, generation: int
                         ) -> AsyncIterator[AudioChunk]:
        """No audio at all when no voice was ever loaded (a first run went on without one):
        the replies are then text only, which the front end says once, not every turn."""
        if "tts" not in self._loads:
            return
        await self._ensure_running()
        async for value in self._stream(Synthesize(next(self._ids), turn, generation, text)):
            if isinstance(value, AudioChunk):
                yield value

    def cancel(self, generation: int) -> None:
        """Tell the worker to drop everything older than `generation`; returns at once."""
        if self.alive and self._requests is not None:
            self._requests.put(Cancel(generation))

    # -- plumbing --------------------------------------------------------------------------
    async def _call(self, req: Load | Transcribe) -> list[Any]:
        return [value async for value in self._stream(req)]

    async def _stream(self, req: Load | Transcribe | Generate | Prefill | Synthesize
                      ) -> AsyncIterator[Any]:
        assert self._requests is not None
        inbox: asyncio.Queue[Reply | Failure | WorkerError] = asyncio.Queue()
        self._pending[req.id] = inbox
        kind = stage_of(req)
        try:
            self._requests.put(req)
            limit = self.hung_after_s["load" if isinstance(req, Load) else "work"]
            while True:
                try:
                    item = await asyncio.wait_for(inbox.get(), limit)
                except TimeoutError:
                    self._process.kill()  # hung: the next request starts a new worker
                    await asyncio.to_thread(self._process.join, 5)
                    raise WorkerError(
                        f"The {kind.upper()} engine did not answer for {limit:g} s, so its "
                        "worker was stopped.",
                        "Parley starts it again with its models; if this happens again, "
                        "choose a smaller model or run `parley selftest`.") from None
                if isinstance(item, WorkerError):
                    raise item
                if isinstance(item, Failure):
                    raise ParleyError(item.message, item.hint)
                if item.stats is not None:
                    self.stats[kind] = item.stats
                if item.final:
                    if isinstance(req, Load) and item.value is not None:
                        yield item.value
                    return
                yield item.value
        finally:
            self._pending.pop(req.id, None)

    def _read(self, process: Any, events: mp.Queue[Event]) -> None:
        """Reader thread: forward events to the loop; notice the worker dying."""
        while True:
            try:
                event = events.get(timeout=0.25)
            except queue.Empty:
                if not process.is_alive():
                    self._post(process, None, process.exitcode)
                    return
                continue
            except (EOFError, OSError):
                self._post(process, None, process.exitcode)
                return
            self._post(process, event, None)

    def _post(self, process: Any, event: Event | None, exitcode: int | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed while we were reading
            loop.call_soon_threadsafe(self._route, process, event, exitcode)

    def _route(self, process: Any, event: Event | None, exitcode: int | None) -> None:
        if process is not self._process:
            return  # news of a worker already replaced: it must not touch the new one
        if event is None:
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(WorkerError(
                    f"The engine worker exited while starting (code {exitcode}).",
                    "Run `parley selftest` to see which engine fails."))
            err = WorkerError(
                f"The engine worker stopped unexpectedly (exit code {exitcode}).",
                "Parley restarts it on the next request; if this repeats, run `parley selftest`.")
            for waiting in self._pending.values():
                waiting.put_nowait(err)
            return
        if isinstance(event, Ready):
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(event.pid)
            return
        inbox = self._pending.get(event.id)
        if inbox is not None:
            inbox.put_nowait(event)


def _spawn(process: Any) -> None:
    """Start the worker with SIGINT blocked: a Ctrl+C in the terminal goes to the whole
    process group, and the worker must leave it to the parent, which shuts it down in order.
    The worker ignores SIGINT for good before it unblocks it (`worker.main`)."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: Ctrl+C reaches the parent only
        process.start()
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
