"""The two faces every front end talks to, whichever mode runs the conversation.

`Conversation` is what the local `Agent` (STT → LLM → TTS in the worker) and the cloud's
`CloudAgent` (the OpenAI Realtime API) both are; `Listener` is what feeds each one from the
microphone (`VoiceLoop`, `CloudVoice`). The Controller holds one of each, so it never asks
which mode is on to send a turn, stop a reply or mute the microphone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from app.conversation.events import AgentEvent, State, TurnMetrics
from app.conversation.mic import MicFeed
from audio.devices import DeviceInfo
from engines.protocols import ChatMessage


class Conversation(Protocol):
    state: State
    history: list[ChatMessage]
    """The system prompt, then every user line and every reply as heard; a conversation
    moving between modes takes this list with it."""
    turns: list[TurnMetrics]
    """Every completed turn's metrics, for reports."""

    def subscribe(self, callback: Callable[[AgentEvent], None]) -> None: ...

    def unsubscribe(self, callback: Callable[[AgentEvent], None]) -> None: ...

    def publish(self, event: AgentEvent) -> None: ...

    async def say(self, text: str) -> TurnMetrics | None:
        """A typed turn, answered aloud; None if nothing was answered."""

    def interrupt(self) -> None:
        """Stop the reply now; the history keeps only the words that were heard."""


class Listener(Protocol):
    feed: MicFeed
    """The microphone as it reaches this listener (mute it there)."""

    def press_to_talk(self) -> None:
        """Space held: a push-to-talk turn begins, or (hands-free) the reply stops."""

    def release_to_talk(self) -> None: ...

    async def run(self, mic: DeviceInfo) -> Any:
        """Listen on `mic` until cancelled."""
