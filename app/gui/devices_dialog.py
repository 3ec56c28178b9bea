"""Choose the microphone and speaker, test them, and notice when one stops working.

The Controller owns the devices Parley uses; this dialog lists them, tests them and asks
the Controller to switch. Testing a microphone or speaker that is not in use opens its own
short stream, so a choice can be checked before it is applied.
"""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
from PySide6.QtCore import QSignalBlocker, QTimer, Signal
from PySide6.QtGui import QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.control.controller import Controller
from app.conversation.events import AgentEvent, ErrorOccurred, MicLevel
from audio.capture import Capture
from audio.devices import DeviceInfo, Direction, pick_device
from audio.playback import Playback
from engines.errors import ParleyError
from engines.protocols import Audio

CHECK_EVERY_MS = 2000
_SILENT_MIC_S = 4.0
"""The voice loop reports the level about 20 times a second, even when muted: this long
without a report means the microphone stream has stopped."""
_MIC_TEST_MS = 6000
_FLOOR_DB = -60
_SILENCE_DB = -90.0
_TONE_HZ = 440.0
_TONE_S = 0.5
_FADE_S = 0.03
_DEVICE_HINT = ("Check that it is plugged in, switched on and not used by another program, "
                "or choose another.")


def tone(rate: int) -> Audio:
    """Half a second of 440 Hz at -10 dBFS, faded in and out so it starts and ends without
    a click."""
    t = np.arange(round(rate * _TONE_S)) / rate
    wave = 0.316 * np.sin(2 * np.pi * _TONE_HZ * t)
    fade = round(rate * _FADE_S)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
    wave[:fade] *= ramp
    wave[-fade:] *= ramp[::-1]
    return wave.astype(np.float32)


def level_db(block: Audio) -> float:
    """Loudness of a block in dBFS, measured as the voice loop measures it."""
    rms = float(np.sqrt(np.mean(np.square(block)))) if len(block) else 0.0
    return _SILENCE_DB if rms <= 1e-5 else max(_SILENCE_DB, 20 * math.log10(rms))


def _default_name(direction: Direction) -> str | None:
    try:
        return pick_device(None, direction).name
    except ParleyError:
        return None


def _plain(err: ParleyError) -> str:
    """The error's message with a hint for the window: the errors' own hints name the
    command-line flags."""
    return f"{err.message} {_DEVICE_HINT}"


