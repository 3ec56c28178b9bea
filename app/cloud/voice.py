"""Microphone → CloudAgent: the cloud mode's counterpart of `app.voice.VoiceLoop`. No Qt.

The server does the endpointing (its VAD decides when the user has finished), so this
only streams the blocks up, with the level meter, mute, push-to-talk (audio goes up only
while the key is held) and, when the speaker has a far-end reference, echo cancellation,
so that Parley's own voice from the speaker does not sound like the user talking over it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

import numpy as np

from app.cloud.agent import CloudAgent
from app.events import AgentEvent, MicLevel
from audio.capture import Capture
from audio.devices import DeviceInfo
from audio.echo import EchoCanceller, FarEnd, make_echo_canceller
from engines.protocols import Audio

_SAMPLE_RATE = 16000
_LEVEL_EVERY_S = 0.05


class CloudVoice:
    def __init__(self, agent: CloudAgent, publish: Callable[[AgentEvent], None],
                 far_end: FarEnd | None) -> None:
        self.agent = agent
        self.publish = publish
        self.muted = False
        self._holding = False
        self._echo: EchoCanceller | None = (make_echo_canceller(far_end)
                                            if far_end is not None else None)
        self._last_level = 0.0

    @property
    def push_to_talk(self) -> bool:
        return self.agent.settings.turn_detection == "push_to_talk"

    def press_to_talk(self) -> None:
        """Push-to-talk: the held audio is the turn. With server-side turn detection the
        key only stops a reply, as Space does in local mode."""
        if self.push_to_talk:
            self._holding = True
            self.agent.press_to_talk()
        else:
            self.agent.interrupt()

    def release_to_talk(self) -> None:
        if self._holding:
            self._holding = False
            self.agent.release_to_talk()

    async def run(self, mic: DeviceInfo) -> None:
        """Stream the microphone until cancelled."""
        loop = asyncio.get_running_loop()

        def on_audio(block: Audio) -> None:  # PortAudio thread
            loop.call_soon_threadsafe(self._heard, block, time.perf_counter())

        with Capture(mic, on_audio):
            await loop.create_future()

    def _heard(self, block: Audio, captured_at: float) -> None:
        self._report_level(block, captured_at)
        if self._echo is not None:  # kept running, even muted, so it stays converged
            block = self._echo.process(block, captured_at - len(block) / _SAMPLE_RATE)
        if block.size and not self.muted and (self._holding or not self.push_to_talk):
            self.agent.hear(block, captured_at)

    def _report_level(self, block: Audio, now: float) -> None:
        if now - self._last_level < _LEVEL_EVERY_S or not len(block):
            return
        self._last_level = now
        rms = float(np.sqrt(np.mean(np.square(block))))
        db = -90.0 if self.muted or rms <= 1e-5 else max(-90.0, 20 * math.log10(rms))
        self.publish(MicLevel(db))
