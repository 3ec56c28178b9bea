"""Cloud mode in the window: a user moves a conversation between the local engines and the
(local stand-in for the) OpenAI Realtime API and back, without losing a turn; with no key
the window says how to add one; a refused key or a lost connection brings them back to
local mode in words."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backends import fail
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from app.cloud.link import Link
from app.conversation.events import Announcement, State, StateChanged
from app.gui.main_window import MainWindow
from app.gui.theme import apply_theme
from app.settings import user_config_path
from engines.protocols import ChatMessage
from tests.realtime_server import TEST_KEY, Reply, Scenario
from tests.speech import conversation_wav
from tests.waiting import Describe, run_until

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
_DOGS = "Dogs are loyal friends who love long walks."
_MOON = "The moon is about three hundred and eighty thousand kilometres away."
_LOCAL_TURN_S = 180
"""How long a local answer may take: on a busy 2-core machine llama.cpp's threads wait for
the CPU, and 48 tokens have taken 90 s."""


def wait(controller: Any, condition: Callable[[], Any], timeout_s: float, what: Describe
         ) -> None:
    """Run the real loop (Qt and asyncio in one) until `condition()` holds."""
    run_until(controller.loop, condition, timeout_s, what)


def connected(controller: Any) -> None:
    wait(controller, lambda: controller.cloud is not None
         and controller.cloud.link.connected.is_set(), 20, "the cloud session to connect")


def heard_for(controller: Any, seconds: float) -> None:
    """Let the user hear `seconds` of the reply now sounding, on the speaker's own count."""
    speaker = controller.cloud.speaker
    start = speaker.played_samples
    wait(controller, lambda: speaker.played_samples - start >= seconds * speaker.rate, 30,
         lambda: f"{seconds} s of the reply to be played (the speaker played "
                 f"{(speaker.played_samples - start) / speaker.rate:.2f} s)")


class Uplink:
    """How many microphone blocks the cloud agent handed its link for the server."""

    appends = 0


@pytest.fixture
def uplink(monkeypatch: pytest.MonkeyPatch) -> Uplink:
    """A spy on `Link.send` from before the session opens, so that a test can wait until
    the server has every block the microphone sent (they travel in order, but not at once)."""
    spy, send = Uplink(), Link.send

    def counting(link: Link, event: dict[str, Any]) -> bool:
        sent = send(link, event)
        if sent and event["type"] == "input_audio_buffer.append":
            spy.appends += 1
        return sent

    monkeypatch.setattr(Link, "send", counting)
    return spy


def on_loop(controller: Any, act: Callable[[], None]) -> None:
    """Do `act` (a key press) inside the running loop, where a real key event arrives."""

    async def run() -> None:
        act()

    controller.loop.run_until_complete(run())


@pytest.fixture
def serve(realtime_servers: Any) -> Any:
    return realtime_servers


@pytest.fixture(autouse=True)
def short_local_answers(controller: Any) -> None:
    """The stories wait for each local answer to be spoken; at the default 160 tokens the
    small model sometimes rambles for a minute of speech, longer than a turn may take."""
    controller.loop.run_until_complete(controller.update_settings({"llm": {"max_tokens": 48}}))


@pytest.fixture
def light(qapp: QApplication) -> Iterator[None]:
    """The light theme, as the window has it (for the screenshot), and the shared
    application's look put back."""
    style, palette, sheet = qapp.style().name(), qapp.palette(), qapp.styleSheet()
    apply_theme(qapp, "light")
    yield
    if style:  # empty when a stylesheet was in force: the original style is still there
        qapp.setStyle(style)
    qapp.setPalette(palette)
    qapp.setStyleSheet(sheet)
    qapp.styleHints().setColorScheme(Qt.ColorScheme.Unknown)


@pytest.fixture
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A computer with no system keyring (like this test box) and no key in the
    environment."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(before)


def window_for(controller: Any, qtbot: Any) -> MainWindow:
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.show()
    window.activateWindow()  # the menu shortcuts (Ctrl+K) go to the active window
    wait(controller, lambda: QApplication.activeWindow() is window, 5,
         "the window to become the active one")
    return window


def ask(controller: Any, qtbot: Any, window: MainWindow, text: str, bubbles: int,
        timeout_s: float = _LOCAL_TURN_S) -> None:
    """Type a question, press Enter, and wait until its answer is shown and done."""
    qtbot.keyClicks(window.input, text)
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    wait(controller, lambda: len(window.conversation.bubbles) == bubbles
         and window.state_badge.text() == "Listening", timeout_s,
         lambda: f"the answer to {text!r} ({bubbles} bubbles, Listening); the window shows "
                 f"{[b.text for b in window.conversation.bubbles]}, "
                 f"{window.state_badge.text()}")


