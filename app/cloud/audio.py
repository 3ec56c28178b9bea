"""Audio between the devices and the Realtime API: microphone blocks out as 24 kHz PCM16,
reply deltas in to the speaker, and how much of each reply item the speaker really played.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from app.cloud.settings import RATE
from audio.resample import StreamResampler
from engines.protocols import Audio

MIC_RATE = 16000


class Speaker(Protocol):
    """What the reply player needs of `audio.playback.Playback`."""

    rate: int

    @property
    def played_samples(self) -> int: ...

    @property
    def queued_samples(self) -> int: ...

    @property
    def output_latency(self) -> float: ...

    def write(self, samples: npt.ArrayLike, sample_rate: int) -> None: ...

    def flush(self) -> None: ...


def encode_pcm16(audio: Audio) -> str:
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    return base64.b64encode(pcm.tobytes()).decode("ascii")


def decode_pcm16(data: str) -> Audio:
    pcm = np.frombuffer(base64.b64decode(data), dtype="<i2")
    return (pcm.astype(np.float32) / 32768).astype(np.float32)


class MicEncoder:
    """16 kHz float blocks from Capture → base64 24 kHz PCM16, with no clicks between
    blocks (one streaming resampler for the whole session)."""

    def __init__(self) -> None:
        self._resampler = StreamResampler(MIC_RATE, RATE)

    def encode(self, block: Audio) -> tuple[str, int]:
        """The `input_audio_buffer.append` payload and how many 24 kHz samples it holds."""
        pcm = self._resampler.process(block)
        return encode_pcm16(pcm), pcm.size


@dataclass(frozen=True)
class Cut:
    """A reply item stopped mid-way: what `conversation.item.truncate` needs."""

    item_id: str
    played_ms: int
    received_ms: int


class ReplyPlayer:
    """Plays reply items as their deltas arrive, one streaming resampler per item, and
    counts each item's samples on the speaker's own clock."""

    def __init__(self, speaker: Speaker) -> None:
        self.speaker = speaker
        self.item_id: str | None = None
        self._start = 0
        """Speaker position (played + queued) where this item's first sample went."""
        self._received = 0
        self._resampler: StreamResampler | None = None

    def play(self, item_id: str, delta: str) -> bool:
        """Queue one delta; True when it is the item's first audio."""
        first = item_id != self.item_id
        if first:
            self.item_id = item_id
            self._start = self.speaker.played_samples + self.speaker.queued_samples
            self._received = 0
            self._resampler = StreamResampler(RATE, self.speaker.rate)
        assert self._resampler is not None
        pcm = decode_pcm16(delta)
        self._received += pcm.size
        self.speaker.write(self._resampler.process(pcm), self.speaker.rate)
        return first

    def finish(self, item_id: str) -> None:
        """The item's audio is complete: release the resampler's held-back tail."""
        if item_id == self.item_id and self._resampler is not None:
            self.speaker.write(self._resampler.flush(), self.speaker.rate)
            self._resampler = None

    @property
    def sounding(self) -> bool:
        return self.item_id is not None and self.speaker.queued_samples > 0

    def stop(self) -> Cut | None:
        """Silence the speaker now; the cut item, if one was still sounding.

        Samples already handed to the device still play out after the flush, so they
        count as played; never more than the audio received (the server rejects that)."""
        cut = None
        if self.sounding and self.item_id is not None:
            played = max(0, self.speaker.played_samples - self._start)
            received_ms = self._received * 1000 // RATE
            cut = Cut(self.item_id, min(played * 1000 // self.speaker.rate, received_ms),
                      received_ms)
        self.speaker.flush()
        self.item_id, self._resampler = None, None
        return cut
