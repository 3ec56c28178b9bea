"""Cloud conversations through the official SDK against the strict local Realtime server,
with the agent playing on the (virtual) speaker: tools, errors, a dropped connection,
rate limits and the Stop button. (Barge-in by voice: tests/e2e/test_cloud_barge_in.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import AsyncOpenAI

from app.cloud.agent import CloudAgent
from app.cloud.link import CloudError
from app.cloud.settings import CloudSettings
from app.conversation.events import (
    AgentEvent,
    Announcement,
    AssistantDone,
    ErrorOccurred,
    Interrupted,
    RateLimitsUpdated,
    State,
    ToolCalled,
    ToolFinished,
    TurnMetrics,
)
from app.settings import load_settings
from app.tools import ToolRegistry, default_tools
from audio.devices import pick_device
from audio.playback import Playback
from tests.realtime_server import RealtimeServer, Reply, Scenario
from tests.speech import espeak
from tests.waiting import until

_STORY = ("Once upon a time a lighthouse keeper lived alone on a small rocky island, and every "
          "night she climbed the long stairs to light the lamp for the ships at sea.")


@pytest.fixture
def serve(pulse: Any, user_dirs: Any, realtime_servers: Any) -> Any:
    """Scripted servers, with the virtual speaker and fresh user folders."""
    return realtime_servers


@contextlib.asynccontextmanager
async def talking(settings: CloudSettings | None = None, tools: ToolRegistry | None = None
                  ) -> AsyncIterator[tuple[CloudAgent, list[AgentEvent]]]:
    """A connected cloud agent on the default speaker, and every event it publishes."""
    events: list[AgentEvent] = []
    with Playback(pick_device(None, "output")) as playback:
        agent = CloudAgent(AsyncOpenAI(api_key="sk-test-local"),
                           settings or load_settings().cloud, playback, tools=tools)
        agent.subscribe(events.append)
        session = asyncio.create_task(agent.run())
        await asyncio.wait_for(agent.link.connected.wait(), 10)
        try:
            yield agent, events
        finally:
            session.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await session
            await agent.close()


def _sent(server: RealtimeServer, kind: str, connection: int = 0) -> list[dict[str, Any]]:
    return [e for e in server.connections[connection].sent if e["type"] == kind]


async def heard_for(agent: CloudAgent, seconds: float) -> None:
    """Once the reply sounds, let the user hear `seconds` of it, on the speaker's own count."""
    await until(lambda: agent.state == State.SPEAKING, 30, "the reply to start sounding")
    speaker = agent.speaker
    start = speaker.played_samples
    await until(lambda: speaker.played_samples - start >= seconds * speaker.rate, 30,
                lambda: f"{seconds} s of the reply to be played (the speaker played "
                        f"{(speaker.played_samples - start) / speaker.rate:.2f} s)")


def test_asking_the_time_runs_the_tool_and_speaks_its_answer(serve: Any) -> None:
    def answer(items: list[dict[str, Any]]) -> str:
        output = json.loads(next(i for i in reversed(items)
                                 if i["type"] == "function_call_output")["output"])
        return f"It is {output['time']} on {output['date']}."

    server = serve(Scenario(replies=[Reply(call=("get_current_time", {})), Reply(answer)]))

    async def story() -> TurnMetrics | None:
        async with talking() as (agent, _):
            return await asyncio.wait_for(agent.say("What time is it?"), 30)

    turn = asyncio.run(story())
    assert turn is not None
    received = server.connections[0].received
    call = _sent(server, "response.function_call_arguments.done")[0]
    outputs = [e for e in received if e["type"] == "conversation.item.create"
               and e["item"]["type"] == "function_call_output"]
    assert [o["item"]["call_id"] for o in outputs] == [call["call_id"]]
    told = json.loads(outputs[0]["item"]["output"])
    now = datetime.datetime.now()
    assert told["time"] in {now.strftime("%H:%M"),
                            (now - datetime.timedelta(minutes=1)).strftime("%H:%M")}
    # the tool's answer was asked for, and that is what the user heard
    assert received[received.index(outputs[0]) + 1]["type"] == "response.create"
    assert told["time"] in turn.assistant_text
    usages = [e["response"]["usage"] for e in _sent(server, "response.done")]
    assert len(usages) == 2
    assert turn.tokens["completion"] == sum(u["output_tokens"] for u in usages)


