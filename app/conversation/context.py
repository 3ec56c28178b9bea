"""What the model is told about the here and now, so it never has to invent the time.

The place (time zone, locale) goes once at the end of the system prompt; the date and time
go in a short note before each user message. Notes stay in the history, so every earlier
prompt keeps its exact text and llama.cpp's KV cache serves it again: only the new note
and message are read each turn.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from app.tools.clock import locale_name, now, spoken_date, utc_offset, zone_name


class Here:
    """The clock and the place, as the agent asks for them (tests give a fixed clock)."""

    def __init__(self, clock: Callable[[], datetime.datetime] = now) -> None:
        self.clock = clock

    def place(self) -> str:
        return where(self.clock())

    def note(self) -> str:
        return turn_note(self.clock())


def where(at: datetime.datetime | None = None) -> str:
    """The system prompt's last sentence: the user's time zone and locale."""
    at = at or now()
    place = f"The user's time zone is {zone_name(at)} (UTC{utc_offset(at)})"
    language = locale_name()
    return f"{place} and their locale is {language}." if language else f"{place}."


def turn_note(at: datetime.datetime | None = None) -> str:
    """"It is now 18:25 on Sunday 6 December 2026." before a user message."""
    at = at or now()
    return f"It is now {at:%H:%M} on {spoken_date(at)}."
