"""Kiosk mode on a 1024x600 screen: a visitor asks a question and hears the answer, walks
away (the kiosk goes back to its welcome in a new conversation, the old one kept), and the
next visitor is answered even though the engine worker was killed in between. Whoever
looks after the kiosk opens the settings with the PIN they set, and nobody else does.

The real app runs under Xvfb on PulseAudio null sinks, as in test_window.py; the screen is
read back with a screenshot of the X display and OCR.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import soundfile as sf
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from tests.speech import conversation_wav
from tests.waiting import blocking_until, run_until
from tests.xserver import xvfb

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
ROOT = Path(__file__).resolve().parents[2]
IDLE_S = 15
_GRAB = ("import sys\nfrom PySide6.QtGui import QGuiApplication\n"
         "app = QGuiApplication(sys.argv)\n"
         "sys.exit(0 if app.primaryScreen().grabWindow(0).save(sys.argv[1]) else 1)\n")
"""A screenshot of the whole X screen, as a person in front of it sees it."""


class Kiosk:
    """`parley run --kiosk` as a subprocess, its stderr (the log) kept line by line."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "run", "--kiosk", *args],
                                     env=env, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def app_env(pulse: Any, display: str, folder: Path) -> dict[str, str]:
    return {**os.environ, **pulse.env, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb",
            "PARLEY_CONFIG": str(folder / "config.toml"), "PARLEY_DATA_DIR": str(folder / "data")}


def rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:  # never creates it
            return con.execute(sql, args).fetchall()
    except sqlite3.Error:
        return []


def conversations(db: Path) -> list[int]:
    return [r[0] for r in rows(db, "SELECT id FROM conversations ORDER BY id")]


def turns(db: Path, conversation: int) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in rows(
        db, "SELECT role, text FROM turns WHERE conversation_id = ? ORDER BY id", conversation)]


def screen_text(env: dict[str, str], shot: Path) -> str:
    """What the screen says now (OCR of a screenshot of the X display)."""
    subprocess.run([sys.executable, "-c", _GRAB, str(shot)], env=env, check=True, timeout=60,
                   capture_output=True)
    # read in grey at three times the size: tesseract misses small red words at 1x
    image = QImage(str(shot)).convertToFormat(QImage.Format.Format_Grayscale8)
    large = shot.with_suffix(".3x.png")
    image.scaled(image.size() * 3, Qt.AspectRatioMode.KeepAspectRatio,
                 Qt.TransformationMode.SmoothTransformation).save(str(large))
    return subprocess.run(["tesseract", str(large), "-"], capture_output=True, text=True,
                          check=True).stdout.lower()


def png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def worker_of(app: psutil.Process) -> psutil.Process | None:
    """The engine worker: the app's spawned multiprocessing child (not its resource
    tracker)."""
    for child in app.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            command = " ".join(child.cmdline())
            if "spawn_main" in command and child.status() != psutil.STATUS_ZOMBIE:
                return child
    return None


def loud(path: Path) -> float:
    audio, _ = sf.read(path, dtype="float32", always_2d=True)
    return float(np.sqrt(np.mean(audio**2))) if audio.size else 0.0


