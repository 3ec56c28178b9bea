"""On loudspeakers Parley hears its own voice and must not answer it, but it must stop when
the user talks over it.

The private PulseAudio routes the speaker back into the microphone (attenuated, as a room
does); the agent runs on the real default engines with the same VoiceLoop, Playback and
echo canceller as `parley run`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.conversation.events import (
    AgentEvent,
    AssistantDone,
    Interrupted,
    InterruptionIgnored,
    MicLevel,
    State,
    StateChanged,
    TurnMetrics,
    UserSaid,
)
from app.conversation.outputs import SpeakerOutput
from app.conversation.session import endpointer_factory, open_session
from app.conversation.voice import VoiceLoop
from app.settings import load_settings
from audio.devices import pick_device
from audio.playback import Playback
from tests import waiting
from tests.speech import conversation_wav

LONG_QUESTION = "Tell me a story about a dragon."
OVER_IT = "How far away is the moon?"


async def until(events: list[AgentEvent], wanted: Callable[[AgentEvent], bool],
                timeout: float, after: int = 0) -> AgentEvent:
    """The first event from `events[after]` on (already seen or still to come) that
    `wanted` accepts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in events[after:]:
            if wanted(event):
                return event
        await asyncio.sleep(0.05)
    raise AssertionError(f"not seen within {timeout} s:\n{story(events)}")


def story(events: list[AgentEvent]) -> str:
    """The conversation as a reader would follow it, for failure messages."""
    lines = []
    for e in events:
        if isinstance(e, UserSaid):
            lines.append(f"{e.turn} user: {e.text}")
        elif isinstance(e, AssistantDone):
            lines.append(f"{e.turn} parley: {e.text}")
        elif isinstance(e, Interrupted | InterruptionIgnored):
            lines.append(f"{e.turn} {e}")
        elif isinstance(e, TurnMetrics):
            lines.append(f"{e.turn} kept: {e.assistant_text} "
                         f"({e.metrics_ms.get('tts_audio_seconds', 0):.1f} s of speech)")
    return "\n".join(lines)


def test_parley_finishes_its_answer_over_its_own_echo_and_stops_when_the_user_talks(
        pulse: Any, tmp_path: Path, user_dirs: Path, default_models: dict[str, Any]) -> None:
    question = conversation_wav(tmp_path / "q.wav", [LONG_QUESTION], gap_s=0.2)
    interruption = conversation_wav(tmp_path / "i.wav", [OVER_IT], gap_s=0.2)
    events: list[AgentEvent] = []

    async def conversation() -> None:
        config = load_settings()
        mic, speaker = pick_device(None, "input"), pick_device(None, "output")
        with Playback(speaker) as playback:
            session = await open_session(config, SpeakerOutput(playback))
            session.agent.subscribe(events.append)
            voice = VoiceLoop(session.agent, endpointer_factory(config))
            listening = asyncio.create_task(voice.run(mic))
            try:
                await until(events, lambda e: isinstance(e, MicLevel), 10)  # the mic is open
                # 1. A whole answer, heard back through the room, does not interrupt itself.
                await asyncio.to_thread(pulse.play_into_mic, question)
                first = await until(events, lambda e: isinstance(e, TurnMetrics), 180)
                assert isinstance(first, TurnMetrics)
                assert first.metrics_ms["tts_audio_seconds"] > 2.0, story(events)
                assert not [e for e in events if isinstance(e, Interrupted)], story(events)
                done = [e for e in events if isinstance(e, AssistantDone)]
                assert [d.text for d in done] == [first.assistant_text], story(events)
                # 2. The same question again; the user talks over the answer.
                await asyncio.sleep(1.0)
                seen = len(events)
                await asyncio.to_thread(pulse.play_into_mic, question)
                await until(events, lambda e: e == StateChanged(State.SPEAKING), 180, seen)
                start = playback.played_seconds  # the user hears a second of it, then talks
                await waiting.until(lambda: playback.played_seconds - start >= 1.0, 30,
                                    "a second of the answer to be played")
                await asyncio.to_thread(pulse.play_into_mic, interruption)
                cut = await until(events, lambda e: isinstance(e, Interrupted), 60)
                assert isinstance(cut, Interrupted)
                # (a stretch of noise with no words in it also takes a turn number)
                answered = await until(
                    events, lambda e: isinstance(e, TurnMetrics) and e.turn > cut.turn, 180)
            finally:
                listening.cancel()
                await session.close()
        told = story(events)
        said = [e for e in events if isinstance(e, UserSaid)]
        assert len(said) == 3, told  # and nothing it said itself was taken for the user
        assert cut.by == "speech" and cut.turn == said[1].turn, told
        assert isinstance(answered, TurnMetrics)
        assert "moon" in answered.user_text.lower(), told
        assert answered.assistant_text, told
        second = [e for e in events if isinstance(e, TurnMetrics) and e.turn == cut.turn]
        assert second and second[0].assistant_text == cut.heard_text, told
        # Its own voice may pause it for a moment (AEC3 lets ~0.1 s of it through now and
        # then: `InterruptionIgnored` in the story), but never more: the user's words were
        # the only interruption. The echo bench counts such pauses.
        assert [e for e in events if isinstance(e, Interrupted)] == [cut], told

    with pulse.speaker_heard_by_mic(volume=0.7):
        asyncio.run(conversation())