def test_a_conversation_moves_to_the_cloud_and_back_without_losing_a_turn(
        controller: Any, qtbot: Any, pulse: Any, serve: Any, uplink: Uplink,
        tmp_path: Path, default_models: dict[str, Any]) -> None:
    server = serve(Scenario(heard=["How far away is the moon?"],
                            replies=[Reply(_DOGS), Reply(_MOON)]))
    window = window_for(controller, qtbot)
    ask(controller, qtbot, window, "What is a cat?", 2)
    local_reply = window.conversation.bubbles[1].text

    window.where.setCurrentIndex(1)  # Local → Cloud in the top bar
    connected(controller)
    assert window.models_label.text() == "Cloud: gpt-realtime · voice marin"
    assert window.cloud_action.isChecked()

    # the cloud session starts with the local conversation so far (sent once connected)
    def restored() -> list[str]:
        return [e["item"]["content"][0]["text"] for e in server.connections[0].of_type(
            "conversation.item.create")] if server.connections else []

    wait(controller, lambda: len(restored()) >= 2, 10,
         lambda: f"the conversation so far to reach the server; it has {restored()}")
    assert restored() == ["What is a cat?", local_reply]

    ask(controller, qtbot, window, "And what about dogs?", 4, 30)
    assert [b.text for b in window.conversation.bubbles[2:]] == ["And what about dogs?",
                                                                 _DOGS]
    question = conversation_wav(tmp_path / "q.wav", ["How far away is the moon?"], gap_s=1.0)
    connection = server.connections[0]

    def appended() -> int:
        return len(connection.of_type("input_audio_buffer.append"))

    def all_arrived(when: str) -> None:
        wait(controller, lambda: appended() == uplink.appends, 10,
             lambda: f"the microphone blocks sent {when} to reach the server (sent "
                     f"{uplink.appends}, arrived {appended()})")

    # muted, nothing of the microphone goes to the cloud
    qtbot.mouseClick(window.mute, Qt.MouseButton.LeftButton)
    all_arrived("before muting")
    before, sent_before = appended(), uplink.appends
    player = pulse.play_into_mic(question, wait=False)
    wait(controller, lambda: player.poll() is not None, 30,
         "the question to be played into the microphone")
    assert player.returncode == 0
    all_arrived("while muted")
    assert uplink.appends == sent_before
    assert appended() == before and len(window.conversation.bubbles) == 4
    qtbot.mouseClick(window.mute, Qt.MouseButton.LeftButton)
    wait(controller, lambda: appended() > before, 5, "the microphone to stream again")
    # unmuted, the question is heard by the server and answered aloud
    pulse.play_into_mic(question)
    wait(controller, lambda: len(window.conversation.bubbles) == 6
         and window.state_badge.text() == "Listening", 30,
         lambda: "the spoken question and its answer; the window shows "
                 f"{[b.text for b in window.conversation.bubbles]}")
    assert [b.text for b in window.conversation.bubbles[4:]] == ["How far away is the moon?",
                                                                 _MOON]
    assert window.metrics.limits_label.isVisible()
    assert "requests" in window.metrics.limits_label.text()
    prompt, completion = window.metrics.table.item(0, 11).text().split(" / ")
    assert int(prompt.replace(",", "")) > 0 and int(completion.replace(",", "")) > 0
    DOCS.mkdir(parents=True, exist_ok=True)
    assert window.grab().save(str(DOCS / "cloud-mode.png"))

    qtbot.keyClick(window, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    wait(controller, lambda: window.where.currentText() == "Local", 10,
         "the window to be back in local mode")
    assert controller.cloud is None and not window.cloud_action.isChecked()
    assert f"LLM: {default_models['llm'].name}" in window.models_label.text()
    ask(controller, qtbot, window, "What did I ask you about?", 8)
    # the local model was given the cloud turns, and every turn of both modes is stored
    history = controller.agent.history
    assert history.index(ChatMessage("user", "And what about dogs?")) < history.index(
        ChatMessage("user", "What did I ask you about?"))
    assert ChatMessage("assistant", _MOON) in history
    stored = [(t.role, t.text) for t in controller.storage.turns(controller.conversation_id)]
    assert [text for _, text in stored] == [b.text for b in window.conversation.bubbles]
    assert [role for role, _ in stored] == ["user", "assistant"] * 4


def test_in_cloud_mode_a_tool_call_is_shown_and_its_timer_is_announced_once_by_the_cloud(
        controller: Any, qtbot: Any, serve: Any, light: None) -> None:
    """One toolbox per process: the cloud runs the model's call on the window's toolbox,
    and when the timer goes off the cloud conversation (the active one) says it, once, after
    the reply under way; back in local mode the same toolbox announces through the local
    agent (closing the cloud conversation did not close it)."""
    server = serve(Scenario(replies=[Reply(call=("set_timer", {"seconds": 1, "label": "tea"})),
                                     Reply("Your tea timer is running."),
                                     Reply("Your tea is ready.")]))
    events: list[Any] = []
    controller.subscribe(events.append)
    window = window_for(controller, qtbot)
    window.where.setCurrentIndex(1)
    connected(controller)
    assert controller.cloud.tools is controller.session.toolbox
    qtbot.keyClicks(window.input, "Set a tea timer for one second.")
    qtbot.keyClick(window.input, Qt.Key.Key_Return)
    bubbles = window.conversation.bubbles
    wait(controller, lambda: len(bubbles) == 4 and len(controller.cloud.turns) == 2,
         30, lambda: "the answer, the announcement and what the cloud said of it; the window "
                     f"shows {[(b.role, b.text) for b in bubbles]}, {window.state_badge.text()}")
    said = "Your 1 second timer 'tea' is done."
    assert [(b.role, b.text) for b in bubbles] == [
        ("user", "Set a tea timer for one second."), ("assistant", "Your tea timer is running."),
        ("announcement", said), ("assistant", "Your tea is ready.")]
    [line] = bubbles[1].tools
    assert line.text().startswith("⚙ set_timer · seconds 1, label tea → id ")
    assert "set 1 second timer 'tea'" in line.text()
    notes = [e["item"]["content"][0]["text"] for e in server.connections[0].of_type(
        "conversation.item.create") if e["item"].get("role") == "system"]
    assert notes == [f"{said} Tell the user now."]
    assert [e for e in events if isinstance(e, Announcement)] == [Announcement(said)]
    assert ChatMessage("assistant", said) not in controller.agent.history  # not said locally
    DOCS.mkdir(parents=True, exist_ok=True)
    assert window.grab().save(str(DOCS / "tools.png"))

    qtbot.keyClick(window, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    wait(controller, lambda: controller.cloud is None, 10, "the window to be back in local mode")
    controller.session.toolbox.reminders.set_timer(seconds=1, label="eggs")
    eggs = Announcement("Your 1 second timer 'eggs' is done.")

    def said_aloud() -> bool:
        seen = [e for e in events if isinstance(e, Announcement | StateChanged)]
        return eggs in seen and StateChanged(State.SPEAKING) in seen[seen.index(eggs):] \
            and controller.agent.state == State.LISTENING

    wait(controller, said_aloud, 60, lambda: "the local agent to say the eggs are done; the "
         f"window shows {[(b.role, b.text) for b in bubbles[-2:]]}")
    assert (bubbles[-1].role, bubbles[-1].text) == ("announcement", eggs.text)
    assert controller.agent.history[-1] == ChatMessage("assistant", eggs.text)


def test_without_a_key_the_window_stays_local_and_the_cloud_dialog_says_how_to_add_one(
        controller: Any, qtbot: Any, no_keyring: None, serve: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve(Scenario(replies=[Reply("Hello from the cloud.")]))
    monkeypatch.delenv("OPENAI_API_KEY")
    window = window_for(controller, qtbot)
    qtbot.keyClick(window, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    wait(controller, lambda: window.cloud_dialog is not None
         and window.cloud_dialog.isVisible(), 10, "the cloud dialog to open")
    dialog = window.cloud_dialog
    assert dialog is not None
    assert "OPENAI_API_KEY" in window.statusBar().currentMessage()
    assert "no system keyring" in dialog.status.text()
    assert controller.cloud is None and window.where.currentText() == "Local"
    ask(controller, qtbot, window, "What is a cat?", 2)

    # this computer cannot keep a key: the dialog says so, and the key goes nowhere
    qtbot.keyClicks(dialog.key, TEST_KEY)
    assert dialog.key.displayText() != TEST_KEY
    dialog.turn_detection.setCurrentIndex(dialog.turn_detection.findData("semantic_vad"))
    dialog.voice.setCurrentText("cedar")
    dialog.buttons.button(dialog.buttons.StandardButton.Save).click()
    assert "cannot store the key" in dialog.message.text()
    assert "OPENAI_API_KEY" in dialog.message.text()
    assert dialog.isVisible() and dialog.key.text() == ""
    dialog.forget.click()
    assert "keyring cannot be reached" in dialog.message.text()

    # with the key in the environment instead, saving keeps the settings and switches
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    dialog.buttons.button(dialog.buttons.StandardButton.Save).click()
    connected(controller)
    assert window.models_label.text() == "Cloud: gpt-realtime · voice cedar"
    settings = user_config_path().read_text()
    assert 'voice = "cedar"' in settings and 'turn_detection = "semantic_vad"' in settings
    assert TEST_KEY not in settings
    # connected is set before the session settings reach the server
    wait(controller, lambda: server.connections
         and server.connections[0].of_type("session.update"), 10,
         "the session settings to reach the server")
    session = server.connections[0].of_type("session.update")[0]["session"]
    assert session["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
    ask(controller, qtbot, window, "Hello?", 4, 30)
    assert window.conversation.bubbles[3].text == "Hello from the cloud."


def test_a_refused_key_brings_the_conversation_back_to_local_mode_in_words(
        controller: Any, qtbot: Any, serve: Any, default_models: dict[str, Any]) -> None:
    serve(Scenario(api_key="sk-the-right-one"))
    window = window_for(controller, qtbot)
    window.where.setCurrentIndex(1)
    wait(controller, lambda: "refused the API key" in window.statusBar().currentMessage(), 20,
         lambda: "the refusal in the status bar; it says "
                 f"{window.statusBar().currentMessage()!r}")
    wait(controller, lambda: window.where.currentText() == "Local", 10,
         "the window to be back in local mode")
    assert "Back in local mode" in window.statusBar().currentMessage()
    assert controller.cloud is None
    assert f"LLM: {default_models['llm'].name}" in window.models_label.text()
    ask(controller, qtbot, window, "What is a cat?", 2)


def test_a_connection_lost_for_good_brings_the_conversation_back_to_local_mode(
        controller: Any, qtbot: Any, serve: Any) -> None:
    server = serve(Scenario(replies=[Reply("Still here.")]))
    window = window_for(controller, qtbot)
    controller.settings = controller.settings.updated({"cloud": {"reconnect_attempts": 1}})
    window.where.setCurrentIndex(1)
    connected(controller)
    ask(controller, qtbot, window, "Are you there?", 2, 30)
    server.stop()  # the service goes away and does not come back
    wait(controller, lambda: window.where.currentText() == "Local", 30,
         lambda: "the window to give up on the cloud; the status bar says "
                 f"{window.statusBar().currentMessage()!r}")
    assert "gave up after 1 attempts" in window.statusBar().currentMessage()
    assert controller.cloud is None
    ask(controller, qtbot, window, "What is a cat?", 4)
    said = [m for m in controller.agent.history if m.role != "system"]  # no time notes
    assert said[:2] == [ChatMessage("user", "Are you there?"),
                        ChatMessage("assistant", "Still here.")]


def test_in_cloud_push_to_talk_only_the_held_speech_goes_up_and_esc_stops_the_reply(
        controller: Any, qtbot: Any, pulse: Any, serve: Any, tmp_path: Path) -> None:
    story = ("Once upon a time a lighthouse keeper lived alone on a small rocky island, and "
             "every night she climbed the long stairs to light the lamp for the ships.")
    server = serve(Scenario(heard=["Tell me a story."], replies=[Reply(story)]))
    controller.loop.run_until_complete(
        controller.update_settings({"cloud": {"turn_detection": "push_to_talk"}}))
    window = window_for(controller, qtbot)
    window.where.setCurrentIndex(1)
    connected(controller)
    question = conversation_wav(tmp_path / "q.wav", ["Tell me a story."], gap_s=0.3)
    pulse.play_into_mic(question)  # not holding Space: none of this goes up
    window.conversation.setFocus()
    on_loop(controller, lambda: qtbot.keyPress(window, Qt.Key.Key_Space))
    player = pulse.play_into_mic(question, wait=False)
    wait(controller, lambda: player.poll() is not None, 30,
         "the question to be played into the microphone")
    on_loop(controller, lambda: qtbot.keyRelease(window, Qt.Key.Key_Space))
    wait(controller, lambda: window.state_badge.text() == "Speaking", 30,
         lambda: f"the story to be told; the window is {window.state_badge.text()}")
    heard_for(controller, 1.5)
    on_loop(controller, lambda: qtbot.keyClick(window, Qt.Key.Key_Escape))
    wait(controller, lambda: window.state_badge.text() == "Listening", 10,
         "the window to listen again after Esc")
    connection = server.connections[0]
    wait(controller, lambda: connection.of_type("conversation.item.truncate"), 10,
         "the server to be told how much of the story was heard")

    kinds = [e["type"] for e in connection.received]
    assert "input_audio_buffer.append" not in kinds[:kinds.index("input_audio_buffer.clear")]
    assert kinds.index("input_audio_buffer.commit") > kinds.index("input_audio_buffer.append")
    assert connection.of_type("response.cancel")
    user, reply = window.conversation.bubbles
    assert user.text == "Tell me a story."
    # what was heard is what is shown (marked as cut) and kept
    heard = controller.storage.turns(controller.conversation_id)[-1].text
    assert heard and story.startswith(heard) and len(heard) < len(story)
    assert reply.text.startswith(heard) and reply.text != story
