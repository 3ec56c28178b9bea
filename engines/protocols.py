"""The small interfaces every engine implements, and the values they exchange.

One Protocol per capability keeps backends swappable: the worker and the Agent only ever
see these shapes, never a concrete library.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Audio = npt.NDArray[np.float32]
"""Mono float32 samples in [-1, 1]."""

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    audio_seconds: float


@dataclass(frozen=True)
class Token:
    """A piece of LLM output; the last one of a stream carries the usage and `done`."""

    text: str
    done: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class AudioChunk:
    samples: Audio
    sample_rate: int
    text: str = ""
    """The words this chunk speaks, so played samples can be mapped back to words."""


@dataclass
class EngineStats:
    """What an engine reports about itself: load cost and its last call's timings."""

    name: str
    model: str
    load_seconds: float = 0.0
    calls: int = 0
    last_call_ms: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Engine(Protocol):
    """Common lifecycle: lazy `load`, disposable `close`, self-reported `stats`."""

    @property
    def stats(self) -> EngineStats: ...

    def load(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class STTEngine(Engine, Protocol):
    sample_rate: int

    def transcribe(self, audio: Audio) -> Transcript: ...


@runtime_checkable
class LLMEngine(Engine, Protocol):
    def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float
    ) -> Generator[Token, None, None]: ...


@runtime_checkable
class TTSEngine(Engine, Protocol):
    sample_rate: int

    def synthesize(self, text: str) -> Generator[AudioChunk, None, None]: ...


@runtime_checkable
class VADEngine(Engine, Protocol):
    sample_rate: int
    frame_samples: int
    overlapping: bool
    """Whether frames may overlap: each is judged on its own, with no state carried
    from the one before."""

    def is_speech(self, frame: Audio) -> bool: ...
