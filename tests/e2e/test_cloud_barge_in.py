"""A user talks over a cloud reply: it stops at once, and the server is told exactly how
much of it the user heard, measured here at the speaker itself."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from openai import AsyncOpenAI

from app.cloud.agent import CloudAgent
from app.conversation.events import AgentEvent, Interrupted, State
from app.settings import load_settings
from audio.capture import Capture
from audio.devices import pick_device
from audio.playback import Playback
from engines.protocols import Audio
from tests.realtime_server import RealtimeServer, Reply, Scenario
from tests.speech import conversation_wav
from tests.waiting import until

_STORY = ("The sea covers most of our planet. It is deep and cold and dark, and it is home "
          "to whales, to tiny glowing plankton, and to fish that nobody has ever named.")


def first_sound_ms(path: Path, quiet_ms: int = 60) -> float:
    """How long the first sound in a recording lasted: from its first loud 5 ms to the
    start of the first `quiet_ms` of silence after it."""
    audio, rate = sf.read(path, dtype="float32")
    window = rate // 200
    frames = audio[:audio.size // window * window].reshape(-1, window)
    loud = np.sqrt(np.mean(frames**2, axis=1)) > 0.002
    start = int(np.argmax(loud))
    quiet_run = quiet_ms // 5
    for i in range(start, loud.size - quiet_run):
        if not loud[i:i + quiet_run].any():
            return (i - start) * 5.0
    raise AssertionError("the first sound never stopped")


def test_talking_over_the_reply_stops_it_where_the_user_heard_it(
        pulse: Any, user_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = RealtimeServer(Scenario(heard=["Tell me about the sea.", "Wait, stop."],
                                     replies=[Reply(_STORY), Reply("Okay.")])).start()
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    question = conversation_wav(user_dirs / "q.wav", ["Tell me about the sea."], gap_s=0.2)
    interruption = conversation_wav(user_dirs / "i.wav", ["Wait, stop."], gap_s=0.2)
    events: list[AgentEvent] = []

    async def story() -> CloudAgent:
        loop = asyncio.get_running_loop()
        with Playback(pick_device(None, "output")) as playback:
            agent = CloudAgent(AsyncOpenAI(api_key="sk-test-local"),
                               load_settings().cloud, playback)
            agent.subscribe(events.append)
            session = asyncio.create_task(agent.run())
            await asyncio.wait_for(agent.link.connected.wait(), 10)

            def on_audio(block: Audio) -> None:
                loop.call_soon_threadsafe(agent.hear, block, time.perf_counter())

            try:
                with Capture(pick_device(None, "input"), on_audio):
                    await asyncio.to_thread(pulse.play_into_mic, question)
                    await until(lambda: agent.state == State.SPEAKING, 60, "the reply")
                    start = playback.played_samples  # the user hears a few words of it
                    await until(lambda: playback.played_samples - start >= 2 * playback.rate,
                                30, "two seconds of the reply to be played")
                    speaking = threading.Thread(target=pulse.play_into_mic,
                                                args=(interruption,))
                    speaking.start()
                    await until(lambda: len(agent.turns) >= 2, 60,
                                "the answer to the interruption")
                    await asyncio.to_thread(speaking.join)
            finally:
                session.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await session
                await agent.close()
        return agent

    recorder = pulse.record_speaker(user_dirs / "speaker.wav")
    recorder.wait_flowing()
    try:
        agent = asyncio.run(asyncio.wait_for(story(), 120))
    finally:
        recorder.stop()
        server.stop()
    assert server.faults == [] and server.rejected == []

    received = server.connections[0].received
    kinds = [e["type"] for e in received]
    truncate = received[kinds.index("conversation.item.truncate")]
    story_item = next(iter(server.played))
    assert truncate["item_id"] == story_item and truncate["content_index"] == 0
    # what the speaker really played of the story, against what the server was told
    played = first_sound_ms(recorder.path)
    assert abs(played - truncate["audio_end_ms"]) <= 50, (played, truncate)
    assert played < server.played[story_item].size / 24  # it was cut short
    # server VAD cancels the response itself: the client must not cancel it again
    assert "response.cancel" not in kinds
    done = [e["response"] for e in server.connections[0].sent if e["type"] == "response.done"]
    assert done[0]["status"] == "cancelled"
    assert done[0]["status_details"]["reason"] == "turn_detected"

    interrupted = [e for e in events if isinstance(e, Interrupted)]
    assert len(interrupted) == 1 and interrupted[0].by == "speech"
    heard = interrupted[0].heard_text
    assert heard and _STORY.startswith(heard) and len(heard) < len(_STORY)
    assert [m.content for m in agent.history if m.role == "assistant"] == [heard, "Okay."]
    assert [(t.user_text, t.assistant_text) for t in agent.turns] == [
        ("Tell me about the sea.", heard), ("Wait, stop.", "Okay.")]
