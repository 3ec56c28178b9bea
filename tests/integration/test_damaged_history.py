"""Issue 18: a history damaged past its first pages left the window at "Not started", each
retry started another engine worker, and `parley run --screenshot` never exited. Now the
window starts on a new history with what could be read, says so, and runs one worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.unit.test_storage import damage_pages, history


def workers(window: psutil.Process) -> list[psutil.Process]:
    """The engine worker(s): the window's multiprocessing children but the resource tracker."""
    try:
        return [p for p in window.children(recursive=True)
                if "spawn_main" in " ".join(p.cmdline())]
    except psutil.NoSuchProcess:
        return []


def test_the_window_starts_on_a_damaged_history_says_so_and_runs_one_worker(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    history(data / "parley.db", 3000)
    damage_pages(data / "parley.db", 10, 14)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen",
           "PARLEY_CONFIG": str(tmp_path / "config.toml"), "PARLEY_DATA_DIR": str(data)}
    shot = tmp_path / "shot.png"
    window = subprocess.Popen([sys.executable, "-m", "app.cli", "run", "--screenshot",
                               str(shot)], env=env, stderr=subprocess.PIPE, text=True)
    most = 0
    try:
        deadline = time.monotonic() + 180
        while window.poll() is None and time.monotonic() < deadline:
            most = max(most, len(workers(psutil.Process(window.pid))))
            time.sleep(0.05)
        assert window.poll() is not None, "--screenshot never exited"
        err = window.stderr.read() if window.stderr else ""
    finally:
        if window.poll() is None:
            window.kill()
    assert window.returncode == 0, err
    assert most == 1
    assert shot.exists()
    [aside] = data.glob("parley.db.damaged-*[0-9]")
    assert "Your conversation history was damaged" in err and str(aside) in err
    assert err.count("Your conversation history was damaged") == 1  # told once
    assert "could still be read and are kept" in err
