"""The microphone level meter."""

from __future__ import annotations

import numpy as np
import pytest

from audio.level import SILENCE_DB, LevelMeter


def test_a_full_scale_tone_reads_about_minus_3_dbfs_and_muting_reads_silence() -> None:
    meter = LevelMeter(every_s=0.05)
    tone = np.sin(np.linspace(0, 200 * np.pi, 1600)).astype(np.float32)
    assert meter.measure(tone, 1.0, muted=False) == pytest.approx(-3.01, abs=0.05)
    assert meter.measure(tone, 1.02, muted=False) is None  # too soon: the meter waits
    assert meter.measure(tone, 1.06, muted=True) == SILENCE_DB
    assert meter.measure(np.zeros(160, np.float32), 1.2, muted=False) == SILENCE_DB
