"""Settings in plain words: listening, voice, replies, persona and appearance.

Each field maps one key of the settings to a widget. Only the keys the user changed are
sent to `Controller.update_settings`, because changing some (the voice speed, the spoken
language, the context size) reloads an engine, and an untouched page must not cost that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QLocale, Qt
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QSlider,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.control.controller import Controller
from app.gui.theme import apply_theme
from app.settings import Changes, defaults
from app.settings_schema import THEMES, WHISPER_LANGUAGES
from engines.errors import ParleyError

_LOCALE_CODES = {"jw": "jv"}
"""Whisper spells Javanese the old way."""
_SENSITIVITY = [
    (0, "Highest — hears soft voices, and some noise"),
    (1, "High"),
    (2, "Balanced"),
    (3, "Low — for noisy rooms"),
]
"""webrtcvad's aggressiveness: how hard it filters out what is not speech."""
_DUPLEX = [
    ("aec", "Any time — Parley cancels its own voice (echo cancellation)"),
    ("vad-threshold", "Only loudly — no echo cancellation (headsets; speakers may trip it)"),
    ("half-duplex", "Never — the microphone is ignored while Parley answers"),
]
"""The [duplex] modes: whether and how the user can talk over a reply."""
_THEME_NAMES = {"system": "Follow the desktop", "light": "Light", "dark": "Dark"}


@dataclass
class _Field:
    """One settings key and how to read and show it in its widget."""

    section: str
    key: str
    read: Callable[[], Any]
    show: Callable[[Any], None]


def language_name(code: str) -> str:
    """"German (de)": the English name Qt knows for a Whisper code, or the code alone."""
    locale = QLocale(_LOCALE_CODES.get(code, code))
    if locale.language() == QLocale.Language.C:
        return code
    return f"{QLocale.languageToString(locale.language())} ({code})"


def _select_data(combo: QComboBox, value: Any) -> None:
    """Select the item holding `value`; a value the list lacks (typed into the settings file)
    is added rather than silently replaced."""
    index = combo.findData(value)
    if index < 0:
        combo.addItem(str(value), value)
        index = combo.count() - 1
    combo.setCurrentIndex(index)


