"""Voice activity detection with Google's WebRTC VAD: tiny, fast, no model file.

It is the cheap default gate for the microphone; Silero is the choice for noisy rooms.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.errors import ParleyError
from engines.model_ref import ModelRef
from engines.protocols import Audio, EngineStats

if TYPE_CHECKING:
    import webrtcvad


class WebRtcVAD:
    """`is_speech` on 30 ms frames of 16 kHz float audio.

    Options: `aggressiveness` 0 (lets most sound through) to 3 (strictest), default 2.
    """

    sample_rate: int = 16000
    frame_samples: int = 480
    overlapping: bool = True

    def __init__(self, ref: ModelRef, options: Mapping[str, Any]) -> None:
        aggressiveness = int(options.get("aggressiveness", 2))
        if not 0 <= aggressiveness <= 3:
            raise ParleyError(
                f"WebRTC VAD aggressiveness must be 0, 1, 2 or 3, not {aggressiveness}.",
                "Set the VAD option `aggressiveness` to a whole number from 0 to 3.",
            )
        self._aggressiveness = aggressiveness
        self._vad: webrtcvad.Vad | None = None
        self._stats = EngineStats(name="webrtcvad", model=ref.name)

    @property
    def stats(self) -> EngineStats:
        return self._stats

    def load(self) -> None:
        if self._vad is not None:
            return
        import webrtcvad

        start = time.perf_counter()
        self._vad = webrtcvad.Vad(self._aggressiveness)
        self._stats.load_seconds = time.perf_counter() - start

    def close(self) -> None:
        self._vad = None

    def is_speech(self, frame: Audio) -> bool:
        """WebRTC only takes 10/20/30 ms of int16 PCM, so the frame size is checked here."""
        if len(frame) != self.frame_samples:
            raise ValueError(
                f"WebRTC VAD needs frames of {self.frame_samples} samples, got {len(frame)}."
            )
        self.load()
        assert self._vad is not None
        start = time.perf_counter()
        pcm = (np.clip(frame, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()
        speech = bool(self._vad.is_speech(pcm, self.sample_rate))
        self._stats.calls += 1
        self._stats.last_call_ms = {"is_speech": (time.perf_counter() - start) * 1000.0}
        return speech