def test_a_visitor_is_answered_the_kiosk_resets_when_idle_and_recovers_a_killed_worker(
        pulse: Any, tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(f"[ui]\nkiosk_idle_s = {IDLE_S}\n")
    db = tmp_path / "data" / "parley.db"
    first = conversation_wav(tmp_path / "q1.wav", ["How far away is the moon?"], gap_s=0.2)
    second = conversation_wav(tmp_path / "q2.wav", ["What is the capital of France?"],
                              gap_s=0.2)
    with xvfb((1024, 600)) as display:
        env = app_env(pulse, display, tmp_path)
        kiosk = Kiosk(env, "--max-turns", "2")
        try:
            blocking_until(lambda: conversations(db) or kiosk.proc.poll() is not None, 180,
                           "the kiosk to load its models and start a conversation", 0.2)
            assert kiosk.proc.poll() is None, kiosk.log
            pulse.wait_for_mic_listener()

            # (a) the whole screen, frameless, full screen
            tree = subprocess.run(["xwininfo", "-root", "-tree", "-display", display],
                                  capture_output=True, text=True, check=True).stdout
            window = re.search(r'^\s*(0x[0-9a-f]+) "Parley": \("[^"]*" "Parley"\)\s+(\S+)',
                               tree, re.MULTILINE)
            assert window is not None, tree
            assert window.group(2) == "1024x600+0+0", tree
            props = subprocess.run(["xprop", "-display", display, "-id", window.group(1)],
                                   capture_output=True, text=True, check=True).stdout
            assert "_NET_WM_STATE_FULLSCREEN" in props, props
            # frameless: Motif hints that say "decorations: none"
            assert re.search(r"_MOTIF_WM_HINTS\(_MOTIF_WM_HINTS\) = 0x2, 0x\w+, 0x0,",
                             props), props

            welcome = screen_text(env, tmp_path / "welcome.png")
            assert "tap and talk" in welcome, welcome

            # (b) a spoken question is answered aloud, and shown in big type
            recorder = pulse.record_speaker(tmp_path / "answer1.wav")
            recorder.wait_flowing()
            pulse.play_into_mic(first)
            [opened] = conversations(db)
            blocking_until(lambda: [r for r, _ in turns(db, opened)] == ["user", "assistant"],
                           240, lambda: f"the first answer; stored {turns(db, opened)}\n"
                           f"{kiosk.log}", 0.2)
            answer = screen_text(env, tmp_path / "answer.png")
            recorder.stop()
            assert "moon" in turns(db, opened)[0][1].lower()
            assert "moon" in answer, answer
            assert loud(tmp_path / "answer1.wav") > 0.005

            # (d) nobody talks: a new conversation and the welcome; the first one is kept
            blocking_until(lambda: len(conversations(db)) == 2, IDLE_S + 60,
                           lambda: f"the idle reset; conversations {conversations(db)}", 0.2)
            fresh = conversations(db)[1]
            assert turns(db, fresh) == []
            assert [r for r, _ in turns(db, opened)] == ["user", "assistant"]
            back = blocking_until(
                lambda: "tap and talk" in (text := screen_text(env, tmp_path / "back.png"))
                and text, 30, "the welcome again", 0.5)
            assert "moon" not in back, back

            # (e) the engine worker dies; the kiosk restarts it and answers the next visitor
            app = psutil.Process(kiosk.proc.pid)
            worker = worker_of(app)
            assert worker is not None, [c.cmdline() for c in app.children(recursive=True)]
            worker.send_signal(signal.SIGKILL)
            blocking_until(lambda: "kiosk: recovered (My thinking engine" in kiosk.log, 240,
                           lambda: f"the kiosk to restart its engines\n{kiosk.log}", 0.2)
            restarted = worker_of(app)
            assert restarted is not None and restarted.pid != worker.pid
            recorder = pulse.record_speaker(tmp_path / "answer2.wav")
            recorder.wait_flowing()
            pulse.play_into_mic(second)
            blocking_until(lambda: kiosk.proc.poll() is not None, 240,  # --max-turns 2
                           lambda: f"the second answer; stored {turns(db, fresh)}\n"
                           f"{kiosk.log}", 0.2)
            recorder.stop()
        finally:
            kiosk.stop()
    assert kiosk.proc.returncode == 0, kiosk.log
    said = turns(db, fresh)
    assert [r for r, _ in said] == ["user", "assistant"], said
    assert "capital" in said[0][1].lower(), said
    assert loud(tmp_path / "answer2.wav") > 0.005
    DOCS.mkdir(parents=True, exist_ok=True)
    for name in ("welcome", "answer"):
        (DOCS / f"kiosk-{name}.png").write_bytes((tmp_path / f"{name}.png").read_bytes())


def test_the_kiosk_fits_small_and_larger_screens(pulse: Any, tmp_path: Path) -> None:
    """800x480 and 1280x720, at once (each its own app, on its own screen of one X server)."""
    sizes = ("800x480", "1280x720")
    with xvfb((800, 480), (1280, 720)) as display:
        runs = []
        for screen, size in enumerate(sizes):
            folder = tmp_path / size
            folder.mkdir()
            shot = folder / "kiosk.png"
            env = app_env(pulse, f"{display}.{screen}", folder)
            runs.append((size, shot, Kiosk(env, "--screenshot", str(shot))))
        try:
            for size, _, kiosk in runs:
                blocking_until(lambda k=kiosk: k.proc.poll() is not None, 240,
                               lambda s=size, k=kiosk: f"the kiosk at {s} to take its "
                               f"screenshot\n{k.log}", 0.2)
        finally:
            for _, _, kiosk in runs:
                kiosk.stop()
        for size, shot, kiosk in runs:
            assert kiosk.proc.returncode == 0, kiosk.log
            assert png_size(shot) == tuple(int(n) for n in size.split("x"))
            text = subprocess.run(["tesseract", str(shot), "-"], capture_output=True,
                                  text=True, check=True).stdout.lower()
            assert "tap and talk" in text, text
            assert "getting ready" not in text, text  # the models are loaded: no status
            (DOCS / f"kiosk-welcome-{size}.png").write_bytes(shot.read_bytes())


def test_the_settings_open_only_with_the_pin_set_for_the_kiosk(
        qtbot: Any, user_dirs: Path, app_loop: Any) -> None:
    """In-process on the offscreen platform, at 1024x600: the PIN is set with the command
    line as the person looking after the kiosk would, and tapped on the pad."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from app.control.controller import Controller
    from app.gui.kiosk_pin import NO_PIN
    from app.gui.kiosk_window import KioskWindow
    from app.gui.theme import apply_theme
    from app.settings import load_settings
    from app.storage import Storage, default_db_path

    app = QApplication.instance()
    assert isinstance(app, QApplication)
    apply_theme(app, "system")
    storage = Storage(default_db_path())

    def kiosk() -> KioskWindow:
        window = KioskWindow(Controller(load_settings(), storage))
        qtbot.addWidget(window)
        window.resize(1024, 600)
        window.show()
        qtbot.mouseClick(window.gear, Qt.MouseButton.LeftButton)
        assert window.pin.isVisible()
        return window

    locked = kiosk()  # no PIN yet: the settings are locked, and the pad says how to set one
    assert locked.pin.title.text() == NO_PIN and "parley kiosk set-pin" in NO_PIN
    assert not any(key.isEnabled() for key in locked.pin.keys.values())
    locked.close()

    setting = subprocess.run([sys.executable, "-m", "app.cli", "kiosk", "set-pin"],
                             input="2468\n", capture_output=True, text=True, cwd=ROOT)
    assert setting.returncode == 0, setting.stderr
    config = (user_dirs / "config.toml").read_text()
    assert "2468" not in config and 'kiosk_pin = "scrypt$' in config  # only a salted hash

    window = kiosk()

    def tap(pin: str) -> bool:
        for digit in pin:
            qtbot.mouseClick(window.pin.keys[digit], Qt.MouseButton.LeftButton)
        qtbot.mouseClick(window.pin.keys["OK"], Qt.MouseButton.LeftButton)
        checking = window.pin._checking
        assert checking is not None
        return bool(run_until(app_loop, lambda: checking.done() and [checking.result()], 10,
                              "the PIN check")[0])

    for attempt in range(3):
        assert not tap("1357"), attempt
        assert window.pin.isVisible() and window.settings_dialog is None
        assert window.pin.message.text().startswith("Wrong PIN.")
    # three wrong tries: the next one waits, whatever it is
    for digit in "2468":
        qtbot.mouseClick(window.pin.keys[digit], Qt.MouseButton.LeftButton)
    shot = window.grab()
    qtbot.mouseClick(window.pin.keys["OK"], Qt.MouseButton.LeftButton)
    assert window.pin.message.text().startswith("Too many tries.")
    assert window.settings_dialog is None
    run_until(app_loop, lambda: window.pin.guard.wait_s() == 0, 30, "the wait to end")
    assert tap("2468")
    assert not window.pin.isVisible()
    dialog = window.settings_dialog
    assert dialog is not None and dialog.isVisible()
    assert shot.size().width() == 1024 and shot.size().height() == 600
    window.close()
    storage.close()


def test_on_the_x_screen_the_settings_open_only_with_the_pin(pulse: Any, tmp_path: Path
                                                            ) -> None:
    """The same lock as a visitor meets it on the board's screen (Xvfb at 1024x600, no window
    manager): the gear is tapped and PINs are typed with a real X pointer and keyboard."""
    setting = subprocess.run([sys.executable, "-m", "app.cli", "kiosk", "set-pin"],
                             input="2468\n", capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "PARLEY_CONFIG": str(tmp_path / "config.toml")})
    assert setting.returncode == 0, setting.stderr
    db = tmp_path / "data" / "parley.db"
    with xvfb((1024, 600)) as display:
        env = app_env(pulse, display, tmp_path)
        kiosk = Kiosk(env)
        try:
            blocking_until(lambda: conversations(db) or kiosk.proc.poll() is not None, 180,
                           "the kiosk to load its models and start a conversation", 0.2)
            assert kiosk.proc.poll() is None, kiosk.log

            def x(*args: str) -> None:
                subprocess.run(["xdotool", *args], env=env, check=True, timeout=30)

            def says(words: str, what: str) -> str:
                return blocking_until(lambda: words in screen_text(env, tmp_path / "pin.png"),
                                      30, what, 0.5) and screen_text(env, tmp_path / "pin.png")

            x("mousemove", "990", "30", "click", "1")  # the gear, top right
            says("enter the pin", "the PIN pad to open")
            x("type", "--delay", "80", "1357")
            x("key", "Return")
            says("wrong pin", "the wrong PIN to be refused")
            assert "listening" not in screen_text(env, tmp_path / "pin.png")  # still locked
            DOCS.mkdir(parents=True, exist_ok=True)
            (DOCS / "kiosk-pin.png").write_bytes((tmp_path / "pin.png").read_bytes())
            x("type", "--delay", "80", "2468")
            x("key", "Return")
            says("voice", "the right PIN to open the settings (their Voice tab)")
        finally:
            kiosk.stop()
