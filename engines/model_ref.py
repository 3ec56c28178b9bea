"""A model that has been found on disk and is ready to hand to an engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["stt", "llm", "tts", "vad"]
KINDS: tuple[Kind, ...] = ("stt", "llm", "tts", "vad")


@dataclass(frozen=True)
class ModelRef:
    """`path` is a file (GGUF, ONNX) or a folder (CTranslate2 Whisper); `format` picks the engine.

    Formats: "gguf" (llama.cpp), "rkllm" (the Rockchip NPU runtime), "ct2-whisper"
    (faster-whisper), "piper" (ONNX + .onnx.json), "silero" (Silero VAD ONNX), "webrtcvad"
    (built in, `path` unused).
    """

    name: str
    kind: Kind
    format: str
    path: Path
    tuning: tuple[tuple[str, float], ...] = ()
    """Engine options measured for this model (the catalog's `tuning`); settings win."""