def test_an_error_from_the_service_is_shown_in_words_and_the_talk_goes_on(serve: Any
                                                                         ) -> None:
    server = serve(Scenario(replies=[
        Reply(error=("rate_limit_exceeded", "Rate limit reached for gpt-realtime.")),
        Reply("Sorry for the wait.")]))

    async def story() -> tuple[TurnMetrics | None, TurnMetrics | None, list[AgentEvent],
                               State]:
        async with talking() as (agent, events):
            failed = await asyncio.wait_for(agent.say("Hello?"), 30)
            state = agent.state
            answered = await asyncio.wait_for(agent.say("Hello again?"), 30)
            return failed, answered, events, state

    failed, answered, events, state_after_error = asyncio.run(story())
    assert failed is None and state_after_error == State.LISTENING
    errors = [e for e in events if isinstance(e, ErrorOccurred)]
    sent_error = _sent(server, "error")[0]["error"]
    assert len(errors) == 1
    assert sent_error["message"] in errors[0].message
    assert "wait" in errors[0].hint and "local mode" in errors[0].hint
    assert answered is not None and answered.assistant_text == "Sorry for the wait."


def test_the_services_rate_limits_are_published(serve: Any) -> None:
    server = serve(Scenario(replies=[Reply("Fine, thanks.")]))

    async def story() -> list[AgentEvent]:
        async with talking() as (agent, events):
            await asyncio.wait_for(agent.say("How are you?"), 30)
            # the turn ends once its reply is played; the limits follow the response
            await until(lambda: any(isinstance(e, RateLimitsUpdated) for e in events), 10,
                        "the rate limits sent after the response")
            return events

    events = asyncio.run(story())
    published = [e for e in events if isinstance(e, RateLimitsUpdated)]
    sent = _sent(server, "rate_limits.updated")
    assert len(published) == len(sent) == 1
    assert [(r.name, r.limit, r.remaining, r.reset_seconds) for r in published[0].limits] == [
        (r["name"], r["limit"], r["remaining"], r["reset_seconds"])
        for r in sent[0]["rate_limits"]]


def test_a_connection_cut_mid_reply_is_restored_with_the_conversation(serve: Any) -> None:
    server = serve(Scenario(replies=[Reply(_STORY, cut_after_s=1.5),
                                     Reply("Yes, I am back.")]))

    async def story() -> tuple[TurnMetrics | None, TurnMetrics | None, list[AgentEvent]]:
        async with talking() as (agent, events):
            cut = await asyncio.wait_for(agent.say("Tell me a story."), 30)
            await asyncio.wait_for(agent.link.connected.wait(), 30)
            back = await asyncio.wait_for(agent.say("Are you back?"), 30)
            return cut, back, events

    cut, back, events = asyncio.run(story())
    assert cut is None
    notices = [e.message for e in events if isinstance(e, ErrorOccurred)]
    assert len(notices) == 2
    assert "Lost the connection" in notices[0] and "reconnecting" in notices[0]
    assert "Reconnected" in notices[1]
    assert len(server.connections) == 2
    # the new session got the persona, the tools and the conversation so far, in order
    restored = server.connections[1].received
    update = restored[0]
    assert update["type"] == "session.update"
    assert update["session"]["instructions"] == server.connections[0].received[0][
        "session"]["instructions"]
    assert {t["name"] for t in update["session"]["tools"]} >= {"get_current_time"}
    items = [e["item"] for e in restored[1:3]]
    assert [(i["role"], i["content"][0]["type"]) for i in items] == [
        ("user", "input_text"), ("assistant", "output_text")]
    assert items[0]["content"][0]["text"] == "Tell me a story."
    partial = items[1]["content"][0]["text"]
    assert partial and _STORY.startswith(partial) and len(partial) < len(_STORY)
    assert back is not None and back.assistant_text == "Yes, I am back."


