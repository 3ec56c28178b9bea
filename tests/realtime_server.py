"""A stand-in for the OpenAI Realtime API (GA protocol over WebSocket), for tests.

No open-source server speaks the GA protocol with truncate and cancel, and tests must never
reach the network, so this one runs in-process (a thread with its own event loop). It is
strict where the real service is: every client event is validated against the official
SDK's pydantic models as a discriminated union with extra keys rejected (a violation gets
an `error` event and is recorded in `rejected`), and every event it sends passes the same
check first (a failure there is the server's own bug, kept in `faults`).

It behaves like the cloud from the outside: an energy VAD on the received audio emits
speech_started / speech_stopped, the "transcription" of each utterance is scripted, and
each reply is real speech (espeak-ng at 24 kHz) streamed as PCM16 deltas at about real
time, with transcript deltas alongside. A scenario also scripts function calls, `error`
events and cutting the connection mid-reply; `rate_limits.updated` follows every response.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Union, get_args

import numpy as np
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.speech import espeak

TEST_KEY = "sk-test-never-leaves-this-machine"
"""The API key cloud tests use: this server accepts it, and no real service ever sees it."""

RATE = 24000
_FRAME = RATE // 50  # 20 ms VAD frames
_VOICED_RMS = 0.01
_CHUNK_S = 0.1  # audio per delta
_LEAD_S = 0.3  # sent ahead of real time, like the real service's burst
_REQUESTS_LIMIT, _TOKENS_LIMIT = 5000, 400000


def _strict(alias: Any) -> TypeAdapter[Any]:
    members = get_args(get_args(alias)[0])
    return TypeAdapter(Annotated[Union[members], Field(discriminator="type")])  # noqa: UP007


CLIENT_EVENTS = _strict(RealtimeClientEvent)
SERVER_EVENTS = _strict(RealtimeServerEvent)


class ProtocolViolation(ValueError):
    """An event that the GA protocol does not allow."""


def _extra_keys(value: Any, path: str) -> list[str]:
    """Keys the models did not declare, anywhere in a validated event."""
    found: list[str] = []
    if isinstance(value, BaseModel):
        found += [f"{path}.{k}" for k in (value.model_extra or {})]
        for name in type(value).model_fields:
            found += _extra_keys(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found += _extra_keys(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            found += _extra_keys(v, f"{path}.{k}")
    return found


def validate(adapter: TypeAdapter[Any], event: dict[str, Any]) -> BaseModel:
    """The event as the SDK's model, or ProtocolViolation (wrong shape or unknown keys)."""
    try:
        model: BaseModel = adapter.validate_python(event)
    except ValidationError as err:
        raise ProtocolViolation(str(err)) from err
    extra = _extra_keys(model, event.get("type", "?"))
    if extra:
        raise ProtocolViolation(f"unknown keys: {', '.join(extra)}")
    return model


@dataclass
class Reply:
    """What the "model" does for one response."""

    text: str | Callable[[list[dict[str, Any]]], str] = ""
    """The spoken answer, or a function of the conversation items (e.g. a tool's output)."""
    call: tuple[str, dict[str, Any]] | None = None
    """Call this function instead of speaking."""
    error: tuple[str, str] | None = None
    """(code, message): answer response.create with an `error` event instead."""
    cut_after_s: float | None = None
    """Drop the connection once this much reply audio has been sent."""


@dataclass
class Scenario:
    heard: list[str] = field(default_factory=list)
    """What the "transcription" of each utterance says, in order."""
    replies: list[Reply] = field(default_factory=list)
    """One per response, in order."""
    api_key: str | None = None
    """The only key accepted, if set (any bearer key otherwise)."""


@dataclass
class Connection:
    """What one client connection sent and got: for the tests to check."""

    headers: dict[str, str]
    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.received if e["type"] == kind]


