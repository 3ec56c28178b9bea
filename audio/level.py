"""The microphone level meter: how loud the input is, a few times a second."""

from __future__ import annotations

import math

import numpy as np

from engines.protocols import Audio

SILENCE_DB = -90.0


class LevelMeter:
    """dBFS of the latest block, at most every `every_s` seconds (a meter needs no more)."""

    def __init__(self, every_s: float = 0.05) -> None:
        self.every_s = every_s
        self._last = -math.inf

    def measure(self, block: Audio, now: float, muted: bool) -> float | None:
        """The level to show now, or None when it is not time yet. Muted reads as silence."""
        if now - self._last < self.every_s or not len(block):
            return None
        self._last = now
        rms = float(np.sqrt(np.mean(np.square(block))))
        return SILENCE_DB if muted or rms <= 1e-5 else max(SILENCE_DB, 20 * math.log10(rms))
