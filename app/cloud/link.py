"""One Realtime connection after another: connect with the official SDK, send events in
order, hand every server event on, and reconnect with exponential backoff when it drops.

A new connection is a new server session, so the owner restores it in `on_open` (settings
and recent history). Events queued while the link is down are dropped: stale microphone
audio must not reach the next session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from openai import AsyncOpenAI, OpenAIError
from openai.types.realtime import RealtimeServerEvent
from websockets.exceptions import InvalidStatus, WebSocketException

from engines.errors import ParleyError

_DROPS = (OSError, TimeoutError, WebSocketException, OpenAIError)
_FIRST_DELAY_S, _MAX_DELAY_S = 0.5, 8.0
"""Backoff between attempts: 0.5 s, 1 s, 2 s, … at most 8 s."""

log = logging.getLogger(__name__)


class CloudError(ParleyError):
    """The cloud cannot be used right now (refused key, gave up reconnecting)."""


class EventError(ParleyError):
    """A server event Parley cannot use (no JSON, fields missing or of the wrong type): it
    is skipped and the session goes on, since one bad event must not end the conversation."""


class Link:
    def __init__(self, client: AsyncOpenAI, model: str, attempts: int,
                 on_open: Callable[[bool], Awaitable[None]],
                 on_event: Callable[[RealtimeServerEvent], None],
                 on_drop: Callable[[int, Exception], None],
                 on_skip: Callable[[EventError], None]) -> None:
        self.client = client
        self.model = model
        self.attempts = attempts
        self.on_open = on_open
        """Called on each new connection: False the first time, True after a drop."""
        self.on_event = on_event
        self.on_drop = on_drop
        """Called with the attempt number (1…) and the cause before each retry."""
        self.on_skip = on_skip
        """Called for the first event of each type that could not be used."""
        self._skipped: set[str] = set()
        self.connected = asyncio.Event()
        self._outbox: asyncio.Queue[dict[str, Any]] | None = None
        self._heard = False
        """The current connection delivered events: its session worked."""

    def send(self, event: dict[str, Any]) -> bool:
        """Queue a client event for the current connection; False while disconnected."""
        if self._outbox is None:
            return False
        self._outbox.put_nowait(event)
        return True

    async def run(self) -> None:
        """Until cancelled; raises CloudError when the key is refused or retries run out."""
        failures, reconnecting = 0, False
        while True:
            self._heard = False
            try:
                async with self.client.realtime.connect(model=self.model) as conn:
                    await self._serve(conn, reconnecting)
            except InvalidStatus as err:
                status = err.response.status_code
                if status in (401, 403):
                    raise CloudError(f"OpenAI refused the API key (HTTP {status}).",
                                     "Check it with `parley cloud set-key`, or set "
                                     "OPENAI_API_KEY.") from err
                cause: Exception = err
            except _DROPS as err:
                cause = err
            self.connected.clear()
            self._outbox = None
            failures = 1 if self._heard else failures + 1  # a working session resets it
            reconnecting = True
            if failures > self.attempts:
                raise CloudError(f"The connection to OpenAI is lost ({_why(cause)}); gave up "
                                 f"after {self.attempts} attempts.",
                                 "Check the network, or switch back to local mode.")
            self.on_drop(failures, cause)
            await asyncio.sleep(min(_FIRST_DELAY_S * 2 ** (failures - 1), _MAX_DELAY_S))

    async def _serve(self, conn: Any, reconnecting: bool) -> None:
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outbox = outbox
        sender = asyncio.create_task(self._send_all(conn, outbox))
        receiving: asyncio.Future[Any] | None = None
        try:
            await self.on_open(reconnecting)
            self.connected.set()
            while True:
                receiving = asyncio.ensure_future(conn.recv_bytes())
                await asyncio.wait({receiving, sender}, return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():
                    receiving.cancel()
                    sender.result()  # the send failed: raise its error
                frame = receiving.result()
                self._heard = True
                self._hand_on(conn, frame)
        finally:
            if receiving is not None:  # closed by the owner (back to local): not an error
                receiving.cancel()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, *_DROPS):
                await sender

    def _hand_on(self, conn: Any, frame: bytes) -> None:
        """Parse one frame as the SDK does and hand the event on; one that cannot be used is
        skipped, told once per type (a stream of broken deltas must not flood the window)."""
        kind = "unknown"
        try:
            event = conn.parse_event(frame)
            kind = str(getattr(event, "type", kind))[:60]
            self.on_event(cast(RealtimeServerEvent, event))
        except Exception as err:  # any fault in one event: skip it, the session goes on
            log.warning("skipped a Realtime server event of type %s", kind, exc_info=True)
            if kind not in self._skipped:
                self._skipped.add(kind)
                self.on_skip(EventError(
                    f"OpenAI sent an event Parley could not use (type {kind}: "
                    f"{_why(err)[:200]}); it was skipped.",
                    "If replies go wrong, switch this conversation back to local mode."))

    @staticmethod
    async def _send_all(conn: Any, outbox: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            await conn.send(await outbox.get())


def _why(err: Exception) -> str:
    return str(err) or type(err).__name__
