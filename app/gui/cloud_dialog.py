"""Tools → Cloud…: the OpenAI API key and the cloud session's settings.

The key goes straight to the OS keyring (`app.cloud.apikey`); it is never shown again, and never
reaches the settings file, the logs or the database. The session settings go to the user's
settings file through `Controller.update_settings`, like every other setting.
"""

from __future__ import annotations

import asyncio
import os

import keyring
from keyring.errors import KeyringError
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.cloud.apikey import (
    ACCOUNT,
    ENV_VAR,
    SERVICE,
    MissingKeyError,
    forget_key,
    load_key,
    store_key,
)
from app.control.controller import Controller
from app.settings import Changes
from engines.errors import ParleyError

VOICES = ("marin", "cedar", "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer",
          "verse")
TURN_DETECTION = (("server_vad", "Server VAD: a pause ends your turn"),
                  ("semantic_vad", "Semantic VAD: the model judges when you have finished"),
                  ("push_to_talk", "Push-to-talk: hold Space while you speak"))
TRANSCRIPTION_MODELS = ("gpt-4o-mini-transcribe", "gpt-4o-transcribe", "whisper-1")
MODELS = ("gpt-realtime", "gpt-realtime-mini")


def has_key() -> bool:
    try:
        load_key()
    except MissingKeyError:
        return False
    return True


def key_status() -> str:
    """Where the key comes from, in words: what the user needs to decide what to do."""
    if os.environ.get(ENV_VAR, "").strip():
        return f"A key is set in the environment ({ENV_VAR}); it is used before any other."
    try:
        stored = keyring.get_password(SERVICE, ACCOUNT)
    except KeyringError:
        return (f"This computer has no system keyring, so Parley cannot keep a key. Set "
                f"{ENV_VAR} in the environment before starting Parley instead.")
    if stored:
        return "A key is stored in your system keyring."
    return ("No key yet: paste one below. Keys are made at "
            "https://platform.openai.com/api-keys.")


class CloudDialog(QDialog):
    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.setWindowTitle("Cloud mode")
        self.pending: asyncio.Future[None] | None = None
        cloud = controller.settings.cloud

        self.status = QLabel(key_status())
        self.status.setWordWrap(True)
        self.status.setAccessibleName("API key status")
        self.key = QLineEdit()
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setPlaceholderText("sk-…  (kept in your system keyring, never shown again)")
        self.key.setAccessibleName("OpenAI API key")
        self.forget = QPushButton("&Forget key")
        self.forget.setToolTip("Remove the key from your system keyring.")
        self.forget.clicked.connect(self.forget_key)
        key_row = QHBoxLayout()
        key_row.addWidget(self.key, 1)
        key_row.addWidget(self.forget)

        self.model = self._combo(MODELS, cloud.model, editable=True)
        self.voice = self._combo(VOICES, cloud.voice, editable=True)
        self.voice.setToolTip("The voice is fixed once a cloud session has spoken; a change "
                              "starts a new session.")
        self.turn_detection = QComboBox()
        for value, words in TURN_DETECTION:
            self.turn_detection.addItem(words, value)
        self.turn_detection.setCurrentIndex(
            max(0, self.turn_detection.findData(cloud.turn_detection)))
        self.transcription = self._combo(TRANSCRIPTION_MODELS, cloud.transcription_model,
                                         editable=True)

        form = QFormLayout()
        form.addRow("API &key", key_row)
        form.addRow("", self.status)
        form.addRow("&Model", self.model)
        form.addRow("&Voice", self.voice)
        form.addRow("&Turn detection", self.turn_detection)
        form.addRow("T&ranscription", self.transcription)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setAccessibleName("Cloud settings message")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        self.setWindowModality(Qt.WindowModality.WindowModal)

    @staticmethod
    def _combo(values: tuple[str, ...], current: str, editable: bool) -> QComboBox:
        combo = QComboBox()
        combo.setEditable(editable)
        combo.addItems(list(values))
        combo.setCurrentText(current)
        return combo

    def changes(self) -> Changes:
        """The `[cloud]` keys that differ from the current settings."""
        shown = {"model": self.model.currentText().strip(),
                 "voice": self.voice.currentText().strip(),
                 "turn_detection": self.turn_detection.currentData(),
                 "transcription_model": self.transcription.currentText().strip()}
        current = self.controller.settings.cloud
        changed = {k: v for k, v in shown.items() if v and v != getattr(current, k)}
        return {"cloud": changed} if changed else {}

    def save(self) -> asyncio.Future[None] | None:
        """Store the key (if one was typed) and apply the settings; the dialog closes once
        both worked, and otherwise says why and stays."""
        key = self.key.text()
        self.key.clear()  # not kept in the widget, whatever happens next
        if key.strip():
            try:
                store_key(key)
            except ParleyError as err:
                self.message.setText(f"{err.message} {err.hint}")
                return None
            self.status.setText(key_status())
        changes = self.changes()
        if not changes:
            self.accept()
            return None
        self.buttons.setEnabled(False)
        self.message.setText("Applying…")
        self.pending = asyncio.ensure_future(self._apply(changes))
        return self.pending

    async def _apply(self, changes: Changes) -> None:
        try:
            await self.controller.update_settings(changes)
        except ParleyError as err:
            self.message.setText(f"Could not apply the settings: {err.message} {err.hint}")
            return
        finally:
            self.pending = None
            self.buttons.setEnabled(True)
        self.accept()

    def forget_key(self) -> None:
        try:
            forgotten = forget_key()
        except ParleyError as err:
            self.message.setText(f"{err.message} {err.hint}")
            return
        self.message.setText("The key is removed from your system keyring." if forgotten
                             else "No key was stored in your system keyring.")
        self.status.setText(key_status())
