"""The settings dialog through the real Controller: changes apply live (reloading the voice
when its speed changes), reach the Agent and stick in the user's settings file; the theme
switches the whole application's palette."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QDialog

from app.control.controller import Controller
from app.conversation.events import AgentEvent, ModelChanged
from app.gui.settings_dialog import SettingsDialog
from app.gui.theme import apply_theme

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PIRATE = "You are Parley, a cheerful pirate. Answer in one short sentence."


def _user_settings() -> dict[str, Any]:
    with Path(os.environ["PARLEY_CONFIG"]).open("rb") as f:
        return tomllib.load(f)


def _window_lightness(app: QApplication) -> int:
    return app.palette().color(QPalette.ColorRole.Window).lightness()


@pytest.fixture
def restore_look(qapp: QApplication) -> Iterator[QApplication]:
    """Theme tests change the one application every test shares: put its look back."""
    style, palette, sheet = qapp.style().name(), qapp.palette(), qapp.styleSheet()
    yield qapp
    if style:  # empty when a stylesheet was in force: the original style is still there
        qapp.setStyle(style)
    qapp.setPalette(palette)
    qapp.setStyleSheet(sheet)
    qapp.styleHints().setColorScheme(Qt.ColorScheme.Unknown)


def test_theme_switching_changes_the_palette(restore_look: QApplication) -> None:
    app = restore_look
    assert apply_theme(app, "dark") == "dark"
    assert _window_lightness(app) < 60
    assert "stateBadge" in app.styleSheet()
    assert apply_theme(app, "light") == "light"
    assert _window_lightness(app) > 200
    assert apply_theme(app, "system") in ("light", "dark")
    assert apply_theme(app, "no such theme") in ("light", "dark")  # a typo must not stop us


def test_changes_apply_live_and_are_remembered(controller: Controller, qtbot: Any,
                                               restore_look: QApplication) -> None:
    events: list[AgentEvent] = []
    controller.subscribe(events.append)
    dialog = SettingsDialog(controller)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    assert dialog.temperature.value() == pytest.approx(controller.settings.llm.temperature)
    assert dialog.language.currentData() == controller.settings.stt.language
    assert dialog.language.itemData(0) == "auto"
    assert dialog.language.findText("German (de)") >= 0
    assert dialog.changes() == {}

    dialog.temperature.setValue(0.3)
    dialog.speed.setValue(125)
    dialog.theme.setCurrentIndex(dialog.theme.findData("dark"))
    assert dialog.changes() == {"llm": {"temperature": 0.3}, "tts": {"length_scale": 0.8},
                                "ui": {"theme": "dark"}}
    qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    assert dialog.pending is not None
    assert controller.loop.run_until_complete(dialog.pending) is True  # type: ignore[attr-defined]

    assert controller.settings.llm.temperature == 0.3
    assert controller.settings.tts.length_scale == 0.8
    assert controller.agent.settings.temperature == 0.3
    assert any(isinstance(e, ModelChanged) and e.kind == "tts" for e in events)
    assert _window_lightness(restore_look) < 60
    saved = _user_settings()
    assert saved["llm"]["temperature"] == 0.3
    assert saved["tts"]["length_scale"] == 0.8
    assert saved["ui"]["theme"] == "dark"
    assert dialog.changes() == {}, "what was applied is the new starting point"

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    dialog.grab().save(str(SCREENSHOTS / "settings-dark.png"))

    # Restore defaults resets the visible page only.
    dialog.tabs.setCurrentIndex(2)  # Replies
    qtbot.mouseClick(dialog.buttons.button(dialog.buttons.StandardButton.RestoreDefaults),
                     Qt.MouseButton.LeftButton)
    assert dialog.changes() == {"llm": {"temperature": 0.7}}
    dialog.temperature.setValue(0.3)

    # The persona: OK applies it to the open conversation, then closes.
    dialog.tabs.setCurrentIndex(3)
    dialog.persona.setPlainText(PIRATE)
    qtbot.mouseClick(dialog.buttons.button(dialog.buttons.StandardButton.Ok),
                     Qt.MouseButton.LeftButton)
    assert dialog.pending is not None
    controller.loop.run_until_complete(dialog.pending)  # type: ignore[attr-defined]
    qtbot.waitUntil(lambda: dialog.result() == QDialog.DialogCode.Accepted, timeout=2000)
    assert controller.agent.history[0].content == PIRATE
    assert controller.storage.system_prompt(controller.conversation_id) == PIRATE
    assert _user_settings()["llm"]["system_prompt"] == PIRATE


def test_a_user_who_cannot_use_echo_cancellation_stops_parley_hearing_itself(
        controller: Controller, qtbot: Any) -> None:
    dialog = SettingsDialog(controller)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    assert dialog.duplex.currentData() == controller.agent.settings.duplex.mode == "aec"
    dialog.duplex.setCurrentIndex(dialog.duplex.findData("half-duplex"))
    dialog.min_speech.setValue(300)
    assert dialog.changes() == {"duplex": {"mode": "half-duplex", "min_speech_ms": 300}}
    qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    assert dialog.pending is not None
    assert controller.loop.run_until_complete(dialog.pending) is True  # type: ignore[attr-defined]
    assert controller.agent.settings.duplex.mode == "half-duplex"  # the voice loop reads it
    assert controller.agent.settings.duplex.min_speech_ms == 300
    assert _user_settings()["duplex"] == {"mode": "half-duplex", "min_speech_ms": 300}
