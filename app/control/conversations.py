"""The stored conversations: which one is open, and every turn written as it happens.

The open conversation's turns are the Agent's history; the history list is shared with
whichever mode runs the conversation, so it is changed in place here."""

from __future__ import annotations

from collections.abc import Callable

from app.conversation.events import (
    AgentEvent,
    ConversationOpened,
    ErrorOccurred,
    TurnMetrics,
    UserSaid,
)
from app.storage import Storage, StoredTurn
from engines.errors import ParleyError
from engines.protocols import ChatMessage


class Conversations:
    def __init__(self, storage: Storage, publish: Callable[[AgentEvent], None]) -> None:
        self.storage = storage
        self.id = 0
        """The open conversation."""
        self._publish = publish

    def latest(self) -> int | None:
        conversations = self.storage.conversations()
        return conversations[0].id if conversations else None

    def new(self, history: list[ChatMessage], prompt: str) -> int:
        self.id = self.storage.new_conversation(prompt)
        history[:] = [ChatMessage("system", prompt)]
        self._publish(ConversationOpened(self.id, ""))
        return self.id

    def open(self, conversation_id: int, history: list[ChatMessage]) -> None:
        """Reopen a stored conversation: its turns become the history again."""
        turns = self.storage.turns(conversation_id)
        history[:] = [ChatMessage("system", self.storage.system_prompt(conversation_id))]
        history += [ChatMessage("user" if t.role == "user" else "assistant", t.text)
                    for t in turns if t.role in ("user", "assistant")]
        self.id = conversation_id
        title = next((c.title for c in self.storage.conversations()
                      if c.id == conversation_id), "")
        self._publish(ConversationOpened(conversation_id, title))

    def turns(self, conversation_id: int) -> list[StoredTurn]:
        return self.storage.turns(conversation_id)

    def set_persona(self, history: list[ChatMessage], prompt: str) -> None:
        history[0] = ChatMessage("system", prompt)
        self.storage.set_system_prompt(self.id, prompt)

    def remember(self, event: AgentEvent) -> None:
        """Every heard line and every finished reply is written at once."""
        try:
            if isinstance(event, UserSaid):
                self.storage.add_turn(self.id, "user", event.text)
            elif isinstance(event, TurnMetrics) and event.assistant_text:
                self.storage.add_turn(self.id, "assistant", event.assistant_text,
                                      metrics=event.metrics_ms, tokens=event.tokens)
        except ParleyError as err:
            self._publish(ErrorOccurred(err.message, err.hint))
