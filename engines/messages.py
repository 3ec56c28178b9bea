"""What the GUI-side process and the engine worker say to each other over queues.

Small picklable dataclasses. Every request carries an `id` (to route replies), the `turn`
it belongs to and a `generation`: a `Cancel(generation)` makes the worker drop, on sight,
everything older (speech-to-speech's cancel-by-generation, race-free).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engines.model_ref import Kind, ModelRef
from engines.protocols import AudioChunk, ChatMessage, EngineStats, Token, ToolSpec, Transcript


@dataclass(frozen=True)
class Load:
    id: int
    ref: ModelRef
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Transcribe:
    id: int
    turn: int
    generation: int
    audio: Any  # Audio; typed loosely so the dataclass stays picklable without numpy typing


@dataclass(frozen=True)
class Generate:
    id: int
    turn: int
    generation: int
    messages: tuple[ChatMessage, ...]
    max_tokens: int
    temperature: float
    tools: tuple[ToolSpec, ...] = ()
    may_call: bool = True


@dataclass(frozen=True)
class Prefill:
    """Read `messages` into the LLM's cache ahead of the `Generate` that will start with them
    (the turn's note and the words heard so far, while the user is still speaking)."""

    id: int
    turn: int
    generation: int
    messages: tuple[ChatMessage, ...]
    max_tokens: int
    tools: tuple[ToolSpec, ...] = ()


@dataclass(frozen=True)
class Synthesize:
    id: int
    turn: int
    generation: int
    text: str


@dataclass(frozen=True)
class Cancel:
    """Drop every request whose generation is older than `generation`."""

    generation: int


@dataclass(frozen=True)
class Shutdown:
    pass


Request = Load | Transcribe | Generate | Prefill | Synthesize | Cancel | Shutdown
StageRequest = Load | Transcribe | Generate | Prefill | Synthesize


def stage_of(req: StageRequest) -> Kind:
    """Which engine kind (and worker stage) serves a request."""
    if isinstance(req, Load):
        return req.ref.kind
    if isinstance(req, Transcribe):
        return "stt"
    return "llm" if isinstance(req, Generate | Prefill) else "tts"


@dataclass(frozen=True)
class Ready:
    """The worker has started and is reading requests."""

    pid: int


@dataclass(frozen=True)
class Reply:
    """One result for request `id`; `final` closes the stream of replies for that id."""

    id: int
    value: Transcript | Token | AudioChunk | EngineStats | None
    final: bool
    stats: EngineStats | None = None


@dataclass(frozen=True)
class Failure:
    """Request `id` failed; message and hint are written for the user."""

    id: int
    message: str
    hint: str = ""


Event = Ready | Reply | Failure
