"""A user types to `parley chat` with the default models: it knows the time and the date,
and a timer it sets announces itself, also after Parley was closed and started again."""

from __future__ import annotations

import datetime
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.tools.reminders import Reminders
from app.tools.store import tools_db_path
from tests.waiting import blocking_until

ANSWER_S = 300.0
"""A first answer may have to read the whole system prompt: slow on two busy cores."""
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")


class Chat:
    """`parley chat` in a child process, its output lines timestamped as they arrive."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "chat"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            cwd=Path(__file__).resolve().parents[2])
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self.seen: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.monotonic(), line.rstrip("\n")))

    def type(self, text: str) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return time.monotonic()

    def line(self, pattern: str, timeout: float = ANSWER_S) -> tuple[float, str]:
        """The next output line matching `pattern` (earlier ones are kept in `seen`)."""
        def found() -> bool:
            while not self.lines.empty():
                self.seen.append(self.lines.get())
            return any(re.search(pattern, text) for _, text in self.seen)

        blocking_until(found, timeout, lambda: f"a line matching {pattern!r}; the chat printed "
                                         f"{[text for _, text in self.seen]}")
        index = next(i for i, (_, text) in enumerate(self.seen) if re.search(pattern, text))
        return self.seen.pop(index)

    def answer(self, question: str) -> str:
        self.type(question)
        return self.line(r"^parley: ")[1]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.type("")
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def env(user_dirs: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def chat(env: dict[str, str]) -> Iterator[Chat]:
    session = Chat(env)
    session.line(r"Type a message")
    yield session
    session.close()


def clock_times(text: str) -> list[datetime.time]:
    """Every clock time written in `text`: 18:05, 6:05 pm, 6.05 PM."""
    times = []
    for hour, minute, half in re.findall(r"\b(\d{1,2})[:.](\d{2})\s*([ap]\.?m\.?)?", text,
                                         re.IGNORECASE):
        h = int(hour) % 12 + (12 if half.lower().startswith("p") else 0) if half else int(hour)
        if h < 24 and int(minute) < 60:
            times.append(datetime.time(h, int(minute)))
    return times


def test_the_user_asks_the_time_and_the_date_and_hears_the_real_ones(chat: Chat) -> None:
    before = datetime.datetime.now()
    said = chat.answer("What time is it?")
    after = datetime.datetime.now()
    allowed = {(before + datetime.timedelta(minutes=m)).time().replace(second=0, microsecond=0)
               for m in range(-1, int((after - before).total_seconds() // 60) + 2)}
    assert set(clock_times(said)) & allowed, f"{said!r} is not the time ({before:%H:%M})"

    today = datetime.date.today()
    said = chat.answer("What is today's date?")
    assert re.search(rf"\b{today.day}(st|nd|rd|th)?\b", said), said
    assert MONTHS[today.month - 1] in said or f"{today.month:02d}" in said, said

    said = chat.answer("What day of the week is it today?")
    assert today.strftime("%A") in said, said


def test_a_timer_for_five_seconds_announces_itself_about_five_seconds_later(chat: Chat
                                                                            ) -> None:
    asked = chat.type("Set a timer for five seconds.")
    chat.line(r"^parley: ")  # the reply that set it
    rang, text = chat.line(r"^parley: .*timer.*(done|finished|up|over)", 120)
    assert re.search(r"\b5\b|five", text), text
    assert rang - asked >= 5.0, f"announced {rang - asked:.1f} s after it was asked for"


def test_a_timer_set_before_a_restart_rings_after_it(env: dict[str, str]) -> None:
    """Long enough that a slow reply on busy cores cannot outlast it."""
    first = Chat(env)
    first.line(r"Type a message")
    asked = first.type("Set a timer for three minutes.")
    reply = first.line(r"^parley: ")[1]
    first.close()
    assert first.proc.returncode == 0, reply
    pending = Reminders(tools_db_path(), lambda _text: None).timers_left()
    assert "3 minute" in json.dumps(pending), f"no timer was set; Parley said {reply!r}"
    second = Chat(env)
    try:
        rang, text = second.line(r"^parley: .*timer", ANSWER_S)
        assert re.search(r"\b3\b|three", text), text
        assert rang - asked >= 180.0, f"announced {rang - asked:.1f} s after it was asked for"
    finally:
        second.close()
