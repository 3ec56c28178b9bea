"""The small interfaces every engine implements, and the values they exchange.

One Protocol per capability keeps backends swappable: the worker and the Agent only ever
see these shapes, never a concrete library.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Audio = npt.NDArray[np.float32]
"""Mono float32 samples in [-1, 1]."""

ToolSpec = dict[str, Any]
"""A function tool in the Chat Completions shape: {"type": "function", "function": {...}}."""

Role = Literal["system", "user", "assistant", "tool"]

Finish = Literal["", "stop", "length", "tool"]
"""Why a reply ended: the model stopped, `max_tokens` ran out, or it called a tool."""


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str
    """A JSON object, as the model wrote it (under a grammar, so it parses)."""


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    """An assistant turn that called tools; the results follow as "tool" messages."""


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    audio_seconds: float
    logprob: float | None = None
    """How sure the engine is of the words: their mean log-probability (Whisper's
    `avg_logprob`, 0 is certain); None when it does not say."""


@dataclass(frozen=True)
class Token:
    """A piece of LLM output; the last one of a stream carries the usage, `done` and
    `finish`. A tool call arrives as one Token with `tool_call` set, before the last."""

    text: str
    done: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tool_call: ToolCall | None = None
    finish: Finish = ""
    stats: tuple[tuple[str, float], ...] = ()
    """What the engine itself measured of the call, by metric name (the NPU runtime's
    prefill and generate times); on the last Token."""


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
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float,
        tools: Sequence[ToolSpec] = (), may_call: bool = True,
    ) -> Generator[Token, None, None]:
        """`tools` in the Chat Completions shape; a call, when the model makes one, ends
        the stream (finish "tool"). Without `may_call` the tools stay in the prompt (as
        its cached start, and so the model reads the calls it made) but the reply is words."""

    def prefill(self, messages: Sequence[ChatMessage], *, max_tokens: int,
                tools: Sequence[ToolSpec] = ()) -> Generator[int, None, None]:
        """Read the prompt that `messages` and a user message after them will start with,
        so that `stream` has only the rest to read; a last message from the user holds
        their words so far, which the real one will start with; `max_tokens` as `stream` will
        be given it (it decides which old turns make room). Yields the tokens read so
        far after each batch (stop iterating to stop early: what was read stays)."""


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