class SettingsDialog(QDialog):
    """OK and Apply send only what changed; "Restore defaults" resets the visible page."""

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.pending: asyncio.Future[bool] | None = None
        """The settings being applied (an engine may be reloading), for tests to await."""
        self.setWindowTitle("Settings")
        self.setMinimumWidth(560)
        self._pages: list[list[_Field]] = []
        self.tabs = QTabWidget()
        self.tabs.addTab(self._listening_page(), "&Listening")
        self.tabs.addTab(self._voice_page(), "&Voice")
        self.tabs.addTab(self._replies_page(), "&Replies")
        self.tabs.addTab(self._persona_page(), "&Persona")
        self.tabs.addTab(self._appearance_page(), "App&earance")
        self._fields = [field for page in self._pages for field in page]
        for field in self._fields:
            field.show(controller.settings.value(field.section, field.key))
        self._shown = self._values()

        self.message = QLabel()
        self.message.setObjectName("hintText")
        self.message.setWordWrap(True)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.Apply
            | QDialogButtonBox.StandardButton.RestoreDefaults)
        self.buttons = buttons
        self.apply_button = buttons.button(QDialogButtonBox.StandardButton.Apply)
        self.apply_button.setText("&Apply")
        self.apply_button.clicked.connect(self.apply)
        restore = buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults)
        restore.setText("Restore &defaults")
        restore.setToolTip("Put the settings on this page back to Parley's defaults. "
                           "Nothing changes until you press OK or Apply.")
        restore.clicked.connect(self.restore_defaults)
        buttons.accepted.connect(self._ok)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(self.message)
        layout.addWidget(buttons)

    # -- pages -----------------------------------------------------------------------------
    def _page(self, fields: list[tuple[str, QWidget, str, _Field]],
              note: str = "", labels_above: bool = False) -> QWidget:
        """A form page: each row is a mnemonic label, its widget and a plain-words tooltip."""
        page = QWidget()
        form = QFormLayout(page)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setVerticalSpacing(10)
        if labels_above:
            form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapAllRows)
        for label_text, widget, tip, _ in fields:
            label = QLabel(label_text)
            label.setBuddy(widget)
            for w in (label, widget):
                w.setToolTip(tip)
            (widget.focusProxy() or widget).setAccessibleDescription(tip)
            form.addRow(label, widget)
        if note:
            hint = QLabel(note)
            hint.setObjectName("hintText")
            hint.setWordWrap(True)
            form.addRow(hint)
        self._pages.append([field for *_, field in fields])
        return page

    def _listening_page(self) -> QWidget:
        self.sensitivity = QComboBox()
        for value, text in _SENSITIVITY:
            self.sensitivity.addItem(text, value)
        self.hangover = self._spin(200, 3000, 50, " ms")
        self.pre_roll = self._spin(0, 1000, 50, " ms")
        self.duplex = QComboBox()
        for mode, text in _DUPLEX:
            self.duplex.addItem(text, mode)
        self.min_speech = self._spin(60, 1000, 20, " ms")
        self.language = QComboBox()
        self.language.addItem("Detect automatically", "auto")
        for name, code in sorted((language_name(c), c) for c in WHISPER_LANGUAGES):
            self.language.addItem(name, code)
        return self._page([
            ("Se&nsitivity:", self.sensitivity,
             "How readily a sound counts as speech. High sensitivity catches quiet voices "
             "but may take noise for speech; low suits noisy rooms.",
             self._combo_field("vad", "aggressiveness", self.sensitivity)),
            ("End-of-turn pa&use:", self.hangover,
             "How long you must stay silent before Parley takes your turn as finished. "
             "Longer lets you pause mid-sentence; shorter answers sooner.",
             self._spin_field("vad", "hangover_ms", self.hangover)),
            ("Audio &kept before speech:", self.pre_roll,
             "How much sound from just before your voice was noticed is kept, so the first "
             "syllable is not cut off.",
             self._spin_field("vad", "pre_roll_ms", self.pre_roll)),
            ("&Interrupting Parley:", self.duplex,
             "Whether you can talk over Parley while it answers. With echo cancellation it "
             "stops as soon as you speak, even on loudspeakers; without it, only a voice "
             "clearly louder than the speaker counts; or it can ignore the microphone until "
             "it has finished (Esc still stops it).",
             self._combo_field("duplex", "mode", self.duplex)),
            ("Voice that &pauses it:", self.min_speech,
             "How much speech it takes to pause Parley's answer. Shorter stops it sooner; "
             "longer lets clicks and short noises pass. A pause with no words in it (a "
             "cough) lets the answer carry on.",
             self._spin_field("duplex", "min_speech_ms", self.min_speech)),
            ("Spoken lan&guage:", self.language,
             "The language you speak. Choosing it is quicker and more accurate than "
             "detecting it, which adds about a second to every sentence.",
             self._combo_field("stt", "language", self.language)),
        ], "Changing the language reloads speech recognition, which takes a few seconds.")

    def _voice_page(self) -> QWidget:
        self.speed = QSlider(Qt.Orientation.Horizontal)
        self.speed.setRange(50, 200)
        self.speed.setSingleStep(5)
        self.speed.setPageStep(25)
        self.speed.setTickInterval(25)
        self.speed.setTickPosition(QSlider.TickPosition.TicksBelow)
        speed_text = QLabel()
        speed_text.setMinimumWidth(48)

        def show_speed(value: int) -> None:
            speed_text.setText(f"{value} %")

        self.speed.valueChanged.connect(show_speed)
        show_speed(self.speed.value())
        row = QWidget()
        row_layout = QHBoxLayout(row)
        row_layout.setContentsMargins(0, 0, 0, 0)
        row_layout.addWidget(self.speed, 1)
        row_layout.addWidget(speed_text)
        row.setFocusProxy(self.speed)
        self.speed.setAccessibleName("Speaking speed")

        def show(length_scale: Any) -> None:
            # Piper's length_scale stretches time: speed is its inverse.
            self.speed.setValue(round(100 / float(length_scale)))

        field = _Field("tts", "length_scale", lambda: round(100 / self.speed.value(), 3), show)
        return self._page([
            ("&Speed:", row,
             "How fast Parley speaks: 100 % is the voice's natural pace, 150 % half as fast "
             "again. Changing it reloads the voice, which takes about a second.", field),
        ], "Slower speech is easier to follow; faster gets to the point. Changing the speed "
           "reloads the voice, which takes about a second.")

    def _replies_page(self) -> QWidget:
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 1.5)
        self.temperature.setSingleStep(0.05)
        self.temperature.setDecimals(2)
        self.max_tokens = self._spin(16, 1024, 16, " tokens")
        self.n_ctx = self._spin(512, 32768, 512, " tokens")
        return self._page([
            ("Crea&tivity (temperature):", self.temperature,
             "Low values give focused, predictable answers; higher ones more varied and "
             "surprising ones. 0.7 is a good balance; above 1 answers may wander.",
             _Field("llm", "temperature", lambda: round(self.temperature.value(), 2),
                    lambda v: self.temperature.setValue(float(v)))),
            ("Reply length li&mit:", self.max_tokens,
             "The longest reply Parley may give, in tokens (a token is about three quarters "
             "of a word). Replies are meant to be short and spoken.",
             self._spin_field("llm", "max_tokens", self.max_tokens)),
            ("Memory (conte&xt size):", self.n_ctx,
             "How much of the conversation the language model keeps in mind, in tokens. "
             "More remembers longer talks but uses more memory and reloads the model.",
             self._spin_field("llm", "n_ctx", self.n_ctx)),
        ])

    def _persona_page(self) -> QWidget:
        self.persona = QPlainTextEdit()
        self.persona.setTabChangesFocus(True)
        self.persona.setMinimumHeight(160)
        return self._page([
            ("&Instructions Parley follows (its persona):", self.persona,
             "Who Parley is and how it answers (the system prompt). A change applies to the "
             "conversation that is open and to new ones.",
             _Field("llm", "system_prompt", lambda: self.persona.toPlainText().strip(),
                    lambda v: self.persona.setPlainText(str(v)))),
        ], "Keep it short: Parley reads it before every reply, and a long one slows each "
           "answer.", labels_above=True)

    def _appearance_page(self) -> QWidget:
        self.theme = QComboBox()
        for name in THEMES:
            self.theme.addItem(_THEME_NAMES[name], name)
        return self._page([
            ("&Theme:", self.theme, "Light or dark colours, or follow the desktop's choice.",
             self._combo_field("ui", "theme", self.theme)),
        ])

    # -- field helpers ---------------------------------------------------------------------
    @staticmethod
    def _spin(low: int, high: int, step: int, suffix: str) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(low, high)
        spin.setSingleStep(step)
        spin.setSuffix(suffix)
        return spin

    @staticmethod
    def _spin_field(section: str, key: str, spin: QSpinBox) -> _Field:
        return _Field(section, key, spin.value, lambda v: spin.setValue(int(v)))

    @staticmethod
    def _combo_field(section: str, key: str, combo: QComboBox) -> _Field:
        return _Field(section, key, combo.currentData, lambda v: _select_data(combo, v))

    # -- commands --------------------------------------------------------------------------
    def _values(self) -> list[Any]:
        return [field.read() for field in self._fields]

    def changes(self) -> Changes:
        """The keys whose widgets differ from what was last shown or applied."""
        result: Changes = {}
        for field, before in zip(self._fields, self._shown, strict=True):
            now = field.read()
            if now != before:
                result.setdefault(field.section, {})[field.key] = now
        return result

    def restore_defaults(self) -> None:
        default = defaults()
        for field in self._pages[self.tabs.currentIndex()]:
            field.show(default[field.section][field.key])

    def apply(self) -> asyncio.Future[bool] | None:
        """Send the changes; the future says whether they were applied (None: nothing had
        changed). The buttons wait meanwhile."""
        changes = self.changes()
        if not changes or self.pending is not None:
            return self.pending
        if "ui" in changes:
            app = QApplication.instance()
            if isinstance(app, QApplication):
                apply_theme(app, changes["ui"]["theme"])
        self.buttons.setEnabled(False)
        reloading = ("the voice" if "tts" in changes else
                     "speech recognition" if "stt" in changes else
                     "the language model" if "n_ctx" in changes.get("llm", {}) else "")
        self.message.setText(f"Applying… (reloading {reloading})" if reloading else "Applying…")
        self.pending = asyncio.ensure_future(self._apply(changes))
        return self.pending

    async def _apply(self, changes: Changes) -> bool:
        try:
            await self.controller.update_settings(changes)
        except ParleyError as err:
            self.message.setText(f"Could not apply the settings: {err.message} {err.hint}")
            return False
        except Exception as err:  # a bug must still be reported in the dialog, not lost
            self.message.setText(f"Could not apply the settings: {err}")
            return False
        finally:
            self.pending = None
            self.buttons.setEnabled(True)
        self._shown = self._values()
        self.message.setText("Settings applied.")
        return True

    def _ok(self) -> None:
        """Close once the changes are applied, so a failure is shown where it was made."""
        pending = self.apply()
        if pending is None:
            self.accept()
            return

        def close_if_applied(done: asyncio.Future[bool]) -> None:
            if done.result():
                self.accept()

        pending.add_done_callback(close_if_applied)
