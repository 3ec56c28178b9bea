"""Unit, fuzzed: whatever the Realtime server sends (events with fields missing or of the
wrong type, unknown types, huge deltas, audio that is no base64, frames that are no JSON),
the cloud conversation neither crashes nor hangs: an event it cannot use is skipped and the
user told in words, and the session goes on to answer the next turn.

No network: the official SDK's connection reads scripted frames from a stand-in socket, so
what runs is the real path, from the SDK's parsing through `Link` to `CloudAgent`."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime
import json
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection

from app.cloud.agent import CloudAgent
from app.cloud.settings import CloudSettings
from app.conversation.events import (
    AgentEvent,
    AssistantDelta,
    ErrorOccurred,
    TurnMetrics,
    UserSaid,
)
from app.settings import load_settings
from app.tools import Tool, ToolRegistry
from app.tools.calculator import calculate
from tests.realtime_server import SERVER_EVENTS, validate

_FUZZ = settings(deadline=datetime.timedelta(seconds=3), database=None, max_examples=150,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])
"""A handler that hangs or crawls fails the deadline; nothing is kept between runs."""

_PCM = base64.b64encode((np.sin(np.arange(2400) / 7) * 8000).astype("<i2").tobytes()).decode()
_IDS = {"response_id": "resp_1", "item_id": "item_2", "output_index": 0, "content_index": 0}
_USAGE = {"total_tokens": 10, "input_tokens": 4, "output_tokens": 6,
          "input_token_details": {"audio_tokens": 1, "cached_tokens": 0, "text_tokens": 3},
          "output_token_details": {"audio_tokens": 5, "text_tokens": 1}}
_RESPONSE = {"id": "resp_1", "object": "realtime.response", "output": []}
_SEEDS: list[dict[str, Any]] = [
    {"type": "input_audio_buffer.speech_started", "audio_start_ms": 100, "item_id": "item_1"},
    {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 900, "item_id": "item_1"},
    {"type": "conversation.item.input_audio_transcription.completed", "item_id": "item_1",
     "content_index": 0, "transcript": "What is two and two?",
     "usage": {"type": "duration", "seconds": 0.8}},
    {"type": "response.created", "response": {**_RESPONSE, "status": "in_progress"}},
    {"type": "response.output_audio.delta", **_IDS, "delta": _PCM},
    {"type": "response.output_audio_transcript.delta", **_IDS, "delta": "Four."},
    {"type": "response.output_audio.done", **_IDS},
    {"type": "response.function_call_arguments.done", "response_id": "resp_1",
     "item_id": "item_3", "output_index": 0, "call_id": "call_1", "name": "calculate",
     "arguments": '{"expression": "2+2"}'},
    {"type": "response.done", "response": {**_RESPONSE, "status": "completed",
                                           "usage": _USAGE}},
    {"type": "response.done", "response": {
        **_RESPONSE, "status": "failed", "usage": _USAGE, "status_details": {
            "type": "failed", "error": {"type": "server_error", "code": "x", "message": "m"}}}},
    {"type": "rate_limits.updated", "rate_limits": [
        {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.01}]},
    {"type": "error", "error": {"type": "invalid_request_error", "code": "rate_limit_exceeded",
                                "message": "Rate limit reached."}},
    {"type": "input_audio_buffer.committed", "item_id": "item_1", "previous_item_id": None},
]
"""One valid event of each kind the agent handles (and one it only passes over)."""
for _number, _seed in enumerate(_SEEDS):
    _seed["event_id"] = f"event_{_number}"

_FINAL: list[dict[str, Any]] = [  # a whole turn with ids of its own: the session still answers
    {"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "item_f"},
    {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 500, "item_id": "item_f"},
    {"type": "conversation.item.input_audio_transcription.completed", "item_id": "item_f",
     "content_index": 0, "transcript": "Still there?",
     "usage": {"type": "duration", "seconds": 0.5}},
    {"type": "response.created", "response": {**_RESPONSE, "id": "resp_f",
                                              "status": "in_progress"}},
    {"type": "response.output_audio.delta", **_IDS, "response_id": "resp_f",
     "item_id": "item_g", "delta": _PCM},
    {"type": "response.output_audio_transcript.delta", **_IDS, "response_id": "resp_f",
     "item_id": "item_g", "delta": "Yes."},
    {"type": "response.done", "response": {**_RESPONSE, "id": "resp_f",
                                           "status": "completed", "usage": _USAGE}},
]
for _number, _seed in enumerate(_FINAL):
    _seed["event_id"] = f"event_f{_number}"

_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats()
                     | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
_ODD: st.SearchStrategy[Any] = st.sampled_from([
    "x" * 200_000, "word " * 40_000,  # huge text
    base64.b64encode(bytes(960_000)).decode(),  # 20 s of audio in one delta
    "not base64!", "====", "QUJD", "QQ", "", "\x00", "💥", "A" * 5,  # bad or odd-length audio
    -1, 2**70, -(2**70), 1e308, float("nan"), float("inf"), [], {}, None, True])
"""Values at the edges: huge, not base64, an odd number of PCM bytes, out of range."""


def _places(doc: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every value below the event's type."""
    items = (doc.items() if isinstance(doc, dict)
             else enumerate(doc) if isinstance(doc, list) else [])
    return [p for key, value in items if at or key != "type"
            for p in [(*at, key), *_places(value, (*at, key))]]


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with fields dropped or changed, anywhere in it."""
    event: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        places = _places(event)
        if not places:
            break
        place = draw(st.sampled_from(places))
        parent: Any = event
        for key in place[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            del parent[place[-1]]
        else:
            parent[place[-1]] = draw(_ODD | _JSON)
    return event


_EVENTS = (st.sampled_from(_SEEDS) | _mutated() | _mutated()
           | st.builds(lambda kind, rest: {**rest, "type": kind},
                       st.text(max_size=30) | st.sampled_from(["response.done", "error"]),
                       st.dictionaries(st.text(max_size=8), _JSON, max_size=3)))
_FRAMES = (_EVENTS.map(lambda e: json.dumps(e).encode())
           | _JSON.map(lambda v: json.dumps(v).encode())  # JSON, but no object
           | st.binary(max_size=40)
           | st.sampled_from([b"", b"{", b"[" * 3000 + b"]" * 3000, b"\xff\xfe{}"]))
"""What may come over the socket: events mostly, and now and then anything at all."""


class _Socket:
    """The WebSocket under the SDK's connection: the scripted frames, then quiet."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = deque(frames)
        self.drained = asyncio.Event()

    async def recv(self, decode: bool = False) -> bytes:
        if not self.frames:
            self.drained.set()
            await asyncio.Event().wait()
        return self.frames.popleft()

    async def send(self, data: str | bytes) -> None:
        json.loads(data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass


class _Client:
    """AsyncOpenAI as far as `Link` uses it: `realtime.connect(model=…)`."""

    def __init__(self, socket: _Socket) -> None:
        self.realtime = self
        self.socket = socket

    @contextlib.asynccontextmanager
    async def connect(self, model: str) -> AsyncIterator[AsyncRealtimeConnection]:
        yield AsyncRealtimeConnection(cast(Any, self.socket))


class _Speaker:
    """Plays at once: whatever is written counts as played, and must be sound."""

    rate = 48000
    output_latency = 0.0
    queued_samples = 0

    def __init__(self) -> None:
        self.played_samples = 0

    def write(self, samples: npt.ArrayLike, sample_rate: int) -> None:
        audio = np.asarray(samples)
        assert audio.dtype == np.float32 and np.isfinite(audio).all()
        self.played_samples += audio.size

    def flush(self) -> None:
        pass


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> CloudSettings:
    """The default [cloud] settings, read once."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PARLEY_CONFIG", str(tmp_path_factory.mktemp("none") / "config.toml"))
        return load_settings().cloud


_TOOLS = ToolRegistry([Tool("calculate", "Do a sum.", {
    "type": "object", "properties": {"expression": {"type": "string"}},
    "required": ["expression"]}, calculate)])
"""A tool that only computes, for the function calls the frames ask for."""


async def _session(cloud: CloudSettings, frames: list[bytes]) -> list[AgentEvent]:
    """Feed the frames, then a whole turn; every event the agent published."""
    tasks: list[asyncio.Task[Any]] = []  # the turn's tools and its settling run as tasks

    def keep(loop: asyncio.AbstractEventLoop, coro: Any, **options: Any) -> asyncio.Task[Any]:
        tasks.append(asyncio.Task(coro, loop=loop, **options))
        return tasks[-1]

    asyncio.get_running_loop().set_task_factory(keep)
    socket = _Socket(frames + [json.dumps(e).encode() for e in _FINAL])
    agent = CloudAgent(cast(AsyncOpenAI, _Client(socket)), cloud, _Speaker(), tools=_TOOLS)
    events: list[AgentEvent] = []
    agent.subscribe(events.append)
    run = asyncio.create_task(agent.run())
    await asyncio.wait({run, asyncio.create_task(socket.drained.wait())}, timeout=2,
                       return_when=asyncio.FIRST_COMPLETED)
    for _ in range(5):
        await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await agent.close()
    failed = [t.exception() for t in tasks if not t.cancelled() and t.exception()]
    assert not failed, failed
    assert socket.drained.is_set(), "the session ended before reading every frame"
    return events


def _told_in_words(events: list[AgentEvent]) -> None:
    for event in events:
        if isinstance(event, ErrorOccurred):
            assert event.message and event.hint, event


def _answered_the_last_turn(events: list[AgentEvent]) -> None:
    """The session went on: the whole turn after the frames was heard and answered (how it
    ends may depend on them: a tool call they left pending runs first)."""
    said = [e for e in events if isinstance(e, UserSaid)]
    answered = [e for e in events if isinstance(e, AssistantDelta)]
    assert said and said[-1].text == "Still there?", events[-5:]
    assert answered and answered[-1].delta == "Yes." and answered[-1].turn == said[-1].turn


def test_the_seeds_are_events_the_protocol_allows() -> None:
    for event in [*_SEEDS, *_FINAL]:
        validate(SERVER_EVENTS, event)


def test_a_frame_that_is_no_event_is_skipped_and_the_user_told(cloud: CloudSettings) -> None:
    turn = [json.dumps(e).encode() for e in (_SEEDS[0], _SEEDS[3])]
    events = asyncio.run(_session(cloud, [b"{", *turn, json.dumps(
        {**_SEEDS[4], "delta": "not base64!"}).encode()]))
    errors = [e for e in events if isinstance(e, ErrorOccurred)]
    assert len(errors) == 2 and "skipped" in errors[0].message, errors
    _told_in_words(events)
    _answered_the_last_turn(events)
    assert [t.user_text for t in events if isinstance(t, TurnMetrics)][-1] == "Still there?"


@_FUZZ
@example(frames=[b"[" * 3000 + b"]" * 3000])
@example(frames=[json.dumps(e).encode() for e in (  # a call whose name is no text
    _SEEDS[0], _SEEDS[3], {**_SEEDS[7], "name": ["calculate"]}, _SEEDS[8])])
@given(frames=st.lists(_FRAMES, max_size=8))
def test_any_server_frames_are_handled_or_skipped_and_the_session_goes_on(
        cloud: CloudSettings, frames: list[bytes]) -> None:
    events = asyncio.run(_session(cloud, frames))
    _told_in_words(events)
    _answered_the_last_turn(events)
