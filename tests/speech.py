"""Test speech: real voices from espeak-ng, assembled into WAV files with silences."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


def espeak(text: str, rate: int = 16000, voice: str = "en-us", speed: int = 150) -> np.ndarray:
    """espeak-ng's speech for `text` as float32 mono at `rate`."""
    out = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
                         check=True, capture_output=True).stdout
    audio, sr = sf.read(io.BytesIO(out), dtype="float32")
    resampled: np.ndarray = soxr.resample(audio, sr, rate).astype(np.float32)
    return resampled


def conversation_wav(path: Path, utterances: list[str], gap_s: float = 1.5,
                     rate: int = 16000) -> Path:
    """A WAV holding each utterance followed by `gap_s` of silence."""
    silence = np.zeros(int(gap_s * rate), dtype=np.float32)
    parts = [np.zeros(int(0.3 * rate), dtype=np.float32)]
    for text in utterances:
        parts += [espeak(text, rate), silence]
    sf.write(path, np.concatenate(parts), rate)
    return path
