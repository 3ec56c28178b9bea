"""Talking over the agent: what counts as an interruption, and what the history keeps.

The Agent runs for real here; only the engines (scripted replies, one second of audio per
spoken piece) and the speaker (the test decides how much has been played) are stand-ins.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from app.conversation.agent import Agent, AgentSettings, Spoken
from app.conversation.events import (
    AgentEvent,
    ErrorOccurred,
    Interrupted,
    InterruptionIgnored,
    State,
    UserSaid,
)
from app.conversation.voice import VoiceLoop
from audio.bargein import (
    AEC_FLOOR_DBFS,
    DuplexMode,
    DuplexSettings,
    Endpointers,
    LoudnessGate,
)
from audio.echo import FarEnd
from audio.endpointing import Endpointer, SpeechStarted
from engines.model_ref import ModelRef
from engines.protocols import Audio, AudioChunk, Token, Transcript
from engines.vad_webrtc import WebRtcVAD
from tests.speech import espeak

RATE = 16000
MOON = "The moon is far away. It is about three hundred thousand kilometres from us."
SUN = "The sun is a star."


class ScriptedEngines:
    """Transcribes to the next scripted text; answers each user line from `replies`."""

    def __init__(self, heard: list[str], replies: dict[str, str]) -> None:
        self.heard = heard
        self.replies = replies
        self.cancelled: list[int] = []
        self.on_restart = None

    async def transcribe(self, audio: Audio, turn: int, generation: int) -> Transcript:
        return Transcript(self.heard.pop(0), "en", len(audio) / RATE)

    async def generate(self, messages: list[object], turn: int, generation: int,
                       max_tokens: int, temperature: float, tools: object = (),
                       may_call: bool = True) -> AsyncIterator[Token]:
        user = messages[-1].content  # type: ignore[attr-defined]
        for word in self.replies[user].split(" "):
            yield Token(word + " ")
            await asyncio.sleep(0)
        yield Token("", done=True, prompt_tokens=5, completion_tokens=5)

    async def synthesize(self, text: str, turn: int, generation: int
                         ) -> AsyncIterator[AudioChunk]:
        yield AudioChunk(np.zeros(RATE, dtype=np.float32), RATE)

    def cancel(self, generation: int) -> None:
        self.cancelled.append(generation)


class Speaker:
    """An output whose playing the test moves forward by hand."""

    far_end: FarEnd | None = None

    def __init__(self) -> None:
        self.written = 0.0
        self.played = 0.0
        self.paused = False

    def write(self, samples: Audio, sample_rate: int) -> None:
        self.written += len(samples) / sample_rate

    async def drain(self) -> None:
        while self.played < self.written:
            await asyncio.sleep(0.005)

    def flush(self) -> None:
        self.written, self.paused = self.played, False

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def played_seconds(self) -> float:
        return self.played


def make_agent(heard: list[str]) -> tuple[Agent, Speaker, list[AgentEvent]]:
    speaker, events = Speaker(), []
    engines = ScriptedEngines(heard, {"How far is the moon?": MOON,
                                      "Tell me about the sun.": SUN})
    agent = Agent(engines, speaker, AgentSettings("Be brief."))  # type: ignore[arg-type]
    agent.subscribe(events.append)
    return agent, speaker, events


async def until(condition: object) -> None:
    for _ in range(2000):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.001)
    raise AssertionError("timed out")


async def both_pieces_sent(agent: Agent, speaker: Speaker) -> None:
    await until(lambda: agent.state == State.SPEAKING and speaker.written >= 2.0)


def test_speech_with_words_interrupts_and_the_history_keeps_only_what_was_heard() -> None:
    async def story() -> None:
        agent, speaker, events = make_agent(["How far is the moon?", "Tell me about the sun."])
        first = asyncio.create_task(agent.hear(np.zeros(RATE, np.float32), 0.0))
        await both_pieces_sent(agent, speaker)
        speaker.played = 1.5  # all of piece one, half of piece two (4 of its 9 words)
        agent.hold()
        assert speaker.paused
        second = asyncio.create_task(agent.barge_in(np.zeros(RATE, np.float32), 0.0))
        await until(lambda: first.done() and agent.state == State.SPEAKING)  # the answer
        speaker.played = speaker.written
        await first
        answer = await second
        assert answer is not None and answer.assistant_text == SUN
        interrupted = [e for e in events if isinstance(e, Interrupted)]
        assert interrupted == [Interrupted(1, "The moon is far away. It is about three", "speech")]
        assert [e.text for e in events if isinstance(e, UserSaid)] == [
            "How far is the moon?", "Tell me about the sun."]
        assert [(m.role, m.content) for m in agent.history[1:]] == [
            ("user", "How far is the moon?"),
            ("assistant", "The moon is far away. It is about three"),
            ("user", "Tell me about the sun."),
            ("assistant", SUN)]
        assert agent.turns[0].assistant_text == "The moon is far away. It is about three"

    asyncio.run(asyncio.wait_for(story(), 10))


@pytest.mark.parametrize(("in_full", "answered"), [
    ("Wait, tell me about the sun.", "Wait, tell me about the sun."),
    ("It is about three hundred thousand kilometres", "about the sun"),  # its own words
    ("[BLANK_AUDIO]", "about the sun"),
])
def test_what_the_user_said_over_the_reply_is_read_in_full_when_it_makes_sense(
        in_full: str, answered: str) -> None:
    """AEC3's output decides that the user interrupted (there "Wait, tell me" was clipped);
    the linear canceller's output, read next, says what they said."""
    async def story() -> None:
        agent, speaker, events = make_agent(["How far is the moon?", "about the sun", in_full])
        agent.engines.replies.update({  # type: ignore[attr-defined]
            "Wait, tell me about the sun.": SUN, "about the sun": SUN})
        first = asyncio.create_task(agent.hear(np.zeros(RATE, np.float32), 0.0))
        await both_pieces_sent(agent, speaker)
        speaker.played = 1.5
        agent.hold()
        second = asyncio.create_task(agent.barge_in(
            np.zeros(RATE, np.float32), 0.0, linear=np.zeros(RATE, np.float32)))
        await until(lambda: first.done() and agent.state == State.SPEAKING)
        speaker.played = speaker.written
        answer = await second
        assert answer is not None and answer.user_text == answered
        assert [e.text for e in events if isinstance(e, UserSaid)][-1] == answered
        assert agent.history[-2].content == answered

    asyncio.run(asyncio.wait_for(story(), 10))


