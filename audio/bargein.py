"""When the user may talk over the agent: the duplex modes and the barge-in endpointer.

While the agent replies, the microphone still hears it (through echo cancellation, or not
at all in half-duplex). A separate endpointer listens then: `min_speech_ms` of voice
pauses the reply (a cough is shorter). Whether the finished utterance really interrupts is
a question of words, answered next to the Agent (`app.conversation.interruption`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from audio.endpointing import Endpointer
from engines.protocols import Audio, EngineStats, VADEngine


class DuplexMode(StrEnum):
    AEC = "aec"
    """Echo cancellation removes the agent's voice; the user can interrupt any time."""
    VAD_THRESHOLD = "vad-threshold"
    """No echo cancellation: during a reply only loud voice (above `gate_dbfs`) counts."""
    HALF_DUPLEX = "half-duplex"
    """The microphone is ignored while the agent is busy (headsets off, echo-proof)."""


@dataclass(frozen=True)
class DuplexSettings:
    mode: DuplexMode = DuplexMode.AEC
    min_speech_ms: int = 80
    """Voice needed during a reply before it pauses: shorter sounds never do. A longer
    noise (a cough) pauses it only until the STT finds no words in it."""
    gate_dbfs: float = -30.0
    """vad-threshold mode: quieter frames are taken for the agent's own echo."""


AEC_FLOOR_DBFS = -45.0
"""Echo cancellation leaves a faint residual that a level-blind VAD takes for speech;
a user talking to the microphone is 15 dB or more above it."""


class _InFrontOf:
    """A VAD in front of another: the engine's duties (stats, load, close) are the
    inner one's."""

    def __init__(self, vad: VADEngine) -> None:
        self._vad = vad
        self.sample_rate = vad.sample_rate

    @property
    def stats(self) -> EngineStats:
        return self._vad.stats

    def load(self) -> None:
        self._vad.load()

    def close(self) -> None:
        self._vad.close()


class LoudnessGate(_InFrontOf):
    """A VAD that also demands loudness: the speaker's echo is usually quieter than a user
    talking into the microphone, so without echo cancellation this keeps most of it out."""

    def __init__(self, vad: VADEngine, floor_dbfs: float) -> None:
        super().__init__(vad)
        self._floor = 10 ** (floor_dbfs / 20)
        self.frame_samples = vad.frame_samples
        self.overlapping = vad.overlapping

    def is_speech(self, frame: Audio) -> bool:
        loud = math.sqrt(float(np.mean(np.square(frame)))) >= self._floor
        return loud and self._vad.is_speech(frame)


class SlidingVAD(_InFrontOf):
    """Judges the last `vad.frame_samples` every `hop` samples. Back to back, 30 ms frames
    hear the user's first voiced sound up to a frame late, and over a reply every 10 ms
    of that counts (the echo bench: first word to silence p90 310 -> 301 ms)."""

    def __init__(self, vad: VADEngine, hop: int) -> None:
        if not vad.overlapping:
            raise ValueError(f"{vad.stats.name} cannot judge overlapping frames")
        super().__init__(vad)
        self._window = np.zeros(vad.frame_samples, dtype=np.float32)
        self.frame_samples = hop
        self.overlapping = False  # its window follows the stream

    def is_speech(self, frame: Audio) -> bool:
        self._window = np.concatenate([self._window[len(frame):], frame])
        return self._vad.is_speech(self._window)


BARGE_IN_HOP_MS = 10


@dataclass(frozen=True)
class Endpointers:
    """Fresh endpointers sharing one loaded VAD: one per listening stretch (call it), and
    one per reply to hear the user barge in (`during_reply`)."""

    vad: VADEngine
    pre_roll_ms: int = 300
    hangover_ms: int = 600
    min_speech_ms: int = 200
    pause_ms: int = 0
    speaking_ms: int = 0
    """A user's turn only, both: see `Endpointer`."""

    def __call__(self) -> Endpointer:
        return Endpointer(self.vad, pre_roll_ms=self.pre_roll_ms,
                          hangover_ms=self.hangover_ms, min_speech_ms=self.min_speech_ms,
                          pause_ms=self.pause_ms, speaking_ms=self.speaking_ms)

    def during_reply(self, duplex: DuplexSettings, echo_cancelled: bool = True
                     ) -> Endpointer:
        """`echo_cancelled`: the microphone audio went through a working echo canceller;
        without one, only voice louder than the vad-threshold mode's gate counts."""
        aec = duplex.mode == DuplexMode.AEC and echo_cancelled
        vad: VADEngine = LoudnessGate(self.vad, AEC_FLOOR_DBFS if aec else duplex.gate_dbfs)
        min_speech_ms = duplex.min_speech_ms
        if vad.overlapping:
            # the first voiced window already holds a frame's worth of voice
            frame_ms = vad.frame_samples * 1000 // vad.sample_rate
            vad = SlidingVAD(vad, vad.sample_rate * BARGE_IN_HOP_MS // 1000)
            min_speech_ms = max(BARGE_IN_HOP_MS,
                                min_speech_ms - frame_ms + BARGE_IN_HOP_MS)
        return Endpointer(vad, pre_roll_ms=self.pre_roll_ms, hangover_ms=self.hangover_ms,
                          min_speech_ms=min_speech_ms)
