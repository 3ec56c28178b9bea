"""Where the agent's voice goes: a speaker, a WAV file, or nowhere (text-only chat)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from audio.echo import FarEnd
from audio.playback import Playback
from audio.wav import WavWriter
from engines.protocols import Audio

_GAP_SECONDS = 0.4
"""Silence written between replies so they stay distinct in an output file."""


class AudioOutput(Protocol):
    """Where the agent's voice goes: a speaker, or a WAV file."""

    def write(self, samples: Audio, sample_rate: int) -> None: ...

    async def drain(self) -> None:
        """Return once everything written has been played (or stored)."""

    def flush(self) -> None:
        """Drop whatever has not been played yet (and end a pause)."""

    def pause(self) -> None:
        """Play silence but keep what is queued: the user may be interrupting."""

    def resume(self) -> None:
        """Carry on where `pause` stopped."""

    def played_seconds(self) -> float:
        """Running total of the seconds written that have gone out to the listener."""

    @property
    def far_end(self) -> FarEnd | None:
        """What went out into the room, for echo cancellation; None when nothing does."""


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

    def pause(self) -> None:
        if self.playback is not None:
            self.playback.pause()

    def resume(self) -> None:
        if self.playback is not None:
            self.playback.resume()

    def played_seconds(self) -> float:
        return self.playback.played_seconds if self.playback is not None else 0.0

    @property
    def far_end(self) -> FarEnd | None:
        return self.playback.far_end if self.playback is not None else None


class _Unheard:
    """An output nobody listens to live: everything written counts as played at once,
    nothing can be paused, and nothing echoes back into a microphone."""

    far_end: FarEnd | None = None

    def __init__(self) -> None:
        self._written = 0.0

    def write(self, samples: Audio, sample_rate: int) -> None:
        self._written += len(samples) / sample_rate

    def played_seconds(self) -> float:
        return self._written

    def flush(self) -> None:
        """Nothing is still playing to drop."""

    def pause(self) -> None:
        """Nothing plays live to hold back."""

    def resume(self) -> None:
        """Nothing was held back."""


class WavOutput(_Unheard):
    """Stores the agent's voice in a WAV file."""

    def __init__(self, writer: WavWriter) -> None:
        super().__init__()
        self.writer = writer

    def write(self, samples: Audio, sample_rate: int) -> None:
        super().write(samples, sample_rate)
        self.writer.write(samples, sample_rate)

    async def drain(self) -> None:
        self.writer.silence(_GAP_SECONDS)


class SilentOutput(_Unheard):
    """Discards the voice: text-only chat."""

    async def drain(self) -> None:
        return None
