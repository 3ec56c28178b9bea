"""The conversations panel on a real SQLite history: list, open, new, rename, delete, export.

Dialogs are replaced through the panel's own hooks (`ask_title`, `confirm_delete`,
`ask_export_path`), so the keyboard and button paths run without a modal window.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QToolButton
from pytestqt.qtbot import QtBot

from app.gui.conversations_panel import ConversationsPanel
from app.storage import Storage


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    with Storage(tmp_path / "parley.db") as store:
        yield store


def talk(storage: Storage, question: str, answer: str, at: float) -> int:
    cid = storage.new_conversation("You are helpful.")
    storage.add_turn(cid, "user", question, created_at=at)
    storage.add_turn(cid, "assistant", answer, {"end_of_speech_to_first_audio": 640.0},
                     {"prompt": 30, "completion": 5}, created_at=at + 1)
    return cid


@pytest.fixture
def ids(storage: Storage) -> list[int]:
    """Three conversations, oldest first."""
    now = time.time()
    return [talk(storage, "What is the capital of France?", "Paris.", now - 300),
            talk(storage, "How tall is Everest?", "About 8849 metres.", now - 200),
            talk(storage, "Tell me a joke", "Why did the chicken cross the road?", now - 100)]


@pytest.fixture
def panel(qtbot: QtBot, storage: Storage, ids: list[int]) -> ConversationsPanel:
    widget = ConversationsPanel(storage)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    widget.activateWindow()
    widget.list.setFocus()
    return widget


def button(panel: ConversationsPanel, name: str) -> QToolButton:
    return next(b for b in panel.findChildren(QToolButton) if b.accessibleName() == name)


def titles(panel: ConversationsPanel) -> list[str]:
    return [panel.list.item(row).text().split("\n")[0] for row in range(panel.list.count())]


def test_the_list_shows_conversations_newest_first_with_their_turn_count(
        panel: ConversationsPanel, ids: list[int]) -> None:
    assert titles(panel) == ["Tell me a joke", "How tall is Everest?",
                             "What is the capital of France?"]
    assert panel.list.item(0).text().endswith("· 2 turns")
    assert panel.current_id() == ids[2]
    assert panel.list.accessibleName() == "Conversations"
    assert panel.list.item(0).data(Qt.ItemDataRole.AccessibleTextRole).startswith(
        "Tell me a joke, ")


def test_double_clicking_a_conversation_asks_to_open_it(qtbot: QtBot, panel: ConversationsPanel,
                                                        ids: list[int]) -> None:
    item = panel.list.item(1)
    centre = panel.list.visualItemRect(item).center()
    with qtbot.waitSignal(panel.open_requested) as opened:
        # A real double-click is a click followed by a double-click event; QTest's
        # mouseDClick alone is not seen as the second click of a pair.
        qtbot.mouseClick(panel.list.viewport(), Qt.MouseButton.LeftButton, pos=centre)
        qtbot.mouseDClick(panel.list.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    assert opened.args == [ids[1]]


def test_enter_on_a_conversation_asks_to_open_it(qtbot: QtBot, panel: ConversationsPanel,
                                                 ids: list[int]) -> None:
    qtbot.keyClick(panel.list, Qt.Key.Key_Down)
    qtbot.keyClick(panel.list, Qt.Key.Key_Down)
    with qtbot.waitSignal(panel.open_requested) as opened:
        qtbot.keyClick(panel.list, Qt.Key.Key_Return)
    assert opened.args == [ids[0]]


def test_new_conversation_is_asked_for_by_button_and_by_ctrl_n(
        qtbot: QtBot, panel: ConversationsPanel) -> None:
    with qtbot.waitSignal(panel.new_requested):
        qtbot.mouseClick(button(panel, "New conversation"), Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(panel.new_requested):
        qtbot.keyClick(panel.list, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)


def test_a_new_conversation_appears_selected_after_refresh(
        panel: ConversationsPanel, storage: Storage) -> None:
    cid = storage.new_conversation("You are helpful.")
    panel.refresh(select_id=cid)
    assert titles(panel)[0] == "New conversation"
    assert panel.list.item(0).text().endswith("· 0 turns")
    assert panel.current_id() == cid


def test_f2_renames_the_selected_conversation(qtbot: QtBot, panel: ConversationsPanel,
                                              storage: Storage, ids: list[int],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def ask_title(current: str) -> str:
        asked.append(current)
        return "Geography"

    monkeypatch.setattr(panel, "ask_title", ask_title)
    qtbot.keyClick(panel.list, Qt.Key.Key_Down)
    qtbot.keyClick(panel.list, Qt.Key.Key_F2)
    assert asked == ["How tall is Everest?"]
    assert titles(panel)[1] == "Geography"
    assert panel.current_id() == ids[1]
    assert {c.id: c.title for c in storage.conversations()}[ids[1]] == "Geography"


def test_delete_asks_first_then_removes_the_conversation(
        qtbot: QtBot, panel: ConversationsPanel, storage: Storage, ids: list[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(panel, "confirm_delete", lambda title: False)
    qtbot.keyClick(panel.list, Qt.Key.Key_Delete)
    assert panel.list.count() == 3

    monkeypatch.setattr(panel, "confirm_delete", lambda title: title == "Tell me a joke")
    with qtbot.waitSignal(panel.deleted) as deleted:
        qtbot.keyClick(panel.list, Qt.Key.Key_Delete)
    assert deleted.args == [ids[2]]
    assert titles(panel) == ["How tall is Everest?", "What is the capital of France?"]
    assert [c.id for c in storage.conversations()] == [ids[1], ids[0]]
    assert panel.current_id() == ids[1]


def test_deleting_the_last_conversation_disables_the_actions_that_need_one(
        panel: ConversationsPanel) -> None:
    for _ in range(3):
        current = panel.current_id()
        assert current is not None
        panel.delete_conversation(current)
    assert panel.list.count() == 0
    assert not panel.rename_action.isEnabled()
    assert not panel.delete_action.isEnabled()
    assert not panel.export_action.isEnabled()
    assert panel.new_action.isEnabled()


@pytest.mark.parametrize("name", ["joke.md", "joke.json"])
def test_export_writes_the_file_in_the_chosen_format(
        qtbot: QtBot, panel: ConversationsPanel, tmp_path: Path, ids: list[int], name: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / name
    monkeypatch.setattr(panel, "ask_export_path", lambda title: target)
    qtbot.mouseClick(button(panel, "Export conversation"), Qt.MouseButton.LeftButton)
    text = target.read_text(encoding="utf-8")
    if name.endswith(".json"):
        document = json.loads(text)
        assert document["id"] == ids[2]
        assert [t["text"] for t in document["turns"]] == [
            "Tell me a joke", "Why did the chicken cross the road?"]
        assert document["turns"][1]["metrics"] == {"end_of_speech_to_first_audio": 640.0}
    else:
        assert text.startswith("# Tell me a joke\n")
        assert "**Parley**" in text
        assert "Why did the chicken cross the road? _(first audio 640 ms)_" in text


def test_an_export_that_cannot_be_written_is_reported_not_raised(
        qtbot: QtBot, panel: ConversationsPanel, tmp_path: Path, ids: list[int]) -> None:
    with qtbot.waitSignal(panel.error_occurred) as failed:
        panel.export_conversation(ids[0], tmp_path / "missing-folder" / "out.md")
    message, hint = failed.args
    assert "Could not write" in message and "missing-folder" in message
    assert hint


def test_buttons_are_reachable_and_named(panel: ConversationsPanel) -> None:
    names = [b.accessibleName() for b in panel.findChildren(QToolButton)]
    assert names == ["New conversation", "Rename conversation", "Delete conversation",
                     "Export conversation"]
    assert all(b.focusPolicy() & Qt.FocusPolicy.TabFocus for b in panel.findChildren(QToolButton))