@pytest.mark.parametrize("noise", ["", "(coughs)", " [BLANK_AUDIO] "])
def test_a_cough_pauses_the_reply_which_then_carries_on_to_the_end(noise: str) -> None:
    async def story() -> None:
        agent, speaker, events = make_agent(["How far is the moon?", noise])
        first = asyncio.create_task(agent.hear(np.zeros(RATE, np.float32), 0.0))
        await both_pieces_sent(agent, speaker)
        speaker.played = 0.4
        agent.hold()
        assert await agent.barge_in(np.zeros(RATE // 4, np.float32), 0.0) is None
        assert not speaker.paused
        speaker.played = speaker.written
        result = await first
        assert result is not None and result.assistant_text == MOON
        assert [e for e in events if isinstance(e, InterruptionIgnored)] == [
            InterruptionIgnored(1)]
        assert not [e for e in events if isinstance(e, Interrupted)]
        assert agent.history[-1].content == MOON

    asyncio.run(asyncio.wait_for(story(), 10))


def test_its_own_voice_leaking_through_is_not_taken_for_the_user() -> None:
    async def story() -> None:
        agent, speaker, events = make_agent(["How far is the moon?", "is far away"])
        first = asyncio.create_task(agent.hear(np.zeros(RATE, np.float32), 0.0))
        await both_pieces_sent(agent, speaker)
        speaker.played = 1.2
        agent.hold()
        assert await agent.barge_in(np.zeros(RATE, np.float32), 0.0) is None
        speaker.played = speaker.written
        result = await first
        assert result is not None and result.assistant_text == MOON
        assert InterruptionIgnored(1) in events

    asyncio.run(asyncio.wait_for(story(), 10))


def test_stop_cuts_the_reply_to_the_words_heard() -> None:
    async def story() -> None:
        agent, speaker, events = make_agent(["How far is the moon?"])
        first = asyncio.create_task(agent.hear(np.zeros(RATE, np.float32), 0.0))
        await both_pieces_sent(agent, speaker)
        speaker.played = 0.5
        agent.interrupt()
        result = await first
        assert [e for e in events if isinstance(e, Interrupted)] == [
            Interrupted(1, "The moon", "stop")]
        assert result is not None and result.assistant_text == "The moon"
        assert agent.history[-1].content == "The moon"
        assert agent.state == State.LISTENING

    asyncio.run(asyncio.wait_for(story(), 10))


def test_played_audio_maps_back_to_whole_pieces_and_a_share_of_the_current_one() -> None:
    spoken = Spoken()
    spoken.begin("Hello there.")
    spoken.add(1.0)
    spoken.begin("One two three four.")
    spoken.add(1.0)
    spoken.add(1.0)
    spoken.begin("Not synthesized yet.")
    assert spoken.heard(0.0) == ""
    assert spoken.heard(0.6) == "Hello"
    assert spoken.heard(1.0) == "Hello there."
    assert spoken.heard(2.0) == "Hello there. One two"
    assert spoken.heard(3.5) == "Hello there. One two three four."


def vad() -> WebRtcVAD:
    v = WebRtcVAD(ModelRef("webrtcvad", "vad", "webrtcvad", Path()), {"aggressiveness": 2})
    v.load()
    return v


def test_quiet_sound_does_not_pass_the_loudness_gate() -> None:
    speech = espeak("Hello there, how are you today?")
    speech = 0.1 * speech / np.sqrt(np.mean(speech**2))
    gate = LoudnessGate(vad(), floor_dbfs=-30)
    frames = [speech[i:i + 480] for i in range(0, len(speech) - 480, 480)]
    loud = sum(gate.is_speech(f) for f in frames)
    quiet = sum(gate.is_speech(f * 0.05) for f in frames)  # 26 dB down
    assert loud > len(frames) // 3
    assert quiet == 0


@pytest.mark.parametrize("mode", [DuplexMode.AEC, DuplexMode.VAD_THRESHOLD])
def test_during_a_reply_a_short_sound_is_ignored_and_speech_pauses_it(mode: DuplexMode) -> None:
    endpointers = Endpointers(vad())
    duplex = DuplexSettings(mode, min_speech_ms=300)
    speech = espeak("Hold on, I have another question.")
    speech = (0.1 * speech / np.sqrt(np.mean(speech**2))).astype(np.float32)
    silence = np.zeros(RATE, dtype=np.float32)
    cough = speech[int(0.2 * RATE):int(0.35 * RATE)]  # 150 ms of voice
    short = endpointers.during_reply(duplex)
    assert not any(isinstance(e, SpeechStarted) for e in short.push(
        np.concatenate([silence, cough, silence])))
    started = [e for e in endpointers.during_reply(duplex).push(
        np.concatenate([silence, speech, silence])) if isinstance(e, SpeechStarted)]
    assert len(started) == 1 and 0.9 < started[0].at_s < 1.4


def test_over_a_reply_the_users_voice_is_confirmed_sooner_than_frame_by_frame() -> None:
    """The barge-in detector judges a 30 ms window every 10 ms: wherever the first word
    falls within a frame, it pauses the reply no later, and on average sooner."""
    speech = espeak("Wait, stop for a moment.")
    speech = (0.1 * speech / np.sqrt(np.mean(speech**2))).astype(np.float32)
    speech = speech[np.argmax(np.abs(speech) > 0.01):]
    duplex = DuplexSettings(DuplexMode.AEC)

    def confirmed_after(endpointer: Endpointer, lead: int) -> float:
        x = np.concatenate([np.zeros(lead, np.float32), speech])
        for i in range(0, len(x), 160):  # the microphone's 10 ms blocks
            if any(isinstance(e, SpeechStarted) for e in endpointer.push(x[i:i + 160])):
                return (i + 160 - lead) / RATE
        raise AssertionError("the speech was never confirmed")

    gains = []
    for offset in range(0, 480, 80):
        lead = RATE + offset
        sliding = confirmed_after(Endpointers(vad()).during_reply(duplex), lead)
        framed = confirmed_after(Endpointer(LoudnessGate(vad(), AEC_FLOOR_DBFS),
                                            min_speech_ms=duplex.min_speech_ms), lead)
        assert sliding <= framed
        gains.append(framed - sliding)
    assert np.mean(gains) >= 0.005


def test_a_faint_residual_of_echo_never_pauses_the_reply() -> None:
    endpointers = Endpointers(vad())
    speech = espeak("Hold on, I have another question.")
    residual = (0.002 * speech / np.sqrt(np.mean(speech**2))).astype(np.float32)  # -54 dBFS
    events = endpointers.during_reply(DuplexSettings(DuplexMode.AEC)).push(
        np.concatenate([residual, np.zeros(RATE, np.float32)]))
    assert not events
    assert any(isinstance(e, SpeechStarted) for e in endpointers().push(residual))  # a turn


@pytest.mark.parametrize(("mode", "listens"), [
    (DuplexMode.AEC, False),  # without its canceller it would hear itself: as half-duplex
    (DuplexMode.VAD_THRESHOLD, True),  # chosen knowingly: loud voice pauses the reply
])
def test_without_an_echo_canceller_parley_listens_over_a_reply_only_if_told_to(
        mode: DuplexMode, listens: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pywebrtc_audio", None)  # it fails to import

    async def story() -> None:
        agent, speaker, events = make_agent(["How far is the moon?"])
        agent.settings = dataclasses.replace(agent.settings, duplex=DuplexSettings(mode))
        speaker.far_end = FarEnd(RATE)  # a real loudspeaker: its echo reaches the mic
        first = asyncio.create_task(agent.hear(np.zeros(RATE, np.float32), 0.0))
        await both_pieces_sent(agent, speaker)
        voice = VoiceLoop(agent, Endpointers(vad()))
        listener = asyncio.create_task(voice._listen())
        speech = espeak("Hold on, I have another question.")
        speech = (0.1 * speech / np.sqrt(np.mean(speech**2))).astype(np.float32)  # -20 dBFS
        for block in np.split(speech[:len(speech) // 160 * 160], len(speech) // 160):
            voice.feed.put(block, time.perf_counter())
        # every block taken is judged before the listener waits again: none is left unheard
        await until(lambda: voice.feed.empty)
        assert speaker.paused is listens
        told = [e.message for e in events if isinstance(e, ErrorOccurred)]
        assert told == ([] if listens else [
            "Echo cancellation is unavailable, so Parley does not listen while it speaks."])
        listener.cancel()
        speaker.played = speaker.written
        await first

    asyncio.run(asyncio.wait_for(story(), 10))