class DevicesDialog(QDialog):
    """Microphone and speaker pickers with tests; Apply switches and remembers them."""

    _heard = Signal(float)
    """The test microphone's level, sent from PortAudio's thread to the window's."""

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.pending: asyncio.Future[None] | None = None
        """The switch under way, for tests to await."""
        self.setWindowTitle("Audio devices")
        self.setMinimumWidth(520)
        self._devices: list[DeviceInfo] = []
        self._capture: Capture | None = None
        self._test_peak = _SILENCE_DB
        self._last_level = time.monotonic()
        self._applying = False
        self._errors: list[str] = []

        self.input_combo = QComboBox()
        self.input_combo.setAccessibleName("Microphone")
        self.input_combo.setToolTip("The microphone Parley listens to.")
        self.input_combo.currentIndexChanged.connect(self._input_changed)
        self.mic_level = QProgressBar()
        self.mic_level.setRange(_FLOOR_DB, 0)
        self.mic_level.setValue(_FLOOR_DB)
        self.mic_level.setTextVisible(False)
        self.mic_level.setAccessibleName("Microphone level")
        self.mic_level.setToolTip("How loud the chosen microphone hears you, live.")
        self.mic_test = QPushButton("S&top the test")
        stop_width = self.mic_test.sizeHint().width()
        self.mic_test.setText("&Test microphone")
        # Wide enough for either text, so the button does not jump when the test starts.
        self.mic_test.setMinimumWidth(max(stop_width, self.mic_test.sizeHint().width()))
        self.mic_test.setCheckable(True)
        self.mic_test.setToolTip("Listen to the chosen microphone for a few seconds and say "
                                 "whether it hears you. Works before you apply it.")
        self.mic_test.toggled.connect(self._toggle_mic_test)
        mic_hint = QLabel("The bar moves as the microphone in use hears you. To try another "
                          "before applying it, press Test microphone.")
        mic_hint.setWordWrap(True)
        mic_hint.setObjectName("hintText")

        self.output_combo = QComboBox()
        self.output_combo.setAccessibleName("Speaker")
        self.output_combo.setToolTip("Where Parley's voice is played.")
        self.output_combo.currentIndexChanged.connect(self._output_changed)
        self.speaker_test = QPushButton("&Play a test sound")
        self.speaker_test.setToolTip("Play a short beep on the chosen speaker. Works before "
                                     "you apply it.")
        self.speaker_test.clicked.connect(self.test_speaker)

        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.use_default = QPushButton("Use the &default devices")
        self.use_default.setToolTip("Switch to the microphone and speaker your system "
                                    "uses by default.")
        self.use_default.clicked.connect(self.use_defaults)
        self.warning_box = QFrame()
        self.warning_box.setObjectName("deviceWarning")
        warning_layout = QHBoxLayout(self.warning_box)
        warning_layout.addWidget(self.warning, 1)
        warning_layout.addWidget(self.use_default)
        self.warning_box.hide()

        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Result")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Apply
                                   | QDialogButtonBox.StandardButton.Close)
        self.buttons = buttons
        self.apply_button = buttons.button(QDialogButtonBox.StandardButton.Apply)
        self.apply_button.setText("&Apply")
        self.apply_button.setToolTip("Switch Parley to these devices; they are remembered.")
        self.apply_button.clicked.connect(self.apply)
        buttons.button(QDialogButtonBox.StandardButton.Close).setText("&Close")
        buttons.rejected.connect(self.reject)

        mic_box = QGroupBox("&Microphone")
        mic_layout = QVBoxLayout(mic_box)
        mic_layout.addWidget(self.input_combo)
        level_row = QHBoxLayout()
        level_row.addWidget(self.mic_level, 1)
        level_row.addWidget(self.mic_test)
        mic_layout.addLayout(level_row)
        mic_layout.addWidget(mic_hint)
        speaker_box = QGroupBox("&Speaker")
        speaker_layout = QVBoxLayout(speaker_box)
        speaker_layout.addWidget(self.output_combo)
        tone_row = QHBoxLayout()
        tone_row.addWidget(self.speaker_test)
        tone_row.addStretch(1)
        speaker_layout.addLayout(tone_row)
        layout = QVBoxLayout(self)
        layout.addWidget(self.warning_box)
        layout.addWidget(mic_box)
        layout.addWidget(speaker_box)
        layout.addWidget(self.status)
        layout.addStretch(1)
        layout.addWidget(buttons)

        self._heard.connect(self._show_level)
        self._check_timer = QTimer(self)
        self._check_timer.setInterval(CHECK_EVERY_MS)
        self._check_timer.timeout.connect(self.refresh)
        self._mic_test_timer = QTimer(self)
        self._mic_test_timer.setSingleShot(True)
        self._mic_test_timer.setInterval(_MIC_TEST_MS)
        self._mic_test_timer.timeout.connect(lambda: self.mic_test.setChecked(False))
        self.refresh()

    # -- listing and checking ----------------------------------------------------------------
    def refresh(self, relist: bool = False) -> None:
        """Re-list the devices (every 2 s while shown) and warn when one in use is gone."""
        devices = self.controller.devices()
        if relist or [d.name for d in devices] != [d.name for d in self._devices]:
            self._devices = devices
            self._fill(self.input_combo, "input", self.controller.mic)
            self._fill(self.output_combo, "output", self.controller.speaker)
        problems = self.problems()
        self.warning.setText("\n".join(problems))
        self.warning_box.setVisible(bool(problems))

    def problems(self) -> list[str]:
        """What is wrong with the devices in use, in words for the user."""
        mic, speaker = self.controller.mic, self.controller.speaker
        inputs = {d.name for d in self._devices if d.inputs}
        outputs = {d.name for d in self._devices if d.outputs}
        found = []
        if mic is None:
            found.append("⚠ Parley has no microphone open, so it cannot hear you.")
        elif mic.name not in inputs:
            found.append(f"⚠ The microphone “{mic.name}” is gone — was it unplugged? Parley "
                         "cannot hear you until you choose another.")
        elif not self._applying and time.monotonic() - self._last_level > _SILENT_MIC_S:
            found.append(f"⚠ The microphone “{mic.name}” sends no sound — is it unplugged, "
                         "or in use by another program?")
        if speaker is None:
            found.append("⚠ Parley has no speaker open, so its replies are silent.")
        elif speaker.name not in outputs:
            found.append(f"⚠ The speaker “{speaker.name}” is gone — was it unplugged? "
                         "Parley's replies are silent until you choose another.")
        return found

    def _fill(self, combo: QComboBox, direction: Direction, active: DeviceInfo | None) -> None:
        """List the devices (the default and the one in use marked), keeping the selection;
        else selecting the one in use, else the default."""
        default = _default_name(direction)
        keep = combo.currentData() or (active.name if active else None) or default
        with QSignalBlocker(combo):
            combo.clear()
            for device in self._devices:
                if device.channels(direction) < 1 or combo.findData(device.name) >= 0:
                    continue  # a name listed twice could not be chosen apart anyway
                marks = [m for m, on in (("system default", device.name == default),
                                         ("in use", active is not None
                                          and device.name == active.name)) if on]
                suffix = f"  ({', '.join(marks)})" if marks else ""
                combo.addItem(device.name + suffix, device.name)
            index = combo.findData(keep)
            combo.setCurrentIndex(index if index >= 0 else combo.findData(default))

    # -- switching -----------------------------------------------------------------------------
    def apply(self) -> asyncio.Future[None]:
        """Ask the Controller to reopen the chosen devices (it also remembers them)."""
        if self.pending is None:
            self.mic_test.setChecked(False)  # free the microphone before it is reopened
            self.pending = asyncio.ensure_future(
                self._apply(self.input_combo.currentData(), self.output_combo.currentData()))
        return self.pending

    def use_defaults(self) -> asyncio.Future[None]:
        pickers: tuple[tuple[QComboBox, Direction], ...] = (
            (self.input_combo, "input"), (self.output_combo, "output"))
        for combo, direction in pickers:
            index = combo.findData(_default_name(direction))
            if index >= 0:
                combo.setCurrentIndex(index)
        return self.apply()

    async def _apply(self, mic: str | None, speaker: str | None) -> None:
        self._applying = True
        self._errors = []
        self.buttons.setEnabled(False)
        self.warning_box.setEnabled(False)
        self.status.setText("Opening the devices…")
        try:
            await self.controller.set_devices(mic, speaker)
        except Exception as err:  # the Controller reports its own errors; this is a bug
            self._errors.append(f"Could not switch the devices: {err}")
        finally:
            self._applying = False
            self._last_level = time.monotonic()
            self.pending = None
            self.buttons.setEnabled(True)
            self.warning_box.setEnabled(True)
        ctl = self.controller
        if ctl.mic is not None and ctl.speaker is not None and not self._errors:
            self.status.setText(f"Parley now listens to “{ctl.mic.name}” and speaks on "
                                f"“{ctl.speaker.name}”.")
        else:
            failed = [what for what, device in (("microphone", ctl.mic),
                                                ("speaker", ctl.speaker)) if device is None]
            opening = f"Could not open the {' or the '.join(failed)}. " if failed else ""
            self.status.setText(opening + " ".join(self._errors))
        self.refresh(relist=True)

    # -- events from the Controller ------------------------------------------------------------
    def on_event(self, event: AgentEvent) -> None:
        if isinstance(event, MicLevel):
            self._last_level = time.monotonic()
            if self._capture is None and self._selected_is_active():
                self._show_level(event.db)
        elif isinstance(event, ErrorOccurred) and self._applying:
            self._errors.append(event.message)

    def _selected_is_active(self) -> bool:
        mic = self.controller.mic
        return mic is not None and mic.name == self.input_combo.currentData()

    def _show_level(self, db: float) -> None:
        self.mic_level.setValue(max(_FLOOR_DB, round(db)))
        if self.mic_test.isChecked():
            self._test_peak = max(self._test_peak, db)

    def _output_changed(self) -> None:
        self.status.clear()

    def _input_changed(self) -> None:
        self.mic_test.setChecked(False)
        self.mic_level.setValue(_FLOOR_DB)
        self.status.clear()

    # -- tests -----------------------------------------------------------------------------
    def _toggle_mic_test(self, on: bool) -> None:
        if on:
            self._start_mic_test()
        else:
            self._stop_mic_test()

    def _start_mic_test(self) -> None:
        """Listen for a few seconds: through the voice loop's level if this microphone is
        the one in use, else through a capture of its own."""
        self._test_peak = _SILENCE_DB
        if not self._selected_is_active():
            try:
                capture = Capture(pick_device(self.input_combo.currentData(), "input"),
                                  lambda block: self._heard.emit(level_db(block)))
                capture.start()
            except ParleyError as err:
                with QSignalBlocker(self.mic_test):
                    self.mic_test.setChecked(False)
                self.status.setText(_plain(err))
                return
            self._capture = capture
        muted = self._capture is None and self.controller.muted
        self.status.setText("Parley's microphone is muted: unmute it to test it." if muted
                            else "Speak now…")
        self.mic_test.setText("S&top the test")
        self._mic_test_timer.start()

    def _stop_mic_test(self) -> None:
        self._mic_test_timer.stop()
        self.mic_test.setText("&Test microphone")
        if self._capture is not None:
            self._capture.stop()
            self._capture = None
            self.mic_level.setValue(_FLOOR_DB)
        peak = self._test_peak
        if peak >= -40:
            self.status.setText(f"The microphone hears you (loudest {peak:.0f} dB).")
        elif peak >= -55:
            self.status.setText(f"The microphone hears you, but faintly (loudest {peak:.0f} "
                                "dB). Move closer, or raise its volume in the system's sound "
                                "settings.")
        else:
            self.status.setText("The microphone heard nothing. Check that it is plugged in, "
                                "switched on and not muted, or choose another.")

    def test_speaker(self) -> asyncio.Future[None]:
        """Play a short beep on the chosen speaker (even before it is applied)."""
        return asyncio.ensure_future(self._play_tone(self.output_combo.currentData()))

    async def _play_tone(self, name: str | None) -> None:
        self.speaker_test.setEnabled(False)
        self.status.setText("Playing a beep…")
        try:
            with Playback(pick_device(name, "output")) as playback:
                playback.write(tone(playback.rate), playback.rate)
                while not playback.is_idle:
                    await asyncio.sleep(0.05)
        except ParleyError as err:
            self.status.setText(_plain(err))
        else:
            self.status.setText("Did you hear a short beep? If not, check that the speaker is "
                                "switched on and its volume is up, or choose another.")
        finally:
            self.speaker_test.setEnabled(True)

    # -- visibility ------------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        self._last_level = time.monotonic()  # no level yet is no sign of silence yet
        self.refresh()
        self._check_timer.start()
        super().showEvent(event)

    def hideEvent(self, event: QHideEvent) -> None:
        self._check_timer.stop()
        self.mic_test.setChecked(False)
        super().hideEvent(event)
