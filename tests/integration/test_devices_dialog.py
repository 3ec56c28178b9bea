"""The devices dialog through the real Controller on the private PulseAudio server: the
pickers list its devices, Apply switches and remembers them, the speaker test's beep comes
out of the virtual speaker, and the microphone test sees speech played into the virtual mic.
"""

from __future__ import annotations

import os
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QComboBox

from app.control.controller import Controller
from app.conversation.voice import ListenMode
from app.gui.devices_dialog import DevicesDialog
from app.gui.theme import apply_theme
from audio.devices import DeviceInfo
from tests.pulse import PulseAudio
from tests.speech import conversation_wav
from tests.waiting import run_until

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
_SPEECH_DB = -35
"""The meter shows speech played into the mic above this."""


def _open(controller: Controller, qtbot: Any) -> DevicesDialog:
    dialog = DevicesDialog(controller)
    controller.subscribe(dialog.on_event)  # as the main window forwards its events
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def _choices(combo: QComboBox) -> list[str]:
    return [combo.itemData(i) for i in range(combo.count())]


def _select(combo: QComboBox, name: str) -> None:
    combo.setCurrentIndex(combo.findData(name))


def _run(controller: Controller, future: Any) -> Any:
    return controller.loop.run_until_complete(future)  # type: ignore[attr-defined]


def _audio_settings() -> dict[str, str]:
    with Path(os.environ["PARLEY_CONFIG"]).open("rb") as f:
        audio: dict[str, str] = tomllib.load(f)["audio"]
    return audio


def test_pickers_list_devices_and_the_choice_is_applied_and_remembered(
        controller: Controller, qtbot: Any) -> None:
    dialog = _open(controller, qtbot)
    assert controller.mic is not None and controller.speaker is not None
    for combo, active in ((dialog.input_combo, controller.mic),
                          (dialog.output_combo, controller.speaker)):
        assert {"pulse", "default"} <= set(_choices(combo))
        assert combo.currentData() == active.name
        assert "in use" in combo.currentText()
        assert "system default" in combo.itemText(combo.findData("default"))
    assert dialog.warning_box.isHidden()

    _select(dialog.input_combo, "pulse")
    _select(dialog.output_combo, "pulse")
    qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    assert dialog.pending is not None
    _run(controller, dialog.pending)
    assert controller.mic.name == "pulse" and controller.speaker.name == "pulse"
    assert _audio_settings() == {"input_device": "pulse", "output_device": "pulse"}
    assert "now listens to “pulse”" in dialog.status.text()

    # The microphone in use vanishes (as when a USB headset is pulled out): the next check
    # says so in words and offers the default, which is one click away.
    controller.audio.mic = DeviceInfo(99, "USB Headset", 1, 0, 48000)
    dialog.refresh()
    assert dialog.warning_box.isVisible()
    assert "“USB Headset” is gone — was it unplugged?" in dialog.warning.text()
    qtbot.mouseClick(dialog.use_default, Qt.MouseButton.LeftButton)
    assert dialog.pending is not None
    _run(controller, dialog.pending)
    assert controller.mic.name == controller.speaker.name == "default"
    assert _audio_settings() == {"input_device": "default", "output_device": "default"}
    assert dialog.warning_box.isHidden()


def _tone_in(path: Path) -> tuple[float, float]:
    """(seconds of sound, its main frequency in Hz) in a recording."""
    audio, rate = sf.read(path, dtype="float32")
    loud = np.flatnonzero(np.abs(audio) > 0.05)
    assert loud.size, "nothing was played"
    sound = audio[loud[0]:loud[-1] + 1]
    spectrum = np.abs(np.fft.rfft(sound * np.hanning(len(sound)), 8 * rate))
    return len(sound) / rate, float(np.argmax(spectrum)) / 8


def _levels_while_speaking(controller: Controller, pulse: PulseAudio, dialog: DevicesDialog,
                           speech: Path) -> list[int]:
    """The meter's levels while `speech` plays into the mic, until it has played and the
    meter has shown it (captured blocks reach the meter a moment after they sound)."""
    levels: list[int] = []
    dialog.mic_level.valueChanged.connect(levels.append)
    player = pulse.play_into_mic(speech, wait=False)
    run_until(controller.loop,  # type: ignore[attr-defined]
              lambda: player.poll() is not None and max(levels, default=-100) > _SPEECH_DB, 30,
              lambda: f"the meter to show the speech (above {_SPEECH_DB} dB); it showed "
                      f"{levels[-20:]}")
    dialog.mic_level.valueChanged.disconnect(levels.append)
    return levels


@pytest.fixture
def dark(qapp: QApplication) -> Iterator[None]:
    """The dark theme (for the screenshot), and the shared application's look put back."""
    style, palette, sheet = qapp.style().name(), qapp.palette(), qapp.styleSheet()
    apply_theme(qapp, "dark")
    yield
    if style:  # empty when a stylesheet was in force: the original style is still there
        qapp.setStyle(style)
    qapp.setPalette(palette)
    qapp.setStyleSheet(sheet)
    qapp.styleHints().setColorScheme(Qt.ColorScheme.Unknown)


def test_speaker_and_microphone_tests(controller: Controller, pulse: PulseAudio, qtbot: Any,
                                      tmp_path: Path, dark: None) -> None:
    controller.set_mode(ListenMode.PUSH_TO_TALK)  # the agent must not answer the test speech
    dialog = _open(controller, qtbot)

    recording = pulse.record_speaker(tmp_path / "speaker.wav")
    recording.wait_flowing()
    _run(controller, dialog.test_speaker())
    # the whole beep, what the device still held of it too, reaches the recording
    recording.wait_for_quiet_after_sound(since=time.monotonic())
    seconds, hz = _tone_in(recording.stop())
    assert seconds == pytest.approx(0.5, abs=0.06)
    assert hz == pytest.approx(440, abs=3)
    assert "Did you hear a short beep?" in dialog.status.text()

    speech = conversation_wav(tmp_path / "speech.wav", ["Testing, one, two, three."], 0.2)
    # A microphone not yet applied is tested through a capture of the dialog's own.
    assert controller.mic is not None and controller.mic.name == "default"
    _select(dialog.input_combo, "pulse")
    qtbot.mouseClick(dialog.mic_test, Qt.MouseButton.LeftButton)
    assert dialog.mic_test.isChecked()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    screenshot = SCREENSHOTS / "devices-dark.png"
    screenshot.unlink(missing_ok=True)

    def snapshot(level: int) -> None:
        if level > -25 and not screenshot.exists():
            dialog.grab().save(str(screenshot))

    dialog.mic_level.valueChanged.connect(snapshot)
    assert max(_levels_while_speaking(controller, pulse, dialog, speech)) > _SPEECH_DB
    dialog.mic_level.valueChanged.disconnect(snapshot)
    qtbot.mouseClick(dialog.mic_test, Qt.MouseButton.LeftButton)
    assert dialog.status.text().startswith("The microphone hears you")

    # The microphone in use shows the voice loop's own level (MicLevel events).
    _select(dialog.input_combo, "default")
    levels = _levels_while_speaking(controller, pulse, dialog, speech)
    assert levels, "no MicLevel events: the voice loop is not listening"
    assert max(levels) > _SPEECH_DB