def test_the_stop_button_cancels_the_reply_and_keeps_what_was_heard(serve: Any) -> None:
    server = serve(Scenario(replies=[Reply(_STORY)]))

    async def story() -> tuple[TurnMetrics | None, list[AgentEvent], CloudAgent]:
        async with talking() as (agent, events):
            asking = asyncio.ensure_future(agent.say("Tell me a story."))
            await heard_for(agent, 1.5)
            agent.interrupt()
            result = await asyncio.wait_for(asking, 5)
            # the server answers the cancel (response.done), then the truncate
            await until(lambda: _sent(server, "conversation.item.truncated"), 10,
                        lambda: "the server to confirm the truncation; it sent "
                                f"{[e['type'] for e in server.connections[0].sent][-5:]}")
            return result, events, agent

    result, events, agent = asyncio.run(story())
    received = server.connections[0].received
    kinds = [e["type"] for e in received]
    assert "response.cancel" in kinds  # the server does not cancel on its own for Stop
    truncate = received[kinds.index("conversation.item.truncate")]
    assert 1000 < truncate["audio_end_ms"] < 3500
    assert _sent(server, "response.done")[0]["response"]["status"] == "cancelled"
    assert _sent(server, "conversation.item.truncated")[0]["audio_end_ms"] == truncate[
        "audio_end_ms"]
    interrupted = [e for e in events if isinstance(e, Interrupted)]
    assert len(interrupted) == 1 and interrupted[0].by == "stop"
    heard = interrupted[0].heard_text
    assert heard and _STORY.startswith(heard) and len(heard) < len(_STORY) / 2
    # the turn counts, as far as it was heard, and only that is remembered
    assert result is not None and result.assistant_text == heard
    assert not any(isinstance(e, AssistantDone) for e in events)
    assert agent.history[-1].role == "assistant" and agent.history[-1].content == heard


def test_a_timer_set_by_voice_is_announced_when_it_runs_out(serve: Any) -> None:
    def announce(items: list[dict[str, Any]]) -> str:
        note = next(i for i in reversed(items) if i.get("role") == "system")
        return "Time is up: " + note["content"][0]["text"]

    server = serve(Scenario(replies=[
        Reply(call=("set_timer", {"seconds": 1, "label": "tea timer"})),
        Reply("Your tea timer is running."), Reply(announce)]))

    async def story() -> tuple[list[TurnMetrics], list[AgentEvent]]:
        async with talking() as (agent, events):
            await asyncio.wait_for(agent.say("Set a tea timer for one second."), 30)
            await until(lambda: len(agent.turns) >= 2, 30, "the timer to be announced")
            return agent.turns, events

    (set_turn, rang), events = asyncio.run(asyncio.wait_for(story(), 60))
    # the window is told of the call, its result and the announcement, in that order
    told = [e for e in events if isinstance(e, ToolCalled | ToolFinished | Announcement)]
    assert told[0] == ToolCalled(1, "set_timer", '{"seconds": 1, "label": "tea timer"}')
    assert isinstance(told[1], ToolFinished) and told[1].turn == 1
    assert json.loads(told[1].result)["set"] == "1 second timer 'tea timer'"
    assert told[2:] == [Announcement("Your 1 second timer 'tea timer' is done.")]
    assert set_turn.assistant_text == "Your tea timer is running."
    assert rang.user_text == "" and "tea timer" in rang.assistant_text
    received = server.connections[0].received
    note = next(e for e in received if e["type"] == "conversation.item.create"
                and e["item"].get("role") == "system")
    assert received[received.index(note) + 1]["type"] == "response.create"
    # announced only after the reply that was playing had finished
    done = [e for e in server.connections[0].sent if e["type"] == "response.done"]
    assert len(done) == 3 and [d["response"]["status"] for d in done] == ["completed"] * 3


def test_a_toolbox_it_is_given_runs_its_calls_and_is_not_closed_with_it(serve: Any) -> None:
    """The window's toolbox serves both modes: its owner routes the reminders and closes
    it, so the cloud agent runs calls on it and leaves it running when it closes."""
    serve(Scenario(replies=[Reply(call=("set_timer", {"seconds": 60, "label": "pasta"})),
                            Reply("Your pasta timer is running.")]))
    said: list[str] = []

    async def story() -> tuple[list[AgentEvent], Any]:
        toolbox = default_tools(said.append)
        toolbox.start()
        try:
            async with talking(tools=toolbox) as (agent, events):
                await asyncio.wait_for(agent.say("Set a pasta timer for a minute."), 30)
            pending = toolbox.reminders.timers_left()
            toolbox.reminders.set_timer(seconds=0.1, label="after")
            await until(lambda: said, 10, "the toolbox to announce after the agent closed")
            return events, pending
        finally:
            toolbox.close()

    events, pending = asyncio.run(asyncio.wait_for(story(), 60))
    assert [t["what"] for t in pending["timers"]] == ["1 minute timer 'pasta'"]
    assert said == ["Your 0.1 second timer 'after' is done."]
    assert [type(e) for e in events if isinstance(e, ToolCalled | ToolFinished)] == [
        ToolCalled, ToolFinished]


