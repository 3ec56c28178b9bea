"""What the model is told before each message: the time, tomorrow's weekday, and what the
tools hold, read from the real tools.db, so "where is my car?" needs no tool call."""

from __future__ import annotations

import datetime
from pathlib import Path

from app.conversation.context import Here
from app.tools import default_tools

SUNDAY_EVENING = datetime.datetime(2026, 12, 6, 21, 6, tzinfo=datetime.UTC)


def test_the_note_says_the_time_and_tomorrow() -> None:
    note = Here(lambda: SUNDAY_EVENING).note()
    assert note == "It is now 21:06 on Sunday 6 December 2026; tomorrow is Monday 7 December."


def test_the_note_says_what_is_pending_and_saved(tmp_path: Path) -> None:
    toolbox = default_tools(lambda _text: None, tmp_path)
    here = Here(lambda: SUNDAY_EVENING, known=toolbox.known)
    assert here.note().endswith("No timers or alarms are set. No notes are saved.")

    toolbox.reminders.set_timer(hours=1, minutes=30, label="bread")
    toolbox.notes.remember("my car is on level 3")
    note = here.note()
    assert "Pending: 1 hour 30 minute timer 'bread' (id 1, 1 hour and 30 minutes left, rings " \
        in note
    assert note.endswith("Saved notes: my car is on level 3 (note 1).")
