"""The main window, driven like a user would: typing, holding Space to talk, muting, Esc."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt

from app.gui.main_window import MainWindow
from tests.speech import conversation_wav


def wait(controller: Any, qtbot: Any, condition: Any, timeout_s: float = 60) -> None:
    """Run the real loop until `condition()` holds (the Qt loop is the asyncio loop)."""
    import asyncio

    async def until() -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():
                await asyncio.sleep(0.05)

    controller.loop.run_until_complete(until())


def test_a_typed_question_is_shown_and_answered_word_by_word(controller: Any, qtbot: Any) -> None:
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
    assert "LLM: smollm2-135m-instruct" in window.models_label.text()


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
         and window.state_badge.text() == "Listening", 90)
    assert "moon" in window.conversation.bubbles[0].text.lower()


def test_mute_and_stop_speaking_reach_the_agent(controller: Any, qtbot: Any) -> None:
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.show()
    qtbot.mouseClick(window.mute, Qt.MouseButton.LeftButton)
    assert controller.voice.muted and window.mute.text() == "Un&mute"
    generation = controller.agent.generation
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert controller.agent.generation == generation + 1
