"""The microphone and the speaker the conversation uses. A missing device is reported, not
fatal: the conversation then works by typing (no microphone) or silently (no speaker)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from app.conversation.events import AgentEvent, ErrorOccurred
from app.conversation.outputs import SpeakerOutput
from audio.devices import DeviceInfo, list_devices, pick_device, rescan
from audio.playback import Playback
from engines.errors import ParleyError


class Devices:
    def __init__(self, publish: Callable[[AgentEvent], None]) -> None:
        self.mic: DeviceInfo | None = None
        self.speaker: DeviceInfo | None = None
        self.output = SpeakerOutput(None)
        """What the local Agent speaks into; its playback follows the chosen speaker."""
        self._publish = publish

    @property
    def playback(self) -> Playback | None:
        return self.output.playback

    def available(self) -> list[DeviceInfo]:
        try:
            return list_devices()
        except ParleyError:
            return []

    async def open(self, mic: str | int | None, speaker: str | int | None) -> None:
        """Close the current speaker and open the chosen pair; what fails is published and
        left as None."""
        old, self.output.playback = self.output.playback, None

        def close_and_rescan() -> None:
            """Tens of milliseconds each: kept off the loop so the window stays smooth."""
            if old is not None:
                old.close()
            with contextlib.suppress(ParleyError):  # no PortAudio: pick_device says so below
                rescan()

        await asyncio.to_thread(close_and_rescan)
        try:
            self.speaker = pick_device(speaker, "output")
            playback = Playback(self.speaker)
            playback.start()
            self.output.playback = playback
        except ParleyError as err:
            self.speaker = None
            self._publish(ErrorOccurred(err.message, err.hint))
        try:
            self.mic = pick_device(mic, "input")
        except ParleyError as err:
            self.mic = None
            self._publish(ErrorOccurred(err.message, err.hint))

    def close(self) -> None:
        if self.output.playback is not None:
            self.output.playback.close()
