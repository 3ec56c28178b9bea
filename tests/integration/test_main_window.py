"""The main window, driven like a user would: typing, holding Space to talk, muting, Esc."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt

from app.conversation.events import Announcement, AssistantDone, MicLevel, State, StateChanged
from app.gui.main_window import MainWindow
from engines.protocols import ChatMessage, ToolCall
from tests.speech import conversation_wav
from tests.waiting import run_until


def wait(controller: Any, qtbot: Any, condition: Any, timeout_s: float = 300) -> None:
    """Run the real loop until `condition()` holds (the Qt loop is the asyncio loop). A
    first answer of the 1.5B default on two busy cores can take minutes."""
    import asyncio

    async def until() -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():
                await asyncio.sleep(0.05)

    controller.loop.run_until_complete(until())


def test_a_typed_question_is_shown_and_answered_word_by_word(
        controller: Any, qtbot: Any, default_models: dict[str, Any]) -> None:
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.show()
    deltas: list[int] = []
    controller.subscribe(lambda e: deltas.append(1) if type(e).__name__ == "AssistantDelta"
                         else None)
    qtbot.keyClicks(window.input, "What is a cat?")
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    wait(controller, qtbot, lambda: len(window.conversation.bubbles) == 2
         and window.state_badge.text() == "Listening")
    user, reply = window.conversation.bubbles
    assert user.text == "What is a cat?" and user.role == "user"
    assert reply.role == "assistant" and reply.text.strip()
    assert len(deltas) > 1  # the answer arrived in pieces, as it was generated
    assert f"LLM: {default_models['llm'].name}" in window.models_label.text()


def test_holding_space_records_a_question_and_releasing_it_gets_an_answer(
        controller: Any, qtbot: Any, pulse: Any, tmp_path: Path) -> None:
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.show()
    window.mode.setCurrentIndex(1)  # push-to-talk: the VAD alone never starts a turn
    window.conversation.setFocus()
    question = conversation_wav(tmp_path / "q.wav", ["How far away is the moon?"], gap_s=0.3)
    qtbot.keyPress(window, Qt.Key.Key_Space)
    player = pulse.play_into_mic(question, wait=False)
    wait(controller, qtbot, lambda: player.poll() is not None, 30)
    qtbot.keyRelease(window, Qt.Key.Key_Space)
    wait(controller, qtbot, lambda: len(window.conversation.bubbles) == 2
         and window.state_badge.text() == "Listening")
    assert "moon" in window.conversation.bubbles[0].text.lower()


def test_a_tool_call_is_shown_in_the_reply_and_the_timer_it_set_announces_itself(
        controller: Any, qtbot: Any) -> None:
    """The Agent's own tool step runs a real set_timer (tools.db in the data folder); the
    window shows the call and its result in the reply, and when the timer goes off the
    active conversation (the local agent) says it, in a bubble of its own."""
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.show()
    events: list[Any] = []
    controller.subscribe(events.append)
    tools = controller.agent.tools
    assert tools is not None
    call = ToolCall("set_timer", '{"seconds": 1, "label": "tea"}')
    controller.loop.run_until_complete(tools.run(1, call))
    controller.publish(AssistantDone(1, "Your tea timer is set."))
    reply = window.conversation.bubbles[-1]
    [line] = reply.tools
    assert line.text().startswith("⚙ set_timer · seconds 1, label tea → id ")
    assert "set 1 second timer 'tea'" in line.text() and line.outcome == "done"
    assert reply.text == "Your tea timer is set."

    said = "Your 1 second timer 'tea' is done."

    def spoken() -> bool:
        """Announced, then spoken aloud, and listening again."""
        seen = [e for e in events if isinstance(e, Announcement | StateChanged)]
        after = seen[seen.index(Announcement(said)):] if Announcement(said) in seen else []
        return (StateChanged(State.SPEAKING) in after
                and window.state_badge.text() == "Listening")

    run_until(controller.loop, spoken, 300,
              lambda: f"the timer to be announced aloud; the window shows "
                      f"{[(b.role, b.text) for b in window.conversation.bubbles]}, "
                      f"{window.state_badge.text()}")
    assert window.conversation.bubbles[-1].role == "announcement"
    assert window.conversation.bubbles[-1].text == said
    assert [e for e in events if isinstance(e, Announcement)] == [Announcement(said)]
    assert controller.agent.history[-1] == ChatMessage("assistant", said)


def test_mute_and_stop_speaking_reach_the_agent(controller: Any, qtbot: Any) -> None:
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.show()
    qtbot.mouseClick(window.mute, Qt.MouseButton.LeftButton)
    assert controller.listener.feed.muted and window.mute.text() == "Un&mute"
    generation = controller.agent.generation
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert controller.agent.generation == generation + 1


def test_a_closed_window_is_sent_nothing_more(controller: Any, qtbot: Any) -> None:
    """The agent outlives the window while Parley shuts down; events must not reach
    widgets Qt has already deleted."""
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.show()
    controller.publish(MicLevel(-20.0))
    assert window.level.value() == -20
    window.close()
    controller.publish(MicLevel(-10.0))
    assert window.level.value() == -20


def test_a_missing_model_keeps_the_window_open_and_the_switcher_fixes_it(
        pulse: Any, user_dirs: Path, app_loop: Any, qtbot: Any) -> None:
    """Starting with a language model that is not on disk: the window says so, opens the
    model switcher on the LLM tab, and once the user picks an installed model, Parley
    starts and answers."""
    import asyncio

    from app.control.controller import Controller
    from app.settings import load_settings
    from app.storage import Storage, default_db_path

    storage = Storage(default_db_path())
    controller = Controller(load_settings({"models": {"llm": str(user_dirs / "gone.gguf")}}),
                            storage)
    controller.loop = app_loop  # type: ignore[attr-defined]
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.show()
    try:
        started = asyncio.ensure_future(window.start(), loop=app_loop)
        wait(controller, qtbot, lambda: window.models_dialog is not None
             and window.models_dialog.isVisible())
        dialog = window.models_dialog
        assert dialog is not None and not started.done()
        assert "gone.gguf" in window.statusBar().currentMessage()
        assert window.state_badge.text() == "Not started"
        assert dialog.current_kind() == "llm"
        assert dialog.select("llm", "smollm2-135m-instruct")
        dialog.use_selected()
        wait(controller, qtbot, started.done, 120)
        assert started.result() is True and controller.started
        assert "LLM: smollm2-135m-instruct" in window.models_label.text()
        qtbot.keyClicks(window.input, "What is a cat?")
        qtbot.keyClick(window.input, Qt.Key.Key_Return)
        wait(controller, qtbot, lambda: len(window.conversation.bubbles) == 2
             and window.state_badge.text() == "Listening")
    finally:
        app_loop.run_until_complete(controller.close())
        storage.close()


def test_closing_the_window_while_a_model_is_missing_ends_the_start(
        user_dirs: Path, app_loop: Any, qtbot: Any) -> None:
    import asyncio

    from app.control.controller import Controller
    from app.settings import load_settings
    from app.storage import Storage, default_db_path

    storage = Storage(default_db_path())
    controller = Controller(load_settings({"models": {"tts": str(user_dirs / "no-voice.onnx")}}),
                            storage)
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.show()
    started = asyncio.ensure_future(window.start(), loop=app_loop)

    async def close_when_asked() -> None:
        while window.models_dialog is None or not window.models_dialog.isVisible():
            await asyncio.sleep(0.05)
        assert window.models_dialog.current_kind() == "tts"
        window.close()

    app_loop.run_until_complete(asyncio.wait_for(close_when_asked(), 60))
    assert app_loop.run_until_complete(asyncio.wait_for(started, 10)) is False
    storage.close()
