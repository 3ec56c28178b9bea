"""A user on a 1280x720 laptop or a 1024x600 board screen sees the whole window and every
dialog: nothing runs off the edge (the side panels scroll, or share one dock as tabs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtGui import QImage

from tests.xserver import xvfb

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "screenshots"
SIZES = [(1280, 720), (1024, 600)]

_PROBE = """
import json, sys
from PySide6.QtWidgets import QApplication
from app.control.controller import Controller
from app.gui.cloud_dialog import CloudDialog
from app.gui.devices_dialog import DevicesDialog
from app.gui.main_window import MainWindow
from app.gui.models_dialog import ModelsDialog
from app.gui.settings_dialog import SettingsDialog
from app.settings import load_settings
from app.storage import Storage, default_db_path

app = QApplication(sys.argv)
controller = Controller(load_settings(), Storage(default_db_path()))
window = MainWindow(controller)
window.show()
sizes = {"screen": app.primaryScreen().availableGeometry().size().toTuple(),
         "window": window.geometry().size().toTuple()}
for dialog in (SettingsDialog, ModelsDialog, DevicesDialog, CloudDialog):
    shown = dialog(controller, window)
    shown.show()
    app.processEvents()
    sizes[dialog.__name__] = shown.geometry().size().toTuple()
    shown.close()
print(json.dumps(sizes))
"""


@pytest.mark.parametrize("width, height", SIZES)
def test_the_window_and_every_dialog_fit_the_screen(width: int, height: int, tmp_path: Path
                                                    ) -> None:
    """Qt's own layout on a screen of that size (the offscreen platform, told the size); the
    sizes are the windows' own, as a desktop's frame goes round a maximized window."""
    screens = tmp_path / "screens.json"
    screens.write_text(json.dumps({"screens": [{"name": "board", "x": 0, "y": 0, "width": width,
                                                "height": height, "logicalDpi": 96}]}))
    env = {**os.environ, "QT_QPA_PLATFORM": f"offscreen:configfile={screens}",
           "PARLEY_CONFIG": str(tmp_path / "config.toml"),
           "PARLEY_DATA_DIR": str(tmp_path / "data")}
    run = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    sizes = json.loads(run.stdout.strip().splitlines()[-1])
    assert sizes.pop("screen") == [width, height]
    for what, (w, h) in sizes.items():
        assert w <= width and h <= height, f"{what} is {w}x{h} on a {width}x{height} screen"


@pytest.fixture
def x_screen(request: pytest.FixtureRequest) -> Iterator[tuple[str, int, int]]:
    """A real X server (Xvfb) of the size under test."""
    width, height = request.param
    with xvfb((width, height)) as display:
        yield display, width, height


@pytest.mark.parametrize("x_screen", SIZES, indirect=True, ids=["1280x720", "1024x600"])
def test_the_window_on_a_small_x_screen_shows_its_whole_bar(
        x_screen: tuple[str, int, int], pulse: Any, tmp_path: Path) -> None:
    """The started window under X, read back: it fits, and the bar's last button and the
    message box are on screen."""
    display, width, height = x_screen
    shot = tmp_path / "window.png"
    env = {**os.environ, **pulse.env, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb",
           "PARLEY_CONFIG": str(tmp_path / "config.toml"),
           "PARLEY_DATA_DIR": str(tmp_path / "data")}
    run = subprocess.run([sys.executable, "-m", "app.cli", "run", "--screenshot", str(shot)],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    image = QImage(str(shot))
    assert 0 < image.width() <= width and 0 < image.height() <= height, image.size()
    text = subprocess.run(["tesseract", str(shot), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "stop (" in text.lower() and "send" in text.lower(), text  # the bar's end, the box
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / f"window-{width}x{height}.png").write_bytes(shot.read_bytes())
