"""Microphone → CloudAgent: the cloud mode's counterpart of `app.conversation.voice.VoiceLoop`. No Qt.

The server does the endpointing (its VAD decides when the user has finished), so this
only streams the blocks up, with the level meter, mute, push-to-talk (audio goes up only
while the key is held) and, when the speaker has a far-end reference, echo cancellation,
so that Parley's own voice from the speaker does not sound like the user talking over it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from app.cloud.agent import CloudAgent
from app.conversation.events import AgentEvent, MicLevel
from audio.capture import Capture
from audio.devices import DeviceInfo
from audio.echo import EchoCanceller, FarEnd, make_echo_canceller
from audio.level import LevelMeter
from engines.protocols import Audio

_SAMPLE_RATE = 16000


class CloudVoice:
    def __init__(self, agent: CloudAgent, publish: Callable[[AgentEvent], None],
                 far_end: FarEnd | None) -> None:
        self.agent = agent
        self.publish = publish
        self.muted = False
        self._holding = False
        # the service hears AEC3's output only (its VAD would take a trace of Parley for speech)
        self._echo: EchoCanceller | None = (make_echo_canceller(far_end, linear=False)
                                            if far_end is not None else None)
        self._meter = LevelMeter()

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
            block = self._echo.process(block, captured_at - len(block) / _SAMPLE_RATE).audio
        if block.size and not self.muted and (self._holding or not self.push_to_talk):
            self.agent.hear(block, captured_at)

    def _report_level(self, block: Audio, now: float) -> None:
        db = self._meter.measure(block, now, self.muted)
        if db is not None:
            self.publish(MicLevel(db))
