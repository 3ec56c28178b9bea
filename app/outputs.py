"""Where the agent's voice goes: a speaker, a WAV file, or nowhere (text-only chat)."""

from __future__ import annotations

import asyncio

from audio.playback import Playback
from audio.wav import WavWriter
from engines.protocols import Audio

_GAP_SECONDS = 0.4
"""Silence written between replies so they stay distinct in an output file."""


class SpeakerOutput:
    """A real output device; `playback` may be swapped (device change) or None (no device)."""

    def __init__(self, playback: Playback | None) -> None:
        self.playback = playback

    def write(self, samples: Audio, sample_rate: int) -> None:
        if self.playback is not None:
            self.playback.write(samples, sample_rate)

    async def drain(self) -> None:
        while self.playback is not None and not self.playback.is_idle:
            await asyncio.sleep(0.02)

    def flush(self) -> None:
        if self.playback is not None:
            self.playback.flush()


class WavOutput:
    """Stores the agent's voice in a WAV file."""

    def __init__(self, writer: WavWriter) -> None:
        self.writer = writer

    def write(self, samples: Audio, sample_rate: int) -> None:
        self.writer.write(samples, sample_rate)

    async def drain(self) -> None:
        self.writer.silence(_GAP_SECONDS)

    def flush(self) -> None:
        """A file has nothing still playing to drop."""


class SilentOutput:
    """Discards the voice: text-only chat."""

    def write(self, samples: Audio, sample_rate: int) -> None:
        del samples, sample_rate

    async def drain(self) -> None:
        return None

    def flush(self) -> None:
        return None
