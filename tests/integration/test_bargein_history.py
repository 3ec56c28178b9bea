"""When the user cuts Parley off, its memory of the reply ends where the user stopped
hearing it: the real engines speak, a speaker that plays in real time says how far it got.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from app.conversation.agent import Agent
from app.conversation.events import AgentEvent, AssistantDelta, Interrupted, State, UserSaid
from app.conversation.session import open_session
from app.settings import load_settings
from audio.echo import FarEnd
from engines.protocols import Audio
from tests.speech import espeak

STORY = "Tell me a story about a dragon."
WORDS_PER_SECOND = (1.0, 4.5)
"""Piper's default voice speaks about 2.5 words a second; the bounds leave room for
pauses and long words."""


class RealTimeSpeaker:
    """An output that plays what it is given at the pace of the clock (no device)."""

    far_end: FarEnd | None = None

    def __init__(self) -> None:
        self.written = 0.0
        self.played = 0.0
        self.paused = False
        self._since = time.monotonic()

    def _advance(self) -> None:
        now = time.monotonic()
        if not self.paused:
            self.played = min(self.written, self.played + now - self._since)
        self._since = now

    def write(self, samples: Audio, sample_rate: int) -> None:
        self._advance()
        self.written += len(samples) / sample_rate

    async def drain(self) -> None:
        while self.played_seconds() < self.written:
            await asyncio.sleep(0.02)

    def flush(self) -> None:
        self._advance()
        self.written, self.paused = self.played, False

    def pause(self) -> None:
        self._advance()
        self.paused = True

    def resume(self) -> None:
        self._advance()
        self.paused = False

    def played_seconds(self) -> float:
        self._advance()
        return self.played


async def speaking_for(agent: Agent, speaker: RealTimeSpeaker, seconds: float) -> float:
    """Wait until the reply has been heard for `seconds`; returns the speaker's position
    when it started."""
    while agent.state != State.SPEAKING:
        await asyncio.sleep(0.02)
    start = speaker.played_seconds()
    while speaker.played_seconds() - start < seconds:
        await asyncio.sleep(0.02)
    return start


def reply_text(events: list[AgentEvent], turn: int) -> str:
    return "".join(e.delta for e in events if isinstance(e, AssistantDelta) and e.turn == turn)


@pytest.mark.parametrize("by", ["speech", "stop"])
def test_the_history_keeps_only_the_words_played_before_the_interruption(
        by: str, user_dirs: Any, default_models: dict[str, Any]) -> None:
    events: list[AgentEvent] = []
    speaker = RealTimeSpeaker()
    cut_at: list[float] = []
    """Where the speaker was when the reply was cut (barge_in goes on to answer)."""

    def record(event: AgentEvent) -> None:
        events.append(event)
        if isinstance(event, Interrupted):
            cut_at.append(speaker.played_seconds())

    async def conversation() -> tuple[Agent, float]:
        session = await open_session(load_settings(), speaker)
        agent = session.agent
        agent.subscribe(record)
        try:
            story = asyncio.create_task(agent.say(STORY))
            start = await speaking_for(agent, speaker, 2.5)
            if by == "stop":
                agent.interrupt()
            else:
                agent.hold()
                await agent.barge_in(espeak("How far away is the moon?"), time.perf_counter())
            await story
            assert cut_at, "the reply was never cut"
            played = cut_at[0] - start
            return agent, played
        finally:
            await session.close()

    agent, played = asyncio.run(asyncio.wait_for(conversation(), 300))
    cut = [e for e in events if isinstance(e, Interrupted)]
    assert len(cut) == 1 and cut[0].by == by and cut[0].turn == 1
    heard = cut[0].heard_text.split()
    full = reply_text(events, 1).split()
    assert 0 < len(heard) < len(full)
    assert heard == full[:len(heard)]  # the start of the reply, word for word
    low, high = WORDS_PER_SECOND
    assert low * played - 2 <= len(heard) <= high * played + 2, (played, heard)
    history = [(m.role, m.content) for m in agent.history if m.role != "system"]
    assert history[:2] == [("user", STORY), ("assistant", cut[0].heard_text)]
    if by == "speech":
        said = [e.text for e in events if isinstance(e, UserSaid)]
        assert len(said) == 2 and "moon" in said[1].lower()
        assert history[2] == ("user", said[1]) and history[3][0] == "assistant"
        assert reply_text(events, 2).strip()
    else:
        assert len(history) == 2
