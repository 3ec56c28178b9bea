"""The conversation view on its own: a very long conversation, a reply cut short, the tools
a reply called, and an announcement."""

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


def test_a_tool_call_shows_its_arguments_and_result_in_the_reply(qtbot: Any) -> None:
    view = ConversationView()
    qtbot.addWidget(view)
    view.add("user", "Set a tea timer for five seconds.")
    view.tool_called("set_timer", '{"seconds": 5, "label": "tea"}', waiting=False)
    line = view.bubbles[-1].tools[0]
    assert line.text() == "⚙ set_timer · seconds 5, label tea — running…"
    view.tool_finished("set_timer",
                       '{"id": 1, "set": "5 second timer \'tea\'", "rings": "at 18:42"}')
    view.tool_called("calculate", '{"expression": "1/0"}', waiting=False)
    view.tool_finished("calculate", '{"error": "division by zero"}')
    view.assistant_delta("Your tea timer is set.")
    view.assistant_done("Your tea timer is set.")
    reply = view.bubbles[-1]
    assert len(view.bubbles) == 2 and reply.role == "assistant"
    assert reply.text == "Your tea timer is set."
    done, failed = reply.tools
    assert done.text() == ("⚙ set_timer · seconds 5, label tea → id 1, set 5 second timer "
                           "'tea', rings at 18:42")
    assert done.outcome == "done" and '"rings": "at 18:42"' in done.toolTip()
    assert failed.text() == "⚙ calculate · expression 1/0 → error: division by zero"
    assert failed.outcome == "error" and "error" in failed.accessibleName()


def test_a_call_that_waits_for_a_yes_is_finished_in_the_next_reply(qtbot: Any) -> None:
    view = ConversationView()
    qtbot.addWidget(view)
    view.add("user", "Cancel the tea timer.")
    view.tool_called("cancel_timer", '{"which": "tea"}', waiting=True)
    view.assistant_done('Shall I cancel timer "tea"? Please say yes or no.')
    asked = view.bubbles[-1].tools[0]
    assert asked.text() == "⚙ cancel_timer · which tea — waiting for your yes"
    view.add("user", "Yes.")
    view.tool_finished("cancel_timer", '{"cancelled": "5 second timer \'tea\'"}')
    view.assistant_done("Done, it is cancelled.")
    assert asked.text() == "⚙ cancel_timer · which tea — asked for your yes"
    [result] = view.bubbles[-1].tools
    assert result.text() == "⚙ cancel_timer · which tea → cancelled 5 second timer 'tea'"
    assert view.bubbles[-1].text == "Done, it is cancelled."


def test_an_announcement_is_a_bubble_of_its_own_marked_in_words(qtbot: Any) -> None:
    view = ConversationView()
    qtbot.addWidget(view)
    view.add("user", "Set a tea timer.")
    view.assistant_done("It is set.")
    view.announcement("Your 5 second timer 'tea' is done.")
    bell = view.bubbles[-1]
    assert len(view.bubbles) == 3 and bell.role == "announcement"
    assert bell.text == "Your 5 second timer 'tea' is done."
    assert "announcement" in bell.header.text() and bell.accessibleName() == "Parley announced"
    assert bell.objectName() == "announcementBubble"
    view.assistant_delta("Anything else?")  # the next reply is not added to it
    assert len(view.bubbles) == 4 and bell.text == "Your 5 second timer 'tea' is done."
