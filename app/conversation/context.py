"""What the model is told about the here and now, so it never has to invent the time.

The place (time zone, locale) goes once at the end of the system prompt; the date and time,
and what the tools hold (pending timers, saved notes), go in a short note before each user
message. Notes stay in the history, so every earlier prompt keeps its exact text and
llama.cpp's KV cache serves it again: only the new note and message are read each turn.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from app.tools.clock import locale_name, now, spoken_date, utc_offset, zone_name


class Here:
    """The clock and the place, as the agent asks for them (tests give a fixed clock)."""

    def __init__(self, clock: Callable[[], datetime.datetime] = now,
                 known: Callable[[], str] | None = None) -> None:
        """`known` says what the tools hold now (Toolbox.known)."""
        self.clock = clock
        self.known = known

    def place(self) -> str:
        return where(self.clock())

    def note(self) -> str:
        note = turn_note(self.clock())
        return f"{note} {self.known()}" if self.known is not None else note


def where(at: datetime.datetime | None = None) -> str:
    """The system prompt's last sentence: the user's time zone and locale."""
    at = at or now()
    place = f"The user's time zone is {zone_name(at)} (UTC{utc_offset(at)})"
    language = locale_name()
    return f"{place} and their locale is {language}." if language else f"{place}."


def turn_note(at: datetime.datetime | None = None) -> str:
    """"It is now 18:25 on Sunday 6 December 2026; tomorrow is Monday 7 December." before a
    user message (a 1.5B model gets the next weekday wrong one time in three)."""
    at = at or now()
    tomorrow = spoken_date(at + datetime.timedelta(days=1)).rsplit(" ", 1)[0]
    return f"It is now {at:%H:%M} on {spoken_date(at)}; tomorrow is {tomorrow}."
