"""Microphone → endpointer → Agent: hands-free or push-to-talk, with mute. No Qt.

Half-duplex: audio heard while the agent is busy is dropped and the endpointer starts
afresh, so the agent never answers its own voice (full duplex with echo cancellation is
a later step). Blocks arrive from the PortAudio thread and are handed to the loop.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from enum import StrEnum

import numpy as np

from app.agent import Agent
from app.events import MicLevel, State, TurnMetrics
from audio.capture import Capture
from audio.devices import DeviceInfo
from audio.endpointing import Endpointer, SpeechStarted, Utterance
from engines.protocols import Audio

_SAMPLE_RATE = 16000
_LEVEL_EVERY_S = 0.05
_LISTENING = (State.LISTENING, State.HEARING)


class ListenMode(StrEnum):
    HANDS_FREE = "hands-free"
    PUSH_TO_TALK = "push-to-talk"


class VoiceLoop:
    def __init__(self, agent: Agent, make_endpointer: Callable[[], Endpointer]) -> None:
        self.agent = agent
        self.make_endpointer = make_endpointer
        self.mode = ListenMode.HANDS_FREE
        self.muted = False
        self._held: list[Audio] | None = None
        self._heard: asyncio.Queue[tuple[Audio, float]] = asyncio.Queue()
        self._utterances: asyncio.Queue[tuple[Audio, float]] = asyncio.Queue()
        self._last_level = 0.0

    # -- commands (from the GUI or the CLI) ------------------------------------------------
    def press_to_talk(self) -> None:
        """Start recording a push-to-talk turn; talking over the agent stops it."""
        if self.agent.state == State.SPEAKING:
            self.agent.interrupt()
        self._held = []

    def release_to_talk(self) -> None:
        held, self._held = self._held, None
        if held:
            self._utterances.put_nowait((np.concatenate(held), time.perf_counter()))

    # -- the loop --------------------------------------------------------------------------
    async def run(self, mic: DeviceInfo, max_turns: int | None = None) -> list[TurnMetrics]:
        """Answer utterances until `max_turns` (or forever); the microphone stays open."""
        loop = asyncio.get_running_loop()

        def on_audio(block: Audio) -> None:  # PortAudio thread
            loop.call_soon_threadsafe(self._heard.put_nowait, (block, time.perf_counter()))

        turns: list[TurnMetrics] = []
        with Capture(mic, on_audio):
            listener = asyncio.create_task(self._listen())
            utterance: asyncio.Future[tuple[Audio, float]] | None = None
            try:
                while max_turns is None or len(turns) < max_turns:
                    utterance = asyncio.ensure_future(self._utterances.get())
                    await asyncio.wait({utterance, listener},
                                       return_when=asyncio.FIRST_COMPLETED)
                    if not utterance.done():  # the listener died: say why, don't hang
                        utterance.cancel()
                        listener.result()
                    audio, ended_at = utterance.result()
                    result = await self.agent.hear(audio, ended_at)
                    if result is not None:
                        turns.append(result)
            finally:
                listener.cancel()
                if utterance is not None:
                    utterance.cancel()
        return turns

    async def _listen(self) -> None:
        """Every block: level meter, push-to-talk recording, or VAD endpointing while the
        agent listens. What is heard while the agent is busy is dropped."""
        endpointer, position = self.make_endpointer(), 0
        while True:
            block, arrived = await self._heard.get()
            self._report_level(block, arrived)
            if self.muted:
                continue
            if self._held is not None:
                self._held.append(block)
                continue
            if self.mode != ListenMode.HANDS_FREE or self.agent.state not in _LISTENING:
                if position:
                    endpointer, position = self.make_endpointer(), 0
                continue
            position += len(block)
            for event in endpointer.push(block):
                if isinstance(event, SpeechStarted):
                    self.agent.user_started_speaking()
                elif isinstance(event, Utterance):
                    # the last voiced sample was heard (stream end - its position) before
                    ended_at = arrived - (position / _SAMPLE_RATE - event.end_s)
                    self._utterances.put_nowait((event.audio, ended_at))
                    endpointer, position = self.make_endpointer(), 0
                    break

    def _report_level(self, block: Audio, now: float) -> None:
        if now - self._last_level < _LEVEL_EVERY_S or not len(block):
            return
        self._last_level = now
        rms = float(np.sqrt(np.mean(np.square(block))))
        db = -90.0 if self.muted or rms <= 1e-5 else max(-90.0, 20 * math.log10(rms))
        self.agent.publish(MicLevel(db))