class RealtimeServer:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.connections: list[Connection] = []
        self.rejected: list[tuple[str, str]] = []
        """(raw event, why) for every client event that failed validation."""
        self.faults: list[str] = []
        """Events this server tried to send that the protocol does not allow."""
        self.played: dict[str, np.ndarray] = {}
        """Each reply item's audio (24 kHz float), as streamed."""
        self.port = 0
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future[None] | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    @property
    def base_url(self) -> str:
        """What OPENAI_BASE_URL should be: the SDK derives ws://…/v1/realtime from it."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> RealtimeServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the test Realtime server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30) -> Any:
        """Poll until `predicate()` is truthy (from the test's thread); its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout} s waiting for the server")

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):04d}"

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        async with serve(self._serve, "127.0.0.1", 0, process_request=self._check_request,
                         max_size=None) as server:
            self.port = server.sockets[0].getsockname()[1] if server.sockets else 0
            self._ready.set()
            await self._stop

    def _check_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """The handshake the real service expects: /v1/realtime?model=…, a bearer key."""
        if not request.path.startswith("/v1/realtime?") or "model=" not in request.path:
            return ws.respond(404, f"no such endpoint: {request.path}\n")
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not key or key == request.headers.get("Authorization") or (
                self.scenario.api_key is not None and key != self.scenario.api_key):
            return ws.respond(401, "Incorrect API key provided.\n")
        return None

    async def _serve(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        conn = Connection(dict(ws.request.headers.raw_items()))
        self.connections.append(conn)
        await _Session(self, ws, conn).run()


class _Session:
    """One connection = one server session."""

    def __init__(self, server: RealtimeServer, ws: ServerConnection, conn: Connection) -> None:
        self.server = server
        self.ws = ws
        self.conn = conn
        self.session: dict[str, Any] = {"type": "realtime", "model": "gpt-realtime",
                                        "output_modalities": ["audio"]}
        self.items: list[dict[str, Any]] = []
        self.audio_ms: dict[str, int] = {}
        """Reply audio sent so far, per assistant item."""
        self.response: asyncio.Task[None] | None = None
        self.response_id: str | None = None
        self.buffer: list[np.ndarray] = []
        self.samples = 0
        """Input audio received this session, in samples: the clock of audio_*_ms."""
        self.pending = np.zeros(0, dtype=np.float32)
        self.voiced_run = 0
        self.silent_run = 0
        self.speech_start: int | None = None
        self.last_voiced_end = 0
        self.user_item: str | None = None

    # -- wire ------------------------------------------------------------------------------
    async def emit(self, event: dict[str, Any]) -> None:
        event = {"event_id": self.server.new_id("event"), **event}
        try:
            validate(SERVER_EVENTS, event)
        except ProtocolViolation as err:
            self.server.faults.append(f"{event['type']}: {err}")
            raise
        self.conn.sent.append(event)
        await self.ws.send(json.dumps(event))

    async def error(self, code: str, message: str, event_id: str | None = None,
                    kind: str = "invalid_request_error") -> None:
        await self.emit({"type": "error", "error": {"type": kind, "code": code,
                                                    "message": message,
                                                    "event_id": event_id}})

    async def run(self) -> None:
        await self.emit({"type": "session.created", "session": self.session})
        try:
            async for raw in self.ws:
                await self.receive(raw)
        except ConnectionClosed:
            pass
        finally:
            if self.response is not None:
                self.response.cancel()

    async def receive(self, raw: str | bytes) -> None:
        try:
            event = json.loads(raw)
            if not isinstance(event, dict):
                raise ProtocolViolation("an event must be a JSON object")
            validate(CLIENT_EVENTS, event)
        except (ValueError, ProtocolViolation) as err:
            self.server.rejected.append((str(raw)[:500], str(err)))
            await self.error("invalid_event", f"Invalid client event: {err}"[:2000])
            return
        self.conn.received.append(event)
        handler = getattr(self, "on_" + event["type"].replace(".", "_"), None)
        if handler is None:
            await self.error("unsupported_event", f"{event['type']} is not scripted here",
                             event.get("event_id"))
        else:
            await handler(event)

    # -- client events ---------------------------------------------------------------------
    async def on_session_update(self, event: dict[str, Any]) -> None:
        self.session.update(event["session"])
        await self.emit({"type": "session.updated", "session": self.session})

    async def on_input_audio_buffer_append(self, event: dict[str, Any]) -> None:
        audio = np.frombuffer(base64.b64decode(event["audio"]), "<i2").astype(np.float32)
        audio /= 32768
        self.buffer.append(audio)
        self.pending = np.concatenate([self.pending, audio])
        while self.pending.size >= _FRAME:
            frame, self.pending = self.pending[:_FRAME], self.pending[_FRAME:]
            self.samples += _FRAME
            await self.vad(float(np.sqrt(np.mean(frame**2))) > _VOICED_RMS)

    async def on_input_audio_buffer_commit(self, event: dict[str, Any]) -> None:
        await self.commit(self.samples * 1000 // RATE)

    async def on_input_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        self.buffer.clear()
        await self.emit({"type": "input_audio_buffer.cleared"})

    async def on_conversation_item_create(self, event: dict[str, Any]) -> None:
        item = {**event["item"], "id": event["item"].get("id") or self.server.new_id("item"),
                "object": "realtime.item", "status": "completed"}
        await self.add_item(item)

    async def on_conversation_item_truncate(self, event: dict[str, Any]) -> None:
        item_id, end_ms = event["item_id"], event["audio_end_ms"]
        if item_id not in self.audio_ms:
            await self.error("item_not_found", f"no assistant audio item {item_id}",
                             event.get("event_id"))
        elif end_ms > self.audio_ms[item_id]:
            await self.error("invalid_value", f"audio_end_ms {end_ms} is longer than the "
                             f"{self.audio_ms[item_id]} ms of audio", event.get("event_id"))
        else:
            await self.emit({"type": "conversation.item.truncated", "item_id": item_id,
                             "content_index": event["content_index"], "audio_end_ms": end_ms})

    async def on_response_create(self, event: dict[str, Any]) -> None:
        await self.start_response(event.get("event_id"))

    async def on_response_cancel(self, event: dict[str, Any]) -> None:
        if not await self.cancel("client_cancelled"):
            await self.error("response_cancel_not_active", "There is no active response.",
                             event.get("event_id"))

    # -- the "model" -----------------------------------------------------------------------
    async def vad(self, voiced: bool) -> None:
        """Speech after 60 ms of voice, its end after the session's silence duration."""
        now = self.samples * 1000 // RATE
        detection = self.audio_input().get("turn_detection")
        if detection is None:
            return
        self.voiced_run = self.voiced_run + 1 if voiced else 0
        self.silent_run = 0 if voiced else self.silent_run + 1
        if voiced:
            self.last_voiced_end = now
        if self.speech_start is None and self.voiced_run == 3:
            self.speech_start = now - 60
            self.user_item = self.server.new_id("item")
            await self.emit({"type": "input_audio_buffer.speech_started",
                             "audio_start_ms": self.speech_start, "item_id": self.user_item})
            if detection.get("interrupt_response", True):
                await self.cancel("turn_detected")
        silence_ms = detection.get("silence_duration_ms", 500)
        if self.speech_start is not None and self.silent_run * 20 >= silence_ms:
            await self.emit({"type": "input_audio_buffer.speech_stopped",
                             "audio_end_ms": self.last_voiced_end,
                             "item_id": self.user_item})
            self.speech_start = None
            await self.commit(self.last_voiced_end,
                              respond=detection.get("create_response", True))

    def audio_input(self) -> dict[str, Any]:
        audio: dict[str, Any] = self.session.get("audio") or {}
        return audio.get("input") or {}

    async def commit(self, end_ms: int, respond: bool = False) -> None:
        item_id = self.user_item or self.server.new_id("item")
        self.user_item = None
        audio = np.concatenate(self.buffer) if self.buffer else np.zeros(0, np.float32)
        self.buffer.clear()
        previous = self.items[-1]["id"] if self.items else None
        await self.emit({"type": "input_audio_buffer.committed", "item_id": item_id,
                         "previous_item_id": previous})
        transcript = self.server.scenario.heard.pop(0) if self.server.scenario.heard else ""
        await self.add_item({"id": item_id, "type": "message", "role": "user",
                             "object": "realtime.item", "status": "completed",
                             "content": [{"type": "input_audio", "transcript": transcript}]})
        await self.emit({"type": "conversation.item.input_audio_transcription.completed",
                         "item_id": item_id, "content_index": 0, "transcript": transcript,
                         "usage": {"type": "duration", "seconds": audio.size / RATE}})
        if respond:
            await self.start_response(None)

    async def add_item(self, item: dict[str, Any]) -> None:
        previous = self.items[-1]["id"] if self.items else None
        self.items.append(item)
        for kind in ("conversation.item.added", "conversation.item.done"):
            await self.emit({"type": kind, "item": item, "previous_item_id": previous})

    async def start_response(self, cause: str | None) -> None:
        if self.response is not None and not self.response.done():
            await self.error("conversation_already_has_active_response",
                             "Conversation already has an active response in progress.",
                             cause)
            return
        reply = (self.server.scenario.replies.pop(0) if self.server.scenario.replies
                 else Reply("I have nothing more to say."))
        if reply.error is not None:
            code, message = reply.error
            await self.error(code, message, cause, kind="invalid_request_error")
            return
        self.response_id = self.server.new_id("resp")
        self.response = asyncio.create_task(self.respond(self.response_id, reply))

    async def cancel(self, reason: str) -> bool:
        task, response_id = self.response, self.response_id
        if task is None or task.done() or response_id is None:
            return False
        task.cancel()
        self.response = None
        await self.emit({"type": "response.done", "response": {
            "id": response_id, "object": "realtime.response", "status": "cancelled",
            "status_details": {"type": "cancelled", "reason": reason}, "output": [],
            "usage": _usage(self.items, 0, 0)}})
        return True

    async def respond(self, response_id: str, reply: Reply) -> None:
        base = {"id": response_id, "object": "realtime.response"}
        await self.emit({"type": "response.created",
                         "response": {**base, "status": "in_progress", "output": []}})
        if reply.call is not None:
            item = await self.call_function(response_id, *reply.call)
            words, audio_ms = 0, 0
        else:
            text = reply.text(self.items) if callable(reply.text) else reply.text
            spoken = await self.speak(response_id, text, reply.cut_after_s)
            if spoken is None:
                return
            item, words, audio_ms = spoken, len(text.split()), self.audio_ms[spoken["id"]]
        self.response = None
        await self.emit({"type": "response.done", "response": {
            **base, "status": "completed", "output": [item],
            "usage": _usage(self.items, words, audio_ms)}})
        used = sum(len(json.dumps(i)) // 4 for i in self.items)
        await self.emit({"type": "rate_limits.updated", "rate_limits": [
            {"name": "requests", "limit": _REQUESTS_LIMIT,
             "remaining": _REQUESTS_LIMIT - len(self.conn.of_type("response.create")) - 1,
             "reset_seconds": 0.012},
            {"name": "tokens", "limit": _TOKENS_LIMIT, "remaining": _TOKENS_LIMIT - used,
             "reset_seconds": round(used * 60 / _TOKENS_LIMIT, 3)}]})

    async def call_function(self, response_id: str, name: str,
                            arguments: dict[str, Any]) -> dict[str, Any]:
        ids = {"response_id": response_id, "item_id": self.server.new_id("item"),
               "output_index": 0}
        call_id, args = self.server.new_id("call"), json.dumps(arguments)
        item = {"id": ids["item_id"], "type": "function_call", "object": "realtime.item",
                "call_id": call_id, "name": name, "arguments": "", "status": "in_progress"}
        await self.emit({"type": "response.output_item.added", "response_id": response_id,
                         "output_index": 0, "item": item})
        await self.emit({"type": "response.function_call_arguments.delta", **ids,
                         "call_id": call_id, "delta": args})
        await self.emit({"type": "response.function_call_arguments.done", **ids,
                         "call_id": call_id, "name": name, "arguments": args})
        item = {**item, "arguments": args, "status": "completed"}
        self.items.append(item)
        await self.emit({"type": "response.output_item.done", "response_id": response_id,
                         "output_index": 0, "item": item})
        return item

    async def speak(self, response_id: str, text: str, cut_after_s: float | None
                    ) -> dict[str, Any] | None:
        """The reply's audio item; None if the connection was cut on the way."""
        item_id = self.server.new_id("item")
        ids = {"response_id": response_id, "item_id": item_id, "output_index": 0,
               "content_index": 0}
        item: dict[str, Any] = {"id": item_id, "type": "message", "role": "assistant",
                                "object": "realtime.item", "status": "in_progress",
                                "content": []}
        await self.emit({"type": "response.output_item.added", "response_id": response_id,
                         "output_index": 0, "item": item})
        await self.add_item(item)
        await self.emit({"type": "response.content_part.added", **ids,
                         "part": {"type": "audio", "transcript": ""}})
        audio = voice(text)
        self.server.played[item_id] = audio
        self.audio_ms[item_id] = 0
        words = text.split()
        chunk, said, started = int(_CHUNK_S * RATE), 0, time.monotonic()
        for start in range(0, audio.size, chunk):
            if cut_after_s is not None and start / RATE >= cut_after_s:
                self.ws.transport.abort()  # the network drops: no close frame
                return None
            ahead = started + start / RATE - _LEAD_S - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            pcm = (np.clip(audio[start:start + chunk], -1, 1) * 32767).astype("<i2")
            await self.emit({"type": "response.output_audio.delta", **ids,
                             "delta": base64.b64encode(pcm.tobytes()).decode()})
            self.audio_ms[item_id] = min(audio.size, start + chunk) * 1000 // RATE
            due = round(len(words) * min(1.0, (start + chunk) / audio.size))
            if due > said:
                await self.emit({"type": "response.output_audio_transcript.delta", **ids,
                                 "delta": (" " if said else "") + " ".join(words[said:due])})
                said = due
        await self.emit({"type": "response.output_audio.done", **ids})
        await self.emit({"type": "response.output_audio_transcript.done", **ids,
                         "transcript": text})
        part = {"type": "audio", "transcript": text}
        await self.emit({"type": "response.content_part.done", **ids, "part": part})
        item.update(status="completed", content=[{"type": "output_audio", "transcript": text}])
        await self.emit({"type": "response.output_item.done", "response_id": response_id,
                         "output_index": 0, "item": item})
        return item


def voice(text: str) -> np.ndarray:
    """The reply's speech at 24 kHz with a faint steady noise floor, so the stretch of it
    a speaker played is one unbroken sound (the pauses between words are not silent)."""
    speech = espeak(text, rate=RATE)
    loud = np.flatnonzero(np.abs(speech) > 1e-3)
    speech = speech[loud[0]:loud[-1] + 1] if loud.size else speech
    floor = np.random.default_rng(len(text)).normal(0, 0.004, speech.size)
    return np.clip(speech + floor, -1, 1).astype(np.float32)


def _usage(items: list[dict[str, Any]], words: int, audio_ms: int) -> dict[str, Any]:
    """Token counts that grow with the conversation and the reply, like the real ones."""
    text_in = sum(len(json.dumps(i)) // 4 for i in items)
    audio_out = audio_ms // 50
    return {"input_tokens": text_in, "output_tokens": words + audio_out,
            "total_tokens": text_in + words + audio_out,
            "input_token_details": {"text_tokens": text_in, "audio_tokens": 0,
                                    "cached_tokens": 0},
            "output_token_details": {"text_tokens": words, "audio_tokens": audio_out}}
