"""Timers and alarms that survive a restart: kept in tools.db, announced once.

tools.db is the truth and one asyncio task reads it: it announces what is due, then sleeps
until the next one is, until this process sets or cancels one, or for at most `POLL_S`, so
a reminder set by another Parley (the other mode, a second window) is not missed either.
A reminder is claimed in the database (`done_at`) before it is announced, so however many
schedulers read the file, each reminder is said exactly once; one that came due while
nobody was listening is said at start, with when it was due.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import math
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.tools.clock import spoken_duration, spoken_when
from app.tools.registry import Announce
from app.tools.store import matching, transaction
from engines.errors import ParleyError

POLL_S = 5.0
"""How long a reminder written by another process may go unseen."""
LATE_S = 60.0
"""A reminder announced later than this says when it was due (Parley was not running)."""
MAX_TIMER_S = 24 * 3600
_CLOCK = re.compile(r"^(\d{1,2})(?:[:.h ](\d{2}))?\s*(?:([ap])\.?\s*m\.?)?$", re.IGNORECASE)


class Reminders:
    def __init__(self, db_path: Path, announce: Announce,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = db_path
        self.announce = announce
        self.clock = clock
        """Wall-clock seconds: reminders are kept as Unix times, to survive a restart."""
        self._task: asyncio.Task[None] | None = None
        self._changed: asyncio.Event | None = None

    def start(self) -> None:
        """On the running loop: announce what is already due, then each one as it comes."""
        if self._task is None:
            self._changed = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(self._changed))

    def close(self) -> None:
        """Stop announcing; pending reminders stay in tools.db for the next start."""
        if self._task is not None:
            self._task.cancel()
            self._task, self._changed = None, None

    # -- the tools -------------------------------------------------------------------------
    def set_timer(self, hours: float = 0, minutes: float = 0, seconds: float = 0,
                  label: str = "") -> dict[str, Any]:
        """Hours, minutes and seconds add up: a small model says "an hour and a half" as
        {"hours": 1, "minutes": 30} far more reliably than as 5400 seconds."""
        seconds = timer_seconds(hours, minutes, seconds)
        if not 0 < seconds <= MAX_TIMER_S:
            raise ValueError(f"the timer must run more than 0 seconds and at most "
                             f"{MAX_TIMER_S // 3600} hours")
        due = self.clock() + seconds
        row = self._add("timer", label.strip(), seconds, due)
        return {"id": row, "set": _name("timer", label.strip(), seconds),
                "rings": self._when(due)}

    def set_alarm(self, time: str, label: str = "") -> dict[str, Any]:
        """The next time the clock shows `time` (local; see `clock_time`): today or
        tomorrow."""
        due = next_occurrence(time, self.clock())
        row = self._add("alarm", label.strip(), None, due)
        return {"id": row, "set": _name("alarm", label.strip(), None), "rings": self._when(due)}

    def timers_left(self) -> dict[str, Any]:
        now = self.clock()
        return {"timers": [{"id": row, "what": _name(kind, label, seconds),
                            "rings": self._when(due),
                            "left": spoken_duration(math.ceil(max(due - now, 0)))}
                           for row, kind, label, seconds, due in self._pending()]}

    def summary(self) -> str:
        """What timers_left says, as one line for the model's context: "Pending: 10 minute
        timer 'pasta' (id 2, 9 minutes and 40 seconds left, rings at 21:16)."; with the id,
        "cancel that alarm" needs no guess."""
        pending = [f"{t['what']} (id {t['id']}, {t['left']} left, rings {t['rings']})"
                   for t in self.timers_left()["timers"]]
        return f"Pending: {'; '.join(pending)}." if pending else "No timers or alarms are set."

    def cancel_timer(self, which: int | str) -> dict[str, Any]:
        """By id or by words of its label or name ("tea", "alarm")."""
        pending = self._pending()
        names = {row: _name(kind, label, seconds) for row, kind, label, seconds, _ in pending}
        found = matching(which, list(names.items()))
        if len(found) != 1:
            listed = "; ".join(f"{row}: {name}" for row, name in names.items()) or "none"
            raise ValueError(f"{len(found)} timers or alarms match {which!r}; say which by "
                             f"id (pending: {listed})")
        with transaction(self.path) as db:
            gone = db.execute("DELETE FROM reminders WHERE id = ? AND done_at IS NULL",
                              found).rowcount == 0
        if gone:
            raise ValueError(f"the {names[found[0]]} has just gone off")
        self._wake()
        return {"cancelled": names[found[0]]}

    # -- the scheduler ---------------------------------------------------------------------
    async def _run(self, changed: asyncio.Event) -> None:
        while True:
            changed.clear()
            try:
                upcoming = self._announce_due()
            except (sqlite3.Error, ParleyError):  # busy or unreadable now: they stay pending
                upcoming = None
            wait = POLL_S if upcoming is None else min(max(upcoming - self.clock(), 0), POLL_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), wait)

    def _announce_due(self) -> float | None:
        """Say every reminder that is due (claiming each first); when the next one is."""
        now = self.clock()
        for row, kind, label, seconds, due in self._pending():
            if due > now:
                return due
            with transaction(self.path) as db:
                claimed = db.execute("UPDATE reminders SET done_at = ? WHERE id = ? AND "
                                     "done_at IS NULL", (now, row)).rowcount == 1
            if claimed:
                self.announce(self._announcement(kind, label, seconds, due, now))
        return None

    def _announcement(self, kind: str, label: str, seconds: float | None, due: float,
                      now: float) -> str:
        name = _name(kind, label, seconds)
        if now - due > LATE_S:
            return f"While Parley was off, your {name} went off {self._when(due)}."
        if kind == "timer":
            return f"Your {name} is done."
        return (f"It's {datetime.datetime.fromtimestamp(due):%H:%M}: your {name} is "
                f"going off.")

    def _add(self, kind: str, label: str, seconds: float | None, due: float) -> int:
        with transaction(self.path) as db:
            row = db.execute("INSERT INTO reminders (kind, label, seconds, due_at, created_at)"
                             " VALUES (?, ?, ?, ?, ?)",
                             (kind, label, seconds, due, self.clock())).lastrowid
        self._wake()
        assert row is not None  # an INSERT always has one
        return row

    def _pending(self) -> list[tuple[int, str, str, float | None, float]]:
        """(id, kind, label, seconds, due_at), soonest first."""
        with transaction(self.path) as db:
            rows: list[tuple[int, str, str, float | None, float]] = db.execute(
                "SELECT id, kind, label, seconds, due_at FROM reminders"
                " WHERE done_at IS NULL ORDER BY due_at, id").fetchall()
        return rows

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _when(self, at: float) -> str:
        return spoken_when(datetime.datetime.fromtimestamp(at),
                           datetime.datetime.fromtimestamp(self.clock()))


def timer_seconds(hours: float = 0, minutes: float = 0, seconds: float = 0) -> float:
    """A set_timer call's length."""
    return hours * 3600 + minutes * 60 + seconds


