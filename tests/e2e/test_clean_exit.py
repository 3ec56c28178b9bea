"""A user presses Ctrl+C (or the system sends SIGTERM): Parley stops what it is doing, closes
the engine worker and the audio streams, says one line and exits 130, with no traceback or
native warning from any of its processes.

The terminal commands run in a real pseudo-terminal, so Ctrl+C is what a terminal makes of
it: SIGINT to the whole foreground process group, the engine worker included.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.speech import conversation_wav
from tests.waiting import blocking_until

NOISE = ("Traceback", "nanobind", "leaked", "Task exception", "KeyboardInterrupt",
         "never awaited", "ptrace", "resource_tracker")


@dataclass
class Terminal:
    """A command on a pseudo-terminal: read what it prints, type, press Ctrl+C."""

    pid: int
    fd: int
    seen: bytes = b""
    children: list[psutil.Process] = field(default_factory=list)

    @classmethod
    def start(cls, args: list[str], env: dict[str, str]) -> Terminal:
        pid, fd = pty.fork()
        if pid == 0:  # the child: becomes the command
            os.execve(args[0], args, env)
        return cls(pid, fd)

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:  # the command exited: the terminal is gone
            return False
        self.seen += chunk
        return bool(chunk)

    def wait_for(self, text: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.seen:
            assert time.monotonic() < deadline, f"no {text!r} in {self.text}"
            assert self._read(0.1), f"exited before {text!r}: {self.text}"

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\n")

    def ctrl_c(self) -> tuple[int, float]:
        """Press Ctrl+C; the exit code and how long the command took to exit."""
        self.children = psutil.Process(self.pid).children(recursive=True)
        pressed = time.monotonic()
        os.write(self.fd, b"\x03")
        while self._read(0.1):
            assert time.monotonic() - pressed < 60, f"still running: {self.text}"
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status), time.monotonic() - pressed

    @property
    def text(self) -> str:
        return self.seen.decode(errors="replace")


def assert_clean(text: str, children: list[psutil.Process]) -> None:
    assert text.count("parley: stopped.") == 1, text
    assert not [n for n in NOISE if n in text], text
    assert children, "the engine worker was not found"
    blocking_until(lambda: not any(_alive(c) for c in children), 30,
                   lambda: f"the worker to be gone: {[c for c in children if _alive(c)]}")


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _parley(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", *args]


@pytest.fixture
def env(user_dirs: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def test_ctrl_c_at_the_chat_prompt_exits_at_once(env: dict[str, str]) -> None:
    term = Terminal.start(_parley("chat"), env)
    term.wait_for("Type a message")
    code, _ = term.ctrl_c()
    assert code == 130
    assert_clean(term.text, term.children)


def test_ctrl_c_while_a_typed_reply_streams_stops_it(env: dict[str, str]) -> None:
    term = Terminal.start(_parley("chat"), env)
    term.wait_for("Type a message")
    term.type("Tell me a long story about a dragon who learns to sing.")
    term.wait_for("parley: ")
    code, _ = term.ctrl_c()
    assert code == 130
    assert_clean(term.text, term.children)


@pytest.mark.parametrize("moment", ["listening", "speaking"])
def test_ctrl_c_in_run_headless(moment: str, env: dict[str, str], pulse: Any,
                                tmp_path: Path) -> None:
    term = Terminal.start(_parley("run", "--headless"), {**env, **pulse.env})
    term.wait_for("Listening")
    if moment == "speaking":
        question = conversation_wav(tmp_path / "q.wav", ["Tell me a long story about a dragon."],
                                    gap_s=0.2)
        pulse.wait_for_mic_listener()
        pulse.play_into_mic(question)
        term.wait_for("parley: ")  # the reply is being spoken
    code, _ = term.ctrl_c()
    assert code == 130
    assert_clean(term.text, term.children)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_window_closes_cleanly_on_a_signal(signum: int, env: dict[str, str], pulse: Any
                                               ) -> None:
    window = subprocess.Popen(_parley("run"), env={**env, **pulse.env,
                                                   "QT_QPA_PLATFORM": "offscreen"},
                              stderr=subprocess.PIPE, text=True)
    try:
        pulse.wait_for_mic_listener()  # the models are loaded and Parley listens
        children = psutil.Process(window.pid).children(recursive=True)
        window.send_signal(signum)
        _, err = window.communicate(timeout=60)
    finally:
        if window.poll() is None:
            window.kill()
    assert window.returncode == 128 + signum, err
    assert_clean(err, children)
