"""The terminal front doors keep their conversations in the same history the window shows.

Each run is a new conversation, written turn by turn as the window writes them, so a run that
is cut short keeps what was said; `--no-history` keeps nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.control.conversations import Conversations
from app.conversation.events import ErrorOccurred
from app.conversation.session import Session, print_errors
from app.storage import Storage, default_db_path


@contextmanager
def kept(session: Session, system_prompt: str, keep: bool) -> Iterator[None]:
    """While open, every heard line and finished reply of `session` is stored."""
    if not keep:
        yield
        return
    storage = Storage(default_db_path())
    storage.on_notice(lambda err: print_errors(ErrorOccurred(err.message, err.hint)))
    conversations = Conversations(storage, session.agent.publish)
    conversations.new(session.agent.history, system_prompt)
    session.agent.subscribe(conversations.remember)
    try:
        yield
    finally:
        session.agent.unsubscribe(conversations.remember)
        storage.close()