def test_push_to_talk_sends_what_was_said_while_held(serve: Any) -> None:
    server = serve(Scenario(heard=["What is the weather like?"],
                            replies=[Reply("I cannot see outside, sorry.")]))
    settings = dataclasses.replace(load_settings().cloud, turn_detection="push_to_talk")
    words = espeak("What is the weather like?")

    async def story() -> list[TurnMetrics]:
        async with talking(settings) as (agent, _):
            agent.press_to_talk()
            for start in range(0, words.size, 480):
                agent.hear(words[start:start + 480], time.perf_counter())
            agent.release_to_talk()
            await until(lambda: agent.turns, 30, "the answer to the held question")
            return agent.turns

    turns = asyncio.run(asyncio.wait_for(story(), 60))
    session = server.connections[0]
    assert session.received[0]["session"]["audio"]["input"]["turn_detection"] is None
    kinds = [e["type"] for e in session.received]
    assert kinds.index("input_audio_buffer.clear") < kinds.index(
        "input_audio_buffer.append") < kinds.index("input_audio_buffer.commit") < kinds.index(
        "response.create")
    assert not [e for e in session.sent if e["type"].startswith("input_audio_buffer.speech")]
    sent_seconds = sum(len(e["audio"]) * 3 / 4 / 2 for e in session.of_type(
        "input_audio_buffer.append")) / 24000
    assert abs(sent_seconds - words.size / 16000) < 0.05
    assert turns[0].user_text == "What is the weather like?"
    assert turns[0].assistant_text == "I cannot see outside, sorry."


def test_a_refused_key_stops_at_once_with_what_to_do(serve: Any) -> None:
    server = serve(Scenario(api_key="sk-the-right-one"))

    async def story() -> None:
        agent = CloudAgent(AsyncOpenAI(api_key="sk-a-wrong-one"),
                           load_settings().cloud, Playback(pick_device(None, "output")))
        await asyncio.wait_for(agent.run(), 10)

    with pytest.raises(CloudError, match="refused the API key") as refused:
        asyncio.run(story())
    assert "parley cloud set-key" in refused.value.hint
    assert server.connections == []


def test_when_the_service_stays_away_it_gives_up_and_says_so(serve: Any) -> None:
    server = serve(Scenario())
    server.stop()  # nothing listens there any more
    settings = dataclasses.replace(load_settings().cloud, reconnect_attempts=2)
    events: list[AgentEvent] = []

    async def story() -> None:
        agent = CloudAgent(AsyncOpenAI(api_key="sk-test-local"), settings,
                           Playback(pick_device(None, "output")))
        agent.subscribe(events.append)
        await asyncio.wait_for(agent.run(), 20)

    with pytest.raises(CloudError, match="gave up after 2 attempts") as gave_up:
        asyncio.run(story())
    assert "local mode" in gave_up.value.hint
    retries = [e.message for e in events if isinstance(e, ErrorOccurred)]
    assert [("attempt 1 of 2" in m, "attempt 2 of 2" in m) for m in retries] == [
        (True, False), (False, True)]


def test_typing_while_disconnected_says_it_was_not_sent(serve: Any) -> None:
    serve(Scenario())
    events: list[AgentEvent] = []

    async def story() -> TurnMetrics | None:
        agent = CloudAgent(AsyncOpenAI(api_key="sk-test-local"), load_settings().cloud,
                           Playback(pick_device(None, "output")))
        agent.subscribe(events.append)
        return await asyncio.wait_for(agent.say("Anyone there?"), 5)  # run() never started

    assert asyncio.run(story()) is None
    errors = [e for e in events if isinstance(e, ErrorOccurred)]
    assert len(errors) == 1 and "not sent" in errors[0].message
