"""The test Realtime server is as strict as the protocol: what it accepts and sends is what
the official SDK's models allow, so a client passing against it speaks GA Realtime."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.realtime_server import (
    CLIENT_EVENTS,
    SERVER_EVENTS,
    ProtocolViolation,
    RealtimeServer,
    Scenario,
    validate,
)

_GOOD_UPDATE: dict[str, Any] = {
    "type": "session.update",
    "session": {"type": "realtime", "instructions": "Be brief.",
                "audio": {"input": {"turn_detection": {"type": "server_vad"}}}}}


def test_a_ga_client_event_validates() -> None:
    validate(CLIENT_EVENTS, _GOOD_UPDATE)
    validate(CLIENT_EVENTS, {"type": "conversation.item.truncate", "item_id": "item_1",
                             "content_index": 0, "audio_end_ms": 1200})


@pytest.mark.parametrize("event", [
    pytest.param({**_GOOD_UPDATE, "session_id": "x"}, id="extra key at the top"),
    pytest.param({"type": "session.update", "session": {
        **_GOOD_UPDATE["session"], "audio": {"input": {"turn_detection": {
            "type": "server_vad", "sensitivity": 3}}}}}, id="extra key deep inside"),
    pytest.param({"type": "session.update", "session": {"modalities": ["audio"],
                                                        "voice": "alloy"}},
                 id="beta session shape"),
    pytest.param({"type": "input_audio_buffer.append"}, id="missing field"),
    pytest.param({"type": "response.audio.delta", "delta": ""}, id="not a client event"),
])
def test_a_malformed_client_event_is_rejected(event: dict[str, Any]) -> None:
    with pytest.raises(ProtocolViolation):
        validate(CLIENT_EVENTS, event)


def test_beta_named_server_events_are_not_sendable() -> None:
    with pytest.raises(ProtocolViolation):
        validate(SERVER_EVENTS, {"type": "response.audio.delta", "event_id": "e",
                                 "response_id": "r", "item_id": "i", "output_index": 0,
                                 "content_index": 0, "delta": ""})


@pytest.fixture
def server() -> Iterator[RealtimeServer]:
    srv = RealtimeServer(Scenario()).start()
    yield srv
    srv.stop()
    assert srv.faults == []


def test_the_server_answers_a_bad_event_with_an_error_and_keeps_the_session(
        server: RealtimeServer) -> None:
    async def talk() -> list[dict[str, Any]]:
        url = f"ws://127.0.0.1:{server.port}/v1/realtime?model=gpt-realtime"
        async with connect(url, additional_headers={"Authorization": "Bearer sk-x"}) as ws:
            events = [json.loads(await ws.recv())]
            await ws.send(json.dumps({**_GOOD_UPDATE, "surprise": True}))
            events.append(json.loads(await ws.recv()))
            await ws.send(json.dumps(_GOOD_UPDATE))
            events.append(json.loads(await ws.recv()))
            return events

    created, error, updated = asyncio.run(talk())
    assert created["type"] == "session.created"
    assert error["type"] == "error" and error["error"]["code"] == "invalid_event"
    assert "surprise" in error["error"]["message"]
    assert updated["type"] == "session.updated"
    assert updated["session"]["instructions"] == "Be brief."
    assert len(server.rejected) == 1 and "surprise" in server.rejected[0][1]
    assert [e["type"] for e in server.connections[0].received] == ["session.update"]


def test_the_server_refuses_a_connection_without_a_key(server: RealtimeServer) -> None:
    async def attempt() -> None:
        async with connect(f"ws://127.0.0.1:{server.port}/v1/realtime?model=gpt-realtime"):
            pass

    with pytest.raises(Exception, match="401"):
        asyncio.run(attempt())
