"""A user speaks to the window on a real screen and sees and hears the answer."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from tests.speech import conversation_wav
from tests.xserver import xvfb

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def screen() -> Iterator[str]:
    """A real X server (Xvfb) for the window, as on a desktop."""
    with xvfb((1280, 800)) as display:
        yield display


def ready(db: Path) -> bool:
    """The window starts its first conversation once the models are loaded."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:  # never creates it
            return bool(con.execute("SELECT count(*) FROM conversations").fetchone()[0])
    except sqlite3.Error:
        return False


def test_user_speaks_and_the_window_shows_and_speaks_the_answer(
        pulse: Any, screen: str, tmp_path: Path) -> None:
    question = conversation_wav(tmp_path / "q.wav", ["How far away is the moon?"], gap_s=0.2)
    shot, heard = tmp_path / "window.png", tmp_path / "speaker.wav"
    env = {**os.environ, **pulse.env, "DISPLAY": screen, "QT_QPA_PLATFORM": "xcb",
           "PARLEY_CONFIG": str(tmp_path / "config.toml"),
           "PARLEY_DATA_DIR": str(tmp_path / "data")}
    window = subprocess.Popen([sys.executable, "-m", "app.cli", "run", "--max-turns", "1",
                               "--screenshot", str(shot)], env=env, stderr=subprocess.PIPE,
                              text=True)
    try:
        db = tmp_path / "data" / "parley.db"
        deadline = time.monotonic() + 120
        while not ready(db) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready(db), "the window never loaded its models"
        pulse.wait_for_mic_listener()  # the microphone opens right after
        recorder = pulse.record_speaker(heard)
        pulse.play_into_mic(question)
        _, err = window.communicate(timeout=180)
        recorder.stop()
    finally:
        if window.poll() is None:
            window.kill()
    assert window.returncode == 0, err

    # the conversation was kept: what was heard, and the reply
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT role, text FROM turns ORDER BY id").fetchall()
    assert [r for r, _ in rows] == ["user", "assistant"], rows
    assert "moon" in rows[0][1].lower()

    # the window showed them: read the screenshot back with OCR, at twice the size (at 1x
    # tesseract misses the start of small white words on blue)
    image = QImage(str(shot))
    image.scaled(image.size() * 2, Qt.AspectRatioMode.KeepAspectRatio,
                 Qt.TransformationMode.SmoothTransformation).save(str(tmp_path / "2x.png"))
    text = subprocess.run(["tesseract", str(tmp_path / "2x.png"), "-"], capture_output=True,
                          text=True, check=True).stdout.lower()
    # the question, in the conversation or (when a long answer has scrolled it away)
    # in the metrics table's "you said" column, which cuts it after "how far away is t"
    assert "how far away" in text, text
    assert "parley" in text

    # and the speaker carried the spoken answer
    audio, _ = sf.read(heard, dtype="float32", always_2d=True)
    assert np.sqrt(np.mean(audio**2)) > 0.005
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "main-window.png").write_bytes(shot.read_bytes())
