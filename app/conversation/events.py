"""What the Agent tells the world. The GUI, the CLI and the tests subscribe to these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class State(StrEnum):
    LISTENING = "listening"
    HEARING = "hearing"
    TRANSCRIBING = "transcribing"
    THINKING = "thinking"
    SPEAKING = "speaking"


@dataclass(frozen=True)
class StateChanged:
    state: State


@dataclass(frozen=True)
class UserSaid:
    """The transcript of what was heard (or the typed text)."""

    turn: int
    text: str


@dataclass(frozen=True)
class AssistantDelta:
    """Partial reply text as the LLM generates it."""

    turn: int
    delta: str


@dataclass(frozen=True)
class AssistantDone:
    turn: int
    text: str


@dataclass(frozen=True)
class TurnMetrics:
    """Milliseconds per stage, measured from the end of the user's speech."""

    turn: int
    user_text: str
    assistant_text: str
    metrics_ms: dict[str, float]
    tokens: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ErrorOccurred:
    message: str
    hint: str = ""


@dataclass(frozen=True)
class ModelLoading:
    kind: str
    name: str


@dataclass(frozen=True)
class ModelChanged:
    kind: str
    name: str
    load_seconds: float


@dataclass(frozen=True)
class ModelFailed:
    """A switch failed; the previous model is still loaded and in use."""

    kind: str
    name: str
    message: str
    hint: str = ""


@dataclass(frozen=True)
class ModelsMissing:
    """The kinds running without a model, and what that turns off (empty: none missing)."""

    kinds: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class ProcessUsage:
    """CPU (% of one core) and resident memory (MB) of the window and the engine worker."""

    gui_cpu: float
    gui_mb: float
    worker_cpu: float
    worker_mb: float


@dataclass(frozen=True)
class ConversationOpened:
    """The window should show this conversation from scratch (new or reopened)."""

    id: int
    title: str


@dataclass(frozen=True)
class MicLevel:
    """Microphone loudness in dBFS (-90 = silence or muted), about 20 times a second."""

    db: float


@dataclass(frozen=True)
class Interrupted:
    """The agent stopped speaking before the end of its reply (user speech or Stop).

    `heard_text` is what the user actually heard; it replaces the reply in the history.
    """

    turn: int
    heard_text: str
    by: str
    """"speech" (barge-in) or "stop" (the Stop button / Esc)."""


@dataclass(frozen=True)
class InterruptionIgnored:
    """Speech during the reply turned out to hold no words (a cough, a noise): the agent
    carries on."""

    turn: int


@dataclass(frozen=True)
class RateLimit:
    name: str
    limit: int
    remaining: int
    reset_seconds: float


@dataclass(frozen=True)
class RateLimitsUpdated:
    """Cloud mode: the service's current limits (requests, tokens)."""

    limits: tuple[RateLimit, ...]


@dataclass(frozen=True)
class ModeChanged:
    """The conversation now runs on the local engines ("local") or the cloud ("cloud")."""

    mode: str


@dataclass(frozen=True)
class ToolCalled:
    """The model called a tool; `arguments` is the JSON it emitted (already validated).
    `waiting` is True when the call has side effects and waits for the user's yes."""

    turn: int
    name: str
    arguments: str
    waiting: bool = False


@dataclass(frozen=True)
class ToolFinished:
    """A tool's result as JSON text (or {"error": ...}), which goes back to the model."""

    turn: int
    name: str
    result: str


@dataclass(frozen=True)
class Announcement:
    """Something Parley says unprompted, e.g. a timer or alarm that went off."""

    text: str


AgentEvent = (StateChanged | UserSaid | AssistantDelta | AssistantDone | TurnMetrics
              | ErrorOccurred | MicLevel | ModelLoading | ModelChanged | ModelFailed
              | ModelsMissing | ProcessUsage | ConversationOpened | Interrupted
              | InterruptionIgnored | RateLimitsUpdated | ModeChanged | ToolCalled
              | ToolFinished | Announcement)


class EventBus:
    """What the local and the cloud agent share: a state, and events sent to subscribers."""

    def __init__(self) -> None:
        self.state = State.LISTENING
        self._subscribers: list[Callable[[AgentEvent], None]] = []

    def subscribe(self, callback: Callable[[AgentEvent], None]) -> None:
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[AgentEvent], None]) -> None:
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def publish(self, event: AgentEvent) -> None:
        """Send an event to every subscriber (front ends add their own, e.g. mic level)."""
        for callback in self._subscribers:
            callback(event)

    def set_state(self, state: State) -> None:
        if state != self.state:
            self.state = state
            self.publish(StateChanged(state))
