"""The conversation view on its own: a very long conversation, and a reply cut short."""

from __future__ import annotations

from typing import Any

from app.gui.conversation_view import ConversationView


def test_a_long_conversation_shows_the_latest_turns_and_says_where_the_rest_is(
        qtbot: Any) -> None:
    view = ConversationView()
    qtbot.addWidget(view)
    view.show()
    for n in range(30):
        view.add("user", f"question {n}")
        view.add("assistant", f"answer {n}")
    assert len(view.bubbles) == 40
    assert view.bubbles[-1].text == "answer 29" and view.bubbles[0].text == "question 10"
    assert view.earlier.isVisible() and "20 earlier messages" in view.earlier.text()
    view.clear()
    assert not view.earlier.isVisible() and view.bubbles == []


def test_an_interrupted_reply_keeps_only_what_was_heard(qtbot: Any) -> None:
    view = ConversationView()
    qtbot.addWidget(view)
    view.add("user", "Tell me about the moon.")
    view.assistant_delta("The moon is far away. It has no air and")
    view.assistant_interrupted("The moon is far away.")
    reply = view.bubbles[-1]
    assert reply.role == "assistant" and reply.text == "The moon is far away. —"
    assert "interrupted" in reply.header.text()
    view.assistant_delta("Sure.")  # the next reply gets a bubble of its own
    assert len(view.bubbles) == 3
