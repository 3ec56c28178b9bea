"""`parley run --headless`: the agent on real audio devices, no window.

Half-duplex for now: while the agent answers, the microphone is ignored and the endpointer
starts afresh afterwards, so the agent never hears itself. Times are measured from the
last voiced sample, using the capture clock.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from app.agent import Agent
from app.config import Config
from app.events import TurnMetrics
from app.session import open_session
from app.talk import endpointer_for, write_metrics
from audio.capture import Capture
from audio.devices import pick_device
from audio.endpointing import SpeechStarted, Utterance
from audio.playback import Playback
from engines.protocols import Audio

_SAMPLE_RATE = 16000


class SpeakerOutput:
    """AudioOutput on a real output device."""

    def __init__(self, playback: Playback) -> None:
        self.playback = playback

    def write(self, samples: Audio, sample_rate: int) -> None:
        self.playback.write(samples, sample_rate)

    async def drain(self) -> None:
        while not self.playback.is_idle:
            await asyncio.sleep(0.02)

    def flush(self) -> None:
        self.playback.flush()


async def run_live(config: Config, input_device: str | None, output_device: str | None,
                   max_turns: int | None, metrics_path: Path | None) -> list[TurnMetrics]:
    audio_cfg = config["audio"]
    mic = pick_device(input_device or audio_cfg["input_device"] or None, "input")
    speaker = pick_device(output_device or audio_cfg["output_device"] or None, "output")
    loop = asyncio.get_running_loop()
    heard: asyncio.Queue[tuple[Audio, float]] = asyncio.Queue()

    def on_audio(block: Audio) -> None:  # audio thread
        loop.call_soon_threadsafe(heard.put_nowait, (block, time.perf_counter()))

    turns: list[TurnMetrics] = []
    with Playback(speaker) as playback:
        session = await open_session(config, SpeakerOutput(playback))
        try:
            with Capture(mic, on_audio):
                print("Listening… speak now (Ctrl+C to stop).", flush=True)
                while max_turns is None or len(turns) < max_turns:
                    utterance, ended_at = await _next_utterance(config, session.agent, heard)
                    result = await session.agent.hear(utterance.audio, ended_at)
                    if result is not None:
                        turns.append(result)
                        print(f"you: {result.user_text}\nparley: {result.assistant_text}",
                              flush=True)
        finally:
            write_metrics(metrics_path, turns, session)
            await session.close()
    return turns


async def _next_utterance(config: Config, agent: Agent,
                          heard: asyncio.Queue[tuple[Audio, float]]) -> tuple[Utterance, float]:
    """Wait for the next utterance; audio captured while the agent spoke is dropped."""
    while not heard.empty():
        heard.get_nowait()
    endpointer = endpointer_for(config)
    position = 0
    while True:
        block, arrived = await heard.get()
        position += len(block)
        for event in endpointer.push(block):
            if isinstance(event, SpeechStarted):
                agent.user_started_speaking()
            elif isinstance(event, Utterance):
                # the last voiced sample was heard (stream end - its position) before arrival
                ended_at = arrived - (position / _SAMPLE_RATE - event.end_s)
                return event, ended_at