def clock_time(text: str) -> tuple[int, int]:
    """(hour, minute) of "19:45", "7:30 am", "6:45 p.m.", "7 pm", "7", or as it is said:
    "half past six in the morning", "quarter to seven", "ten past 8 tonight", "noon".
    People and small models say "6:45 pm" or "half past six" far more reliably than they
    turn it into 18:45 (the 1.5B model wrote 18:30 for "half past six tomorrow morning")."""
    said = _spoken_clock(text)
    match = _CLOCK.match(said)
    if match is None:
        raise ValueError(f'time must be like "7:30 am", "6:45 pm", "19:45" or "half past '
                         f'six", not {text!r}')
    hour, minute, half = int(match[1]), int(match[2] or 0), (match[3] or "").lower()
    if half and not 1 <= hour <= 12:
        raise ValueError(f"{text!r}: with am or pm the hour is 1 to 12")
    if half:
        hour = hour % 12 + (12 if half == "p" else 0)
    if hour > 23 or minute > 59:
        raise ValueError(f"{text!r} is not a time of day")
    return hour, minute


_NUMBERS = {word: n for n, word in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve"))} | {
    "quarter": 15, "fifteen": 15, "twenty": 20, "twenty-five": 25, "half": 30, "thirty": 30,
    "forty": 40, "forty-five": 45, "fifty": 50}
_PART_OF_DAY = {"morning": "am", "afternoon": "pm", "evening": "pm", "tonight": "pm",
                "night": "pm"}
_SPOKEN_DAY = re.compile(r"\b(tomorrow|today|at|on|in|the|this|o'?clock|sharp)\b")
_PAST_TO = re.compile(r"^(\d{1,2})(?: minutes?)? (past|after|to|before) (\d{1,2})\b(.*)$")


def _spoken_clock(text: str) -> str:
    """"quarter to seven in the morning" → "6:45 am"; written times pass unchanged."""
    said = text.strip().lower().replace("a.m.", "am").replace("p.m.", "pm")
    said = re.sub(r"\b(noon|midday)\b", "12:00 pm", said)
    said = re.sub(r"\bmidnight\b", "12:00 am", said)
    said = re.sub(r"[a-z]+(?:-[a-z]+)?", lambda w: str(_NUMBERS.get(w[0], w[0])), said)
    part = next((half for word, half in _PART_OF_DAY.items() if word in said), "")
    for word in _PART_OF_DAY:
        said = said.replace(word, "")
    said = " ".join(_SPOKEN_DAY.sub(" ", said).split())
    if past_to := _PAST_TO.match(said):
        minutes, way, hour, rest = int(past_to[1]), past_to[2], int(past_to[3]), past_to[4]
        if way in ("to", "before"):
            hour, minutes = (hour - 1) % 24 or (12 if hour <= 12 else 0), 60 - minutes
        said = f"{hour}:{minutes:02d}{rest}"
    if part and not re.search(r"[ap]\.?\s*m\b", said):
        digits = re.match(r"\d{1,2}", said)
        if digits is None or 1 <= int(digits[0]) <= 12:
            said = f"{said} {part}"
    return said.strip()


def next_occurrence(time: str, now: float) -> float:
    """When the local clock next shows `time` after `now` (Unix times; local time zone)."""
    hour, minute = clock_time(time)
    today = datetime.datetime.fromtimestamp(now)
    at = today.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if at.timestamp() <= now:
        at += datetime.timedelta(days=1)
    return at.timestamp()


def _name(kind: str, label: str, seconds: float | None) -> str:
    """How the user hears it: "5 minute timer 'tea'", "alarm 'wake up'"."""
    name = f"{spoken_duration(seconds, adjective=True)} timer" if seconds else kind
    return f"{name} '{label}'" if label else name
